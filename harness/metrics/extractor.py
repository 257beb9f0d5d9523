"""Features of uint8 images and of generator samples (docs/metrics.md).

The extractor is torch-fidelity's `inception-v3-compat`, a port of the TF 2015-12-05
Inception graph the reference code used: '2048' (pool3) features for FID and
'logits_unbiased' (the softmax input without bias) for IS. The classifier metrics use the
repo's own classifier (harness/metrics/classifier.py), registered with torch-fidelity.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch_fidelity.utils
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from tqdm import tqdm

from harness.metrics.classifier import CLASSIFIER_EXTRACTOR
from harness.metrics.classifier import FEATURES as CLASSIFIER_FEATURES
from harness.metrics.frechet import FeatureMoments

EXTRACTOR_NAME = "inception-v3-compat"
#: Order of the extractor's outputs.
FEATURES = ("2048", "logits_unbiased")

Sampler = Callable[[int], torch.Tensor]


def load_inception(
    weights_path: str | os.PathLike, device: torch.device | str
) -> FeatureExtractorInceptionV3:
    """The extractor with weights loaded from `weights_path` (never downloaded, never random)."""
    extractor = FeatureExtractorInceptionV3(
        EXTRACTOR_NAME, list(FEATURES), feature_extractor_weights_path=str(weights_path)
    )
    return extractor.to(device)


def load_extractor(
    extractor: str, weights_path: str | os.PathLike, device: torch.device | str
) -> FeatureExtractorBase:
    """A protocol's extractor ("inception" or "classifier"), built through torch-fidelity's
    registry with weights from `weights_path`; outputs (features, logits) in that order."""
    if extractor == "inception":
        return load_inception(weights_path, device)
    if extractor != "classifier":
        raise ValueError(f"unknown extractor {extractor!r}; allowed: inception, classifier")
    module = torch_fidelity.utils.create_feature_extractor(
        CLASSIFIER_EXTRACTOR,
        list(CLASSIFIER_FEATURES),
        cuda=False,
        feature_extractor_weights_path=str(weights_path),
        verbose=False,
    )
    return module.to(device)


def to_uint8(images: torch.Tensor, output_range: tuple[float, float]) -> torch.Tensor:
    """round(clamp((x - lo) / (hi - lo), 0, 1) * 255) as uint8: the one conversion of samples."""
    lo, hi = (float(v) for v in output_range)
    if not hi > lo:
        raise ValueError(f"output_range must be (lo, hi) with hi > lo, got {output_range}")
    if not images.is_floating_point():
        raise TypeError(f"generated images must be floating point, got {images.dtype}")
    scaled = (images.float() - lo) / (hi - lo)
    return scaled.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] from [B, 1 or 3, H, W]: grayscale is repeated to three channels."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [B, 1 or 3, H, W], got {tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    # TF32 convolutions (on by default in cuDNN) perturb the features of the float32 port;
    # the metrics are meant to match the TF graph's float32 arithmetic.
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def extract(
    extractor: FeatureExtractorBase, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of uint8 images [B, 1 or 3, H, W]: for Inception pool3 [B, 2048]
    and logits_unbiased [B, 1008]; for the classifier its [B, 128] features and logits."""
    if images.dtype != torch.uint8:
        raise TypeError(f"the extractor takes uint8 images, got {images.dtype}")
    device = next(extractor.parameters()).device
    with torch.inference_mode(), _no_tf32():
        pool, logits = extractor(to_rgb(images).to(device))
    return pool, logits


@dataclass
class GeneratedFeatures:
    """FID statistics at each requested count and the logits of the first samples."""

    stats: dict[int, tuple[np.ndarray, np.ndarray]]
    logits: np.ndarray


@dataclass
class _Job:
    extractor: FeatureExtractorBase
    stats_at: Sequence[int]
    num_logits: int
    moments: FeatureMoments
    stats: dict[int, tuple[np.ndarray, np.ndarray]]
    logits: list[np.ndarray]


def extract_generated(
    sample: Sampler,
    output_range: tuple[float, float],
    extractor: FeatureExtractorBase,
    *,
    stats_at: Sequence[int],
    num_logits: int,
    batch_size: int,
    progress: bool = True,
) -> GeneratedFeatures:
    """Generate max(stats_at, num_logits) images once, in batches, and extract their features.

    FID statistics are taken over the first n images for each n in `stats_at` (so fid10k_5k
    reuses the first 10k images of fid50k_full); the logits of the first `num_logits`
    images are kept for IS.
    """
    jobs = {"only": (extractor, stats_at, num_logits)}
    return extract_generated_all(sample, output_range, jobs, batch_size, progress)["only"]


def extract_generated_all(
    sample: Sampler,
    output_range: tuple[float, float],
    jobs: dict[str, tuple[FeatureExtractorBase, Sequence[int], int]],
    batch_size: int,
    progress: bool = True,
) -> dict[str, GeneratedFeatures]:
    """extract_generated for several extractors at once: every extractor sees the same
    generated images, drawn once ({key: (extractor, stats_at, num_logits)})."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    state = {
        key: _Job(extractor, stats_at, num_logits, FeatureMoments(), {}, [])
        for key, (extractor, stats_at, num_logits) in jobs.items()
    }
    total = max(max([*j.stats_at, j.num_logits]) for j in state.values())
    boundaries = sorted({*(n for j in state.values() for n in j.stats_at), total})
    done = 0
    with tqdm(total=total, desc="generated images", unit="img", disable=not progress) as bar:
        for boundary in boundaries:
            while done < boundary:
                n = min(batch_size, boundary - done)
                # no_grad, not inference_mode: the caller's generator may update its own
                # buffers, which must stay usable by autograd in later training.
                with torch.no_grad():
                    images = sample(n)
                if images.dim() != 4 or images.shape[0] != n:
                    raise ValueError(
                        f"sample({n}) must return [{n}, C, H, W], got {tuple(images.shape)}"
                    )
                uint8 = to_uint8(images, output_range)
                for job in state.values():
                    if done >= max([*job.stats_at, job.num_logits]):
                        continue
                    pool, logits = extract(job.extractor, uint8)
                    job.moments.update(pool)
                    if done < job.num_logits:
                        job.logits.append(logits[: job.num_logits - done].cpu().numpy())
                done += n
                bar.update(n)
            for job in state.values():
                if boundary in job.stats_at:
                    job.stats[boundary] = job.moments.statistics()
    return {
        key: GeneratedFeatures(
            stats=job.stats,
            logits=np.concatenate(job.logits) if job.logits else np.empty((0, 0), np.float32),
        )
        for key, job in state.items()
    }
