"""A run directory as Table 1 needs it: its config, progress and metric values over time."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from harness.training.run_log import read_metrics


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any]  # the resolved config.yaml the run wrote
    last_step: int  # the last step in metrics.jsonl; 0 before the first log
    history: dict[str, list[tuple[int, float]]]  # metric key -> (step, value), in step order

    @property
    def dataset(self) -> str:
        return self.config["dataset"]["name"]

    @property
    def norm(self) -> str:
        return self.config["norm"]["mode"]

    @property
    def scale(self) -> float:
        return float(self.config["scale"])

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def iterations(self) -> int:
        return int(self.config["train"]["iterations"])

    @property
    def finished(self) -> bool:
        # The loop always logs its last iteration, so a finished run's log ends there.
        return self.last_step >= self.iterations

    def label(self) -> str:
        return f"{self.dataset} {self.norm} s={self.scale:g} seed={self.seed}"


def read_run(path: Path) -> Run:
    """The run in ``path``; metric values that were not finite (logged as text) become floats."""
    config = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=True)
    records = read_metrics(path)
    history: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key, value in record.items():
            if key != "step":
                history.setdefault(key, []).append((int(record["step"]), float(value)))
    return Run(path, config, max((int(r["step"]) for r in records), default=0), history)


def find_runs(root: Path) -> list[Run]:
    """Every run directory under ``root`` (a folder holding the loop's ``config.yaml``).

    Hydra's own copies (``.hydra/``) and submitit's folders (``.submitit/``) are not runs.
    """
    paths = sorted(
        p.parent
        for p in Path(root).rglob("config.yaml")
        if not any(part.startswith(".") for part in p.relative_to(root).parts[:-1])
    )
    return [read_run(p) for p in paths]
