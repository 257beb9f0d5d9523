"""Metrics named by protocol (docs/metrics.md), after stylegan2-ada-pytorch's metric registry.

A protocol name fixes every count that changes a metric's value, so numbers logged under
the same name are comparable across runs and with the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: The one feature extractor the built-in protocols use (harness.metrics.extractor).
INCEPTION = "inception-v3-compat"

Kind = Literal["is", "fid", "kid", "pr"]
#: Kinds compared against real images; kid and pr also need every feature, not moments.
REAL_KINDS = ("fid", "kid", "pr")
FEATURE_KINDS = ("kid", "pr")


@dataclass(frozen=True)
class MetricProtocol:
    """One metric protocol.

    kind: "is" (Inception Score), "fid" (Frechet Inception Distance), "kid" (Kernel
        Inception Distance) or "pr" (precision and recall).
    num_gen: generated images.
    num_real: real training images drawn once at random with a fixed seed, or None for the
        whole training set (fid, kid, pr).
    splits: IS splits (IS only).
    head: the classifier head of inception_score.IS_HEADS (IS only).
    subsets, subset_size: KID's random subsets and their size (KID only); with fewer
        images (reduced counts) the subsets take them all, as stylegan2-ada-pytorch does.
    neighborhood: the k of the k-NN radius of precision/recall (pr only).
    extractor: the torch-fidelity feature extractor the features come from.
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
        return {self.name: "max" if self.kind == "is" else "min"}

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
    )
}


def get_protocol(name: str) -> MetricProtocol:
    """The protocol registered under `name`; ValueError naming the allowed set otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(
            f"unknown metric {name!r}; allowed: {', '.join(sorted(PROTOCOLS))}"
        ) from None
