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


def to_floats(values: dict[str, Tensor]) -> dict[str, float]:
    """Scalar tensors as floats with one device-to-host copy (one sync, not one per key)."""
    if not values:
        return {}
    numbers = torch.stack([v.detach().reshape(()).float() for v in values.values()]).tolist()
    return dict(zip(values, numbers, strict=True))


def layer_gradient_norm_tensors(d: nn.Module) -> dict[str, Tensor]:
    """Frobenius norm of the gradient of each conv/linear weight of D (Fig. 2), on device."""
    out = {}
    for name, layer in bssn.unwrap(d).named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            grad = weight_of(layer).grad
            if grad is not None:
                out[name] = grad.norm()
    return out


def layer_gradient_norms(d: nn.Module) -> dict[str, float]:
    """Frobenius norm of the gradient of each conv/linear weight of D (Fig. 2)."""
    return to_floats(layer_gradient_norm_tensors(d))


def input_gradient_norms(d: nn.Module, *batches: Tensor) -> list[Tensor]:
    """Per batch, the mean over its samples of ||grad_x D(x)||_2, from one pass over all
    batches (D has no batch statistics, so a sample's gradient does not depend on the
    others); uses the stored u, v (never advances). Tensors on the batches' device."""
    d = bssn.unwrap(d)
    x = torch.cat([b.detach() for b in batches]).requires_grad_(True)
    with bssn.frozen(d), torch.enable_grad():
        (grad,) = torch.autograd.grad(d(x).sum(), x)
    norms = grad.flatten(1).norm(dim=1).split([len(b) for b in batches])
    return [n.mean() for n in norms]


def input_gradient_norm(d: nn.Module, x: Tensor) -> float:
    """Mean over the batch of ||grad_x D(x)||_2; uses the stored u, v (never advances)."""
    return input_gradient_norms(d, x)[0].item()


def flatten_sigmas(d: nn.Module) -> dict[str, float]:
    """bssn.sigmas as flat scalars: ``sigma/<layer>``, ``sigma_w1/<layer>``, ``gamma/<layer>``."""
    return {
        f"{key}/{layer}": value
        for layer, values in bssn.sigmas(d).items()
        for key, value in values.items()
    }
