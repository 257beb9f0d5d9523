"""Hydra sweeper ``grids``: a sweep that is a union of cartesian products, with a dry run.

Table 1 is not one cartesian product: sn and bsn take no scale (it must be 1), while ssn
and bssn sweep their dataset's list of scales. A preset lists one product per family:

    hydra:
      sweeper:
        params: {seed: range(5)}        # part of every grid
        grids:
          - {norm: "sn,bsn"}
          - {norm: "ssn,bssn", scale: "0.7,0.8,1.0"}

A command-line override replaces that key in every grid (``seed=0`` runs seed 0 only).
Without grids the sweep is ``params`` times the command line, as with Hydra's basic
sweeper. Every job is composed and validated before anything is launched, so a bad value
fails at once, not on the cluster. Jobs with equal configs are launched once; jobs whose
configs differ but resolve to one run directory stop the sweep before anything is
launched, naming them (a run's identity is its whole config). Jobs that train the same
network are also launched once: ``ssn``/``bssn`` at scale 1 are ``sn``/``bsn``
(harness/training/equivalent.py), so only the ``sn``/``bsn`` job runs when the sweep has
both and Table 1 reads it back for both cells. Runs whose newest checkpoint is at
``train.iterations`` are left out (``skip_finished``); the others start or resume.
``dry_run=true`` lists the jobs and their status, counts the distinct runs and launches
nothing.

This package sits at the repository root (beside ``data`` and ``models``): Hydra finds it
when ``train.py`` runs from the checkout, as its namespace package ``hydra_plugins``.
"""

# No `from __future__ import annotations`: Hydra's plugin scan executes this module outside
# sys.modules, where dataclasses cannot resolve string annotations.
import copy
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_loader import ConfigLoader
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.bssn_sweeps.grid_sweeper.GridSweeper"
    params: dict[str, Any] = field(default_factory=dict)  # key -> sweep values, in every grid
    grids: list[dict[str, Any]] = field(default_factory=list)  # the sweep is their union
    dry_run: bool = False  # list the jobs and their status; launch nothing
    skip_finished: bool = True  # leave out runs whose newest checkpoint is at train.iterations


ConfigStore.instance().store(
    group="hydra/sweeper", name="grids", node=GridSweeperConf, provider="bssn"
)


def expand(
    params: Mapping[str, Any],
    grids: Sequence[Mapping[str, Any]],
    arguments: Sequence[str],
    config_loader: ConfigLoader | None = None,
) -> list[list[str]]:
    """The jobs' override lists: each grid with ``params`` under it and ``arguments`` over it.

    Values use Hydra's sweep syntax (``a,b``, ``range(5)``); identical jobs appear once.
    """
    parser = OverridesParser.create(config_loader=config_loader)
    jobs: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for grid in grids or [{}]:
        lines = [f"{key}={value}" for key, value in {**params, **grid}.items()] + list(arguments)
        # split_arguments keeps the last value given for a key: the command line wins.
        for job in BasicSweeper.split_arguments(parser.parse_overrides(lines), None)[0]:
            if tuple(job) not in seen:
                seen.add(tuple(job))
                jobs.append(job)
    return jobs


@dataclass(frozen=True)
class PlannedJob:
    overrides: tuple[str, ...]
    run_dir: Path
    iterations: int
    checkpoint_step: int | None  # the newest checkpoint's step; None before the first

    @property
    def finished(self) -> bool:
        return self.checkpoint_step is not None and self.checkpoint_step >= self.iterations

    @property
    def status(self) -> str:
        if self.checkpoint_step is None:
            return "new"
        if self.finished:
            return "finished"
        return f"resumes at {self.checkpoint_step}/{self.iterations}"


