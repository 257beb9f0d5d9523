"""FID statistics of real training images, cached on disk (docs/metrics.md).

The real images come from a torch Dataset whose items are uint8 [C, H, W] tensors already
at training resolution (resized/cropped as in training) and which has attributes `name`
and `resolution`. The subset is drawn once with numpy's Generator(seed).choice without
replacement. The cache file name holds everything that changes the statistics: dataset
name (and split when not the training split), resolution, dataset size, sample count
(or 'full'), seed, the extractor and its weights' sha256.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from tqdm import tqdm

from harness.atomic import atomic_write, build_lock
from harness.metrics.extractor import extract
from harness.metrics.frechet import FeatureMoments
from harness.metrics.protocols import INCEPTION

T = TypeVar("T")


@dataclass(frozen=True)
class ReferenceStats:
    """mu [d] and sigma [d, d] of real images' features; `computed` is False when read from
    cache."""

    mu: np.ndarray
    sigma: np.ndarray
    num_images: int
    path: Path
    computed: bool


def real_indices(dataset_size: int, num_real: int | None, seed: int) -> np.ndarray:
    """Indices of the real images: all (num_real None) or num_real drawn without replacement."""
    if num_real is None:
        return np.arange(dataset_size)
    if not 2 <= num_real <= dataset_size:
        raise ValueError(
            f"num_real must be in 2..{dataset_size} (the dataset size), got {num_real}"
        )
    return np.sort(np.random.default_rng(seed).choice(dataset_size, size=num_real, replace=False))


def reference_stats_path(
    cache_dir: str | os.PathLike,
    dataset_name: str,
    resolution: int,
    dataset_size: int,
    num_real: int | None,
    seed: int,
    weights_hash: str,
    extractor_name: str = INCEPTION,
    split: str = "train",
) -> Path:
    """Cache file of one set of reference statistics (the seed is irrelevant to 'full'),
    named by dataset, split (when not the training split), counts, extractor and weights."""
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", dataset_name)
    if split != "train":
        safe_name += f"-{split}"
    subset = f"full{dataset_size}" if num_real is None else f"{num_real}of{dataset_size}-seed{seed}"
    # Inception keeps the short name of the files cached before other extractors existed.
    label = "inception" if extractor_name == INCEPTION else extractor_name
    filename = f"{safe_name}-{resolution}px-{subset}-{label}-{weights_hash}.npz"
    return Path(cache_dir) / filename


def _save_atomic(path: Path, **arrays: np.ndarray) -> None:
    # Concurrent runs of a sweep share this cache: they only ever see a complete file.
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _check_dataset(dataset: Dataset) -> None:
    for attribute in ("name", "resolution"):
        if not hasattr(dataset, attribute):
            raise AttributeError(
                f"the real dataset needs a `{attribute}` attribute for the cache key"
            )


def _real_features(
    dataset: Dataset,
    indices: np.ndarray,
    extractor: FeatureExtractorBase,
    batch_size: int,
    num_workers: int,
    progress: bool,
) -> Iterator[torch.Tensor]:
    """The extractor's features (Inception: pool3) of dataset[indices], one batch at a time."""
    loader = DataLoader(
        Subset(dataset, indices.tolist()),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
    )
    expected = (dataset.resolution, dataset.resolution)
    with tqdm(
        total=len(indices), desc=f"real images ({dataset.name})", unit="img", disable=not progress
    ) as bar:
        for images in loader:
            if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
                raise TypeError("real dataset items must be uint8 [C, H, W] tensors")
            if tuple(images.shape[-2:]) != expected:
                raise ValueError(
                    f"real images are {tuple(images.shape[-2:])}, expected {expected} "
                    f"(dataset.resolution)"
                )
            pool, _ = extract(extractor, images)
            yield pool
            bar.update(images.shape[0])


