"""Inception features of uint8 images and of generator samples (docs/metrics.md).

The extractor is torch-fidelity's `inception-v3-compat`, a port of the TF 2015-12-05
Inception graph the reference code used: '2048' (pool3) features for FID, and for IS
'logits' (the final layer with its bias) and 'logits_unbiased' (without), the inputs of
the two IS heads (inception_score.IS_HEADS).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from tqdm import tqdm

from harness.metrics.frechet import FeatureMoments
from harness.metrics.inception_score import IS_HEADS

EXTRACTOR_NAME = "inception-v3-compat"
#: Order of the extractor's outputs: pool3, then the logits without and with the bias.
FEATURES = ("2048", "logits_unbiased", "logits")

Sampler = Callable[[int], torch.Tensor]


class NonFiniteImagesError(FloatingPointError):
    """Generated images with NaN/Inf pixels: no metric of them means anything."""


def load_inception(
    weights_path: str | os.PathLike, device: torch.device | str
) -> FeatureExtractorInceptionV3:
    """The extractor with weights loaded from `weights_path` (never downloaded, never random)."""
    extractor = FeatureExtractorInceptionV3(
        EXTRACTOR_NAME, list(FEATURES), feature_extractor_weights_path=str(weights_path)
    )
    return extractor.to(device)


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
    extractor: FeatureExtractorInceptionV3, images: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """pool3 [B, 2048] and {"logits_unbiased", "logits"}: [B, 1008] of uint8 images
    [B, 1 or 3, H, W]."""
    if images.dtype != torch.uint8:
        raise TypeError(f"the extractor takes uint8 images, got {images.dtype}")
    device = next(extractor.parameters()).device
    with torch.inference_mode(), _no_tf32():
        pool, *logits = extractor(to_rgb(images).to(device))
    return pool, dict(zip(FEATURES[1:], logits, strict=True))


@dataclass
class GeneratedFeatures:
    """FID statistics at each requested count, per IS head the logits of the first samples,
    and the pool3 features of the first samples (KID, precision/recall)."""

    stats: dict[int, tuple[np.ndarray, np.ndarray]]
    logits: dict[str, np.ndarray]
    features: np.ndarray


def extract_generated(
    sample: Sampler,
    output_range: tuple[float, float] | None,
    extractor: FeatureExtractorInceptionV3,
    *,
    stats_at: Sequence[int],
    num_logits: int,
    batch_size: int,
    heads: Sequence[str] = ("tfgan",),
    num_features: int = 0,
    progress: bool = True,
) -> GeneratedFeatures:
    """Generate max(stats_at, num_logits, num_features) images once, in batches, and extract
    their features.

    `sample(n)` returns floats in `output_range`, or uint8 images when `output_range` is
    None (images read from files). FID statistics are taken over the first n images for
    each n in `stats_at` (so fid10k_5k reuses the first 10k images of fid50k_full); the
    logits of the first `num_logits` images are kept for IS, as each of `heads`
    (inception_score.IS_HEADS) reads them, and the pool3 features of the first
    `num_features` for KID and precision/recall.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    unknown = [h for h in heads if h not in IS_HEADS]
    if unknown:
        raise ValueError(f"unknown IS head {unknown[0]!r}; allowed: {', '.join(IS_HEADS)}")
    total = max([*stats_at, num_logits, num_features])
    boundaries = sorted({*stats_at, total})
    moments = FeatureMoments()
    stats: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    logits_parts: dict[str, list[np.ndarray]] = {head: [] for head in heads}
    feature_parts: list[np.ndarray] = []
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
                if not torch.isfinite(images).all():  # to_uint8 would clamp NaN to a colour
                    raise NonFiniteImagesError(
                        f"the generator produced NaN/Inf pixels (images {done}..{done + n - 1});"
                        " IS/FID of such a generator are meaningless, so evaluation stopped"
                    )
                if output_range is not None:
                    images = to_uint8(images, output_range)
                pool, logits = extract(extractor, images)
                moments.update(pool)
                if done < num_logits:
                    for head, parts in logits_parts.items():
                        kept = logits[IS_HEADS[head].feature][: num_logits - done]
                        parts.append(IS_HEADS[head].select(kept.cpu().numpy()))
                if done < num_features:
                    feature_parts.append(pool[: num_features - done].cpu().numpy())
                done += n
                bar.update(n)
            if boundary in stats_at:
                stats[boundary] = moments.statistics()

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.empty((0, 0), np.float32)

    return GeneratedFeatures(
        stats=stats,
        logits={head: joined(parts) for head, parts in logits_parts.items()},
        features=joined(feature_parts),
    )
