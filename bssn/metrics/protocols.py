"""Metrics named by protocol (SPEC section 5), after stylegan2-ada-pytorch's metric registry.

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
    """

    name: str
    kind: Literal["is", "fid"]
    num_gen: int
    num_real: int | None = None
    splits: int | None = None


PROTOCOLS: dict[str, MetricProtocol] = {
    p.name: p
    for p in (
        # The reference code's two metrics (SPEC 5).
        MetricProtocol("is50k", "is", num_gen=50_000, splits=10),
        MetricProtocol("fid10k_5k", "fid", num_gen=10_000, num_real=5_000),
        # What most later papers report (SPEC 5: "offer both, named by protocol").
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
