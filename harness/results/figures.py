"""Redraw the paper's analysis figures (docs/figures.md) from run logs alone.

    python -m scripts.make_figures RUN_DIR... [--out DIR] [--prefix NAME_] [--formats png pdf]
                                   [--figures NAME...]

Reads each run's ``config.yaml`` and ``metrics.jsonl`` (the scalars of
``bssn.analysis.log_scalars`` and the training loop; IS/FID when evaluated) and writes
every figure the runs have data for, as PNG and PDF; a figure whose data the runs lack is
skipped with a printed reason. Runs that differ only in ``seed`` (and in keys that do not
change training, e.g. ``out_dir``) form one group, drawn as the mean over seeds, with the
standard error shaded where a group has several seeds.

| file | paper | shows |
|---|---|---|
| gradient_norms | Figs. 2, 12, 13 | per-layer ||dD(x)/dw_t|| over training; Prop. 1 bound |
| thm1_scatter | Figs. 3, 14, 15 | layer pairs: gradient-norm ratio vs inverse sigma ratio |
| grad_norm_total | Figs. 5, 11, 18 | norm of the D loss's gradient over all layers |
| variance | Figs. 7, 16, 17, 22 | per-layer variance; Thm. 2 (SN) / Thm. 3 (BSN) bound |
| sigma_ratio | Figs. 20, 21 | sigma(T_w) / sigma(W1) per conv, with the bounds 1 and alpha |
| metric_curves | Figs. 4, 6, 9, 10, appendix | IS / FID over training |
| best_vs_scale | Fig. 8 | best IS / FID during training against the scale, per mode |
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from harness.metrics import PROTOCOLS
from harness.metrics.protocols import INCEPTION
from harness.results.runs import Run, read_run
from harness.training.config import RESUMABLE_CHANGES

#: Config keys that do not define a group: seeds are averaged over; the others do not
#: change what is trained (the keys a run may change on resume).
NOT_GROUPING = ("seed", *RESUMABLE_CHANGES)

Group = tuple[str, list[Run]]  # (label, runs that differ only in NOT_GROUPING keys)

FIGURES = (
    "gradient_norms",
    "thm1_scatter",
    "grad_norm_total",
    "variance",
    "sigma_ratio",
    "metric_curves",
    "best_vs_scale",
)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _grouping_items(run: Run, ignore: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            (k, repr(v))
            for k, v in flatten(run.config).items()
            if not any(k == i or k.startswith(i + ".") for i in ignore)
        )
    )


def group_runs(runs: list[Run], ignore: tuple[str, ...] = NOT_GROUPING) -> list[Group]:
    """Runs grouped by their config minus ``ignore``, labelled by the keys that differ."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(_grouping_items(run, ignore), []).append(run)
    dicts = [dict(key) for key in groups]
    varying = sorted(k for k in set().union(*dicts) if len({d.get(k) for d in dicts}) > 1)
    shown = varying or ["norm.mode", "scale"]
    labels = [", ".join(f"{k}={d[k].strip(chr(39))}" for k in shown if k in d) for d in dicts]
    return list(zip(labels, groups.values(), strict=True))


def series(run: Run, key: str) -> tuple[np.ndarray, np.ndarray]:
    points = run.history.get(key, [])
    return np.array([s for s, _ in points], dtype=float), np.array(
        [v for _, v in points], dtype=float
    )


def mean_se(runs: list[Run], values: Callable[[Run], tuple[np.ndarray, np.ndarray]]):
    """Steps, mean over runs and standard error (NaN with one run) at every logged step."""
    per_run = [dict(zip(*values(r), strict=True)) for r in runs]
    steps = np.array(sorted(set().union(*per_run)), dtype=float)
    mean, se = np.full(len(steps), np.nan), np.full(len(steps), np.nan)
    for i, s in enumerate(steps):
        vals = np.array([p[s] for p in per_run if s in p])
        mean[i] = vals.mean()
        if len(vals) > 1:
            se[i] = vals.std(ddof=1) / math.sqrt(len(vals))
    return steps, mean, se


def layers(runs: list[Run], prefix: str) -> list[str]:
    """Layer names under ``prefix/`` in the order they were logged (D's forward order)."""
    names: dict[str, None] = {}
    for run in runs:
        for key in run.history:
            if key.startswith(prefix + "/"):
                names.setdefault(key[len(prefix) + 1 :])
    return list(names)


