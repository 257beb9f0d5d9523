"""Monte Carlo checks of Thm. 2 (SN ~ LeCun) and Thm. 3 (BSN ~ Xavier), docs/normalization.md.

    python -m scripts.check_theorems [--sizes 8 16 32 64 128 256] [--trials 20] [--out figures]
                                     [--formats png pdf]

For random matrices (Thm. 2: m x n, aspect ratios 1 and 4 both ways) and conv kernels
(Thm. 3: c_out x c_in x k x k, k = 1, 3, 4) with i.i.d. symmetric entries (Gaussian,
uniform, Rademacher, Student-t with 3 degrees of freedom), it measures
v = mean (w / sigma)^2, with sigma = sigma(W1) for Thm. 2 and (sigma(W1) + sigma(W2)) / 2
for Thm. 3, and

- checks the deterministic upper bounds as identities, on every sample:
  v <= 1 / max(m, n) (Thm. 2) and v <= 4 / (N (1/sqrt(r1) + 1/sqrt(r2))^2) (Thm. 3);
- shows the lower-bound trend: the paper's lower bounds are of the same order as the
  upper bounds up to a log factor (L / (max(m, n) log ...)), so E[v] against the upper
  bound should follow a line of log-log slope about 1. The fitted slope and constant are
  printed and plotted.

Prints a table and writes ``theorems.png`` and ``theorems.pdf``; exits with status 1 if
an upper bound fails.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from bssn.analysis.theory import thm2_bound, thm3_bound

DISTRIBUTIONS = {
    "gaussian": lambda shape, g: torch.randn(shape, generator=g, dtype=torch.float64),
    "uniform": lambda shape, g: torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1,
    "rademacher": lambda shape, g: torch.randint(0, 2, shape, generator=g).double() * 2 - 1,
    # Heavy tails (finite variance): a symmetric law far from the Gaussian.
    "student_t3": lambda shape, g: (
        torch.randn(shape, generator=g, dtype=torch.float64)
        / (torch.randn((*shape, 3), generator=g, dtype=torch.float64).square().mean(-1)).sqrt()
    ),
}
KERNEL_SIZES = (1, 3, 4)


def batched_sigma(a: torch.Tensor) -> torch.Tensor:
    """Spectral norms of a batch of matrices [T, m, n]: top eigenvalue of the smaller Gram."""
    gram = a @ a.mT if a.shape[-2] <= a.shape[-1] else a.mT @ a
    return torch.linalg.eigvalsh(gram)[..., -1].clamp_min(0).sqrt()


def thm2_samples(dist: str, m: int, n: int, trials: int, g: torch.Generator) -> torch.Tensor:
    a = DISTRIBUTIONS[dist]((trials, m, n), g)
    return (a / batched_sigma(a)[:, None, None]).square().mean(dim=(1, 2))


def thm3_samples(
    dist: str, c_out: int, c_in: int, k: int, trials: int, g: torch.Generator
) -> torch.Tensor:
    w = DISTRIBUTIONS[dist]((trials, c_out, c_in, k, k), g)
    s1 = batched_sigma(w.flatten(2))  # W1: [c_out, c_in k k]
    s2 = batched_sigma(w.transpose(1, 2).flatten(2))  # W2: [c_in, c_out k k]
    return (w / ((s1 + s2) / 2)[:, None, None, None, None]).square().mean(dim=(1, 2, 3, 4))


def run_checks(sizes: list[int], trials: int, seed: int) -> list[dict]:
    """One row per (theorem, distribution, shape): the bound, E[v], and max v / bound."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for dist in DISTRIBUTIONS:
        for s in sizes:
            for m, n in ((s, s), (s, 4 * s), (4 * s, s)):
                v = thm2_samples(dist, m, n, trials, g)
                rows.append(_row("Thm. 2", dist, f"{m}x{n}", thm2_bound(m, n), v))
            for k in KERNEL_SIZES:
                for c_out, c_in in ((s, s), (2 * s, s)):
                    v = thm3_samples(dist, c_out, c_in, k, trials, g)
                    rows.append(
                        _row(
                            "Thm. 3",
                            dist,
                            f"{c_out}x{c_in}x{k}x{k}",
                            thm3_bound(c_out, c_in, k, k),
                            v,
                        )
                    )
    return rows


