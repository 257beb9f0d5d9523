"""Quick start: SN vs BSSN on the download-free shapes dataset, about two minutes on a CPU.

    python -m scripts.quickstart            # what `make quickstart` runs
    python -m scripts.quickstart --iterations 1000

Trains the paper's CNN GAN twice with `experiment=quickstart` (16x16 shapes), once with
D normalized by SN and once by BSSN, then writes a comparison figure and prints a table
of what the paper is about: D's per-layer gradient norms and its input-gradient norm,
which SN shrinks (Sec. 4: vanishing gradients) and BSSN keeps larger.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
from hydra import compose, initialize_config_dir

from harness.training.config import register_configs
from harness.training.loop import train
from harness.training.run_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"SN": ["norm=sn"], "BSSN (s=1.2)": ["norm=bssn", "scale=1.2"]}


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def layer_grads(record: dict) -> list[float]:
    return [v for k, v in record.items() if k.startswith("grad_norm/")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--out-dir", default="runs/quickstart")
    args = parser.parse_args()
    register_configs()
    runs: dict[str, Path] = {}
    for label, overrides in VARIANTS.items():
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    "experiment=quickstart",
                    *overrides,
                    f"train.iterations={args.iterations}",
                    f"out_dir={args.out_dir}",
                ],
            )
        runs[label] = Path(cfg.out_dir) / cfg.run_name
        print(f"\n== {label}: {runs[label]}")
        train(cfg, runs[label])

    print("\nMeans over the second half of training (single log points are noisy):")
    print(
        f"{'':14s}| {'D loss':>7s} | {'D(real)-D(fake)':>15s} | {'|grad_x D| real':>15s} | "
        f"{'layer grad norm (geo. mean)':>27s}"
    )
    fig, axes = plt.subplots(2, 2, figsize=(10, 9))
    for col, (label, run_dir) in enumerate(runs.items()):
        records = read_metrics(run_dir)
        last = records[-1]
        late = records[len(records) // 2 :]

        def mean(f, late=late) -> float:
            return sum(f(r) for r in late) / len(late)

        print(
            f"{label:14s}| {mean(lambda r: r['d_loss']):7.3f} | "
            f"{mean(lambda r: r['d_real'] - r['d_fake']):15.3f} | "
            f"{mean(lambda r: r['input_grad_norm/real']):15.4f} | "
            f"{mean(lambda r: geometric_mean(layer_grads(r))):27.2e}"
        )
        grid = sorted((run_dir / "samples").glob("*.png"))[-1]
        axes[0, col].imshow(mpimg.imread(grid))
        axes[0, col].set_title(f"{label}: samples at step {last['step']}")
        axes[0, col].axis("off")
        steps = [r["step"] for r in records]
        axes[1, 0].plot(steps, [r["input_grad_norm/real"] for r in records], label=label)
        axes[1, 1].plot(steps, [geometric_mean(layer_grads(r)) for r in records], label=label)
    axes[1, 0].set(
        xlabel="iteration", ylabel="mean ||grad_x D(x)||, real batch", title="D's input gradient"
    )
    axes[1, 1].set(
        xlabel="iteration",
        ylabel="geometric mean over layers",
        yscale="log",
        title="||grad of D loss w.r.t. each layer's weight||",
    )
    for ax in axes[1]:
        ax.legend()
    fig.tight_layout()
    figure = Path(args.out_dir) / "comparison.png"
    fig.savefig(figure, dpi=100)
    print(f"\nComparison figure: {figure}")
    for label, run_dir in runs.items():
        print(
            f"{label}: samples in {run_dir / 'samples'}, scalars in {run_dir / 'metrics.jsonl'}, "
            f"checkpoints in {run_dir / 'checkpoints'}"
        )
    print("Re-running resumes finished runs instantly; delete the folder to start over.")
    (Path(args.out_dir) / "summary.json").write_text(
        json.dumps({label: read_metrics(d)[-1] for label, d in runs.items()}, indent=1)
    )


if __name__ == "__main__":
    main()