def _panels(n: int, width: float = 5.0, height: float = 3.6, **kw):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, **kw)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _plot_mean(ax, steps, mean, se, **kw) -> None:
    (line,) = ax.plot(steps, mean, **kw)
    if np.isfinite(se).any():
        ax.fill_between(steps, mean - se, mean + se, color=line.get_color(), alpha=0.2, linewidth=0)


def _title(label: str, runs: list[Run]) -> str:
    return f"{label} ({len(runs)} seed{'s' * (len(runs) > 1)})"


def fig_gradient_norms(groups: list[Group]):
    """Figs. 2/12/13: per-layer gradient norms of D(x) w.r.t. the effective weights vs Prop. 1."""
    groups = [g for g in groups if layers(g[1], "prop1_grad")]
    if not groups:
        return "no run logged prop1_grad/<layer> (bssn.analysis.log_scalars)"
    fig, axes = _panels(len(groups), sharey=True)
    for ax, (label, runs) in zip(axes, groups, strict=True):
        for i, layer in enumerate(layers(runs, "prop1_grad")):
            color = f"C{i % 10}"
            _plot_mean(
                ax,
                *mean_se(runs, lambda r, k=f"prop1_grad/{layer}": series(r, k)),
                color=color,
                label=layer,
            )
            _plot_mean(
                ax,
                *mean_se(runs, lambda r, k=f"prop1_bound/{layer}": series(r, k)),
                color=color,
                linestyle="--",
            )
        ax.plot([], [], "k--", label="Prop. 1 bound")
        if any("prop1_input_norm" in r.history for r in runs):
            _plot_mean(
                ax,
                *mean_se(runs, lambda r: series(r, "prop1_input_norm")),
                color="k",
                linestyle=":",
                label=r"$\|x\|$ (the bound if every $\sigma_i = 1$)",
            )
        ax.set(
            yscale="log",
            xlabel="iteration",
            ylabel=r"$\|\partial D(x)/\partial w_t\|_F$",
            title=_title(label, runs),
        )
        ax.legend(fontsize=7)
        grads = np.array(
            [
                [series(r, f"prop1_grad/{k}")[1][-1] for k in layers(runs, "prop1_grad")]
                for r in runs
            ]
        )
        bounds = np.array(
            [
                [series(r, f"prop1_bound/{k}")[1][-1] for k in layers(runs, "prop1_grad")]
                for r in runs
            ]
        )
        print(
            f"  gradient_norms [{label}] last step: grad {np.round(grads.mean(0), 3).tolist()}, "
            f"bound {np.round(bounds.mean(0), 3).tolist()}, max grad/bound over all steps "
            f"{_max_ratio(runs, 'prop1_grad', 'prop1_bound'):.3f}"
        )
    return fig


def _max_ratio(runs: list[Run], num: str, den: str) -> float:
    ratios = [
        series(r, f"{num}/{k}")[1] / series(r, f"{den}/{k}")[1]
        for r in runs
        for k in layers([r], num)
    ]
    return float(max(np.max(x) for x in ratios))


def fig_thm1_scatter(runs: list[Run]):
    """Figs. 3/14/15: ratio of gradient norms vs inverse ratio of spectral norms, per layer pair."""
    runs = [
        r
        for r in runs
        if r.config["norm"].get("layer_scales_geomean") is not None
        and layers([r], "prop1_grad")
        and layers([r], "spectral_norm")
    ]
    if not runs:
        return "no run with norm.layer_scales_geomean that logged prop1_grad and spectral_norm"
    fig, ax = plt.subplots(figsize=(5.5, 5))
    xs, ys = [], []
    names = layers(runs, "prop1_grad")
    for p, (a, b) in enumerate(itertools.combinations(names, 2)):
        x = np.concatenate(
            [series(r, f"spectral_norm/{b}")[1] / series(r, f"spectral_norm/{a}")[1] for r in runs]
        )
        y = np.concatenate(
            [series(r, f"prop1_grad/{a}")[1] / series(r, f"prop1_grad/{b}")[1] for r in runs]
        )
        ax.scatter(x, y, s=10, alpha=0.6, color=f"C{p % 10}", label=f"{a} / {b}")
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    lo, hi = min(x.min(), y.min()) / 1.2, max(x.max(), y.max()) * 1.2
    ax.plot([lo, hi], [lo, hi], "k--", label="y = x")
    geomeans = sorted({r.config["norm"]["layer_scales_geomean"] for r in runs})
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel=r"inverse ratio of spectral norms $\sigma_j / \sigma_i$",
        ylabel=r"ratio of gradient norms $\|g_i\| / \|g_j\|$",
        title=f"Thm. 1: {len(runs)} runs, geometric mean {', '.join(f'{g:g}' for g in geomeans)}",
    )
    ax.legend(fontsize=7)
    log_x, log_y = np.log(x), np.log(y)
    print(
        f"  thm1_scatter: {len(x)} points; "
        f"corr(log x, log y) = {np.corrcoef(log_x, log_y)[0, 1]:.3f}, "
        f"slope of log y on log x = {np.polyfit(log_x, log_y, 1)[0]:.3f}, "
        f"median |log(y/x)| = {np.median(np.abs(log_y - log_x)):.3f}"
    )
    return fig


