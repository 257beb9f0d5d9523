"""Table 1 as Markdown, LaTeX and CSV, with the paper's numbers beside ours."""

import csv
import io
import math

from .table1 import Row, Table

DATASET_NAMES = {
    "cifar10": "CIFAR10",
    "stl10": "STL10",
    "celeba": "CelebA",
    "imagenet": "ILSVRC2012",
}
NORM_NAMES = {"sn": "SN", "ssn": "SSN", "bsn": "BSN", "bssn": "BSSN"}
METRIC_NAMES = {"is50k": "IS", "fid10k_5k": "FID"}

HEADER = ("dataset", "metric", "method", "scale", "seeds", "ours", "paper", "Δ / s.e.")
EXPLANATION = (
    "ours and paper: mean ± standard error over seeds. Δ / s.e. = (ours − paper) / "
    "sqrt(s.e.ours² + s.e.paper²). A norm run at several scales (SSN, BSSN) reports its best "
    "scale for each metric (max IS, min FID, as the paper does; other metrics as `--metric` "
    "says); `scale` says which, and of how many."
)


def _num(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.2f}"


def _pm(mean: float, se: float, tex: bool = False) -> str:
    if math.isnan(se):
        return _num(mean)
    return f"${_num(mean)} \\pm {_num(se)}$" if tex else f"{_num(mean)} ± {_num(se)}"


def _cells(row: Row, tex: bool = False) -> list[str]:
    g = row.group
    scale = f"{g.scale:g}" + (
        f" (best of {row.scales_compared})" if row.scales_compared > 1 else ""
    )
    metric = METRIC_NAMES.get(g.metric, g.metric)
    return [
        DATASET_NAMES.get(g.dataset, g.dataset),
        f"{metric} ({g.metric})" if metric != g.metric else metric,
        NORM_NAMES.get(g.norm, g.norm),
        scale,
        ",".join(map(str, sorted(g.values))),
        _pm(g.mean, g.se, tex),
        "—" if row.paper is None else _pm(*row.paper, tex=tex),
        "—" if math.isnan(row.z) else f"{row.z:+.1f}",
    ]


def markdown(table: Table, title: str, note: str | None = None) -> str:
    lines = [f"# {title}", ""]
    if note:
        lines += [note, ""]
    lines += [f"Value of each run: {table.value}. {EXPLANATION}", ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in table.rows]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in table.notes or ["none"]]
    lines += ["", "## Missing or left out", ""] + [f"- {p}" for p in table.problems or ["none"]]
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    return text.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def latex(table: Table, title: str, note: str | None = None) -> str:
    header = [_tex_escape(h) for h in HEADER[:-1]] + [r"$\Delta$ / s.e."]
    lines = (
        [f"% {title}"]
        + ([f"% {note}"] if note else [])
        + [
            f"% Value of each run: {table.value}. {EXPLANATION}",
            r"\begin{tabular}{lllllrrr}",
            r"\toprule",
            " & ".join(header) + r" \\",
            r"\midrule",
        ]
    )
    lines += [
        " & ".join(_tex_escape(c) if not c.startswith("$") else c for c in _cells(row, tex=True))
        + r" \\"
        for row in table.rows
    ]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_rows(table: Table) -> str:
    """One row per table cell, unformatted; best_of is how many scales were compared."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "dataset",
            "metric",
            "norm",
            "scale",
            "best_of",
            "n",
            "seeds",
            "mean",
            "se",
            "paper_mean",
            "paper_se",
            "z",
        ]
    )
    for row in table.rows:
        g = row.group
        paper = row.paper or (math.nan, math.nan)
        writer.writerow(
            [
                g.dataset,
                g.metric,
                g.norm,
                g.scale,
                row.scales_compared,
                g.n,
                " ".join(map(str, sorted(g.values))),
                g.mean,
                g.se,
                *paper,
                row.z,
            ]
        )
    return out.getvalue()


def csv_scales(table: Table) -> str:
    """Every (dataset, metric, norm, scale) over its seeds: what the best scale was picked from."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["dataset", "metric", "norm", "scale", "n", "seeds", "mean", "se", "picked"])
    picked = {id(row.group) for row in table.rows}
    for g in sorted(table.groups, key=lambda g: (g.dataset, g.metric, g.norm, g.scale)):
        writer.writerow(
            [
                g.dataset,
                g.metric,
                g.norm,
                g.scale,
                g.n,
                " ".join(map(str, sorted(g.values))),
                g.mean,
                g.se,
                id(g) in picked,
            ]
        )
    return out.getvalue()
