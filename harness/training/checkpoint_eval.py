"""IS/FID of saved checkpoints by protocol: the library side of evaluate.py (docs/metrics.md).

G is rebuilt from the checkpoint's own resolved config and evaluated as periodic
evaluation does (same latents, same cached real statistics), so evaluate.py reproduces
the values logged during training. Unreadable or invalid checkpoints are skipped with a
warning. Each checkpoint's result goes to
`<run_dir>/eval/<ckpt stem>.<metrics joined by +>[.gen<N>][.real<N>][.vs-<files>].json`
(or `out_dir`; `.vs-`: scored against real=<folder or .npz> instead of the training set);
a result already there with the same metrics, counts and extractor weights (sha256) is
reused.
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
from data.datasets import channels_of
from harness import allocator, threads
from harness.metrics import PROTOCOLS, weights_sha256
from harness.metrics.image_files import ImageFiles
from harness.metrics.protocols import CLASSIFIER
from models import build_models

from . import checkpoint
from .config import EvalConfig
from .periodic_eval import (
    EVAL_SEED_OFFSET,
    DataKey,
    evaluate_generator,
    preflight,
    weights_identity,
    write_json,
)

log = logging.getLogger(__name__)


@dataclass
class EvaluateConfig:
    # What to score: exactly one of these three.
    run_dir: str | None = None  # every checkpoints/ckpt_*.pt of this run directory
    checkpoint: str | None = None  # or this one checkpoint file (of <run_dir>/checkpoints/)
    images: str | None = None  # or a folder of images / an .npz (arr_0 uint8 [N, H, W, C])
    # What `images` is compared with (FID, KID, precision/recall): one of these two.
    real: str | None = None  # a folder of images / an .npz
    real_dataset: str | None = None  # a dataset's training set, as train.py reads it (e.g. mnist)
    resolution: int | None = None  # of `real_dataset`; None = the size of `images`
    out: str | None = None  # `images` only: also write the result JSON here
    # metrics, inception_weights, batch_size, num_gen, num_real (eval.every is not used)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Where the real images are now; None = the run's dataset.root (with
    # real_dataset: $BSSN_DATA, else ./datasets, as train.py).
    dataset_root: str | None = None
    # Where the result JSONs go; None = <run_dir>/eval (for a checkpoint outside a run's
    # checkpoints/ folder: an eval/ folder beside it).
    out_dir: str | None = None
    device: str = "auto"  # auto | cpu | cuda
    progress: bool = True
    threads: int | None = None  # CPU intra-op threads; None = auto (harness/threads.py)


def register_configs() -> None:
    ConfigStore.instance().store(name="base_evaluate", node=EvaluateConfig)


def checkpoints_of(cfg: DictConfig) -> tuple[Path, list[Path]]:
    """(results folder, checkpoints to evaluate, oldest first) from `run_dir` or `checkpoint`.

    The results folder is `out_dir` if given, else the run's `eval/`: for a checkpoint in
    `<run>/checkpoints/` that is `<run>/eval`, for any other file an `eval/` beside it.
    """
    if (cfg.run_dir is None) == (cfg.checkpoint is None):
        raise ValueError(
            "give exactly one of run_dir=<run directory>, checkpoint=<file.pt> or "
            "images=<folder or .npz>"
        )
    for key in ("real_dataset", "resolution", "out"):
        if cfg[key] is not None:
            raise ValueError(
                f"{key}= applies to images= only; a run is scored against its own training "
                "set, or against real=<folder or .npz>"
            )
    out = Path(cfg.out_dir).expanduser() if cfg.out_dir else None
    if cfg.checkpoint is not None:
        path = Path(cfg.checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint={cfg.checkpoint} is not a file")
        folder = path.resolve().parent
        run_dir = folder.parent if folder.name == checkpoint.checkpoint_dir(".").name else folder
        return out or run_dir / "eval", [path]
    run_dir = Path(cfg.run_dir).expanduser()
    found = checkpoint.list_checkpoints(run_dir)
    if not found:
        raise FileNotFoundError(
            f"no {checkpoint.checkpoint_dir(run_dir)}/ckpt_*.pt in run_dir={cfg.run_dir}"
        )
    return out or run_dir / "eval", found


def result_path(
    results: Path, ckpt: Path, eval_cfg: DictConfig, real: ImageFiles | None = None
) -> Path:
    """The JSON file of one checkpoint's evaluation; reduced counts and real images other
    than the training set are part of the name."""
    name = f"{ckpt.stem}.{'+'.join(eval_cfg.metrics)}"
    if eval_cfg.num_gen is not None:
        name += f".gen{eval_cfg.num_gen}"
    if eval_cfg.num_real is not None:
        name += f".real{eval_cfg.num_real}"
    if real is not None:
        name += f".vs-{real.name}"
    return results / f"{name}.json"


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


def _data_of(state: dict[str, Any], cfg: DictConfig) -> DataKey:
    """A checkpoint's run's dataset (checked against the requested metrics)."""
    data_cfg = state["config"]["dataset"]
    for name in cfg.eval.metrics:
        PROTOCOLS[name].check_dataset(data_cfg["name"])
    root = cfg.dataset_root or data_cfg["root"]
    return DataKey(data_cfg["name"], root, data_cfg["resolution"])


def _load_valid(ckpt: Path, invalid: list[str]) -> dict[str, Any] | None:
    """The checkpoint's state, or None (its error appended to `invalid`): as training does,
    a truncated or foreign file is reported and skipped."""
    try:
        return checkpoint.load(ckpt)
    except checkpoint.InvalidCheckpointError as err:
        log.warning("skipped: %s", err)
        invalid.append(str(err))
        return None


def evaluate_checkpoint(
    state: dict[str, Any],
    ckpt: Path,
    cfg: DictConfig,
    device: torch.device,
    datasets: dict[tuple, ImageSet | ImageFiles],
) -> dict[str, Any]:
    """compute_metrics of one (validated) checkpoint's G on its run's training set (or
    `cfg.real`)."""
    data = _data_of(state, cfg)
    saved = state["config"]
    data_cfg = saved["dataset"]
    if cfg.real is not None:
        key: tuple = ("real", cfg.real)
        if key not in datasets:
            datasets[key] = ImageFiles(cfg.real, key="real")
    else:
        key = tuple(data)
        if key not in datasets:
            datasets[key] = load_dataset(*key, download=data_cfg["download"])
    real = datasets[key]
    model = saved["model"]
    g, _ = build_models(
        model["name"],
        data_cfg["resolution"],
        channels_of(data_cfg["name"]),
        model["z_dim"],
        model["negative_slope"],
        model.get("width", 1.0),
    )
    g.load_state_dict(state["G"])
    results = evaluate_generator(
        g.to(device),
        real,
        cfg.eval,
        seed=saved["seed"] + EVAL_SEED_OFFSET,
        device=device,
        num_workers=data_cfg["num_workers"],
        progress=cfg.progress,
        cache_dir=data_cfg.get("cache_dir"),
        data=data if cfg.real is not None else None,
    )
    return {"checkpoint": str(ckpt), "step": state["step"], **results}


def evaluate(cfg: DictConfig) -> list[dict[str, Any]]:
    """Evaluate the checkpoints `cfg` names; returns one row per checkpoint and prints a table.

    Each row is the stored result plus "file" (its JSON) and "skipped" (True when an
    up-to-date result was found and nothing was computed).
    """
    threads.configure(cfg.threads)
    allocator.keep_freed_memory()
    if cfg.images is not None:
        from .image_eval import evaluate_images

        return [evaluate_images(cfg)]
    results_dir, ckpts = checkpoints_of(cfg)
    inception = preflight(cfg.eval)
    uses_classifier = any(PROTOCOLS[name].extractor == CLASSIFIER for name in cfg.eval.metrics)
    device = _device(cfg.device)
    datasets: dict[tuple, ImageSet | ImageFiles] = {}
    rows, invalid = [], []
    real = None
    if cfg.real is not None:  # read (and hashed) once for every checkpoint
        real = datasets[("real", cfg.real)] = ImageFiles(cfg.real, key="real")
    for ckpt in ckpts:
        path = result_path(results_dir, ckpt, cfg.eval, real)
        state = None
        if uses_classifier:
            # The classifier is the checkpoint's dataset's: its identity needs that dataset.
            state = _load_valid(ckpt, invalid)
            if state is None:
                continue
            cache_dir = state["config"]["dataset"].get("cache_dir")
            weights_hash = weights_identity(cfg.eval, inception, _data_of(state, cfg), cache_dir)
        else:
            weights_hash = weights_sha256(inception)
        result = _up_to_date(path, cfg.eval, weights_hash)
        skipped = result is not None
        if not skipped:
            state = state or _load_valid(ckpt, invalid)
            if state is None:
                continue
            result = evaluate_checkpoint(state, ckpt, cfg, device, datasets)
            write_json(path, result)
        rows.append({**result, "file": str(path), "skipped": skipped})
    if not rows:
        raise checkpoint.NoValidCheckpointError(
            "no valid checkpoint to evaluate:\n  " + "\n  ".join(invalid)
        )
    print(format_table(rows, list(cfg.eval.metrics)))
    return rows


def column(name: str, result: dict[str, Any]) -> str:
    """A metric's column title: its protocol name, with the counts used when reduced."""
    if not result["reduced"]:
        return name
    counts = f"gen {result['num_gen']}"
    if "num_real" in result:
        counts += f", real {result['num_real']}"
    return f"{name} (reduced: {counts})"


def cell(name: str, result: dict[str, Any]) -> str:
    """A metric's value as printed: mean ± std, a value, or precision / recall."""
    kind = PROTOCOLS[name].kind
    if kind in ("is", "kid"):
        digits = 3 if kind == "is" else 5
        return f"{result['mean']:.{digits}f} ± {result['std']:.{digits}f}"
    if kind == "pr":
        return f"P {result['precision']:.3f} / R {result['recall']:.3f}"
    return f"{result['value']:.3f}"


def format_table(rows: list[dict[str, Any]], metrics: list[str]) -> str:
    """A Markdown table: checkpoint, step, one column per metric, computed or reused.

    Reduced counts show in the column titles (every row of one call has the same counts).
    """
    titles = [column(name, rows[0][name]) for name in metrics] if rows else metrics
    lines = [
        "| checkpoint | step | " + " | ".join(titles) + " | |",
        "|---|---|" + "---|" * len(metrics) + "---|",
    ]
    for row in rows:
        cells = [cell(name, row[name]) for name in metrics]
        status = "reused" if row["skipped"] else "computed"
        lines.append(
            f"| {Path(row['checkpoint']).name} | {row['step']} | "
            + " | ".join(cells)
            + f" | {status} |"
        )
    return "\n".join(lines)