def _row(theorem: str, dist: str, shape: str, bound: float, v: torch.Tensor) -> dict:
    return {
        "theorem": theorem,
        "dist": dist,
        "shape": shape,
        "bound": bound,
        "mean": v.mean().item(),
        "max_over_bound": (v.max() / bound).item(),
    }


def fit(rows: list[dict]) -> tuple[float, float]:
    """Least squares of log E[v] on log bound: (slope, constant); slope 1 = same order."""
    slope, intercept = np.polyfit(
        np.log([r["bound"] for r in rows]), np.log([r["mean"] for r in rows]), 1
    )
    return float(slope), float(np.exp(intercept))


def plot(rows: list[dict], path_stem: Path, formats: list[str]) -> list[Path]:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, theorem in zip(axes, ("Thm. 2", "Thm. 3"), strict=True):
        mine = [r for r in rows if r["theorem"] == theorem]
        bounds = np.array([r["bound"] for r in mine])
        for i, dist in enumerate(DISTRIBUTIONS):
            sel = [r for r in mine if r["dist"] == dist]
            x, y = np.array([r["bound"] for r in sel]), np.array([r["mean"] for r in sel])
            slope, const = fit(sel)
            ax.scatter(
                x, y, s=12, color=f"C{i}", label=f"{dist}: E[v] ≈ {const:.2f}·bound^{slope:.2f}"
            )
            grid = np.geomspace(x.min(), x.max(), 50)
            ax.plot(grid, const * grid**slope, color=f"C{i}", linewidth=1)
        lo, hi = bounds.min(), bounds.max()
        ax.plot([lo, hi], [lo, hi], "k--", label="upper bound (y = x)")
        name = "1/max(m, n)" if theorem == "Thm. 2" else r"$4/(N(r_1^{-1/2}+r_2^{-1/2})^2)$"
        ax.set(
            xscale="log",
            yscale="log",
            xlabel=f"{theorem} upper bound {name}",
            ylabel=r"E[mean$(w/\sigma)^2$]",
            title=f"{theorem}: measured variance vs bound",
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [path_stem.with_suffix(f".{fmt}") for fmt in formats]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("figures"))
    parser.add_argument(
        "--formats", nargs="+", default=["png", "pdf"], choices=["png", "pdf", "svg"]
    )
    args = parser.parse_args(argv)
    if min(args.sizes) < 2 or args.trials < 1:
        parser.error("sizes must be >= 2 (Thms. 2, 3 assume m, n >= 2) and trials >= 1")
    rows = run_checks(args.sizes, args.trials, args.seed)
    print(
        f"{'theorem':8} {'distribution':11} {'shape':>16} {'bound':>10} {'E[v]':>10} "
        f"{'E[v]/bound':>10} {'max v/bound':>11}"
    )
    for r in rows:
        print(
            f"{r['theorem']:8} {r['dist']:11} {r['shape']:>16} {r['bound']:10.3e} "
            f"{r['mean']:10.3e} "
            f"{r['mean'] / r['bound']:10.3f} {r['max_over_bound']:11.6f}"
        )
    for theorem in ("Thm. 2", "Thm. 3"):
        for dist in DISTRIBUTIONS:
            slope, const = fit([r for r in rows if r["theorem"] == theorem and r["dist"] == dist])
            print(f"{theorem} {dist}: fitted E[v] = {const:.3f} * bound^{slope:.3f}")
    worst = max(r["max_over_bound"] for r in rows)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = plot(rows, args.out / "theorems", args.formats)
    print(
        f"upper bounds: worst max v / bound = {worst:.6f} "
        f"({'hold' if worst <= 1 + 1e-9 else 'VIOLATED'})"
    )
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0 if worst <= 1 + 1e-9 else 1
