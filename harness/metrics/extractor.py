"""Features of uint8 images and of generator samples (docs/metrics.md).

A protocol names its extractor by its torch-fidelity name (protocols.py). The paper's is
`inception-v3-compat`, a port of the TF 2015-12-05 Inception graph the reference code
used: '2048' (pool3) features for FID, KID and precision/recall, and for IS 'logits' (the
final layer with its bias) and 'logits_unbiased' (without), the inputs of the two IS heads
(inception_score.IS_HEADS). The classifier metrics use the repo's own classifier
(harness/metrics/classifier.py), registered with torch-fidelity, whose one 'logits' output
is its one head. Every extractor gives its features and its logits outputs by name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch_fidelity.utils
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from tqdm import tqdm

from harness.metrics import classifier  # noqa: F401  (registers CLASSIFIER with torch-fidelity)
from harness.metrics.frechet import FeatureMoments
from harness.metrics.inception_score import IS_HEADS
from harness.metrics.protocols import INCEPTION

EXTRACTOR_NAME = INCEPTION
#: Order of the Inception extractor's outputs: pool3, then the logits without and with the
#: bias.
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


def load_extractor(
    name: str, weights_path: str | os.PathLike, device: torch.device | str
) -> FeatureExtractorBase:
    """The torch-fidelity extractor registered as `name`, with weights from `weights_path`;
    outputs (features, logits): the layers torch-fidelity itself uses for FID and ISC."""
    if name == INCEPTION:
        return load_inception(weights_path, device)
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        raise ValueError(
            f"unknown feature extractor {name!r}; allowed: {', '.join(FEATURE_EXTRACTORS_REGISTRY)}"
        )
    cls = FEATURE_EXTRACTORS_REGISTRY[name]
    layers = [cls.get_default_feature_layer_for_metric(m) for m in ("fid", "isc")]
    module = torch_fidelity.utils.create_feature_extractor(
        name, layers, cuda=False, feature_extractor_weights_path=str(weights_path), verbose=False
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
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Features and {logits output name: logits} of uint8 images [B, 1 or 3, H, W]: for
    Inception pool3 [B, 2048] and {"logits_unbiased", "logits"}: [B, 1008]; for the
    classifier its [B, 128] features and {"logits": [B, classes]}. The outputs are named by
    the extractor's `features_list`, features first."""
    if images.dtype != torch.uint8:
        raise TypeError(f"the extractor takes uint8 images, got {images.dtype}")
    device = next(extractor.parameters()).device
    with torch.inference_mode(), _no_tf32():
        pool, *logits = extractor(to_rgb(images).to(device))
    return pool, dict(zip(extractor.features_list[1:], logits, strict=True))


@dataclass
class GeneratedFeatures:
    """One extractor's FID statistics at each requested count, per head (IS_HEADS) the
    logits of the first samples (IS, confident), and the features of the first samples
    (KID, precision/recall)."""

    stats: dict[int, tuple[np.ndarray, np.ndarray]]
    logits: dict[str, np.ndarray]
    features: np.ndarray


@dataclass(frozen=True)
class FeatureRequest:
    """What one extractor keeps of the generated images: FID statistics over the first n
    for each n in `stats_at`, the logits of the first `num_logits` as each of `heads`
    (inception_score.IS_HEADS, heads of this extractor) reads them, the features of the
    first `num_features`."""

    extractor: FeatureExtractorBase
    stats_at: Sequence[int] = ()
    num_logits: int = 0
    num_features: int = 0
    heads: Sequence[str] = ()

    def __post_init__(self) -> None:
        unknown = [h for h in self.heads if h not in IS_HEADS]
        if unknown:
            raise ValueError(f"unknown IS head {unknown[0]!r}; allowed: {', '.join(IS_HEADS)}")
        if self.num_logits > 0 and not self.heads:
            raise ValueError(
                f"num_logits={self.num_logits} needs the heads that read the logits "
                f"(allowed: {', '.join(IS_HEADS)})"
            )

    @property
    def total(self) -> int:
        return max([*self.stats_at, self.num_logits, self.num_features])


@dataclass
class _Job:
    request: FeatureRequest
    moments: FeatureMoments = field(default_factory=FeatureMoments)
    stats: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    logits: dict[str, list[np.ndarray]] = field(default_factory=dict)
    features: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.logits = {head: [] for head in self.request.heads}


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty((0, 0), np.float32)


def extract_generated(
    sample: Sampler,
    output_range: tuple[float, float] | None,
    extractor: FeatureExtractorBase,
    *,
    stats_at: Sequence[int],
    num_logits: int,
    batch_size: int,
    heads: Sequence[str] = ("tfgan",),
    num_features: int = 0,
    progress: bool = True,
) -> GeneratedFeatures:
    """Generate max(stats_at, num_logits, num_features) images once, in batches, and extract
    their features with one extractor (extract_generated_all with one request); the logits
    are kept as each of `heads` reads them (the default: the reference's Inception head)."""
    request = FeatureRequest(extractor, stats_at, num_logits, num_features, heads)
    return extract_generated_all(sample, output_range, {"only": request}, batch_size, progress)[
        "only"
    ]


def extract_generated_all(
    sample: Sampler,
    output_range: tuple[float, float] | None,
    requests: dict[str, FeatureRequest],
    batch_size: int,
    progress: bool = True,
) -> dict[str, GeneratedFeatures]:
    """Generate the images every request needs once, in batches, and feed each batch to
    every extractor that still needs it: all extractors see the same images.

    `sample(n)` returns the next n images as floats in `output_range`, or uint8 images when
    `output_range` is None (images read from files). FID statistics are taken over the
    first n images for each n in a request's `stats_at` (so fid10k_5k reuses the first 10k
    images of fid50k_full); the logits of the first `num_logits` images are kept per head
    (the tfgan and openai heads read different outputs of the same Inception pass).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    jobs = {key: _Job(request) for key, request in requests.items()}
    total = max((job.request.total for job in jobs.values()), default=0)
    boundaries = sorted({*(n for job in jobs.values() for n in job.request.stats_at), total})
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
                for job in jobs.values():
                    r = job.request
                    if done >= r.total:
                        continue
                    pool, logits = extract(r.extractor, images)
                    job.moments.update(pool)
                    if done < r.num_logits:
                        for head, parts in job.logits.items():
                            kept = logits[IS_HEADS[head].feature][: r.num_logits - done]
                            parts.append(IS_HEADS[head].select(kept.cpu().numpy()))
                    if done < r.num_features:
                        job.features.append(pool[: r.num_features - done].cpu().numpy())
                done += n
                bar.update(n)
            for job in jobs.values():
                if boundary in job.request.stats_at:
                    job.stats[boundary] = job.moments.statistics()
    return {
        key: GeneratedFeatures(
            job.stats,
            {head: _joined(parts) for head, parts in job.logits.items()},
            _joined(job.features),
        )
        for key, job in jobs.items()
    }
