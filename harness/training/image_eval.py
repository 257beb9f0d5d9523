"""evaluate.py images=<folder or .npz>: metrics of images from files (docs/metrics.md).

The images are scored by the same protocols, extractor and reference caches as a run:
against a dataset's training set (`real_dataset=`, read and cached exactly as train.py's
evaluation does, so an .npz written by generate.py from a run scores what the run
logged) or against another folder/.npz (`real=`, whose statistics are cached beside it).
The classifier metrics use the classifier of `real_dataset` (or eval.classifier_weights,
which `real=` needs) and, for test-split protocols, its test split (or the `real=` files).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from data import load_dataset
from harness.metrics import compute_metrics, get_protocol
from harness.metrics.image_files import ImageFiles

from .checkpoint_eval import _device, cell, column
from .periodic_eval import (
    DataKey,
    classifier_weights_for,
    preflight,
    reference_cache_dir,
    test_split_for,
    write_json,
)


def _default_root() -> str:
    return os.environ.get("BSSN_DATA", "datasets")  # DatasetConfig.root's default


def _reference(cfg: DictConfig, images: ImageFiles):
    """(real dataset or None, its cache folder)."""
    if cfg.real is not None and cfg.real_dataset is not None:
        raise ValueError("give at most one of real=<folder or .npz> and real_dataset=<name>")
    if cfg.real is not None:
        real = ImageFiles(cfg.real, key="real")
        return real, reference_cache_dir(real.root)
    if cfg.real_dataset is not None:
        root = cfg.dataset_root or _default_root()
        resolution = cfg.resolution or images.resolution
        return load_dataset(cfg.real_dataset, root, resolution), reference_cache_dir(root)
    needs = [name for name in cfg.eval.metrics if get_protocol(name).needs_real]
    if needs:
        raise ValueError(
            f"{', '.join(needs)} compare with real images: give real_dataset=<name> "
            "(its training set) or real=<folder or .npz>"
        )
    return None, None


def _describe(real: Any) -> str | None:
    if isinstance(real, ImageFiles):
        return str(real.path)
    return None if real is None else f"{real.name} {real.split} ({real.root})"


def _check_sizes(images: ImageFiles, real: Any, cfg: DictConfig) -> None:
    for name in cfg.eval.metrics:
        wanted = get_protocol(name).count("gen", cfg.eval.num_gen, "eval.num_gen")
        if wanted > len(images):
            raise ValueError(
                f"images={cfg.images} holds {len(images)} images; {name} needs {wanted} "
                f"(score fewer with eval.num_gen={len(images)}: the result is then marked "
                "reduced)"
            )
    if real is not None and real.resolution != images.resolution:
        raise ValueError(
            f"images={cfg.images} are {images.resolution}px but the real images are "
            f"{real.resolution}px; compare images of one size"
        )


def evaluate_images(cfg: DictConfig) -> dict[str, Any]:
    """compute_metrics of the images in `cfg.images`; prints a table, returns the result."""
    if cfg.run_dir is not None or cfg.checkpoint is not None:
        raise ValueError("give exactly one of run_dir=, checkpoint= or images=")
    weights = preflight(cfg.eval)
    images = ImageFiles(cfg.images)
    real, cache_dir = _reference(cfg, images)
    _check_sizes(images, real, cfg)
    if cfg.real_dataset is not None:
        for name in cfg.eval.metrics:
            get_protocol(name).check_dataset(real.name)
        data = DataKey(real.name, real.root, real.resolution)
        classifier_weights = classifier_weights_for(cfg.eval, data)
        test = test_split_for(cfg.eval, data)
    else:  # real= files (or nothing): they are the reference of every split
        classifier_weights, test = cfg.eval.classifier_weights, real
    results = compute_metrics(
        list(cfg.eval.metrics), images.sampler(), None, real,
        weights_path=weights, device=_device(cfg.device), batch_size=cfg.eval.batch_size,
        cache_dir=cache_dir or ".", num_gen_override=cfg.eval.num_gen,
        num_real_override=cfg.eval.num_real, num_workers=min(4, os.cpu_count() or 1),
        progress=cfg.progress, classifier_weights=classifier_weights, test_dataset=test,
    )  # fmt: skip
    result = {
        "images": str(images.path),
        "real": _describe(real) if test in (None, real) else f"{_describe(real)}; test split",
        **results,
    }
    if cfg.out is not None:
        write_json(Path(cfg.out).expanduser(), result)
    metrics = list(cfg.eval.metrics)
    print(
        "| images | real | " + " | ".join(column(m, results[m]) for m in metrics) + " |\n"
        "|---|---|" + "---|" * len(metrics) + "\n"
        f"| {images.path.name} | {result['real'] or '-'} | "
        + " | ".join(cell(m, results[m]) for m in metrics)
        + " |"
    )
    return result
