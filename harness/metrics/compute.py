"""compute_metrics: IS, FID and the classifier metrics of a generator by protocol name
(docs/metrics.md)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.special
import torch
import torch_fidelity
from torch.utils.data import Dataset

from harness.metrics.classifier import CLASSIFIER_EXTRACTOR
from harness.metrics.extractor import (
    EXTRACTOR_NAME,
    Sampler,
    extract_generated_all,
    load_extractor,
)
from harness.metrics.frechet import frechet_distance
from harness.metrics.inception_score import inception_score
from harness.metrics.protocols import CONFIDENCE, MetricProtocol, get_protocol
from harness.metrics.reference_stats import reference_statistics
from harness.metrics.weights import resolve_inception_weights, weights_sha256

#: torch-fidelity's name of each protocol extractor.
EXTRACTOR_NAMES = {"inception": EXTRACTOR_NAME, "classifier": CLASSIFIER_EXTRACTOR}


def compute_metrics(
    names: list[str],
    sample: Sampler,
    output_range: tuple[float, float],
    real_dataset: Dataset | None,
    *,
    weights_path: str | os.PathLike | None,
    device: torch.device | str,
    batch_size: int = 250,
    cache_dir: str | os.PathLike,
    seed: int = 0,
    num_gen_override: int | None = None,
    num_real_override: int | None = None,
    allow_download: bool = False,
    num_workers: int = 0,
    progress: bool = True,
    classifier_weights: str | os.PathLike | None = None,
    test_dataset: Dataset | None = None,
) -> dict[str, Any]:
    """Evaluate the named metrics (see protocols.PROTOCOLS) of a generator.

    `sample(n)` returns n generated images [n, C, H, W] (C = 1 or 3) as floats in
    `output_range`, (-1, 1) or (0, 1). `real_dataset` (the training split; needed by FIDs
    on it) and `test_dataset` (needed by FIDs on the test split) yield uint8 [C, H, W]
    images at training resolution and have `name` and `resolution`; their reference
    statistics are cached in `cache_dir`. Generated images are drawn once for all metrics
    and extractors: each metric uses the first n of them.

    `weights_path`: the Inception weights (None: torch-fidelity's cache; see weights.py).
    `classifier_weights`: the classifier file, needed by the classifier metrics
    (harness.metrics.classifier_train.resolve_classifier_weights finds or trains it).

    `num_gen_override` / `num_real_override` replace every requested metric's generated /
    real counts (smoke tests only); each result then says `reduced: True`.

    Returns {name: {"mean", "std", "num_gen", "splits", "reduced"}} for IS-like scores,
    {name: {"value", "num_gen", "num_real", "reduced"}} for FIDs and "confident"
    fractions (without num_real), and under "protocol" each extractor's weights path and
    sha256 (16 hex; `weights_sha256` joins them with '+', in the order of `extractors`),
    the seed, output range, overrides and the reference-statistics files.
    """
    if not names:
        raise ValueError("no metric requested")
    protocols: list[MetricProtocol] = [get_protocol(name) for name in dict.fromkeys(names)]
    fids = [p for p in protocols if p.kind == "fid"]
    num_gen = {p.name: p.count("gen", num_gen_override, "num_gen_override") for p in protocols}
    reals = {"train": real_dataset, "test": test_dataset}
    for p in fids:
        if reals[p.real_split] is None:
            raise ValueError(f"{p.name} needs a real dataset ({p.real_split} split)")
    num_real = {p.name: p.count("real", num_real_override, "num_real_override") for p in fids}

    kinds = sorted({p.extractor for p in protocols})
    paths: dict[str, str] = {}
    if "inception" in kinds:
        paths["inception"] = resolve_inception_weights(weights_path, allow_download=allow_download)
    if "classifier" in kinds:
        if classifier_weights is None:
            raise ValueError(
                f"{', '.join(p.name for p in protocols if p.extractor == 'classifier')} need "
                "classifier_weights (python -m scripts.train_classifier writes them)"
            )
        paths["classifier"] = str(classifier_weights)
    hashes = {kind: weights_sha256(path) for kind, path in paths.items()}
    extractors = {kind: load_extractor(kind, paths[kind], device) for kind in kinds}

    # Real statistics first: they are usually cached, and a bad dataset fails before the
    # expensive generation.
    references = {}
    for p in fids:
        references[p.name] = reference_statistics(
            reals[p.real_split],
            num_real[p.name],
            extractor=extractors[p.extractor],
            weights_hash=hashes[p.extractor],
            cache_dir=cache_dir,
            seed=seed,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
            extractor_name=p.extractor,
        )

    jobs = {
        kind: (
            extractors[kind],
            [num_gen[p.name] for p in fids if p.extractor == kind],
            max((num_gen[p.name] for p in protocols if p.kind != "fid" and p.extractor == kind),
                default=0),
        )
        for kind in kinds
    }  # fmt: skip
    generated = extract_generated_all(sample, output_range, jobs, batch_size, progress)

    results: dict[str, Any] = {}
    for p in protocols:
        n = num_gen[p.name]
        features = generated[p.extractor]
        if p.kind == "is":
            mean, std = inception_score(features.logits[:n], p.splits)
            results[p.name] = {
                "mean": mean,
                "std": std,
                "num_gen": n,
                "splits": p.splits,
                "reduced": n != p.num_gen,
            }
        elif p.kind == "confident":
            results[p.name] = {
                "value": confident_fraction(features.logits[:n]),
                "num_gen": n,
                "threshold": CONFIDENCE,
                "reduced": n != p.num_gen,
            }
        else:
            ref = references[p.name]
            mu, sigma = features.stats[n]
            results[p.name] = {
                "value": frechet_distance(mu, sigma, ref.mu, ref.sigma),
                "num_gen": n,
                "num_real": ref.num_images,
                "reduced": n != p.num_gen or num_real[p.name] != p.num_real,
            }
    results["protocol"] = {
        "extractor": f"torch-fidelity {torch_fidelity.__version__} "
        + " + ".join(EXTRACTOR_NAMES[kind] for kind in kinds),
        "extractors": kinds,
        "weights_path": paths["inception"] if "inception" in paths else paths["classifier"],
        "weights_sha256": "+".join(hashes[kind] for kind in kinds),
        "weights": {kind: {"path": paths[kind], "sha256": hashes[kind]} for kind in kinds},
        "seed": seed,
        "output_range": [float(v) for v in output_range],
        "num_gen_override": num_gen_override,
        "num_real_override": num_real_override,
        "reference_stats": {name: str(ref.path) for name, ref in references.items()},
    }
    return results


def confident_fraction(logits: np.ndarray) -> float:
    """Fraction of rows whose top softmax probability is at least CONFIDENCE."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) == 0:
        raise ValueError(f"logits must be [N >= 1, classes], got shape {logits.shape}")
    top = np.exp(logits.max(axis=1) - scipy.special.logsumexp(logits, axis=1))
    return float(np.mean(top >= CONFIDENCE))
