"""Benchmark: training it/s of the MNIST GAN (bssn, scale 1.2, batch 64) under CPU thread
settings, on an idle machine and beside one busy process (the table of README, Performance).

Each measurement is a fresh process, because libgomp reads ``OMP_WAIT_POLICY`` when torch
is imported. The settings run interleaved, round by round; the busy neighbour is a
pure-Python spin loop this script starts and stops. Columns:

- ``all cores``: one thread per available CPU, libgomp's default wait (the old default);
- ``1 thread``: ``OMP_NUM_THREADS=1``;
- ``all cores + PASSIVE``: ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once);
- ``project default``: ``harness.threads``: as many threads as CPUs other processes
  leave idle, measured from /proc/stat when the run starts.

    python -m scripts.bench_threads                  # ~2 minutes: 3 rounds of 4 s runs
    python -m scripts.bench_threads --rounds 5 --seconds 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_CPUS = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
SETTINGS = {
    "all cores": {"OMP_NUM_THREADS": _CPUS},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "all cores + PASSIVE": {"OMP_NUM_THREADS": _CPUS, "OMP_WAIT_POLICY": "PASSIVE"},
    "project default": {},
}
STATES = ("no added load", "+1 busy process")
# The child imports torch first: only the environment it is given decides the settings.
CHILD = "import torch; from scripts.bench_threads import child; child({seconds})"


def child(seconds: float) -> None:
    """Train the MNIST GAN for ``seconds`` (after warm-up) and print its rate as JSON."""
    import torch

    import bssn
    from harness import threads
    from harness.training.loop import discriminator_update, generator_update
    from models import build_models

    threads.configure(None)
    torch.manual_seed(0)
    g, d = build_models("dcgan_mnist", 28, 1)
    bssn.apply(d, "bssn", 1.2)
    opt_g = torch.optim.Adam(g.parameters(), 1e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 1e-4, betas=(0.5, 0.999))
    real = torch.rand(64, 1, 28, 28)

    def iteration() -> None:
        discriminator_update(d, d, g, opt_d, real, torch.randn(64, 128))
        generator_update(d, g, opt_g, torch.randn(64, 128))

    for _ in range(3):
        iteration()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        iteration()
        n += 1
    rate = n / (time.perf_counter() - t0)
    print(json.dumps({"it_per_s": rate, "threads": torch.get_num_threads()}))


def _measure(setting: dict[str, str], seconds: float) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    }
    env |= setting
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(seconds=seconds)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per run")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="LABEL:VAR=VALUE[,VAR=VALUE]",
        help="an extra column, e.g. 'spin 10k:GOMP_SPINCOUNT=10000'",
    )
    args = parser.parse_args()
    for extra in args.setting:
        label, _, assignments = extra.partition(":")
        SETTINGS[label] = dict(a.split("=", 1) for a in assignments.split(",") if a)
    print(f"load average before: {_load()}", flush=True)
    rates: dict[tuple[str, str], list[float]] = {(s, c): [] for s in STATES for c in SETTINGS}
    n_threads: dict[tuple[str, str], list[int]] = {k: [] for k in rates}
    for r in range(args.rounds):
        for state in STATES if r % 2 == 0 else reversed(STATES):
            busy = None
            if state != STATES[0]:
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                order = list(SETTINGS) if r % 2 == 0 else list(reversed(SETTINGS))
                for name in order:
                    result = _measure(SETTINGS[name], args.seconds)
                    rates[state, name].append(result["it_per_s"])
                    n_threads[state, name].append(result["threads"])
                    line = (
                        f"round {r} {state:>16} | {name:>20}: {result['it_per_s']:.2f} it/s, "
                        f"{result['threads']} threads"
                    )
                    print(line, flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    print(f"load average after: {_load()}")
    med = {k: statistics.median(v) for k, v in rates.items()}
    cols = list(SETTINGS)
    print(f"\nMNIST bssn it/s, median of {args.rounds} interleaved rounds of {args.seconds} s")
    print("(threads each setting ran with, per round, in brackets)")
    print(f"| machine state | {' | '.join(cols)} |\n|---|" + "---|" * len(cols))
    for state in STATES:
        cells = [f"{med[state, c]:.2f} {n_threads[state, c]}" for c in cols]
        print(f"| {state} | " + " | ".join(cells) + " |")
    best_idle = max(med[STATES[0], c] for c in cols)
    default = "project default"
    vs_best = med[STATES[0], default] / best_idle
    vs_one = med[STATES[1], default] / med[STATES[1], "1 thread"]
    print(
        f"\n{default}: {STATES[0]}: {vs_best:.2f} of the best setting; "
        f"{STATES[1]}: {vs_one:.2f} of 1 thread (goals: >= 0.90 each)"
    )


if __name__ == "__main__":
    main()
