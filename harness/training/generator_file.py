"""G from a run, a training checkpoint or a generator-only export, and the export itself.

An export is a small file that ``torch.load(path, weights_only=True)`` reads: tensors and
plain types only. ``config`` holds exactly the arguments of ``models.build_generator``, so
G is rebuilt without Hydra or the harness:

    export = torch.load("G.pt", map_location="cpu", weights_only=True)
    G = models.build_generator(**export["config"]).eval()
    G.load_state_dict(export["G"])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.datasets import channels_of
from models import build_generator

from . import checkpoint

log = logging.getLogger(__name__)

#: Written into every export and checked on load.
EXPORT_FORMAT = "bssn-generator/1"


@dataclass
class LoadedGenerator:
    """G in eval mode on CPU, and where it came from."""

    g: nn.Module
    export: dict[str, Any]  # the export's content (what save_export writes)
    source: Path  # the file G was read from


def export_of(state: dict[str, Any]) -> dict[str, Any]:
    """The generator-only export of a training checkpoint's state."""
    config = state["config"]
    dataset = config["dataset"]
    return {
        "format": EXPORT_FORMAT,
        "config": {
            "name": config["model"]["name"],
            "resolution": int(dataset["resolution"]),
            "channels": channels_of(dataset["name"]),
            "z_dim": int(config["model"]["z_dim"]),
            "width": float(config["model"].get("width", 1.0)),
        },
        "G": state["G"],
        "step": int(state["step"]),
        "seed": int(config["seed"]),
        "dataset": {"name": dataset["name"], "resolution": int(dataset["resolution"])},
    }


def save_export(export: dict[str, Any], path: str | Path) -> Path:
    """Write an export atomically; returns its path."""
    path = Path(path).expanduser()
    checkpoint.save_atomic(export, path)
    return path


def _export_of_file(path: Path) -> dict[str, Any]:
    try:  # exports and training checkpoints both load with weights_only=True
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{path} is neither a generator export nor a training checkpoint ({err})"
        ) from err
    if isinstance(state, dict) and state.get("format") == EXPORT_FORMAT:
        return state
    if isinstance(state, dict) and {"G", "config", "step"} <= state.keys():
        return export_of(checkpoint.validate(state, path))
    raise ValueError(
        f"{path} is neither a generator export ({EXPORT_FORMAT}) nor a training checkpoint"
    )


def load_generator(
    run_dir: str | Path | None = None, file: str | Path | None = None
) -> LoadedGenerator:
    """G (eval mode, CPU) from exactly one of a run directory (its newest valid checkpoint),
    a training checkpoint or an export file."""
    if (run_dir is None) == (file is None):
        raise ValueError("give exactly one of run_dir=<run directory> or checkpoint=<file.pt>")
    if run_dir is not None:
        run_dir = Path(run_dir).expanduser()
        loaded = checkpoint.load_latest(run_dir)
        if loaded is None:
            raise FileNotFoundError(
                f"no valid {checkpoint.checkpoint_dir(run_dir)}/ckpt_*.pt in run_dir={run_dir}"
            )
        state, source = loaded
        export = export_of(state)
    else:
        source = Path(file).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"checkpoint={file} is not a file")
        export = _export_of_file(source)
    g = build_generator(**export["config"])
    g.load_state_dict(export["G"])
    return LoadedGenerator(g.eval(), export, source)
