"""Metrics named by protocol (docs/metrics.md), after stylegan2-ada-pytorch's metric registry.

A protocol name fixes every count that changes a metric's value, so numbers logged under
the same name are comparable across runs and with the paper. It also names the feature
extractor (by its torch-fidelity name) and the split the real images come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: torch-fidelity's port of the TF Inception graph the reference code used (extractor.py).
INCEPTION = "inception-v3-compat"
#: The repo's own classifier of a dataset, registered with torch-fidelity (classifier.py).
CLASSIFIER = "bssn-classifier"

Kind = Literal["is", "fid", "kid", "pr", "confident"]
#: Kinds compared against real images; kid and pr also need every feature, not moments.
REAL_KINDS = ("fid", "kid", "pr")
FEATURE_KINDS = ("kid", "pr")
#: Kinds computed from the extractor's logits.
LOGIT_KINDS = ("is", "confident")
#: A "confident" protocol counts images whose top softmax probability is at least this.
CONFIDENCE = 0.9


@dataclass(frozen=True)
class MetricProtocol:
    """One metric protocol.

    kind: "is" (Inception Score, or the same score on another extractor's logits), "fid"
        (Frechet distance of the extractor's features), "kid" (Kernel Inception Distance),
        "pr" (precision and recall) or "confident" (the fraction of generated images whose
        top softmax probability is at least CONFIDENCE).
    num_gen: generated images.
    num_real: real images drawn once at random with a fixed seed, or None for the whole
        split (fid, kid, pr).
    splits: IS splits (IS only).
    head: the head of inception_score.IS_HEADS that reads the extractor's logits (is and
        confident only): "tfgan" or "openai" for Inception, "classifier" for CLASSIFIER.
    subsets, subset_size: KID's random subsets and their size (KID only); with fewer
        images (reduced counts) the subsets take them all, as stylegan2-ada-pytorch does.
    neighborhood: the k of the k-NN radius of precision/recall (pr only).
    extractor: the torch-fidelity feature extractor the features come from: INCEPTION or
        CLASSIFIER (the classifier of `dataset`).
    real_split: the split the real images come from ("train" or "test").
    dataset: the only dataset the protocol applies to (a classifier's classes), or None.
    """

    name: str
    kind: Kind
    num_gen: int
    num_real: int | None = None
    splits: int | None = None
    head: str | None = None
    subsets: int | None = None
    subset_size: int | None = None
    neighborhood: int | None = None
    extractor: str = INCEPTION
    real_split: Literal["train", "test"] = "train"
    dataset: str | None = None

    @property
    def needs_real(self) -> bool:
        return self.kind in REAL_KINDS

    def scalars(self, result: dict) -> dict[str, float]:
        """The flat scalars logged for one compute_metrics result of this protocol."""
        if self.kind in ("is", "kid"):
            return {self.name: result["mean"], f"{self.name}_std": result["std"]}
        if self.kind == "pr":
            return {f"{self.name}_{k}": result[k] for k in ("precision", "recall")}
        return {self.name: result["value"]}

    def goals(self) -> dict[str, Literal["max", "min"]]:
        """The scalars that rank evaluations, each with its better direction."""
        if self.kind == "pr":
            return {f"{self.name}_precision": "max", f"{self.name}_recall": "max"}
        return {self.name: "max" if self.kind in LOGIT_KINDS else "min"}

    def check_dataset(self, dataset: str) -> None:
        """ValueError naming the protocol and its dataset if `dataset` is not it."""
        if self.dataset is not None and dataset != self.dataset:
            raise ValueError(
                f"metric {self.name} is for dataset={self.dataset} (its classifier's classes), "
                f"not dataset={dataset}"
            )

    def count(self, which: Literal["gen", "real"], override: int | None, key: str) -> int | None:
        """The generated or real count to use: the protocol's, or ``override`` (named ``key``
        in errors), which may only scale it down; an IS needs an image per split,
        precision/recall k + 1 images, the others two. A full-set ``num_real`` (None) admits
        any override of at least that."""
        default = self.num_gen if which == "gen" else self.num_real
        if override is None:
            return default
        low = {"is": self.splits, "pr": (self.neighborhood or 0) + 1}.get(self.kind, 2)
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
        # The reference code's two metrics (docs/metrics.md); is50k reads TF-GAN's head.
        MetricProtocol("is50k", "is", num_gen=50_000, splits=10, head="tfgan"),
        MetricProtocol("fid10k_5k", "fid", num_gen=10_000, num_real=5_000),
        # What most later papers report (docs/metrics.md: "offer both, named by protocol"):
        # the original OpenAI IS head (torch-fidelity's), and FID on the whole training set.
        MetricProtocol("is50k_openai", "is", num_gen=50_000, splits=10, head="openai"),
        MetricProtocol("fid50k_full", "fid", num_gen=50_000, num_real=None),
        # stylegan2-ada-pytorch's names and settings, computed by torch-fidelity: KID with
        # 100 subsets of 1000 and a cubic polynomial kernel; precision/recall with k = 3.
        MetricProtocol("kid50k_full", "kid", num_gen=50_000, subsets=100, subset_size=1000),
        MetricProtocol("pr50k3_full", "pr", num_gen=50_000, neighborhood=3),
        # The repo's own metrics, not the paper's (docs/metrics.md: "Classifier metrics"):
        # a small classifier of the dataset as the feature extractor, real images from the
        # test split. MNIST: 10k generated against the 10k test images, and the IS formula
        # on the classifier's 10 classes (at most 10).
        MetricProtocol(
            "fd_mnist10k_test",
            "fid",
            num_gen=10_000,
            num_real=None,
            extractor=CLASSIFIER,
            real_split="test",
            dataset="mnist",
        ),
        MetricProtocol(
            "cs_mnist10k",
            "is",
            num_gen=10_000,
            splits=10,
            head="classifier",
            extractor=CLASSIFIER,
            dataset="mnist",
        ),
        # Shapes (the quick start): 2k generated against the 10k test shapes, and the
        # fraction of generated images labelled circle, square or triangle confidently.
        MetricProtocol(
            "fd_shapes2k_test",
            "fid",
            num_gen=2_000,
            num_real=None,
            extractor=CLASSIFIER,
            real_split="test",
            dataset="shapes",
        ),
        MetricProtocol(
            "confident_shapes2k",
            "confident",
            num_gen=2_000,
            head="classifier",
            extractor=CLASSIFIER,
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
