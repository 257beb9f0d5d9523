"""A small image classifier as a torch-fidelity feature extractor (docs/metrics.md).

The repo's own metric, not the paper's: Inception features mean little on MNIST (and on
the synthetic shapes), and the Inception weights cannot be fetched offline. The usual
practice there is a Frechet distance in the feature space of a classifier of the data
set itself, and a score on its softmax. This module registers such a classifier with
torch-fidelity under CLASSIFIER_EXTRACTOR, so the protocol machinery (compute.py) serves
it exactly as it serves Inception, and torch-fidelity's own calculate_metrics accepts it.

Weights are a file written by `python -m scripts.train_classifier` (or trained on first
use, harness.metrics.classifier_train), identified by their sha256 and never downloaded.
The file holds the state dict and what rebuilds the network: channels, classes,
resolution, plus the dataset and the test accuracy measured when it was trained.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch_fidelity
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from data.synthetic import REVISION as SHAPES_REVISION
from harness.metrics.protocols import CLASSIFIER

#: The name torch-fidelity knows the classifier by (protocols.CLASSIFIER).
CLASSIFIER_EXTRACTOR = CLASSIFIER
#: Its outputs: the penultimate layer (Frechet distance) and the logits (scores).
FEATURES = ("features", "logits")
FEATURE_DIM = 128
#: Folder of trained weights under <dataset.root>/.bssn_cache/.
WEIGHTS_FOLDER = "classifiers"
_FORMAT = "bssn-classifier-v1"


class ClassifierNotFound(FileNotFoundError):
    """eval.classifier_weights names no file."""


class Classifier(nn.Module):
    """Two conv blocks and two linear layers; any resolution >= 8 (adaptive pooling to 4x4).

    Input: float images in [-1, 1], [B, channels, H, W]. Returns (features, logits).
    Small on purpose: about one CPU minute per MNIST epoch on one thread.
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.features = nn.Sequential(nn.Linear(32 * 16, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(self.convs(x))
        return features, self.head(features)


def uint8_to_input(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 [B, 1 or 3, H, W] -> the classifier's float input in [-1, 1].

    torch-fidelity hands extractors 3-channel images; a grayscale classifier takes their
    mean (exact for the repeated channels of a grayscale image)."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError(f"expected uint8 [B, C, H, W] images, got {images.dtype} {images.shape}")
    x = images.float() / 127.5 - 1.0
    if channels == 1 and x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[1] != channels:
        raise ValueError(f"the classifier takes {channels}-channel images, got {x.shape[1]}")
    return x


def save_classifier(path: str | os.PathLike, model: Classifier, **meta: Any) -> None:
    """Write the weights and what rebuilds the network (meta: channels, num_classes,
    resolution, dataset, test_accuracy, ...)."""
    from harness.atomic import atomic_write

    state = {"format": _FORMAT, "state_dict": model.state_dict(), **meta}
    with atomic_write(Path(path)) as f:
        torch.save(state, f)


def load_classifier(path: str | os.PathLike) -> tuple[Classifier, dict[str, Any]]:
    """The network and its metadata from a file written by save_classifier."""
    if not Path(path).is_file():
        raise ClassifierNotFound(f"classifier weights {path} is not a file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(
            f"{path} is not a classifier written by scripts.train_classifier (format {_FORMAT!r})"
        )
    model = Classifier(state["channels"], state["num_classes"])
    model.load_state_dict(state["state_dict"])
    meta = {k: v for k, v in state.items() if k not in ("state_dict", "format")}
    return model.eval(), meta


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity's interface over Classifier: uint8 [B, 3, H, W] in, (features, logits)
    out, in the order `features_list` asks. H and W must be the trained resolution."""

    def __init__(
        self,
        name: str,
        features_list: list[str],
        feature_extractor_weights_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ClassifierNotFound(
                f"{CLASSIFIER_EXTRACTOR} needs feature_extractor_weights_path (it is never "
                "downloaded; train one with python -m scripts.train_classifier)"
            )
        self.model, self.meta = load_classifier(feature_extractor_weights_path)
        self.channels = int(self.meta["channels"])
        self.resolution = int(self.meta["resolution"])

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else "features"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 28, 28, dtype=torch.uint8)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if tuple(images.shape[-2:]) != (self.resolution, self.resolution):
            raise ValueError(
                f"the classifier was trained at {self.resolution}x{self.resolution}, got images "
                f"of {tuple(images.shape[-2:])}"
            )
        features, logits = self.model(uint8_to_input(images, self.channels))
        out = {"features": features, "logits": logits}
        return tuple(out[name] for name in self.features_list)


def register() -> None:
    """Register ClassifierFeatureExtractor with torch-fidelity (idempotent)."""
    if CLASSIFIER_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(CLASSIFIER_EXTRACTOR, ClassifierFeatureExtractor)


register()


def default_weights_path(cache_root: str | os.PathLike, dataset: str, resolution: int) -> Path:
    """Where scripts.train_classifier writes (and the metrics look for) a dataset's classifier:
    `<cache_root>/classifiers/<dataset>-<resolution>px.pt`, cache_root being
    `<dataset.root>/.bssn_cache`. The synthetic shapes' name carries their revision
    (`shapes-r2-24px.pt`): a classifier of earlier shapes is never reused."""
    tag = f"{dataset}-r{SHAPES_REVISION}" if dataset == "shapes" else dataset
    return Path(cache_root) / WEIGHTS_FOLDER / f"{tag}-{resolution}px.pt"
