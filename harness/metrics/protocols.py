"""Metrics named by protocol (docs/metrics.md), after stylegan2-ada-pytorch's metric registry.

A protocol name fixes every count that changes a metric's value, so numbers logged under
the same name are comparable across runs and with the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: A "confident" protocol counts images whose top softmax probability is at least this.
CONFIDENCE = 0.9


@dataclass(frozen=True)
class MetricProtocol:
    """One metric protocol.

    kind: "is" (Inception Score, or the same score on another extractor's logits), "fid"
        (Frechet distance of the extractor's features) or "confident" (the fraction of
        generated images whose top softmax probability is at least CONFIDENCE).
    num_gen: generated images.
    num_real: real images drawn once at random with a fixed seed, or None for the whole
        split (FID only).
    splits: IS splits (IS only).
    extractor: INCEPTION (torch-fidelity's inception-v3-compat) or CLASSIFIER (the repo's
        own classifier of the dataset, harness/metrics/classifier.py).
    real_split: the split the real images come from ("train" or "test").
    dataset: the only dataset the protocol applies to (a classifier's classes), or None.
    """

    name: str
    kind: Literal["is", "fid", "confident"]
    num_gen: int
    num_real: int | None = None
    splits: int | None = None
    extractor: Literal["inception", "classifier"] = "inception"
    real_split: Literal["train", "test"] = "train"
    dataset: str | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.kind in ("is", "confident")

    def check_dataset(self, dataset: str) -> None:
        """ValueError naming the protocol and its dataset if `dataset` is not it."""
        if self.dataset is not None and dataset != self.dataset:
            raise ValueError(
                f"metric {self.name} is for dataset={self.dataset} (its classifier's classes), "
                f"not dataset={dataset}"
            )

    def count(self, which: Literal["gen", "real"], override: int | None, key: str) -> int | None:
        """The generated or real count to use: the protocol's, or ``override`` (named ``key``
        in errors), which may only scale it down; an IS needs an image per split and a
        covariance two. A full-set ``num_real`` (None) admits any override of at least 2."""
        default = self.num_gen if which == "gen" else self.num_real
        if override is None:
            return default
        low = self.splits if which == "gen" and self.kind == "is" else 2
        if override < low or (default is not None and override > default):
            allowed = f"{low}..{default}" if default is not None else f">= {low}"
            raise ValueError(
                f"{key}={override} is not allowed for {self.name}: it only scales the "
                f"protocol's count down, to {allowed}"
            )
        return override


PROTOCOLS: dict[str, MetricProtocol] = {
    p.name: p
    for p in (
        # The reference code's two metrics (docs/metrics.md).
        MetricProtocol("is50k", "is", num_gen=50_000, splits=10),
        MetricProtocol("fid10k_5k", "fid", num_gen=10_000, num_real=5_000),
        # What most later papers report (docs/metrics.md: "offer both, named by protocol").
        MetricProtocol("fid50k_full", "fid", num_gen=50_000, num_real=None),
        # The repo's own metrics, not the paper's (docs/metrics.md: "Classifier metrics"):
        # a small classifier of the dataset as the feature extractor, real images from the
        # test split. MNIST: 10k generated against the 10k test images, and the IS formula
        # on the classifier's 10 classes (at most 10).
        MetricProtocol(
            "fd_mnist10k_test",
            "fid",
            num_gen=10_000,
            num_real=None,
            extractor="classifier",
            real_split="test",
            dataset="mnist",
        ),
        MetricProtocol(
            "cs_mnist10k",
            "is",
            num_gen=10_000,
            splits=10,
            extractor="classifier",
            dataset="mnist",
        ),
        # Shapes (the quick start): 2k generated against the 10k test shapes, and the
        # fraction of generated images labelled circle, square or triangle confidently.
        MetricProtocol(
            "fd_shapes2k_test",
            "fid",
            num_gen=2_000,
            num_real=None,
            extractor="classifier",
            real_split="test",
            dataset="shapes",
        ),
        MetricProtocol(
            "confident_shapes2k",
            "confident",
            num_gen=2_000,
            extractor="classifier",
            dataset="shapes",
        ),
    )  # fmt: skip
}


def get_protocol(name: str) -> MetricProtocol:
    """The protocol registered under `name`; ValueError naming the allowed set otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(
            f"unknown metric {name!r}; allowed: {', '.join(sorted(PROTOCOLS))}"
        ) from None
