"""IS/FID of saved checkpoints by protocol: the library side of evaluate.py (docs/metrics.md).

G is rebuilt from the checkpoint's own resolved config and evaluated as periodic
evaluation does (same latents, same cached real statistics), so evaluate.py reproduces
the values logged during training. Each checkpoint's result goes to
`<run_dir>/eval/<ckpt stem>.<metrics joined by +>[.gen<N>][.real<N>].json`; a result
already there with the same metrics, counts and Inception weights (sha256) is reused.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from data import ImageSet, load_dataset
from harness.metrics import PROTOCOLS, weights_sha256
from models import build_models

from . import checkpoint
from .config import EvalConfig
from .periodic_eval import (
    EVAL_SEED_OFFSET,
    evaluate_generator,
    preflight,
    weights_identity,
    write_json,
)

log = logging.getLogger(__name__)


@dataclass
class EvaluateConfig:
    run_dir: str | None = None  # evaluate every checkpoints/ckpt_*.pt of this run directory
    checkpoint: str | None = None  # or this one checkpoint file (of <run_dir>/checkpoints/)
    # metrics, inception_weights, batch_size, num_gen, num_real (eval.every is not used)
    eval: EvalConfig = field(default_factory=EvalConfig)
    dataset_root: str | None = None  # where the real images are now; None = the run's dataset.root
    device: str = "auto"  # auto | cpu | cuda
    progress: bool = True


def register_configs() -> None:
    ConfigStore.instance().store(name="base_evaluate", node=EvaluateConfig)


def checkpoints_of(cfg: DictConfig) -> tuple[Path, list[Path]]:
    """(run directory, checkpoints to evaluate, oldest first) from `run_dir` or `checkpoint`."""
    if (cfg.run_dir is None) == (cfg.checkpoint is None):
        raise ValueError("give exactly one of run_dir=<run directory> or checkpoint=<file.pt>")
    if cfg.checkpoint is not None:
        path = Path(cfg.checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint={cfg.checkpoint} is not a file")
        return path.resolve().parent.parent, [path]
    run_dir = Path(cfg.run_dir).expanduser()
    found = checkpoint.list_checkpoints(run_dir)
    if not found:
        raise FileNotFoundError(
            f"no {checkpoint.checkpoint_dir(run_dir)}/ckpt_*.pt in run_dir={cfg.run_dir}"
        )
    return run_dir, found


def result_path(run_dir: Path, ckpt: Path, eval_cfg: DictConfig) -> Path:
    """The JSON file of one checkpoint's evaluation; reduced counts are part of the name."""
    name = f"{ckpt.stem}.{'+'.join(eval_cfg.metrics)}"
    if eval_cfg.num_gen is not None:
        name += f".gen{eval_cfg.num_gen}"
    if eval_cfg.num_real is not None:
        name += f".real{eval_cfg.num_real}"
    return run_dir / "eval" / f"{name}.json"


def _up_to_date(path: Path, eval_cfg: DictConfig, weights_hash: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    protocol = result["protocol"]
    same = (
        all(name in result for name in eval_cfg.metrics)
        and protocol["weights_sha256"] == weights_hash
        and protocol["num_gen_override"] == eval_cfg.num_gen
        and protocol["num_real_override"] == eval_cfg.num_real
    )
    if not same:
        log.info("%s was computed with other weights or counts: evaluating again", path)
    return result if same else None


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but torch sees no CUDA device; use device=cpu or auto")
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={name!r} is not allowed; choose one of: auto, cpu, cuda")
    return torch.device(
        "cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu"
    )


def _load(
    ckpt: Path, cfg: DictConfig, datasets: dict[tuple, ImageSet]
) -> tuple[dict[str, Any], ImageSet]:
    """A checkpoint's state and its run's training set."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    data_cfg = state["config"]["dataset"]
    for name in cfg.eval.metrics:
        PROTOCOLS[name].check_dataset(data_cfg["name"])
    key = (data_cfg["name"], cfg.dataset_root or data_cfg["root"], data_cfg["resolution"])
    if key not in datasets:
        datasets[key] = load_dataset(*key, download=data_cfg["download"])
    return state, datasets[key]


def evaluate_checkpoint(
    ckpt: Path, cfg: DictConfig, device: torch.device, datasets: dict[tuple, ImageSet]
) -> dict[str, Any]:
    """compute_metrics of one checkpoint's G on its run's training set."""
    state, real = _load(ckpt, cfg, datasets)
    saved = state["config"]
    data_cfg = saved["dataset"]
    model = saved["model"]
    g, _ = build_models(
        model["name"], real.resolution, real.channels, model["z_dim"], model["negative_slope"],
        model.get("width", 1.0),
    )  # fmt: skip
    g.load_state_dict(state["G"])
    results = evaluate_generator(
        g.to(device),
        real,
        cfg.eval,
        seed=saved["seed"] + EVAL_SEED_OFFSET,
        device=device,
        num_workers=data_cfg["num_workers"],
        progress=cfg.progress,
    )
    return {"checkpoint": str(ckpt), "step": state["step"], **results}


def evaluate(cfg: DictConfig) -> list[dict[str, Any]]:
    """Evaluate the checkpoints `cfg` names; returns one row per checkpoint and prints a table.

    Each row is the stored result plus "file" (its JSON) and "skipped" (True when an
    up-to-date result was found and nothing was computed).
    """
    run_dir, ckpts = checkpoints_of(cfg)
    inception = preflight(cfg.eval)
    device = _device(cfg.device)
    datasets: dict[tuple, ImageSet] = {}
    rows = []
    for ckpt in ckpts:
        path = result_path(run_dir, ckpt, cfg.eval)
        if any(PROTOCOLS[name].extractor == "classifier" for name in cfg.eval.metrics):
            # The classifier is the checkpoint's dataset's: its identity needs that dataset.
            weights_hash = weights_identity(cfg.eval, inception, _load(ckpt, cfg, datasets)[1])
        else:
            weights_hash = weights_sha256(inception)
        result = _up_to_date(path, cfg.eval, weights_hash)
        skipped = result is not None
        if not skipped:
            result = evaluate_checkpoint(ckpt, cfg, device, datasets)
            write_json(path, result)
        rows.append({**result, "file": str(path), "skipped": skipped})
    print(format_table(rows, list(cfg.eval.metrics)))
    return rows


def format_table(rows: list[dict[str, Any]], metrics: list[str]) -> str:
    """A Markdown table: checkpoint, step, one column per metric, computed or reused."""
    lines = [
        "| checkpoint | step | " + " | ".join(metrics) + " | |",
        "|---|---|" + "---|" * len(metrics) + "---|",
    ]
    for row in rows:
        cells = []
        for name in metrics:
            value = row[name]
            cells.append(
                f"{value['mean']:.3f} ± {value['std']:.3f}"
                if PROTOCOLS[name].kind == "is"
                else f"{value['value']:.3f}"
            )
        status = "reused" if row["skipped"] else "computed"
        lines.append(
            f"| {Path(row['checkpoint']).name} | {row['step']} | "
            + " | ".join(cells)
            + f" | {status} |"
        )
    return "\n".join(lines)
