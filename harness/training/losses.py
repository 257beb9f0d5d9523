"""GAN losses (docs/training.md): hinge for Table 1, WGAN-GP for the gamma variants."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def hinge_d(d_real: Tensor, d_fake: Tensor) -> Tensor:
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def hinge_g(d_fake: Tensor) -> Tensor:
    return -d_fake.mean()


def wgan_d(d_real: Tensor, d_fake: Tensor) -> Tensor:
    return d_fake.mean() - d_real.mean()


def gradient_penalty(
    d: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, eps: Tensor
) -> Tensor:
    """Gulrajani et al.: E[(||grad_x D(x_hat)||_2 - 1)^2] on x_hat = eps real + (1 - eps) fake."""
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()
