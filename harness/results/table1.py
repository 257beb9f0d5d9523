"""Table 1: mean and standard error over seeds, the best scale per metric, what is missing.

Per (dataset, metric, norm) the table reports one scale. A norm run at several scales
(ssn and bssn) reports the scale with the best mean for that metric (max IS, min FID), as
the paper does; so IS and FID of one norm may come from different scales. A run counts
once it has finished (its log reached ``train.iterations``), with the metric's value at
that final step, or with its best value during training (``best_during_training``). Everything
left out is listed in ``Table.problems``, never dropped silently.

An ``sn`` run is also the 1.0 cell of ``ssn``, and a ``bsn`` run the 1.0 cell of ``bssn``
(and the other way round): the same network, which the sweeper trains once
(harness/training/equivalent.py). A run stands in for its twin cell when that cell has no
run of its own and its norm is in the table; ``Table.notes`` says so.
"""

import copy
import dataclasses
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.training.config import config_differences
from harness.training.equivalent import equivalents

from .paper import PAPER, PAPER_PROTOCOLS, setting_mismatches
from .runs import Run

#: Metric key -> which way is better. The paper's Table 1 protocols (docs/metrics.md).
METRICS: dict[str, str] = {"is50k": "max", "fid10k_5k": "min"}

DATASET_ORDER = ("cifar10", "stl10", "celeba", "imagenet")
NORM_ORDER = ("sn", "ssn", "bsn", "bssn")

Cell = tuple[str, str, float, int]  # dataset, norm, scale, seed


@dataclass(frozen=True)
class Group:
    """One metric of one (dataset, norm, scale) over its seeds."""

    dataset: str
    metric: str
    norm: str
    scale: float
    values: dict[int, float]  # seed -> value

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def se(self) -> float:
        """Standard error of the mean: sample standard deviation / sqrt(n); NaN for n < 2."""
        if self.n < 2 or not all(math.isfinite(v) for v in self.values.values()):
            return math.nan  # statistics.stdev raises on nan/inf
        return statistics.stdev(self.values.values()) / math.sqrt(self.n)


@dataclass(frozen=True)
class Row:
    group: Group
    scales_compared: int  # how many scales the best was picked from
    paper: tuple[float, float] | None  # the paper's mean and standard error

    @property
    def z(self) -> float:
        """(ours - paper) in units of sqrt(se_ours^2 + se_paper^2); NaN without both."""
        if self.paper is None or math.isnan(self.group.se):
            return math.nan
        return (self.group.mean - self.paper[0]) / math.hypot(self.group.se, self.paper[1])


@dataclass
class Table:
    rows: list[Row]
    groups: list[Group]  # every scale, the picked ones included
    value: str  # "final" or "best during training"
    problems: list[str] = field(default_factory=list)  # runs or seeds missing or left out
    notes: list[str] = field(default_factory=list)  # stand-in twin cells; no paper numbers


def _order(items: Iterable[str], preferred: tuple[str, ...]) -> list[str]:
    items = set(items)
    return [x for x in preferred if x in items] + sorted(items - set(preferred))


def _sort_key(value: float, better: str) -> float:
    """Larger is better; NaN ranks last."""
    if math.isnan(value):
        return -math.inf
    return value if better == "max" else -value


def _setting_differences(a: dict, b: dict) -> list[str]:
    ignored = ("norm.mode", "scale", "seed")
    out = [d for d in config_differences(a, b) if not d.startswith(ignored)]
    if a["train"]["iterations"] != b["train"]["iterations"]:  # resumable, but changes the result
        out.append(
            f"train.iterations: {a['train']['iterations']!r} -> {b['train']['iterations']!r}"
        )
    return out


def _check_runs(runs: list[Run]) -> None:
    """One run per cell, and one training setting per dataset (else the means mix settings)."""
    by_cell: dict[Cell, list[Path]] = defaultdict(list)
    for run in runs:
        by_cell[(run.dataset, run.norm, run.scale, run.seed)].append(run.path)
    duplicates = [
        f"{cell}: {', '.join(map(str, paths))}" for cell, paths in by_cell.items() if len(paths) > 1
    ]
    if duplicates:
        raise ValueError(
            "several runs of the same dataset/norm/scale/seed:\n  " + "\n  ".join(duplicates)
        )
    reference: dict[str, Run] = {}
    for run in runs:
        first = reference.setdefault(run.dataset, run)
        differences = _setting_differences(first.config, run.config)
        if differences:
            raise ValueError(
                f"{run.dataset} runs of different training settings: {first.path} and {run.path} "
                f"differ in\n  "
                + "\n  ".join(differences)
                + "\nMake one table per setting: point RUNS_ROOT at one setting's folder."
            )


def _as_cell(run: Run, norm: str, scale: float) -> Run:
    config = copy.deepcopy(run.config)
    config["norm"]["mode"], config["scale"] = norm, scale
    return dataclasses.replace(run, config=config)


