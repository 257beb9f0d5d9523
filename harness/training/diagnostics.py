"""What the reference code logs about D besides losses (and the analysis figures need)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

import bssn


def weight_of(layer: nn.Module) -> Tensor:
    """The trained tensor of a layer: the stored weight under a parametrization."""
    if hasattr(layer, "parametrizations") and "weight" in layer.parametrizations:
        return layer.parametrizations.weight.original
    return layer.weight


def layer_gradient_norms(d: nn.Module) -> dict[str, float]:
    """Frobenius norm of the gradient of each conv/linear weight of D (Fig. 2)."""
    out = {}
    for name, layer in bssn.unwrap(d).named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            grad = weight_of(layer).grad
            if grad is not None:
                out[name] = grad.norm().item()
    return out


def input_gradient_norm(d: nn.Module, x: Tensor) -> float:
    """Mean over the batch of ||grad_x D(x)||_2; uses the stored u, v (never advances)."""
    d = bssn.unwrap(d)
    x = x.detach().requires_grad_(True)
    with bssn.frozen(d), torch.enable_grad():
        (grad,) = torch.autograd.grad(d(x).sum(), x)
    return grad.flatten(1).norm(dim=1).mean().item()


def flatten_sigmas(d: nn.Module) -> dict[str, float]:
    """bssn.sigmas as flat scalars: ``sigma/<layer>``, ``sigma_w1/<layer>``, ``gamma/<layer>``."""
    return {
        f"{key}/{layer}": value
        for layer, values in bssn.sigmas(d).items()
        for key, value in values.items()
    }
