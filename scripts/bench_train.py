"""Benchmark: training iterations/s of the CIFAR10 CNN GAN (batch 64), side by side:

- the project's loop (``harness.training.loop``: one D step with one power-iteration
  advance and one D pass over real and fake, then one G step with D frozen) with
  ``norm`` none, sn and bssn (scale 1.2);
- ``peer``: the plain hinge-GAN loop a user would write instead, with torch's built-in
  ``spectral_norm`` on the same CNN (D on real and on fake, then G against D; torch's SN
  advances at every training forward);
- ``bssn + logging``: the bssn iteration plus the measured cost of one log step
  (losses, sigmas, gradient norms, input-gradient norms) every ``train.log_freq`` and of
  one analysis step (``bssn.analysis.log_scalars``) every ``train.analysis_freq``
  iterations, at the config defaults (100, 1000): the cost is timed per event in the
  same interleaved rounds and amortized.

Variants run interleaved round by round, median of rounds; only the ratios are
comparable on a shared machine. Then a torch.profiler summary of the bssn iteration.

    python -m scripts.bench_train                 # CPU (~3 minutes), and GPU when present
    python -m scripts.bench_train --rounds 5 --no-profile
    python -m scripts.bench_train --device cuda --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import bssn
from bssn import analysis
from harness import allocator, threads
from harness.training.config import TrainConfig
from harness.training.loop import _log_scalars, discriminator_update, generator_update
from models import build_models

PROJECT = {"none": {}, "sn": {}, "bssn": {"scale": 1.2}}
PEER = "peer: plain loop, torch spectral_norm"
LOGGED = "bssn + logging (amortized)"


def _models(device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    g, d = build_models("cnn", 32, 3)
    return g.to(device), d.to(device)


def _adam(module: torch.nn.Module) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), 1e-4, betas=(0.5, 0.999))


def project_iteration(mode: str, device: torch.device, batch: int):
    """(iteration, log step, analysis step) of the project's loop for ``mode``."""
    g, d = _models(device)
    bssn.apply(d, mode, **PROJECT[mode])
    opt_g, opt_d = _adam(g), _adam(d)
    real = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1
    last: dict = {}

    def iteration() -> None:
        z = torch.randn(batch, 128, device=device)
        last["d"] = discriminator_update(d, d, g, opt_d, real, z)
        last["g"] = generator_update(d, g, opt_g, torch.randn(batch, 128, device=device))

    def log_step() -> None:
        _log_scalars(d, last["d"], last["g"])

    def analysis_step() -> None:
        analysis.log_scalars(d, last["d"]["real"])

    return iteration, log_step, analysis_step


def peer_iteration(device: torch.device, batch: int) -> Callable[[], None]:
    """A hand-written hinge GAN step with torch.nn.utils.parametrizations.spectral_norm."""
    g, d = _models(device)
    for m in list(d.modules()):
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.utils.parametrizations.spectral_norm(m)
    opt_g, opt_d = _adam(g), _adam(d)
    real = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1

    def iteration() -> None:
        fake = g(torch.randn(batch, 128, device=device)).detach()
        d_loss = F.relu(1 - d(real)).mean() + F.relu(1 + d(fake)).mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = -d(g(torch.randn(batch, 128, device=device))).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()

    return iteration


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], n: int, device: torch.device) -> float:
    """Seconds per call of ``fn``, over ``n`` calls."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n


def bench(device: torch.device, batch: int, rounds: int, inner: int) -> None:
    defaults = TrainConfig()
    steps = {m: project_iteration(m, device, batch) for m in PROJECT}
    iters = {m: s[0] for m, s in steps.items()} | {PEER: peer_iteration(device, batch)}
    log_step, analysis_step = steps["bssn"][1], steps["bssn"][2]
    for it in iters.values():
        it(), it()
    log_step(), analysis_step()
    secs: dict[str, list[float]] = {m: [] for m in iters}
    log_secs, analysis_secs = [], []
    names = list(iters)
    for r in range(rounds):
        for m in names if r % 2 == 0 else reversed(names):
            secs[m].append(timed(iters[m], inner, device))
            if m == "bssn":  # right after the bssn iteration it logs
                log_secs.append(timed(log_step, 1, device))
                analysis_secs.append(timed(analysis_step, 1, device))
    med = {m: statistics.median(v) for m, v in secs.items()}
    log_s, analysis_s = statistics.median(log_secs), statistics.median(analysis_secs)
    logged = med["bssn"] + log_s / defaults.log_freq + analysis_s / defaults.analysis_freq
    rates = {m: 1 / s for m, s in med.items()} | {LOGGED: 1 / logged}
    print(
        f"\n{device.type}: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"batch {batch}, median of {rounds} interleaved rounds of {inner} iterations"
    )
    print("| loop | it/s | vs none | vs peer |\n|---|---|---|---|")
    for m in [*PROJECT, LOGGED, PEER]:
        print(
            f"| {m} | {rates[m]:.3f} | {rates[m] / rates['none']:.3f} "
            f"| {rates[m] / rates[PEER]:.3f} |"
        )
    print(
        f"one log step {log_s * 1e3:.0f} ms every {defaults.log_freq} iterations, one analysis "
        f"step {analysis_s * 1e3:.0f} ms every {defaults.analysis_freq}: logging costs "
        f"{(logged / med['bssn'] - 1) * 100:.2f}% of training time (goal <= 2%)"
    )
    print(f"project sn / peer (torch spectral_norm): {rates['sn'] / rates[PEER]:.3f} (goal >= 1)")
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="default: harness.threads")
    parser.add_argument(
        "--malloc", choices=("keep", "default"), default="keep",
        help="keep: harness.allocator keeps freed memory, as training does; default: glibc's",
    )  # fmt: skip
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    threads.configure(args.threads)
    kept = args.malloc == "keep" and allocator.keep_freed_memory()
    print(f"malloc: {'freed memory kept (harness.allocator)' if kept else 'glibc defaults'}")
    devices = [
        torch.device(d)
        for d in ("cpu", "cuda")
        if args.device in (d, "all") and (d == "cpu" or torch.cuda.is_available())
    ]
    for device in devices:
        inner = 50 if device.type == "cuda" else 3
        steps = bench(device, args.batch, args.rounds, inner)
        if not args.no_profile:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            with torch.profiler.profile(activities=activities) as prof:
                timed(steps["bssn"][0], inner, device)
            key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
            print(f"\nwhere a bssn iteration's time goes ({device.type}, {inner} iterations):")
            print(prof.key_averages().table(sort_by=key, row_limit=12, max_name_column_width=40))


if __name__ == "__main__":
    main()
