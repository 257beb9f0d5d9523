"""Checkpoints that survive being killed at any moment.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then
renamed over its final name: a kill during the write leaves the previous checkpoint
intact. Files are ``<run_dir>/checkpoints/ckpt_<step>.pt``; the newest that loads wins.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.atomic import atomic_write

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt_(\d{7,})\.pt$")

#: Version of the checkpoint layout, written into every checkpoint and checked on load.
FORMAT = 1


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_step(run_dir: Path) -> int | None:
    """The step in the newest checkpoint's file name (no load); None when there is none."""
    found = list_checkpoints(run_dir)
    return int(_NAME.match(found[-1].name).group(1)) if found else None


def save_atomic(obj: Any, path: Path) -> None:
    with atomic_write(path) as f:
        torch.save(obj, f)


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    path = checkpoint_dir(run_dir) / f"ckpt_{step:07d}.pt"
    save_atomic(state, path)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest(run_dir: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint that loads; an unreadable newer one is reported and skipped."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            if not isinstance(state, dict) or state.get("format") != FORMAT:
                found = state.get("format") if isinstance(state, dict) else type(state).__name__
                raise ValueError(f"checkpoint format {found!r}, expected {FORMAT}")
            return state, path
        except Exception as err:  # a truncated or foreign file: say so, try the previous one
            log.warning("checkpoint %s is unreadable (%s); trying the previous one", path, err)
    return None


def rng_state(z_generator: torch.Generator) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "z": z_generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], z_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    z_generator.set_state(state["z"])
