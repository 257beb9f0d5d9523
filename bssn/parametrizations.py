"""Weight parametrizations for `torch.nn.utils.parametrize` (docs/normalization.md).

Each normalizer maps the stored weight w to ``scale * w / sigma(w)``. sigma is a power-
iteration estimate kept in buffers (saved in ``state_dict``), and is a differentiable
function of w, as in torch's built-in spectral_norm: ``sigma = u^T W v`` with u, v
treated as constants.

When the estimate advances: a normalizer in training mode with ``auto_advance`` set
runs ``n_power_iterations`` steps at every forward, like torch's spectral_norm. The
training loop instead clears ``auto_advance`` and calls :meth:`advance` exactly once per
discriminator step (see ``bssn.power_iteration``). Eval mode never advances.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Power-iteration steps run when a normalizer is created, as torch's spectral_norm does,
#: so that the first training step does not divide by a random-vector underestimate
#: (the default of ``init_power_iterations``; the reference code runs none).
INIT_POWER_ITERATIONS = 15


def _as_matrix(weight: Tensor, dim: int) -> Tensor:
    """W1 (dim=0): [c_out, c_in*k_h*k_w]; W2 (dim=1): in/out channels swapped,
    [c_in, c_out*k_h*k_w]."""
    return weight.flatten(1) if dim == 0 else weight.transpose(0, 1).flatten(1)


def _w2_rmatvec(weight: Tensor, vec: Tensor) -> Tensor:
    """``W2.H @ vec`` on the weight's own layout, W2 = _as_matrix(weight, 1).

    W2 is not a view of the stored weight. On the contiguous [c_out, c_in, k_h*k_w] view,
    W2^H u is u^H W[o] for every o: one broadcast product, no copy of the weight.
    """
    return torch.matmul(vec.conj(), weight.flatten(2)).conj().flatten()


def _sigma_estimate(weight: Tensor, dim: int, u: Tensor, v: Tensor) -> Tensor:
    """``u^H W v`` for W = _as_matrix(weight, dim), differentiable in the weight.

    dim 0 computes it as torch's spectral_norm does (bit-identical results). For W2 the
    product W2 v is the slow direction (strided: 3x the time of copying the weight and
    multiplying, on CPU), so it is computed as the equal (W2^H u)^H v.
    """
    if dim == 0:
        return torch.vdot(u, torch.mv(weight.flatten(1), v))
    return torch.vdot(_w2_rmatvec(weight, u), v)


def _unit_normal(like: Tensor, shape: tuple[int, ...] | int, eps: float) -> Tensor:
    return F.normalize(like.new_empty(shape).normal_(0, 1), dim=0, eps=eps)


class _MatrixPowerIteration(nn.Module):
    """Top singular vectors u, v of one reshape of a weight, with persistent buffers."""

    def __init__(self, weight: Tensor, dim: int, eps: float) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        h, w = _as_matrix(weight, dim).shape
        # Same draws as torch's spectral_norm (u then v), so equal seeds give equal vectors.
        self.register_buffer("_u", _unit_normal(weight, h, eps))
        self.register_buffer("_v", _unit_normal(weight, w, eps))

    @torch.no_grad()
    def step(self, weight: Tensor, n: int) -> None:
        if n == 0:
            return
        # W1 is a view. W2 is a copy, made once and shared by both products of every step:
        # copy + two matrix-vector products take a third of the time of the two strided
        # products on the weight's own layout (CPU, CIFAR D's largest layer).
        matrix = _as_matrix(weight, self.dim)
        # In place (out=), so replicas sharing storage see the update (as in torch).
        for _ in range(n):
            F.normalize(torch.mv(matrix, self._v), dim=0, eps=self.eps, out=self._u)
            F.normalize(torch.mv(matrix.H, self._u), dim=0, eps=self.eps, out=self._v)

    def vectors(self) -> tuple[Tensor, Tensor]:
        """Copies of u, v for a forward pass.

        A later in-place step (or a DDP buffer broadcast) must not invalidate tensors
        saved for a backward through an earlier forward, e.g. D(real) - D(fake).
        """
        return (
            self._u.clone(memory_format=torch.contiguous_format),
            self._v.clone(memory_format=torch.contiguous_format),
        )

    def sigma(self, weight: Tensor) -> Tensor:
        return _sigma_estimate(weight, self.dim, *self.vectors())


class Normalizer(nn.Module):
    """Base class: ``forward(w) = w / (sigma(w) / scale)``."""

    def __init__(self, scale: float, n_power_iterations: int, eps: float) -> None:
        super().__init__()
        self.scale = scale
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        self.auto_advance = True

    @property
    def ready(self) -> bool:
        """False only while a lazily shaped estimator (snconv) has not seen an input."""
        return True

    def advance(self, weight: Tensor) -> None:
        """Run ``n_power_iterations`` power-iteration steps on the stored vectors."""
        raise NotImplementedError

    def sigma(self, weight: Tensor) -> Tensor:
        """The normalizing constant from the current vectors (differentiable in w)."""
        raise NotImplementedError

    @torch.no_grad()
    def sigmas(self, weight: Tensor) -> dict[str, float]:
        """Named constants for logging, from the current vectors (never advances)."""
        return {"sigma": float(self.sigma(weight))}

    def forward(self, weight: Tensor) -> Tensor:
        if self.training and self.auto_advance:
            self.advance(weight)
        sigma = self.sigma(weight)
        return weight / (sigma if self.scale == 1 else sigma / self.scale)

    def right_inverse(self, value: Tensor) -> Tensor:
        """``layer.weight = t`` stores t itself, as torch's spectral_norm does: the layer then
        uses ``scale * t / sigma(t)`` (the estimate's vectors are kept; they follow t at the
        next advance)."""
        return value

    def extra_repr(self) -> str:
        return f"scale={self.scale}, n_power_iterations={self.n_power_iterations}"


def _mean(terms: list[Tensor]) -> Tensor:
    """The estimates' mean; one estimate is returned as is (bit-identical to torch's SN)."""
    return terms[0] if len(terms) == 1 else sum(terms[1:], terms[0]) / len(terms)


class _NormalizeBySigma(torch.autograd.Function):
    """``w / (sigma / scale)`` with sigma the mean of u_i^T W_i v_i over one reshape (SN:
    W1) or two (BSN: W1 and W2), in fewer passes over the weight than autograd.

    Autograd's backward makes seven (SN) to nine (BSN) passes over the weight (the
    division's two gradients, the outer products, their sums). This one makes three:
    <g, w>, g / d, and the rank-one corrections in place (``addr_``, and ``addcmul_`` in
    W2's layout): grad_w = g / d - <g, w> / (n d^2 scale) * sum_i u_i v_i^T, n reshapes.
    It equals autograd's gradient up to float rounding (tests/test_bssn_linalg.py). With
    one reshape at scale 1 the forward is torch's spectral_norm's, bit for bit.
    """

    @staticmethod
    def forward(ctx, weight, scale, *vectors):  # vectors: u1, v1[, u2, v2]
        pairs = zip(vectors[::2], vectors[1::2], strict=True)
        sigma = _mean([_sigma_estimate(weight, dim, u, v) for dim, (u, v) in enumerate(pairs)])
        denom = sigma if scale == 1 else sigma / scale
        ctx.save_for_backward(weight, denom, *vectors)
        ctx.scale = scale
        return weight / denom

    @staticmethod
    def backward(ctx, grad):
        weight, denom, *vectors = ctx.saved_tensors
        grad = grad.contiguous()
        n = len(vectors) // 2
        coef = -torch.vdot(grad.flatten(), weight.flatten()) / (denom * denom * (n * ctx.scale))
        out = grad / denom
        out.flatten(1).addr_(vectors[0] * coef, vectors[1])
        if n == 2:
            c_out, c_in = weight.shape[:2]
            out.flatten(2).addcmul_(
                (vectors[2] * coef).view(1, c_in, 1), vectors[3].view(c_out, 1, -1)
            )
        return out, None, *([None] * len(vectors))


class _ReshapeNormalizer(Normalizer):
    """sigma = the mean of power-iteration estimates on reshapes of the weight: W1 for SN,
    W1 and W2 for BSN (``RESHAPES``); each reshape has its own u, v in ``w1``/``w2``."""

    RESHAPES: tuple[int, ...] = (0,)

    def __init__(
        self,
        weight: Tensor,
        scale: float = 1.0,
        n_power_iterations: int = 1,
        eps: float = 1e-12,
        *,
        init_power_iterations: int = INIT_POWER_ITERATIONS,
    ) -> None:
        super().__init__(scale, n_power_iterations, eps)
        for dim in self.RESHAPES:
            iteration = _MatrixPowerIteration(weight, dim, eps)
            iteration.step(weight, init_power_iterations)
            setattr(self, f"w{dim + 1}", iteration)

    def _iterations(self) -> list[_MatrixPowerIteration]:
        return [getattr(self, f"w{dim + 1}") for dim in self.RESHAPES]

    def advance(self, weight: Tensor) -> None:
        for iteration in self._iterations():
            iteration.step(weight, self.n_power_iterations)

    def sigma(self, weight: Tensor) -> Tensor:
        return _mean([iteration.sigma(weight) for iteration in self._iterations()])

    def forward(self, weight: Tensor) -> Tensor:
        if self.training and self.auto_advance:
            self.advance(weight)
        vectors = [t for iteration in self._iterations() for t in iteration.vectors()]
        return _NormalizeBySigma.apply(weight, self.scale, *vectors)


class SpectralNorm(_ReshapeNormalizer):
    """SN_w (Miyato et al.): w / sigma(W1); with scale s, the paper's scaled SN (SSN)."""

    RESHAPES = (0,)


class BidirectionalSpectralNorm(_ReshapeNormalizer):
    """BSN (Sec. 5, Thm. 3): w / ((sigma(W1) + sigma(W2)) / 2); with scale s, BSSN.

    W2 swaps the input and output channels, so the average normalizes by both fan-in and
    fan-out, as Xavier initialisation does. Two independent power iterations.
    """

    RESHAPES = (0, 1)

    def __init__(self, weight: Tensor, *args, **kwargs) -> None:
        if weight.ndim < 3:
            raise ValueError("BidirectionalSpectralNorm is for conv weights; use SpectralNorm")
        super().__init__(weight, *args, **kwargs)

    @torch.no_grad()
    def sigmas(self, weight: Tensor) -> dict[str, float]:
        s1, s2 = float(self.w1.sigma(weight)), float(self.w2.sigma(weight))
        return {"sigma_w1": s1, "sigma_w2": s2, "sigma": (s1 + s2) / 2}


def _pair(x: int | tuple[int, ...]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


class ConvSpectralNorm(Normalizer):
    """SN_conv (Sec. 4): w / sigma(T_w), T_w the convolution as a linear operator.

    T_w depends on the input's spatial size, stride, padding and dilation; the vectors are
    input- and output-shaped and advanced with conv2d and its adjoint conv_transpose2d.
    The input size comes from :meth:`initialize`, which ``bssn.apply`` calls from a
    forward pre-hook on the layer (or from its dry run when given ``input_size``).
    """

    def __init__(
        self,
        conv: nn.Conv2d,
        scale: float = 1.0,
        n_power_iterations: int = 1,
        eps: float = 1e-12,
        *,
        init_power_iterations: int = INIT_POWER_ITERATIONS,
    ) -> None:
        super().__init__(scale, n_power_iterations, eps)
        self.init_power_iterations = init_power_iterations  # run once the input size is known
        if conv.padding_mode != "zeros":
            raise ValueError(
                f"snconv supports padding_mode='zeros' only, got {conv.padding_mode!r}"
            )
        padding = conv.padding
        if isinstance(padding, str):
            total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
            if padding == "same" and any(t % 2 for t in total):
                raise ValueError(
                    "snconv needs symmetric padding; padding='same' is asymmetric here"
                )
            padding = (0, 0) if padding == "valid" else (total[0] // 2, total[1] // 2)
        self.stride, self.padding = _pair(conv.stride), _pair(padding)
        self.dilation, self.groups = _pair(conv.dilation), conv.groups
        self.kernel_size = _pair(conv.kernel_size)
        # Lazily shaped: empty until the input size is known (see _load_from_state_dict).
        self.register_buffer("_u", conv.weight.new_empty(0))
        self.register_buffer("_v", conv.weight.new_empty(0))
        self.output_padding = (0, 0)

    @property
    def ready(self) -> bool:
        return self._v.numel() > 0

    @property
    def input_size(self) -> tuple[int, int] | None:
        return tuple(self._v.shape[-2:]) if self.ready else None

    def _set_input_size(self, size: tuple[int, int]) -> None:
        out, pad = [], []
        for n, k, s, p, d in zip(
            size, self.kernel_size, self.stride, self.padding, self.dilation, strict=True
        ):
            n_out = (n + 2 * p - d * (k - 1) - 1) // s + 1
            if n_out < 1:
                raise ValueError(f"snconv: input size {tuple(size)} is too small for this layer")
            out.append(n_out)
            # conv_transpose2d must return exactly the input size: it is T_w's adjoint.
            pad.append(n - ((n_out - 1) * s - 2 * p + d * (k - 1) + 1))
        self.output_padding = (pad[0], pad[1])
        return tuple(out)

    @torch.no_grad()
    def initialize(self, weight: Tensor, input_size: tuple[int, int]) -> None:
        out_size = self._set_input_size(input_size)
        c_out, c_in = weight.shape[0], weight.shape[1] * self.groups
        v = weight.new_empty(1, c_in, *input_size).normal_(0, 1)
        self._v = v / v.norm().clamp_min(self.eps)
        self._u = weight.new_zeros(1, c_out, *out_size)
        self._step(weight, self.init_power_iterations)

    def check_input(self, name: str, size: tuple[int, int]) -> None:
        if tuple(size) != self.input_size:
            raise ValueError(
                f"snconv layer {name!r} was set up for {self.input_size[0]}x{self.input_size[1]} "
                f"inputs and got {size[0]}x{size[1]}: sigma(T_w) depends on the input size"
            )

    def _require_ready(self) -> None:
        if not self.ready:
            raise RuntimeError(
                "snconv has not seen an input yet, so the convolution operator T_w is unknown: "
                "pass input_size=(C, H, W) to bssn.apply, or run one forward pass first"
            )

    def _conv(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def _conv_adjoint(self, y: Tensor, weight: Tensor) -> Tensor:
        return F.conv_transpose2d(
            y,
            weight,
            None,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )

    @torch.no_grad()
    def _step(self, weight: Tensor, n: int) -> None:
        for _ in range(n):
            u = self._conv(self._v, weight)
            self._u.copy_(u / u.norm().clamp_min(self.eps))
            v = self._conv_adjoint(self._u, weight)
            self._v.copy_(v / v.norm().clamp_min(self.eps))

    def advance(self, weight: Tensor) -> None:
        self._require_ready()
        self._step(weight, self.n_power_iterations)

    def sigma(self, weight: Tensor) -> Tensor:
        self._require_ready()
        u = self._u.clone(memory_format=torch.contiguous_format)
        v = self._v.clone(memory_format=torch.contiguous_format)
        return torch.sum(u * self._conv(v, weight))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The buffers' shapes depend on the input size; adopt a checkpoint's shapes.
        v = state_dict.get(prefix + "_v")
        if v is not None and v.ndim == 4 and tuple(v.shape) != tuple(self._v.shape):
            self._set_input_size(tuple(v.shape[-2:]))
            self._v = self._v.new_empty(v.shape)
            self._u = self._u.new_empty(state_dict[prefix + "_u"].shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input_size={self.input_size}"


class GammaScale(nn.Module):
    """Multiplies a tensor by a trainable gamma (SN with learned scale, docs/normalization.md).

    For ``sn_same_gamma`` one Parameter is shared by every layer's weight and bias;
    for ``sn_diff_gamma`` each layer has its own.
    """

    def __init__(self, gamma: nn.Parameter) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma

    @torch.no_grad()
    def right_inverse(self, value: Tensor) -> Tensor:
        # Assigning layer.weight = t keeps gamma and stores t / gamma beneath it.
        return value / self.gamma


def new_gamma(like: Tensor) -> nn.Parameter:
    return nn.Parameter(like.new_ones(()))


def alpha(kernel_size: tuple[int, int], stride: tuple[int, int]) -> float:
    """Sec. 4 bound: sigma(W1) <= sigma(T_w) <= alpha * sigma(W1), alpha = sqrt(prod ceil(k/s))."""
    return math.sqrt(math.prod(math.ceil(k / s) for k, s in zip(kernel_size, stride, strict=True)))
