"""Scalar logs of a run: JSONL and CSV files always; W&B (offline by default), TensorBoard.

``metrics.jsonl`` holds one object per event (``{"step": N, "d_loss": ...}``);
``scalars.csv`` the same values as ``step,key,value`` rows, for spreadsheets and pandas.
On resume both are cut back to the checkpoint's step (to nothing when the run starts from
0), so no value is logged twice; a partial last line is dropped with a warning.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import secrets
from pathlib import Path
from typing import Any

from harness.atomic import atomic_write

log = logging.getLogger(__name__)

JSONL, CSV = "metrics.jsonl", "scalars.csv"
TENSORBOARD_MISSING = (
    "logger.tensorboard=true needs the tensorboard package: pip install -r requirements.txt "
    "(or pip install tensorboard)"
)


def _truncate_after(path: Path, step: int, step_of) -> None:
    """Keep the lines of ``path`` up to ``step``; drop (with a warning) a partial last line
    and any line that does not parse, the traces of a crash or a full disk mid-write."""
    if not path.exists():
        return
    lines = path.read_text(errors="replace").splitlines(keepends=True)
    kept = []
    for number, line in enumerate(lines, 1):
        try:
            if not line.endswith("\n"):
                raise ValueError("partial last line")
            s = step_of(line)
        except ValueError as err:  # json.JSONDecodeError is a ValueError
            log.warning("%s line %d dropped on resume (%s): %.80r", path, number, err, line)
            continue
        if s is None or s <= step:
            kept.append(line)
    if len(kept) != len(lines):
        with atomic_write(path, "w") as f:
            f.write("".join(kept))


def _json_step(line: str) -> int | None:
    if not line.strip():
        return None
    record = json.loads(line)
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        raise ValueError("no integer step")
    return record["step"]


def _csv_step(line: str) -> int | None:
    head = line.split(",", 1)[0]
    return int(head) if head.isdigit() else None


def parse_value(value: Any) -> Any:
    """A logged value: the strings "nan", "inf", "-inf" (how RunLog writes non-finite
    floats, which JSON cannot hold) back to floats; anything else unchanged."""
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl``; lines that do not parse (a crash mid-write) are
    skipped with a warning naming the file and line. Non-finite values come back as floats."""
    path = Path(run_dir) / JSONL
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            log.warning("%s line %d skipped (%s): %.80r", path, number, err, line)
            continue
        records.append({k: parse_value(v) for k, v in record.items()})
    return records


def wandb_tags(config: dict) -> list[str]:
    """Tags to filter a sweep's runs by in W&B: dataset, norm and scale."""
    return [
        f"dataset:{config['dataset']['name']}",
        f"norm:{config['norm']['mode']}",
        f"scale:{config['scale']}",
    ]


class RunLog:
    """Writes scalars to every enabled sink. Only rank 0 creates one."""

    def __init__(
        self,
        run_dir: Path,
        config: dict,
        wandb_cfg: Any,
        tensorboard: bool,
        resume_step: int | None = None,
        wandb_id: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        if resume_step is not None:
            _truncate_after(self.run_dir / JSONL, resume_step, _json_step)
            _truncate_after(self.run_dir / CSV, resume_step, _csv_step)
        new_csv = not (self.run_dir / CSV).exists()
        self._jsonl = open(self.run_dir / JSONL, "a")
        self._csv_file = open(self.run_dir / CSV, "a", newline="")
        self._csv = csv.writer(self._csv_file)
        if new_csv:
            self._csv.writerow(["step", "key", "value"])
        self.wandb = None
        self.wandb_id = wandb_id
        if wandb_cfg.mode != "disabled":
            import wandb  # only when asked for: W&B is never required

            self.wandb = wandb.init(
                project=wandb_cfg.project,
                entity=wandb_cfg.entity,
                group=wandb_cfg.group,
                name=self.run_dir.name,
                id=wandb_id or secrets.token_hex(4),
                resume="allow",
                mode=wandb_cfg.mode,
                dir=str(self.run_dir),
                config=config,
                tags=wandb_tags(config),
            )
            self.wandb_id = self.wandb.id
        self.tensorboard = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # pinned in requirements.txt; a partial install lacks it
                raise ImportError(TENSORBOARD_MISSING) from err

            self.tensorboard = SummaryWriter(str(self.run_dir / "tensorboard"))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        clean = {
            k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in scalars.items()
        }
        self._jsonl.write(json.dumps({"step": step, **clean}) + "\n")
        self._jsonl.flush()
        self._csv.writerows([step, k, v] for k, v in clean.items())
        self._csv_file.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)
        if self.tensorboard is not None:
            for k, v in scalars.items():
                self.tensorboard.add_scalar(k, v, step)

    def log_image(self, step: int, key: str, path: Path) -> None:
        if self.wandb is not None:
            import wandb

            self.wandb.log({key: wandb.Image(str(path))}, step=step)
        if self.tensorboard is not None:
            import numpy as np
            from PIL import Image

            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            self.tensorboard.add_image(key, pixels, step, dataformats="HWC")

    def close(self) -> None:
        self._jsonl.close()
        self._csv_file.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.tensorboard is not None:
            self.tensorboard.close()