def _total_grad_norm(run: Run) -> tuple[np.ndarray, np.ndarray]:
    names = layers([run], "grad_norm")
    steps = series(run, f"grad_norm/{names[0]}")[0]
    total = np.sqrt(sum(series(run, f"grad_norm/{k}")[1] ** 2 for k in names))
    return steps, total


def fig_grad_norm_total(groups: list[Group]):
    """Figs. 5/11/18: norm of the D loss's gradient w.r.t. all of D's (raw) weights."""
    groups = [g for g in groups if layers(g[1], "grad_norm")]
    if not groups:
        return "no run logged grad_norm/<layer>"
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, runs in groups:
        _plot_mean(ax, *mean_se(runs, _total_grad_norm), label=_title(label, runs))
    ax.set(yscale="log", xlabel="iteration", ylabel="norm of the D loss's gradient (all layers)")
    ax.legend(fontsize=7)
    return fig


def fig_variance(groups: list[Group]):
    """Figs. 7/16/17/22: per-layer parameter variance and its Thm. 2 (SN) or Thm. 3 (BSN) bound."""
    groups = [g for g in groups if layers(g[1], "variance")]
    if not groups:
        return "no run logged variance/<layer>"
    fig, axes = _panels(len(groups), sharey=True)
    for ax, (label, runs) in zip(axes, groups, strict=True):
        # Thm. 3 is BSN's bound for convs; its linear layers, and every SN layer, have Thm. 2's.
        bidirectional = runs[0].config["norm"]["mode"] in ("bsn", "bssn")
        for i, layer in enumerate(layers(runs, "variance")):
            color = f"C{i % 10}"
            _plot_mean(
                ax,
                *mean_se(runs, lambda r, k=f"variance/{layer}": series(r, k)),
                color=color,
                label=layer,
            )
            thm3, thm2 = f"variance_bound_thm3/{layer}", f"variance_bound_thm2/{layer}"
            bound = thm3 if bidirectional and thm3 in runs[0].history else thm2
            if bound in runs[0].history:
                _plot_mean(
                    ax, *mean_se(runs, lambda r, k=bound: series(r, k)), color=color, linestyle="--"
                )
        ax.plot([], [], "k--", label="Thm. 3 bound (convs)" if bidirectional else "Thm. 2 bound")
        ax.set(
            yscale="log", xlabel="iteration", ylabel="parameter variance", title=_title(label, runs)
        )
        ax.legend(fontsize=7)
    return fig


def fig_sigma_ratio(groups: list[Group]):
    """Figs. 20/21: sigma(T_w)/sigma(W1) per conv layer, within [1, alpha] (Sec. 4)."""
    groups = [g for g in groups if layers(g[1], "sigma_ratio")]
    if not groups:
        return "no run logged sigma_ratio/<layer>"
    fig, axes = _panels(len(groups), sharey=True)
    for ax, (label, runs) in zip(axes, groups, strict=True):
        names = layers(runs, "sigma_ratio")
        for i, layer in enumerate(names):
            _plot_mean(
                ax,
                *mean_se(runs, lambda r, k=f"sigma_ratio/{layer}": series(r, k)),
                color=f"C{i % 10}",
                label=layer,
            )
        alphas: dict[float, list[str]] = {}
        for layer in names:
            alphas.setdefault(series(runs[0], f"sigma_ratio_bound/{layer}")[1][0], []).append(layer)
        for j, (alpha, members) in enumerate(sorted(alphas.items())):
            ax.axhline(
                alpha,
                color="k",
                linestyle=("--", "-.", ":")[j % 3],
                label=f"upper bound α={alpha:g} ({', '.join(members)})",
            )
        ax.axhline(1.0, color="grey", linestyle=":", label="lower bound 1")
        ax.set(xlabel="iteration", ylabel=r"$\sigma(T_w) / \sigma(W_1)$", title=_title(label, runs))
        ax.legend(fontsize=7)
    return fig


