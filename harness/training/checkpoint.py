"""Checkpoints that survive being killed at any moment, and are never trusted unchecked.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then
renamed over its final name: a kill during the write leaves the previous checkpoint
intact (the orphaned temporary file is removed by the next run). Files are
``<run_dir>/checkpoints/ckpt_<step>.pt``. A checkpoint counts only once it is valid: it
loads with ``torch.load(weights_only=True)``, has every key of ``KEYS``, this ``FORMAT``,
and finite weights. Resuming takes the newest valid one; invalid files newer than it are
renamed ``*.invalid`` so that retention never mistakes them for progress.
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
_TEMPORARY = re.compile(r"^\.ckpt_\d{7,}\.pt\..*\.tmp$")  # atomic_write's temporary names

#: Version of the checkpoint layout, written into every checkpoint and checked on load.
#: 2: RNG states as tensors and plain types, loadable with weights_only=True.
FORMAT = 2
#: Keys every training checkpoint has.
KEYS = frozenset(
    {"step", "G", "D", "opt_g", "opt_d", "stream", "rng", "config", "wandb_id", "format"}
)


class InvalidCheckpointError(ValueError):
    """A checkpoint file that does not load, lacks keys, has another format or non-finite
    weights."""


class NoValidCheckpointError(RuntimeError):
    """Checkpoints exist but none is valid: resuming from 0 would silently lose the run."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_of(path: Path) -> int:
    return int(_NAME.match(path.name).group(1))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run (valid or not), oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_step(run_dir: Path) -> int | None:
    """The step in the newest checkpoint's file name (no load); None when there is none."""
    found = list_checkpoints(run_dir)
    return step_of(found[-1]) if found else None


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete temporary files left by writes that were killed; call only under the run lock
    (a live writer's temporary file would be deleted too)."""
    folder = checkpoint_dir(run_dir)
    stale = [p for p in folder.iterdir() if _TEMPORARY.match(p.name)] if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d temporary file(s) of interrupted checkpoint writes", len(stale))
    return stale


def non_finite_tensors(state: dict[str, Any], parts: tuple[str, ...] = ("G", "D")) -> list[str]:
    """Names of the floating-point tensors of ``state[part]`` with a NaN or Inf."""
    return [
        f"{part}.{key}"
        for part in parts
        for key, value in state[part].items()
        if torch.is_tensor(value) and value.is_floating_point() and not value.isfinite().all()
    ]


def validate(state: Any, path: Path | str = "checkpoint") -> dict[str, Any]:
    """``state`` if it is a training checkpoint of this FORMAT with finite weights, else
    InvalidCheckpointError naming ``path`` and what is wrong."""
    if not isinstance(state, dict):
        raise InvalidCheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint")
    if state.get("format") != FORMAT:
        raise InvalidCheckpointError(
            f"{path}: checkpoint format {state.get('format')!r}, expected {FORMAT}"
        )
    missing = sorted(KEYS - state.keys())
    if missing:
        raise InvalidCheckpointError(f"{path} lacks the checkpoint keys {', '.join(missing)}")
    bad = non_finite_tensors(state)
    if bad:
        raise InvalidCheckpointError(f"{path} has non-finite weights: {', '.join(bad[:5])}")
    return state


def load(path: Path) -> dict[str, Any]:
    """A validated checkpoint (InvalidCheckpointError names the file otherwise)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or pickled objects
        raise InvalidCheckpointError(f"{path} does not load ({type(err).__name__}: {err})") from err
    return validate(state, path)


def save_atomic(obj: Any, path: Path) -> None:
    with atomic_write(path) as f:
        torch.save(obj, f)


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Validate and write ``state``, then delete all but the ``keep`` newest checkpoints.

    A state with non-finite weights is refused (InvalidCheckpointError), never written.
    """
    path = checkpoint_dir(run_dir) / f"ckpt_{step:07d}.pt"
    validate(state, path)
    save_atomic(state, path)
    for old in list_checkpoints(run_dir)[:-keep]:
        if old != path:  # the file just written is the newest valid one
            old.unlink(missing_ok=True)
    return path


def load_latest(run_dir: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest valid checkpoint; None when the run has no checkpoint file at all.

    Invalid files are reported; those newer than the one returned are renamed
    ``<name>.invalid`` (kept for inspection, no longer counted). If checkpoint files exist
    but none is valid, NoValidCheckpointError names every one of them.
    """
    found = list_checkpoints(run_dir)
    invalid: list[tuple[Path, str]] = []
    for path in reversed(found):
        try:
            state = load(path)
        except InvalidCheckpointError as err:
            log.warning("%s; trying the previous checkpoint", err)
            invalid.append((path, str(err)))
            continue
        for bad, _ in invalid:
            bad.rename(bad.with_name(bad.name + ".invalid"))
        return state, path
    if invalid:
        raise NoValidCheckpointError(
            f"{len(invalid)} checkpoint(s) in {checkpoint_dir(run_dir)}, none valid:\n  "
            + "\n  ".join(reason for _, reason in invalid)
            + "\nTraining would restart from iteration 0. To do that deliberately, pass "
            "train.start_over=true (the files are kept, renamed *.invalid)."
        )
    return None


def set_aside_invalid(run_dir: Path) -> list[Path]:
    """Rename every checkpoint file to ``*.invalid`` (starting over, train.start_over=true)."""
    moved = []
    for path in list_checkpoints(run_dir):
        moved.append(path.rename(path.with_name(path.name + ".invalid")))
    return moved


def seed_all(seed: int) -> None:
    """Seed torch, numpy's and Python's global RNGs (user code may draw from any of them)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state(z_generator: torch.Generator) -> dict[str, Any]:
    """Every RNG's state as tensors and plain types (loads with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "state": torch.tensor(mt), "gauss_next": gauss_next},
        "z": z_generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], z_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
         n["cached_gaussian"])
    )  # fmt: skip
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss_next"]))
    z_generator.set_state(state["z"])
