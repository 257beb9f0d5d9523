"""Benchmark: training iterations/s of the CIFAR10 CNN GAN (batch 64) for none/sn/bssn.

One iteration is what train.py runs: one D step (power iteration, D on real and fake,
backward, Adam) and one G step. Variants run side by side in one process, interleaved,
median of rounds; then a torch.profiler summary of the bssn iteration shows where the
time goes.

    python -m scripts.bench_train                 # CPU, and GPU when one is present
    python -m scripts.bench_train --device cuda --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import bssn
from harness.training.loop import discriminator_update, generator_update
from models import build_models

VARIANTS = {"none": {}, "sn": {}, "bssn": {"scale": 1.2}}


def make_iteration(mode: str, device: torch.device, batch: int):
    torch.manual_seed(0)
    g, d = build_models("cnn", 32, 3)
    bssn.apply(d, mode, **VARIANTS[mode])
    g, d = g.to(device), d.to(device)
    opt_g = torch.optim.Adam(g.parameters(), 1e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 1e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1

    def iteration() -> None:
        z = torch.randn(batch, 128, device=device)
        discriminator_update(d, d, g, opt_d, real, z)
        generator_update(d, g, opt_g, torch.randn(batch, 128, device=device))

    return iteration


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    devices = [
        torch.device(d)
        for d in ("cpu", "cuda")
        if args.device in (d, "all") and (d == "cpu" or torch.cuda.is_available())
    ]
    for device in devices:
        inner = 50 if device.type == "cuda" else 3
        iters = {m: make_iteration(m, device, args.batch) for m in VARIANTS}
        for it in iters.values():
            it(), it()
        times: dict[str, list[float]] = {m: [] for m in VARIANTS}
        for r in range(args.rounds):
            for m in VARIANTS if r % 2 == 0 else reversed(list(VARIANTS)):
                sync(device)
                t0 = time.perf_counter()
                for _ in range(inner):
                    iters[m]()
                sync(device)
                times[m].append(inner / (time.perf_counter() - t0))
        print(
            f"\n{device.type}: torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"batch {args.batch}, "
            f"median of {args.rounds} interleaved rounds"
        )
        print("| norm | it/s | vs none |\n|---|---|---|")
        base = statistics.median(times["none"])
        for m, ts in times.items():
            print(f"| {m} | {statistics.median(ts):.2f} | {statistics.median(ts) / base:.3f} |")
        if not args.no_profile:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            with torch.profiler.profile(activities=activities) as prof:
                for _ in range(inner):
                    iters["bssn"]()
                sync(device)
            key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
            print(f"\nwhere a bssn iteration's time goes ({device.type}, {inner} iterations):")
            print(prof.key_averages().table(sort_by=key, row_limit=12, max_name_column_width=40))


if __name__ == "__main__":
    main()