class GridSweeper(Sweeper):
    def __init__(
        self,
        params: Mapping[str, Any],
        grids: Sequence[Mapping[str, Any]],
        dry_run: bool,
        skip_finished: bool,
    ) -> None:
        self.params = dict(params)
        self.grids = [dict(grid) for grid in grids]
        self.dry_run = dry_run
        self.skip_finished = skip_finished
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        if not self.dry_run:
            self.launcher = Plugins.instance().instantiate_launcher(
                hydra_context=hydra_context, task_function=task_function, config=config
            )

    def plan(self, arguments: Sequence[str]) -> list[PlannedJob]:
        """Every distinct job composed and validated, with its run directory and status."""
        return self.plan_with_duplicates(arguments)[0]

    def plan_with_duplicates(
        self, arguments: Sequence[str]
    ) -> tuple[list[PlannedJob], list[tuple[tuple[str, ...], Path]]]:
        """The distinct jobs, and the jobs left out as the same configuration as one of
        them (each with the run directory that trains it)."""
        from harness.training.checkpoint import latest_step
        from harness.training.config import validate
        from harness.training.equivalent import canonical

        assert self.hydra_context is not None and self.config is not None
        loader = self.hydra_context.config_loader
        planned: dict[Path, PlannedJob] = {}
        resolved: dict[Path, dict] = {}  # run dir -> its job's whole config
        collisions: list[str] = []
        by_config: dict[str, list[tuple[bool, Path]]] = {}
        for overrides in expand(self.params, self.grids, arguments, loader):
            cfg = loader.load_sweep_config(self.config, overrides)
            run_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
            task_cfg = cfg.copy()
            with open_dict(task_cfg):
                del task_cfg["hydra"]
            try:
                validate(task_cfg)
            except ValueError as err:
                raise ValueError(f"sweep job {' '.join(overrides)}: {err}") from err
            config = OmegaConf.to_container(task_cfg, resolve=True)
            if run_dir in planned:
                # A run's identity is its whole config: equal configs are one run, anything
                # else would mix two runs' checkpoints and logs in one directory.
                differing = _differences(resolved[run_dir], config)
                if not differing:
                    log.info(
                        "same config as an earlier job, launched once: %s", " ".join(overrides)
                    )
                    continue
                collisions.append(
                    f"  {run_dir}: [{' '.join(planned[run_dir].overrides)}] and "
                    f"[{' '.join(overrides)}] differ in {', '.join(differing)}"
                )
                continue
            resolved[run_dir] = config
            planned[run_dir] = PlannedJob(
                tuple(overrides), run_dir, int(cfg.train.iterations), latest_step(run_dir)
            )
            # The same configuration up to the cell's name: ssn/bssn at 1 as sn/bsn.
            twin = copy.deepcopy(config)
            norm, scale = canonical(twin["norm"]["mode"], twin["scale"])
            is_canonical = (norm, scale) == (twin["norm"]["mode"], float(twin["scale"]))
            twin["norm"]["mode"], twin["scale"] = norm, scale
            del twin["run_name"]
            key = json.dumps(twin, sort_keys=True, default=str)
            by_config.setdefault(key, []).append((is_canonical, run_dir))
        if collisions:
            raise ValueError(
                "sweep jobs with different configs share a run directory; nothing was "
                "launched:\n" + "\n".join(collisions) + "\nPut the differing keys in "
                "run_name (e.g. 'run_name=${dataset.name}-${norm.mode}-lrd${optim.lr_d}') "
                "or give each job its own out_dir."
            )
        duplicates = []
        for same in by_config.values():
            # Keep a job that has already started (runs of older sweeps are not redone), else
            # the sn/bsn job, else the first: reruns find the same directory whatever order
            # the grids list the cells in.
            started = [(canon, d) for canon, d in same if planned[d].checkpoint_step is not None]
            pool = started or same
            keep = next((run_dir for canon, run_dir in pool if canon), pool[0][1])
            for _, run_dir in same:
                if run_dir != keep:
                    duplicates.append((planned.pop(run_dir).overrides, keep))
        return list(planned.values()), duplicates

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None
        jobs, duplicates = self.plan_with_duplicates(arguments)
        for i, job in enumerate(jobs):
            log.info(
                "%5s  %-22s %s  (%s)", f"#{i}", job.status, job.run_dir, " ".join(job.overrides)
            )
        for overrides, run_dir in duplicates:
            log.info("%5s  %-22s %s  (%s)", "", "same as", run_dir, " ".join(overrides))
        todo = [job for job in jobs if not (self.skip_finished and job.finished)]
        if duplicates:
            log.info(
                "%d jobs, %d trained once as the same configuration as another "
                "(ssn/bssn at scale 1 are sn/bsn)",
                len(jobs) + len(duplicates),
                len(duplicates),
            )
        log.info(
            "%d distinct runs: %d to launch, %d finished%s",
            len(jobs),
            len(todo),
            sum(j.finished for j in jobs),
            " (dry run: nothing launched)" if self.dry_run else "",
        )
        if self.dry_run or not todo:
            return []
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        assert self.launcher is not None
        results = self.launcher.launch([list(job.overrides) for job in todo], initial_job_idx=0)
        for result in results:
            _ = result.return_value  # raises the job's exception, as Hydra's basic sweeper does
        return [results]


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for key in sorted(set(a) | set(b))
            for d in _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        ]
    return [] if a == b else [prefix.rstrip(".")]
