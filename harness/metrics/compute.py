"""compute_metrics: IS and FID of a generator by protocol name (docs/metrics.md)."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch_fidelity
from torch.utils.data import Dataset

from harness.metrics.extractor import EXTRACTOR_NAME, Sampler, extract_generated, load_inception
from harness.metrics.frechet import frechet_distance
from harness.metrics.inception_score import IS_HEADS, inception_score
from harness.metrics.kid_pr import kernel_inception_distance, precision_recall
from harness.metrics.protocols import FEATURE_KINDS, MetricProtocol, get_protocol
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
) -> dict[str, Any]:
    """Evaluate the named metrics (see protocols.PROTOCOLS) of a generator.

    `sample(n)` returns the next n generated images [n, C, H, W] (C = 1 or 3) as floats in
    `output_range`, (-1, 1) or (0, 1), or as uint8 when `output_range` is None (images
    read from files). `real_dataset` (needed by FID, KID, precision/recall) yields uint8
    [C, H, W] images at training resolution and has `name` and `resolution`; its reference
    statistics and features are cached in `cache_dir`. Generated images are drawn once for
    all metrics: each metric uses the first n of them.

    `num_gen_override` / `num_real_override` replace every requested metric's generated /
    real counts (smoke tests only); each result then says `reduced: True`.

    Returns {name: {"mean", "std", "num_gen", "splits", "head", "reduced"}} for IS,
    {name: {"value", "num_gen", "num_real", "reduced"}} for FID,
    {name: {"mean", "std", "subsets", "subset_size", "num_gen", "num_real", "reduced"}} for
    KID, {name: {"precision", "recall", "f_score", "neighborhood", "num_gen", "num_real",
    "reduced"}} for precision/recall, and under "protocol" the
    weights' path and sha256 (16 hex), the extractor, seed, output range, overrides and the
    reference-statistics files.
    """
    if not names:
        raise ValueError("no metric requested")
    protocols: list[MetricProtocol] = [get_protocol(name) for name in dict.fromkeys(names)]
    for p in protocols:
        if p.extractor != EXTRACTOR_NAME:
            raise ValueError(
                f"{p.name} uses the feature extractor {p.extractor!r}; compute_metrics "
                f"extracts {EXTRACTOR_NAME!r} only"
            )
    reals = [p for p in protocols if p.needs_real]
    num_gen = {p.name: p.count("gen", num_gen_override, "num_gen_override") for p in protocols}
    if reals and real_dataset is None:
        raise ValueError(f"{', '.join(p.name for p in reals)} need a real dataset")
    num_real = {p.name: p.count("real", num_real_override, "num_real_override") for p in reals}

    weights = resolve_inception_weights(weights_path, allow_download=allow_download)
    weights_hash = weights_sha256(weights)
    extractor = load_inception(weights, device)

    # Real statistics first: they are usually cached, and a bad dataset fails before the
    # expensive generation.
    references: dict[str, Any] = {}
    for p in reals:
        compute = reference_features if p.kind in FEATURE_KINDS else reference_statistics
        references[p.name] = compute(
            real_dataset,
            num_real[p.name],
            extractor=extractor,
            weights_hash=weights_hash,
            cache_dir=cache_dir,
            seed=seed,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
        )

    generated = extract_generated(
        sample,
        output_range,
        extractor,
        stats_at=[num_gen[p.name] for p in reals if p.kind == "fid"],
        num_logits=max((num_gen[p.name] for p in protocols if p.kind == "is"), default=0),
        num_features=max(
            (num_gen[p.name] for p in protocols if p.kind in FEATURE_KINDS), default=0
        ),
        batch_size=batch_size,
        heads=list(dict.fromkeys(p.head for p in protocols if p.kind == "is")),
        progress=progress,
    )

    results: dict[str, Any] = {}
    for p in protocols:
        n = num_gen[p.name]
        reduced = n != p.num_gen or (p.needs_real and num_real[p.name] != p.num_real)
        if p.kind == "is":
            mean, std = inception_score(generated.logits[p.head][:n], p.splits)
            results[p.name] = {
                "mean": mean,
                "std": std,
                "num_gen": n,
                "splits": p.splits,
                "head": p.head,
            }
        elif p.kind == "fid":
            ref = references[p.name]
            mu, sigma = generated.stats[n]
            results[p.name] = {
                "value": frechet_distance(mu, sigma, ref.mu, ref.sigma),
                "num_gen": n,
                "num_real": ref.num_images,
            }
        elif p.kind == "kid":
            real = references[p.name].features
            mean, std, size = kernel_inception_distance(
                generated.features[:n], real, p.subsets, p.subset_size
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
                **precision_recall(generated.features[:n], real, p.neighborhood),
                "neighborhood": p.neighborhood,
                "num_gen": n,
                "num_real": len(real),
            }
        results[p.name]["reduced"] = reduced
    results["protocol"] = {
        "extractor": f"torch-fidelity {torch_fidelity.__version__} {EXTRACTOR_NAME}",
        "weights_path": weights,
        "weights_sha256": weights_hash,
        "weights_official": is_official(weights_hash),
        "seed": seed,
        "output_range": None if output_range is None else [float(v) for v in output_range],
        "num_gen_override": num_gen_override,
        "num_real_override": num_real_override,
        "reference_stats": {name: str(ref.path) for name, ref in references.items()},
        "is_heads": {
            p.head: f"{IS_HEADS[p.head].feature}, first {IS_HEADS[p.head].classes or 1008} classes"
            for p in protocols
            if p.kind == "is"
        },
    }
    if not is_official(weights_hash):
        results["protocol"]["warning"] = (
            f"the Inception weights {weights} (sha256 {weights_hash}) are not the official "
            f"{INCEPTION_WEIGHTS_FILENAME}: IS/FID are not comparable with published values"
        )
    return results
