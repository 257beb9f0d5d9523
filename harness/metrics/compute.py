"""compute_metrics: IS, FID, KID, precision/recall and the classifier metrics of a generator
by protocol name (docs/metrics.md)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.special
import torch
import torch_fidelity
from torch.utils.data import Dataset

from harness.metrics.extractor import (
    FeatureRequest,
    Sampler,
    extract_generated_all,
    load_extractor,
)
from harness.metrics.frechet import frechet_distance
from harness.metrics.inception_score import IS_HEADS, inception_score
from harness.metrics.kid_pr import kernel_inception_distance, precision_recall
from harness.metrics.protocols import (
    CLASSIFIER,
    CONFIDENCE,
    FEATURE_KINDS,
    INCEPTION,
    LOGIT_KINDS,
    MetricProtocol,
    get_protocol,
)
from harness.metrics.reference_stats import reference_features, reference_statistics
from harness.metrics.weights import (
    INCEPTION_WEIGHTS_FILENAME,
    is_official,
    resolve_inception_weights,
    weights_sha256,
)


def compute_metrics(
    names: list[str],
    sample: Sampler,
    output_range: tuple[float, float] | None,
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

    `sample(n)` returns the next n generated images [n, C, H, W] (C = 1 or 3) as floats in
    `output_range`, (-1, 1) or (0, 1), or as uint8 when `output_range` is None (images
    read from files). `real_dataset` (the training split; needed by FID, KID and
    precision/recall on it) and `test_dataset` (needed by protocols on the test split)
    yield uint8 [C, H, W] images at training resolution and have `name` and `resolution`;
    their reference statistics and features are cached in `cache_dir`, named by split and
    extractor. Generated images are drawn once for all metrics and extractors: each metric
    uses the first n of them.

    `weights_path`: the Inception weights (None: torch-fidelity's cache; see weights.py).
    `classifier_weights`: the classifier file, needed by the classifier metrics
    (harness.metrics.classifier_train.resolve_classifier_weights finds or trains it).

    `num_gen_override` / `num_real_override` replace every requested metric's generated /
    real counts (smoke tests only); each result then says `reduced: True`.

    Returns {name: {"mean", "std", "num_gen", "splits", "head", "reduced"}} for IS-like
    scores, {name: {"value", "num_gen", "num_real", "reduced"}} for FIDs,
    {name: {"value", "num_gen", "threshold", "head", "reduced"}} for "confident" fractions,
    {name: {"mean", "std", "subsets", "subset_size", "num_gen", "num_real", "reduced"}} for
    KID, {name: {"precision", "recall", "f_score", "neighborhood", "num_gen", "num_real",
    "reduced"}} for precision/recall, and under "protocol" each extractor's weights path and
    sha256 (16 hex; `weights_sha256` joins them with '+', in the order of `extractors`),
    the seed, output range, overrides and the reference-statistics files.
    """
    if not names:
        raise ValueError("no metric requested")
    protocols: list[MetricProtocol] = [get_protocol(name) for name in dict.fromkeys(names)]
    for p in protocols:
        if p.kind in LOGIT_KINDS and (
            p.head not in IS_HEADS or IS_HEADS[p.head].extractor != p.extractor
        ):
            own = [h for h, head in IS_HEADS.items() if head.extractor == p.extractor]
            raise ValueError(
                f"{p.name}: head {p.head!r} does not read {p.extractor}'s logits; "
                f"allowed: {', '.join(own)}"
            )
    reals = [p for p in protocols if p.needs_real]
    num_gen = {p.name: p.count("gen", num_gen_override, "num_gen_override") for p in protocols}
    splits = {"train": real_dataset, "test": test_dataset}
    for p in reals:
        if splits[p.real_split] is None:
            raise ValueError(f"{p.name} needs a real dataset ({p.real_split} split)")
    num_real = {p.name: p.count("real", num_real_override, "num_real_override") for p in reals}

    extractors = sorted({p.extractor for p in protocols})
    paths: dict[str, str] = {}
    for name in extractors:
        if name == INCEPTION:
            paths[name] = resolve_inception_weights(weights_path, allow_download=allow_download)
        elif classifier_weights is None:
            raise ValueError(
                f"{', '.join(p.name for p in protocols if p.extractor == CLASSIFIER)} need "
                "classifier_weights (python -m scripts.train_classifier writes them)"
            )
        else:
            paths[name] = str(classifier_weights)
    hashes = {name: weights_sha256(path) for name, path in paths.items()}
    modules = {name: load_extractor(name, paths[name], device) for name in extractors}

    # Real statistics first: they are usually cached, and a bad dataset fails before the
    # expensive generation.
    references: dict[str, Any] = {}
    for p in reals:
        compute = reference_features if p.kind in FEATURE_KINDS else reference_statistics
        references[p.name] = compute(
            splits[p.real_split],
            num_real[p.name],
            extractor=modules[p.extractor],
            weights_hash=hashes[p.extractor],
            cache_dir=cache_dir,
            seed=seed,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
            extractor_name=p.extractor,
        )

    def most(ps: list[MetricProtocol], kinds: tuple[str, ...]) -> int:
        return max((num_gen[p.name] for p in ps if p.kind in kinds), default=0)

    requests = {}
    for name in extractors:
        own = [p for p in protocols if p.extractor == name]
        heads = list(dict.fromkeys(p.head for p in own if p.kind in LOGIT_KINDS))
        requests[name] = FeatureRequest(
            modules[name],
            stats_at=[num_gen[p.name] for p in own if p.kind == "fid"],
            num_logits=most(own, LOGIT_KINDS),
            num_features=most(own, FEATURE_KINDS),
            heads=heads,
        )
    generated = extract_generated_all(sample, output_range, requests, batch_size, progress)

    results: dict[str, Any] = {}
    for p in protocols:
        n = num_gen[p.name]
        features = generated[p.extractor]
        reduced = n != p.num_gen or (p.needs_real and num_real[p.name] != p.num_real)
        if p.kind == "is":
            mean, std = inception_score(features.logits[p.head][:n], p.splits)
            results[p.name] = {
                "mean": mean,
                "std": std,
                "num_gen": n,
                "splits": p.splits,
                "head": p.head,
            }
        elif p.kind == "confident":
            results[p.name] = {
                "value": confident_fraction(features.logits[p.head][:n]),
                "num_gen": n,
                "threshold": CONFIDENCE,
                "head": p.head,
            }
        elif p.kind == "fid":
            ref = references[p.name]
            mu, sigma = features.stats[n]
            results[p.name] = {
                "value": frechet_distance(mu, sigma, ref.mu, ref.sigma),
                "num_gen": n,
                "num_real": ref.num_images,
            }
        elif p.kind == "kid":
            real = references[p.name].features
            mean, std, size = kernel_inception_distance(
                features.features[:n], real, p.subsets, p.subset_size
            )
            results[p.name] = {
                "mean": mean,
                "std": std,
                "subsets": p.subsets,
                "subset_size": size,
                "num_gen": n,
                "num_real": len(real),
            }
        else:
            real = references[p.name].features
            results[p.name] = {
                **precision_recall(features.features[:n], real, p.neighborhood),
                "neighborhood": p.neighborhood,
                "num_gen": n,
                "num_real": len(real),
            }
        results[p.name]["reduced"] = reduced
    results["protocol"] = {
        "extractor": f"torch-fidelity {torch_fidelity.__version__} " + " + ".join(extractors),
        "extractors": extractors,
        "weights_path": paths.get(INCEPTION, next(iter(paths.values()))),
        "weights_sha256": "+".join(hashes[name] for name in extractors),
        "weights": {name: {"path": paths[name], "sha256": hashes[name]} for name in extractors},
        "seed": seed,
        "output_range": None if output_range is None else [float(v) for v in output_range],
        "num_gen_override": num_gen_override,
        "num_real_override": num_real_override,
        "reference_stats": {name: str(ref.path) for name, ref in references.items()},
        "is_heads": {
            p.head: IS_HEADS[p.head].describe() for p in protocols if p.kind in LOGIT_KINDS
        },
    }
    # Only the Inception weights have an official file; the classifier is the repo's own.
    if INCEPTION in hashes:
        official = is_official(hashes[INCEPTION])
        results["protocol"]["weights_official"] = official
        if not official:
            results["protocol"]["warning"] = (
                f"the Inception weights {paths[INCEPTION]} (sha256 {hashes[INCEPTION]}) are not "
                f"the official {INCEPTION_WEIGHTS_FILENAME}: IS/FID are not comparable with "
                "published values"
            )
    return results


def confident_fraction(logits: np.ndarray) -> float:
    """Fraction of rows whose top softmax probability is at least CONFIDENCE."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) == 0:
        raise ValueError(f"logits must be [N >= 1, classes], got shape {logits.shape}")
    top = np.exp(logits.max(axis=1) - scipy.special.logsumexp(logits, axis=1))
    return float(np.mean(top >= CONFIDENCE))
