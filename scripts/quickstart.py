"""Quick start: SN vs BSSN on the download-free shapes dataset, 2.5 minutes on 2 idle CPU cores.

    python -m scripts.quickstart            # what `make quickstart` runs
    python -m scripts.quickstart --iterations 3000

Trains a quarter-width version of the paper's CNN GAN twice with `experiment=quickstart`
(24x24 shapes), once with D normalized by SN and once by BSSN, side by side (one process
and one thread each; console logs beside the runs). Every 250 iterations it
measures how close G's samples are to the data with the repo's shape classifier (trained
on the shapes in seconds, on first use): the Frechet distance in its feature space
(`fd_shapes2k_test`, lower is closer) and the fraction of samples it labels circle, square
or triangle with >= 90% confidence (`confident_shapes2k`). These are the repo's own
metrics (docs/metrics.md), not the paper's. Then it draws one figure: real shapes beside
each run's samples, the numbers, and D's gradient norms, which SN shrinks (Sec. 4:
vanishing gradients) and BSSN keeps larger.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from torchvision.utils import make_grid

from data import load_dataset
from harness.metrics.classifier_train import resolve_classifier_weights
from harness.training.config import register_configs
from harness.training.run_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"SN": ["norm=sn"], "BSSN (s=1.2)": ["norm=bssn", "scale=1.2"]}
FD, CONFIDENT = "fd_shapes2k_test", "confident_shapes2k"
COLORS = {"SN": "tab:blue", "BSSN (s=1.2)": "tab:orange"}


def run_name(overrides: list[str]) -> str:
    """The run directory's name the loop uses for these overrides."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=overrides).run_name


def geometric_mean(values: list[float]) -> float:
    """Over the positive values (a layer whose gradient is exactly 0 has no logarithm)."""
    positive = [v for v in values if v > 0]
    return math.exp(sum(math.log(v) for v in positive) / len(positive)) if positive else 0.0


def layer_grads(record: dict) -> list[float]:
    return [v for k, v in record.items() if k.startswith("grad_norm/")]


def smooth(values: list[float], window: int) -> np.ndarray:
    """Centred moving average; the ends average over what is there."""
    v = np.asarray(values, dtype=float)
    kernel = np.ones(min(window, len(v)))
    return np.convolve(v, kernel, "same") / np.convolve(np.ones_like(v), kernel, "same")


def real_grid(cfg) -> np.ndarray:
    """8x8 held-out real shapes as an HxWx3 array in [0, 1]."""
    real = load_dataset("shapes", cfg.dataset.root, cfg.dataset.resolution, split="test")
    images = torch.stack([real[i] for i in range(64)]).float() / 255.0
    return make_grid(images, nrow=8, padding=2, pad_value=1.0).permute(1, 2, 0).numpy()


