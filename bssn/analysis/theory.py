"""Closed-form bounds of the paper's theorems (docs/normalization.md).

Each function takes shapes or norms and returns the bound the paper proves; the measured
quantities they bound are in ``bssn.analysis.measure``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def thm2_bound(m: int, n: int) -> float:
    """Thm. 2 (SN ~ LeCun init), deterministic half: ``mean_ij (A_ij / sigma(A))^2 <= 1/max(m, n)``.

    For an m x n matrix A, ``||A||_F^2 <= min(m, n) sigma(A)^2`` (App. F), and the mean
    divides by ``m n``. For a conv kernel, A is W1 = [c_out, c_in k_h k_w].
    """
    if m < 1 or n < 1:
        raise ValueError(f"matrix shape must be positive, got {m} x {n}")
    return 1.0 / max(m, n)


def thm3_bound(c_out: int, c_in: int, k_h: int, k_w: int) -> float:
    """Thm. 3 (BSN ~ Xavier init), deterministic half (docs/normalization.md, fact 6).

    ``mean (w / sigma_b)^2 <= 4 / (N (1/sqrt(r1) + 1/sqrt(r2))^2)`` with
    ``sigma_b = (sigma(W1) + sigma(W2)) / 2``, ``r1 = min(c_out, c_in k_h k_w)``,
    ``r2 = min(c_in, c_out k_h k_w)`` and ``N = c_out c_in k_h k_w`` (App. G): each
    ``sigma(W_i) >= ||w||_F / sqrt(r_i)``. In the usual case (``r1 = c_out``,
    ``r2 = c_in``) it is ``4 / (k_h k_w (sqrt(c_in) + sqrt(c_out))^2)``, of the order of
    Xavier's ``2 / (fan_in + fan_out)``. With ``k_h = k_w = 1`` it equals ``thm2_bound``.
    """
    if min(c_out, c_in, k_h, k_w) < 1:
        raise ValueError(f"kernel shape must be positive, got {(c_out, c_in, k_h, k_w)}")
    r1, r2 = min(c_out, c_in * k_h * k_w), min(c_in, c_out * k_h * k_w)
    n = c_out * c_in * k_h * k_w
    return 4.0 / (n * (1 / math.sqrt(r1) + 1 / math.sqrt(r2)) ** 2)


def prop1_bounds(
    x_norm: float,
    operator_norms: Sequence[float],
    bias_norms: Sequence[float],
    alphas: Sequence[float],
) -> list[float]:
    """Prop. 1: per-layer bounds on ``||dD(x)/dw_t||_F`` for a chain D
    (docs/normalization.md, fact 2).

    D = l_L o a_{L-1} o l_{L-1} o ... o a_1 o l_1 with 1-Lipschitz activations, a(0) = 0,
    and a scalar output. With sigma_i the operator norm of layer i (for a conv, of T_w, not
    W1), the input o_{t-1} of layer t has norm at most n_{t-1}, where n_0 = ||x|| and
    n_i = sigma_i n_{i-1} + beta_i; beta_i is the norm of layer i's bias broadcast over its
    output (the paper omits biases; with beta = 0 this is its ``||x|| prod_{i != t} sigma_i``).
    The backpropagated gradient at layer t's output has norm at most prod_{i > t} sigma_i.
    The gradient w.r.t. the operator is their outer product; w.r.t. a conv kernel it sums
    each patch over the up to alpha_t^2 output positions that contain an input pixel, so
    its Frobenius norm is at most alpha_t times that (alpha = ``bssn.alpha``; 1 for linear
    layers). Hence ``bound_t = alpha_t * prod_{i > t} sigma_i * n_{t-1}``.
    """
    if not len(operator_norms) == len(bias_norms) == len(alphas):
        raise ValueError("operator_norms, bias_norms and alphas need one entry per layer")
    bounds, n_in = [], x_norm
    for t, (sigma, beta, alpha) in enumerate(zip(operator_norms, bias_norms, alphas, strict=True)):
        bounds.append(alpha * math.prod(operator_norms[t + 1 :]) * n_in)
        n_in = sigma * n_in + beta
    return bounds
