"""Benchmark: one forward+backward of the paper's CIFAR10 CNN discriminator (batch 64).

Variants are timed side by side in one process, interleaved round by round, and the
median per variant is reported with its ratio to `none`: on a shared, noisy machine only
such ratios are comparable. Each timed step runs the paper's update rule (one power
iteration, then D(x) and backward), so the normalization's whole cost is inside.

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
from harness import threads
from models import build_models

VARIANTS = ("none", "sn", "torch_sn", "bsn", "snconv")


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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(
    device: torch.device, batch: int, rounds: int, inner: int, compile_: bool
) -> dict[str, float]:
    x = torch.randn(batch, 3, 32, 32, device=device)
    steps = {v: make_step(make_discriminator(v, device), x, compile_) for v in VARIANTS}
    for step in steps.values():  # warm-up (and compilation)
        for _ in range(3):
            step()
    sync(device)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))
        for v in order:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(inner):
                steps[v]()
            sync(device)
            times[v].append((time.perf_counter() - t0) / inner * 1e3)
    return {v: statistics.median(t) for v, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--compile", action="store_true", help="torch.compile the discriminator")
    parser.add_argument("--threads", type=int, default=None, help="default: harness.threads")
    args = parser.parse_args()
    threads.configure(args.threads)
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
        ms = bench(device, args.batch, args.rounds, inner, args.compile)
        print(
            f"\n{device.type} ({name}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, "
            f"batch {args.batch}, median of {args.rounds} interleaved rounds"
            f"{', compiled' if args.compile else ''})"
        )
        print("| variant | ms / D fwd+bwd | vs none |\n|---|---|---|")
        for v in VARIANTS:
            print(f"| {v} | {ms[v]:.2f} | {ms[v] / ms['none']:.3f} |")
        print(f"bssn sn / torch spectral_norm: {ms['sn'] / ms['torch_sn']:.3f}")


if __name__ == "__main__":
    main()