def _metrics(runs: list[Run]) -> list[str]:
    return [m for m in PROTOCOLS if any(m in r.history for r in runs)]


def fig_metric_curves(groups: list[Group]):
    """Figs. 4/6/9/10 and the appendix curves: IS/FID over training, mean over seeds ± s.e."""
    metrics = _metrics([r for _, runs in groups for r in runs])
    if not metrics:
        return f"no run logged IS/FID ({', '.join(PROTOCOLS)})"
    fig, axes = _panels(len(metrics), width=6)
    for ax, metric in zip(axes, metrics, strict=True):
        for label, runs in groups:
            with_metric = [r for r in runs if metric in r.history]
            if with_metric:
                _plot_mean(
                    ax,
                    *mean_se(with_metric, lambda r, k=metric: series(r, k)),
                    marker=".",
                    label=_title(label, with_metric),
                )
        p = PROTOCOLS[metric]
        if p.extractor == INCEPTION and p.kind in ("is", "fid"):
            name = "Inception score" if p.kind == "is" else "FID"
        else:  # the repo's classifier metrics (docs/metrics.md)
            name = "higher is better" if p.goals()[metric] == "max" else "lower is better"
        ax.set(xlabel="iteration", ylabel=f"{metric} ({name})")
        ax.legend(fontsize=7)
    return fig


def fig_best_vs_scale(runs: list[Run]):
    """Fig. 8: the best IS (max) / FID (min) during training against the scale, per mode."""
    families = [
        (label, members)
        for label, members in group_runs(runs, NOT_GROUPING + ("scale",))
        if len({m.config["scale"] for m in members}) > 1
    ]
    metrics = _metrics([r for _, members in families for r in members])
    if not families or not metrics:
        return "needs IS/FID from one setting run at two or more scales"
    fig, axes = _panels(len(metrics), width=6)
    for ax, metric in zip(axes, metrics, strict=True):
        best = max if PROTOCOLS[metric].goals()[metric] == "max" else min
        for label, members in families:
            by_scale: dict[float, list[float]] = {}
            for r in members:
                if metric in r.history:
                    by_scale.setdefault(float(r.config["scale"]), []).append(
                        best(v for _, v in r.history[metric])
                    )
            scales = sorted(by_scale)
            mean = [np.mean(by_scale[s]) for s in scales]
            se = [
                np.std(by_scale[s], ddof=1) / math.sqrt(len(by_scale[s]))
                if len(by_scale[s]) > 1
                else 0.0
                for s in scales
            ]
            ax.errorbar(scales, mean, yerr=se, marker="o", capsize=3, label=label)
        ax.set(xlabel="scale s", ylabel=f"best {metric} during training", xscale="log")
        ax.legend(fontsize=7)
    return fig


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs", nargs="+", type=Path, help="run directories (config.yaml + metrics.jsonl)"
    )
    parser.add_argument("--out", type=Path, default=Path("figures"), help="output folder")
    parser.add_argument("--prefix", default="", help="prepended to every file name")
    parser.add_argument(
        "--formats", nargs="+", default=["png", "pdf"], choices=["png", "pdf", "svg"]
    )
    parser.add_argument(
        "--figures",
        nargs="+",
        choices=FIGURES,
        default=list(FIGURES),
        help="draw only these (default: all)",
    )
    args = parser.parse_args(argv)
    for path in args.runs:
        if not (path / "config.yaml").is_file():
            parser.error(f"{path} is not a run directory (no config.yaml)")
    runs = [read_run(p) for p in args.runs]
    groups = group_runs(runs)
    figures = {
        "gradient_norms": lambda: fig_gradient_norms(groups),
        "thm1_scatter": lambda: fig_thm1_scatter(runs),
        "grad_norm_total": lambda: fig_grad_norm_total(groups),
        "variance": lambda: fig_variance(groups),
        "sigma_ratio": lambda: fig_sigma_ratio(groups),
        "metric_curves": lambda: fig_metric_curves(groups),
        "best_vs_scale": lambda: fig_best_vs_scale(runs),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in args.figures:
        fig = figures[name]()
        if isinstance(fig, str):
            print(f"skipped {name}: {fig}")
            continue
        fig.tight_layout()
        for fmt in args.formats:
            path = args.out / f"{args.prefix}{name}.{fmt}"
            fig.savefig(path, dpi=150)
            written.append(path)
        plt.close(fig)
        print(f"wrote {name}: {', '.join(str(p) for p in written[-len(args.formats) :])}")
    return written