def with_equivalent_cells(
    runs: list[Run], expected: set[Cell] | None = None
) -> tuple[list[Run], list[str]]:
    """``runs`` plus, for each run whose twin cell (sn <-> ssn at 1, bsn <-> bssn at 1) has
    no run and whose twin norm is in the table (a run's or an expected cell's), the run
    again under that cell; and a note per dataset and twin."""
    cells = {(r.dataset, r.norm, r.scale, r.seed) for r in runs}
    norms = {(r.dataset, r.norm) for r in runs} | {(d, n) for d, n, _, _ in expected or ()}
    added: list[Run] = []
    notes: dict[tuple[str, str, str], None] = {}
    for run in runs:
        for norm, scale in equivalents(run.norm, run.scale):
            cell = (run.dataset, norm, scale, run.seed)
            if cell not in cells and (run.dataset, norm) in norms:
                added.append(_as_cell(run, norm, scale))
                cells.add(cell)
                notes[(run.dataset, norm, run.norm)] = None
    return runs + added, [
        f"{dataset}: {norm} at scale 1 is the {source} runs (the same network, trained once)"
        for dataset, norm, source in notes
    ]


def build_table(
    runs: list[Run],
    metrics: Mapping[str, str] = METRICS,
    best_during_training: bool = False,
    expected: set[Cell] | None = None,
) -> Table:
    """Aggregate ``runs`` into Table 1 rows; ``expected`` cells (else every seed seen in a
    dataset, for every norm and scale seen) that have no run are reported as missing.
    Runs stand in for their twin cells (``with_equivalent_cells``)."""
    _check_runs(runs)
    table = Table([], [], "best during training" if best_during_training else "final")
    runs, table.notes = with_equivalent_cells(runs, expected)

    seen = {(r.dataset, r.norm, r.scale, r.seed) for r in runs}
    if expected is None:
        seeds: dict[str, set[int]] = defaultdict(set)
        for r in runs:
            seeds[r.dataset].add(r.seed)
        expected = {(r.dataset, r.norm, r.scale, s) for r in runs for s in seeds[r.dataset]}
    for dataset, norm, scale, seed in sorted(expected - seen):
        table.problems.append(f"{dataset} {norm} s={scale:g} seed={seed}: no run")

    values: dict[tuple[str, str, str, float], dict[int, float]] = defaultdict(dict)
    for run in runs:
        if not run.finished:
            table.problems.append(
                f"{run.label()}: unfinished ({run.last_step}/{run.iterations} iterations), "
                f"not counted: {run.path}"
            )
            continue
        for metric, better in metrics.items():
            history = run.history.get(metric, [])
            if not history:
                table.problems.append(f"{run.label()}: no {metric} logged, not counted: {run.path}")
                continue
            last_step, last_value = history[-1]
            if not best_during_training and last_step != run.iterations:
                table.problems.append(
                    f"{run.label()}: {metric} last logged at step {last_step}, not at the final "
                    f"step {run.iterations}; not counted: {run.path}"
                )
                continue
            value = (
                max((v for _, v in history), key=lambda v: _sort_key(v, better))
                if best_during_training
                else last_value
            )
            if not math.isfinite(value):  # a diverged run logs nan/inf: report, never average
                table.problems.append(
                    f"{run.label()}: {metric} is {value} ({table.value}), not counted: {run.path}"
                )
                continue
            values[(run.dataset, metric, run.norm, run.scale)][run.seed] = value
    table.groups = [Group(d, m, n, s, v) for (d, m, n, s), v in values.items()]

    datasets = _order({g.dataset for g in table.groups}, DATASET_ORDER)
    for dataset in datasets:
        config = next(r.config for r in runs if r.dataset == dataset)
        mismatches = setting_mismatches(dataset, config)
        if mismatches:
            table.notes.append(
                f"{dataset}: no paper numbers, the setting is not Table 1's ("
                + "; ".join(mismatches)
                + ")"
            )
        for metric in metrics:
            if metric not in PAPER_PROTOCOLS and not mismatches:
                table.notes.append(
                    f"{dataset} {metric}: no paper numbers, not a Table 1 protocol "
                    f"({', '.join(PAPER_PROTOCOLS)})"
                )
            here = [g for g in table.groups if g.dataset == dataset and g.metric == metric]
            for norm in _order({g.norm for g in here}, NORM_ORDER):
                candidates = [g for g in here if g.norm == norm]
                best = max(
                    sorted(candidates, key=lambda g: g.scale),
                    key=lambda g: _sort_key(g.mean, metrics[metric]),
                )
                paper = (
                    None
                    if mismatches or metric not in PAPER_PROTOCOLS
                    else PAPER.get((dataset, PAPER_PROTOCOLS[metric], norm))
                )
                table.rows.append(Row(best, len(candidates), paper))
    return table


def expected_from_preset(preset: str, config_dir: Path) -> set[Cell]:
    """The (dataset, norm, scale, seed) cells that ``experiment=<preset>``'s sweep runs."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from harness.training.config import register_configs
    from hydra_plugins.bssn_sweeps.grid_sweeper import expand

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper)
    cells = set()
    for job in expand(sweeper["params"], sweeper["grids"], []):
        values = dict(line.split("=", 1) for line in job)
        other = set(values) - {"norm", "scale", "seed"}
        if other:
            raise ValueError(
                f"experiment={preset} also sweeps {', '.join(sorted(other))}: "
                "expected cells are read from norm, scale and seed only"
            )
        cells.add(
            (
                cfg.dataset.name,
                values.get("norm", cfg.norm.mode),
                float(values.get("scale", cfg.scale)),
                int(values.get("seed", cfg.seed)),
            )
        )
    return cells