def plot_curve(ax, steps: list[int], values: list[float], label: str, log: bool) -> None:
    """Raw points faint, a moving average over about a tenth of the run on top."""
    color = COLORS[label]
    ax.plot(steps, values, ".", color=color, alpha=0.25, markersize=4)
    smoothed = np.exp(smooth(np.log(values), max(3, len(values) // 10))) if log else None
    if smoothed is None:
        smoothed = smooth(values, max(3, len(values) // 10))
    ax.plot(steps, smoothed, color=color, label=label, linewidth=2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=None, help="default: the preset's")
    parser.add_argument("--out-dir", default="runs/quickstart")
    args = parser.parse_args()
    started = time.perf_counter()
    register_configs()
    cfgs = {}
    for label, overrides in VARIANTS.items():
        extra = [] if args.iterations is None else [f"train.iterations={args.iterations}"]
        cfgs[label] = [
            "experiment=quickstart",
            "eval=shapes_classifier",
            *overrides,
            *extra,
            f"out_dir={Path(args.out_dir).resolve()}",
        ]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=cfgs["SN"])
    # The shape classifier first (seconds, once), so the two runs do not both train it.
    weights = resolve_classifier_weights(None, "shapes", cfg.dataset.root, cfg.dataset.resolution)
    print(f"shape classifier: {weights}", flush=True)
    runs = {label: Path(cfg.out_dir) / run_name(overrides) for label, overrides in cfgs.items()}
    # Side by side, one thread each: on 2 cores, two small runs in parallel finish sooner
    # than one after another with two threads each.
    procs = {}
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    for label, overrides in cfgs.items():
        log_file = Path(args.out_dir) / f"{runs[label].name}.log"
        print(f"== {label}: {runs[label]} (console log {log_file})", flush=True)
        procs[label] = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *overrides, "logger.progress=false"],
            stdout=log_file.open("w"), stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
    for label, proc in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"the {label} run failed; see {args.out_dir}/{runs[label].name}.log")

    fig, axes = plt.subplots(2, 3, figsize=(13, 8.6))
    axes[0, 0].imshow(real_grid(cfg))
    axes[0, 0].set_title("Real shapes (held out)\nG should draw circles, squares, triangles")
    finals: dict[str, dict] = {}
    print("\nMeans over the second half of training (single log points are noisy):")
    print(f"{'':14s}| {'D(real)-D(fake)':>15s} | {'|grad_x D| real':>15s} | {'layer grad':>10s}")
    for col, (label, run_dir) in enumerate(runs.items(), start=1):
        records = read_metrics(run_dir)
        train_records = [r for r in records if "d_loss" in r]
        evals = [r for r in records if FD in r]
        finals[label] = evals[-1]
        late = train_records[len(train_records) // 2 :]

        def mean(f, late=late) -> float:
            return sum(f(r) for r in late) / len(late)

        print(
            f"{label:14s}| {mean(lambda r: r['d_real'] - r['d_fake']):15.3f} | "
            f"{mean(lambda r: r['input_grad_norm/real']):15.4f} | "
            f"{mean(lambda r: geometric_mean(layer_grads(r))):10.2e}"
        )
        grid = sorted((run_dir / "samples").glob("*.png"))[-1]
        final = finals[label]
        axes[0, col].imshow(mpimg.imread(grid))
        axes[0, col].set_title(
            f"{label} samples, step {final['step']}\n"
            f"FD {final[FD]:.1f} · {final[CONFIDENT]:.0%} confidently a shape",
            color=COLORS[label],
        )
        steps = [r["step"] for r in train_records]
        axes[1, 0].plot(
            [r["step"] for r in evals], [r[FD] for r in evals], "o-", color=COLORS[label],
            label=label,
        )  # fmt: skip
        plot_curve(
            axes[1, 1], steps, [r["input_grad_norm/real"] for r in train_records], label, False
        )
        plot_curve(
            axes[1, 2], steps, [geometric_mean(layer_grads(r)) for r in train_records], label, True
        )
    for ax in axes[0]:
        ax.axis("off")
    axes[1, 0].set(
        xlabel="iteration", ylabel="FD in the shape classifier's features",
        title="How close to the real shapes? (lower is closer)",
    )  # fmt: skip
    axes[1, 1].set(
        xlabel="iteration", ylabel="mean ||grad_x D(x)||, real batch",
        title="D's input gradient: look for SN's\nbelow BSSN's (Sec. 4: SN vanishes)",
    )  # fmt: skip
    axes[1, 2].set(
        xlabel="iteration", ylabel="geometric mean over layers", yscale="log",
        title="D's weight gradients: larger means\nless vanishing (BSSN's aim)",
    )  # fmt: skip
    for ax in axes[1]:
        ax.legend()
    fig.tight_layout()
    figure = Path(args.out_dir) / "comparison.png"
    fig.savefig(figure, dpi=70)
    (Path(args.out_dir) / "summary.json").write_text(
        json.dumps({label: read_metrics(d)[-1] for label, d in runs.items()}, indent=1)
    )
    elapsed = time.perf_counter() - started

    print(f"\nFiles: figure {figure}")
    for label, run_dir in runs.items():
        print(f"  {label}: samples {run_dir / 'samples'}, scalars {run_dir / 'metrics.jsonl'}")
    print("Re-running resumes finished runs instantly; delete the folder to start over.")
    print("\nWhat matters (the shape classifier on 2000 samples of each run; the repo's metric):")
    for label, final in finals.items():
        print(
            f"  {label:13s} FD {final[FD]:6.1f} (lower is closer to real shapes), "
            f"{final[CONFIDENT]:.0%} of samples confidently a circle, square or triangle"
        )
    print(f"  Took {elapsed / 60:.1f} min. Look at {figure}")


if __name__ == "__main__":
    main()