def reference_statistics(
    dataset: Dataset,
    num_real: int | None,
    *,
    extractor: FeatureExtractorBase,
    weights_hash: str,
    cache_dir: str | os.PathLike,
    seed: int,
    batch_size: int,
    num_workers: int = 0,
    progress: bool = True,
    extractor_name: str = INCEPTION,
) -> ReferenceStats:
    """Statistics of `num_real` random real images (None: all), read from or written to
    the cache."""
    indices, path = _selection(dataset, num_real, seed, cache_dir, weights_hash, extractor_name)
    return _read_or_build(
        path,
        _read,
        lambda: _compute(
            dataset, indices, path, extractor, weights_hash, seed, batch_size, num_workers, progress
        ),
    )


def _selection(
    dataset: Dataset,
    num_real: int | None,
    seed: int,
    cache_dir: str | os.PathLike,
    weights_hash: str,
    extractor_name: str,
) -> tuple[np.ndarray, Path]:
    """The real images' indices and their statistics' cache file."""
    _check_dataset(dataset)
    size = len(dataset)
    path = reference_stats_path(
        cache_dir, dataset.name, dataset.resolution, size, num_real, seed, weights_hash,
        extractor_name, getattr(dataset, "split", "train"),
    )  # fmt: skip
    return real_indices(size, num_real, seed), path


def _read_or_build(path: Path, read: Callable[[Path], T | None], build: Callable[[], T]) -> T:
    """The cached value at ``path``, or ``build()``'s: runs evaluating at once take a lock,
    so one computes and the others wait and reuse its file."""
    cached = read(path)
    if cached is not None:
        return cached
    with build_lock(path):
        cached = read(path)
        return cached if cached is not None else build()


def _read(path: Path) -> ReferenceStats | None:
    if not path.is_file():
        return None
    with np.load(path) as cached:
        return ReferenceStats(
            cached["mu"], cached["sigma"], int(cached["num_images"]), path, computed=False
        )


def _compute(
    dataset: Dataset,
    indices: np.ndarray,
    path: Path,
    extractor: FeatureExtractorBase,
    weights_hash: str,
    seed: int,
    batch_size: int,
    num_workers: int,
    progress: bool,
) -> ReferenceStats:
    moments = FeatureMoments()
    for pool in _real_features(dataset, indices, extractor, batch_size, num_workers, progress):
        moments.update(pool)
    mu, sigma = moments.statistics()
    _save_atomic(
        path,
        mu=mu,
        sigma=sigma,
        num_images=np.int64(moments.count),
        seed=np.int64(seed),
        weights_sha256=np.str_(weights_hash),
    )
    return ReferenceStats(mu, sigma, moments.count, path, computed=True)


@dataclass(frozen=True)
class ReferenceFeatures:
    """Every feature [N, d] (float32; Inception: pool3, d = 2048) of real images, for KID and
    precision/recall."""

    features: np.ndarray
    path: Path
    computed: bool


def reference_features(
    dataset: Dataset,
    num_real: int | None,
    *,
    extractor: FeatureExtractorBase,
    weights_hash: str,
    cache_dir: str | os.PathLike,
    seed: int,
    batch_size: int,
    num_workers: int = 0,
    progress: bool = True,
    extractor_name: str = INCEPTION,
) -> ReferenceFeatures:
    """The features of the same images as reference_statistics, cached beside its files
    (`.features.npy`: 60k MNIST images take 0.5 GB)."""
    indices, stats_path = _selection(
        dataset, num_real, seed, cache_dir, weights_hash, extractor_name
    )
    path = stats_path.with_suffix(".features.npy")

    def read(path: Path) -> ReferenceFeatures | None:
        return ReferenceFeatures(np.load(path), path, computed=False) if path.is_file() else None

    def build() -> ReferenceFeatures:
        parts = [
            pool.cpu().numpy().astype(np.float32)
            for pool in _real_features(
                dataset, indices, extractor, batch_size, num_workers, progress
            )
        ]
        features = np.concatenate(parts)
        with atomic_write(path) as f:
            np.save(f, features)
        return ReferenceFeatures(features, path, computed=True)

    return _read_or_build(path, read, build)
