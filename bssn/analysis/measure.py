"""Measurements of a discriminator that the paper's theorems speak about.

Everything here reads the *effective* weights, those the forward pass uses
(``scale * w / sigma`` under a bssn normalizer, ``w`` otherwise), and never advances a
power iteration (``bssn.frozen``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

import bssn
from bssn.parametrizations import ConvSpectralNorm

LAYER_TYPES = (nn.Conv2d, nn.Linear)

#: Power-iteration steps for sigma(T_w): the first estimate of a layer, then each later
#: call continues from the previous vectors. 50 steps from a random start are within 1%
#: of the converged value on the CIFAR10 CNN's layers; the warm steps track the slowly
#: moving weights and keep sharpening the (always lower) estimate.
FIRST_OPERATOR_STEPS = 50
WARM_OPERATOR_STEPS = 10


@dataclass
class LayerTrace:
    """One conv/linear layer's call in a forward pass, in execution order."""

    name: str
    layer: nn.Conv2d | nn.Linear
    input: Tensor  # the layer's input for the probe batch
    output: Tensor  # its pre-activation output

    @property
    def is_conv(self) -> bool:
        return isinstance(self.layer, nn.Conv2d)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.input.shape[-2:])

    @property
    def alpha(self) -> float:
        """Sec. 4's alpha = sqrt(prod ceil(k/s)) for a conv (stride, no dilation); 1 for linear."""
        return bssn.alpha(self.layer.kernel_size, self.layer.stride) if self.is_conv else 1.0


def effective_weight(layer: nn.Module) -> Tensor:
    """The weight the forward pass uses (detached), without advancing any power iteration."""
    with bssn.frozen(layer), torch.no_grad():
        return layer.weight.detach()


def effective_bias(layer: nn.Module) -> Tensor | None:
    """The bias the forward pass uses (gamma modes scale it), detached."""
    with bssn.frozen(layer), torch.no_grad():
        return None if layer.bias is None else layer.bias.detach()


def trace(d: nn.Module, x: Tensor) -> list[LayerTrace]:
    """Run ``d(x)`` (no grad, frozen) and record every conv/linear call in order.

    Raises:
        ValueError: a layer is called twice, or a conv has dilation or groups (Sec. 4's
            alpha, and hence the bounds, are for plain strided convolutions).
    """
    d = bssn.unwrap(d)
    names = {m: n for n, m in d.named_modules() if isinstance(m, LAYER_TYPES)}
    for layer, name in names.items():
        if isinstance(layer, nn.Conv2d) and (
            layer.groups != 1 or any(v != 1 for v in layer.dilation)
        ):
            raise ValueError(
                f"layer {name!r}: the analysis covers convs without groups or dilation"
            )
    calls: list[LayerTrace] = []

    def hook(layer: nn.Module, args: tuple, output: Tensor) -> None:
        if any(c.layer is layer for c in calls):
            raise ValueError(f"layer {names[layer]!r} is called twice in one forward pass")
        # Clones: an in-place activation after the layer would overwrite its output.
        calls.append(
            LayerTrace(names[layer], layer, args[0].detach().clone(), output.detach().clone())
        )

    handles = [layer.register_forward_hook(hook) for layer in names]
    try:
        with bssn.frozen(d), torch.no_grad():
            d(x)
    finally:
        for h in handles:
            h.remove()
    return calls


def chain_violation(calls: list[LayerTrace], x: Tensor, negative_slope: float) -> str | None:
    """Why D is not Prop. 1's chain ``l_L o a o ... o a o l_1`` (None when it is).

    Checks, on the recorded pass, that layer 1 reads x, layer t+1 reads
    ``leaky_relu(output_t, negative_slope)`` (up to reshape), and the last layer's output is
    one scalar per sample. The ResNet discriminator fails (shortcuts, pooling, sums).
    """
    if not calls:
        return "D has no conv/linear layer"
    if not torch.equal(calls[0].input, x):
        return f"the first layer {calls[0].name!r} does not read the input"
    for prev, cur in zip(calls, calls[1:], strict=False):
        expected = torch.nn.functional.leaky_relu(prev.output, negative_slope).flatten(1)
        if cur.input.flatten(1).shape != expected.shape or not torch.equal(
            cur.input.flatten(1), expected
        ):
            return (
                f"layer {cur.name!r} does not read leaky_relu(slope {negative_slope}) "
                f"of layer {prev.name!r}'s output"
            )
    if calls[-1].output[0].numel() != 1:
        return f"the last layer {calls[-1].name!r} does not output one scalar per sample"
    return None


