"""Benchmark: one forward+backward of the paper's CIFAR10 CNN discriminator (batch 64).

Variants are timed side by side in one process, interleaved round by round; each is
reported with its median time and the median of its per-round ratios to `none` (on a
shared, noisy machine only such paired ratios are comparable). Each timed step runs the
paper's update rule (one power iteration, then D(x) and backward), so the normalization's
whole cost is inside.

    python -m scripts.bench_norm                  # CPU, and GPU when one is present
    python -m scripts.bench_norm --device cuda --compile
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

import bssn
from harness import allocator, threads
from models import build_models

VARIANTS = ("none", "sn", "torch_sn", "bsn", "snconv")
WEIGHTS_ONLY = " (weights only)"


def make_discriminator(variant: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    _, d = build_models("cnn", resolution=32, channels=3)
    d = d.to(device)
    if variant == "torch_sn":
        for m in list(d.modules()):
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.utils.parametrizations.spectral_norm(m)
    else:
        bssn.apply(d, variant, input_size=(3, 32, 32))
    return d


def make_step(d: torch.nn.Module, x: torch.Tensor, compile_: bool) -> Callable[[], None]:
    fwd = torch.compile(d) if compile_ else d

    def step() -> None:
        # torch_sn advances inside its forward; ours advance once per step, as in training.
        with bssn.discriminator_step(d):
            fwd(x).mean().backward()

    return step


def make_weights_step(d: torch.nn.Module) -> Callable[[], None]:
    """The normalization alone: one D step's advance, every layer's normalized weight and
    its backward from a fixed gradient, with no convolution (whose noise dwarfs it)."""
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        grads = [torch.randn_like(m.weight) for m in layers]

    def step() -> None:
        with bssn.discriminator_step(d):
            weights = [m.weight for m in layers]
        torch.autograd.backward(weights, grads)

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(
    device: torch.device, batch: int, rounds: int, inner: int, compile_: bool
) -> dict[str, list[float]]:
    """Per variant (and per variant + WEIGHTS_ONLY: the normalization alone), the ms of
    one step in each round."""
    x = torch.randn(batch, 3, 32, 32, device=device)
    steps = {}
    for v in VARIANTS:
        d = make_discriminator(v, device)
        steps[v] = make_step(d, x, compile_)
        steps[v + WEIGHTS_ONLY] = make_weights_step(d)
    for step in steps.values():  # warm-up (and compilation)
        for _ in range(3):
            step()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for name in order:
            n = inner * 10 if name.endswith(WEIGHTS_ONLY) else inner
            sync(device)
            t0 = time.perf_counter()
            for _ in range(n):
                steps[name]()
            sync(device)
            times[name].append((time.perf_counter() - t0) / n * 1e3)
    return times


def paired_ratio(times: dict[str, list[float]], variant: str) -> float:
    """Median over rounds of the variant's time / none's in the same round: the machine's
    drift (other processes, clocks) cancels within a round, not across the whole run."""
    return statistics.median(t / n for t, n in zip(times[variant], times["none"], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--compile", action="store_true", help="torch.compile the discriminator")
    parser.add_argument("--threads", type=int, default=None, help="default: harness.threads")
    parser.add_argument(
        "--malloc", choices=("keep", "default"), default="keep",
        help="keep: harness.allocator keeps freed memory, as training does; default: glibc's",
    )  # fmt: skip
    args = parser.parse_args()
    threads.configure(args.threads)
    kept = args.malloc == "keep" and allocator.keep_freed_memory()
    print(f"malloc: {'freed memory kept (harness.allocator)' if kept else 'glibc defaults'}")
    devices = []
    if args.device in ("cpu", "all"):
        devices.append(torch.device("cpu"))
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for device in devices:
        name = (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        )
        inner = 20 if device.type == "cuda" else 2
        times = bench(device, args.batch, args.rounds, inner, args.compile)
        ms = {v: statistics.median(t) for v, t in times.items()}
        print(
            f"\n{device.type} ({name}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, "
            f"batch {args.batch}, median of {args.rounds} interleaved rounds"
            f"{', compiled' if args.compile else ''})"
        )
        print(
            "| variant | ms / D fwd+bwd (median) | vs none (median of per-round ratios) "
            "| normalization alone, ms / step |\n|---|---|---|---|"
        )
        for v in VARIANTS:
            print(
                f"| {v} | {ms[v]:.2f} | {paired_ratio(times, v):.3f} | {ms[v + WEIGHTS_ONLY]:.3f} |"
            )
        for label, suffix in (("D fwd+bwd", ""), ("normalization alone", WEIGHTS_ONLY)):
            ratio = statistics.median(
                a / b for a, b in zip(times["sn" + suffix], times["torch_sn" + suffix], strict=True)
            )
            print(f"sn / torch spectral_norm, {label} (median of per-round ratios): {ratio:.3f}")


if __name__ == "__main__":
    main()
