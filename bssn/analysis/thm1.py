"""The Thm. 1 experiment: random per-layer spectral norms with a fixed geometric mean.

Thm. 1: on a ReLU/leaky-ReLU chain, rescaling layer i by c_i with ``prod c_i = 1`` leaves
D unchanged, and among those rescalings equal spectral norms minimize the gradient norm.
The paper checks it (Fig. 3, App. K) by training SN discriminators whose layer i is
normalized to a random spectral norm c_i, with the geometric mean of the c_i fixed (1 on
MNIST, 1.75 on CIFAR10/STL10), and plotting per layer pair the ratio of gradient norms
against the inverse ratio of spectral norms.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import bssn

#: Modes whose every layer divides by one spectral norm with scale 1, so that setting a
#: normalizer's ``scale`` to c_i gives layer i the spectral norm c_i.
LAYER_SCALE_MODES = ("sn", "snconv", "bsn")


def random_layer_scales(n_layers: int, geomean: float, log_std: float, seed: int) -> list[float]:
    """c_1..c_n with ``log c_i ~ N(log geomean, log_std^2)``, recentred so that
    ``prod c_i = geomean^n``."""
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    if not (math.isfinite(geomean) and geomean > 0 and math.isfinite(log_std) and log_std >= 0):
        raise ValueError(f"need geomean > 0 and log_std >= 0, got {geomean}, {log_std}")
    z = torch.randn(n_layers, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    logs = math.log(geomean) + log_std * (z - z.mean())
    return logs.exp().tolist()


def set_layer_scales(d: nn.Module, scales: list[float]) -> dict[str, float]:
    """Give layer i of D (in ``bssn.normalized_layers`` order) the spectral norm ``scales[i]``.

    D must have been normalized with one of ``LAYER_SCALE_MODES`` (scale 1). Returns
    layer name -> scale.

    Raises:
        ValueError: another mode, or not one scale per normalized layer.
    """
    mode = getattr(bssn.unwrap(d), "_bssn_mode", None)
    if mode not in LAYER_SCALE_MODES:
        raise ValueError(
            "per-layer scales need D normalized with one of "
            f"{', '.join(LAYER_SCALE_MODES)}; got {mode!r}"
        )
    layers = list(bssn.normalized_layers(d))
    if len(scales) != len(layers):
        raise ValueError(f"got {len(scales)} scales for {len(layers)} normalized layers")
    for (_, _, normalizer), c in zip(layers, scales, strict=True):
        normalizer.scale = float(c)
    return {name: float(c) for (name, _, _), c in zip(layers, scales, strict=True)}


def apply_random_layer_scales(
    d: nn.Module, geomean: float, log_std: float, seed: int
) -> dict[str, float]:
    """``set_layer_scales`` with ``random_layer_scales``, one per normalized layer of D."""
    n_layers = len(list(bssn.normalized_layers(d)))
    return set_layer_scales(d, random_layer_scales(n_layers, geomean, log_std, seed))
