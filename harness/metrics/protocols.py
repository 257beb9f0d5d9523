"""Metrics named by protocol (docs/metrics.md), after stylegan2-ada-pytorch's metric registry.

A protocol name fixes every count that changes a metric's value, so numbers logged under
the same name are comparable across runs and with the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricProtocol:
    """One metric protocol.

    kind: "is" (Inception Score) or "fid" (Frechet Inception Distance).
    num_gen: generated images.
    num_real: real training images drawn once at random with a fixed seed, or None for the
        whole training set (FID only).
    splits: IS splits (IS only).
    head: the classifier head of inception_score.IS_HEADS (IS only).
    """

    name: str
    kind: Literal["is", "fid"]
    num_gen: int
    num_real: int | None = None
    splits: int | None = None
    head: str | None = None

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
        # The reference code's two metrics (docs/metrics.md); is50k reads TF-GAN's head.
        MetricProtocol("is50k", "is", num_gen=50_000, splits=10, head="tfgan"),
        MetricProtocol("fid10k_5k", "fid", num_gen=10_000, num_real=5_000),
        # What most later papers report (docs/metrics.md: "offer both, named by protocol"):
        # the original OpenAI IS head (torch-fidelity's), and FID on the whole training set.
        MetricProtocol("is50k_openai", "is", num_gen=50_000, splits=10, head="openai"),
        MetricProtocol("fid50k_full", "fid", num_gen=50_000, num_real=None),
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