def variance(weight: Tensor) -> float:
    """Population variance of a weight's entries (the paper's "parameter variance", Fig. 7).

    It is at most the mean square that Thms. 2 and 3 bound.
    """
    return weight.double().var(correction=0).item()


def spectral_norm(weight: Tensor) -> float:
    """sigma(W1), W1 the weight reshaped to [c_out, c_in k_h k_w]: exact, in float64.

    sigma^2 is the top eigenvalue of the smaller Gram matrix: for the CIFAR10 CNN's
    largest layer (512 x 2304) a 512 x 512 eigenproblem, far cheaper than its SVD.
    """
    w1 = weight.flatten(1).double()
    gram = w1 @ w1.T if w1.shape[0] <= w1.shape[1] else w1.T @ w1
    return torch.linalg.eigvalsh(gram)[-1].clamp_min(0).sqrt().item()


def bias_norm(call: LayerTrace) -> float:
    """Norm of the layer's bias broadcast over one sample's output (Prop. 1's beta)."""
    bias = effective_bias(call.layer)
    if bias is None:
        return 0.0
    positions = call.output[0].numel() // call.output.shape[1]
    return bias.double().norm().item() * positions**0.5


_estimators: weakref.WeakKeyDictionary[nn.Module, ConvSpectralNorm] = weakref.WeakKeyDictionary()


def operator_norm(call: LayerTrace) -> float:
    """sigma of the layer as a linear map of its input: sigma(T_w) for a conv, sigma(W) for linear.

    Linear: exact. Conv: power iteration with conv2d and its adjoint at the traced input
    size (``bssn.ConvSpectralNorm``), warm-started from this layer's previous call; the
    estimate ``u^T T v`` never exceeds the true value. Its random start is drawn with the
    global RNG forked, so logging never changes a training run's random stream.
    """
    weight = effective_weight(call.layer)
    if not call.is_conv:
        return spectral_norm(weight)
    est = _estimators.get(call.layer)
    with torch.no_grad():
        if (
            est is None
            or est.input_size != call.input_size
            or next(est.buffers()).device != weight.device
        ):
            with bssn.frozen(call.layer):
                est = ConvSpectralNorm(call.layer, n_power_iterations=FIRST_OPERATOR_STEPS)
            with torch.random.fork_rng(devices=[weight.device] if weight.is_cuda else []):
                est.initialize(weight, call.input_size)
            _estimators[call.layer] = est
        else:
            est.n_power_iterations = WARM_OPERATOR_STEPS
        est.advance(weight)
        return est.sigma(weight).item()


def sample_gradient_norms(d: nn.Module, x: Tensor, layers: list[nn.Module]) -> Tensor:
    """``||dD(x_j)/dw'_t||_F`` for each sample j of x and layer t: a [len(x), len(layers)] tensor.

    w'_t is layer t's effective weight (Prop. 1 differentiates w.r.t. the normalized
    weight; App. C relates it to the raw one). One backward per sample; parameters'
    ``.grad`` are left untouched.
    """
    d = bssn.unwrap(d)
    norms = torch.empty(len(x), len(layers), dtype=torch.float64)
    with bssn.frozen(d), parametrize.cached(), torch.enable_grad():
        weights = [layer.weight for layer in layers]  # cached: the forward uses these tensors
        for j in range(len(x)):
            grads = torch.autograd.grad(d(x[j : j + 1]).sum(), weights, retain_graph=True)
            norms[j] = torch.stack([g.double().norm() for g in grads]).cpu()
    return norms
