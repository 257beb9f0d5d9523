"""Scaled initialisation baselines of the Fig. 8 study (docs/normalization.md).

Weights are drawn once from N(0, s^2 * v): LeCun v = 1/fan_in, Xavier v = 2/(fan_in +
fan_out), Kaiming v = 2/((1 + a^2) fan_in) with a the leaky-ReLU slope. Thm. 2 and 3 say
SN and BSN give each layer about the LeCun and Xavier variances, hence the comparison.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def fans(layer: nn.Conv2d | nn.Linear) -> tuple[int, int]:
    """(fan_in, fan_out) of a conv or linear weight: c_in*k_h*k_w and c_out*k_h*k_w."""
    w = layer.weight
    receptive = math.prod(w.shape[2:])
    return w.shape[1] * receptive, w.shape[0] * receptive


def init_variance(mode: str, layer: nn.Conv2d | nn.Linear, negative_slope: float = 0.0) -> float:
    fan_in, fan_out = fans(layer)
    if mode == "lecun":
        return 1.0 / fan_in
    if mode == "xavier":
        return 2.0 / (fan_in + fan_out)
    if mode == "kaiming":
        return 2.0 / ((1.0 + negative_slope**2) * fan_in)
    raise ValueError(f"unknown init mode {mode!r}; allowed: lecun, xavier, kaiming")


@torch.no_grad()
def scaled_init_(
    layer: nn.Conv2d | nn.Linear, mode: str, scale: float, negative_slope: float = 0.0
) -> None:
    """Redraw ``layer.weight`` from N(0, scale^2 * v) in place; the bias is left as it is."""
    layer.weight.normal_(0.0, scale * math.sqrt(init_variance(mode, layer, negative_slope)))
