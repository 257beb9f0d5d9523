"""`bssn.apply`: normalize every conv/linear layer of a discriminator (docs/normalization.md)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from .init import scaled_init_
from .modes import (
    GAMMA_MODES,
    INIT_MODES,
    check_mode,
    check_power_iterations,
    check_scale,
)
from .parametrizations import (
    INIT_POWER_ITERATIONS,
    BidirectionalSpectralNorm,
    ConvSpectralNorm,
    GammaScale,
    Normalizer,
    SpectralNorm,
    new_gamma,
)

NORMALIZED_TYPES = (nn.Conv2d, nn.Linear)


def apply(
    module: nn.Module,
    mode: str,
    scale: float = 1.0,
    n_power_iterations: int = 1,
    input_size: Sequence[int] | None = None,
    *,
    negative_slope: float = 0.0,
    eps: float = 1e-12,
    init_power_iterations: int = INIT_POWER_ITERATIONS,
) -> nn.Module:
    """Normalize every ``nn.Conv2d`` and ``nn.Linear`` of ``module`` in place; return it.

    Args:
        module: the discriminator (never the generator: docs/normalization.md).
        mode: one of ``bssn.MODES``: ``none``, ``sn``, ``snconv``, ``ssn``, ``bsn``,
            ``bssn``, ``sn_same_gamma``, ``sn_diff_gamma``, ``lecun``, ``xavier``, ``kaiming``.
        scale: the constant s of ``ssn``/``bssn`` (every layer, the last linear included)
            and of the scaled initialisations; must be 1 for the other modes.
        n_power_iterations: power-iteration steps per advance (the paper uses 1).
        input_size: shape of one input sample, e.g. ``(3, 32, 32)``. ``snconv`` needs each
            conv's input size; with ``input_size`` it runs one dry forward pass (eval mode,
            no grad) now, otherwise the layers set themselves up on the first forward call.
            Ignored by the other modes.
        negative_slope: leaky-ReLU slope a of the Kaiming variance 2/((1+a^2) fan_in).
        eps: added to norms in the power iteration, as in torch.
        init_power_iterations: steps run on the random start vectors when a layer is
            normalized (snconv: once its input size is known). The default, 15, is torch's
            ``spectral_norm``; the authors' code runs 0 (u drawn once, then one step per
            D step), which is the training harness's default.

    Raises:
        ValueError: unknown mode, non-positive or non-finite scale, a scale for a mode
            without one, n_power_iterations < 1, init_power_iterations < 0, a module already
            normalized, or one with no conv/linear layer.
    """
    mode = check_mode(mode)
    scale = check_scale(scale, mode)
    n_power_iterations = check_power_iterations(n_power_iterations)
    init_power_iterations = check_power_iterations(
        init_power_iterations, "init_power_iterations", low=0
    )
    previous = getattr(module, "_bssn_mode", None)
    if previous is not None:
        raise ValueError(
            f"bssn.apply was already called on this module (mode {previous!r}); "
            "apply it once, to a module that has not been normalized"
        )
    layers = [(n, m) for n, m in module.named_modules() if isinstance(m, NORMALIZED_TYPES)]
    if not layers:
        raise ValueError("module has no nn.Conv2d or nn.Linear layer to normalize")
    for name, layer in layers:
        if parametrize.is_parametrized(layer, "weight"):
            raise ValueError(
                f"layer {name!r} already has a weight parametrization "
                f"({type(layer.parametrizations.weight[0]).__name__}); remove it first"
            )

    shared_gamma = new_gamma(layers[0][1].weight) if mode == "sn_same_gamma" else None
    for name, layer in layers:
        if mode in INIT_MODES:
            scaled_init_(layer, mode, scale, negative_slope)
        elif mode != "none":
            _normalize_layer(
                name, layer, mode, scale, n_power_iterations, eps, shared_gamma,
                init_power_iterations,
            )  # fmt: skip

    module._bssn_mode = mode
    if mode == "snconv" and input_size is not None:
        _dry_run(module, input_size)
    return module


def _normalize_layer(
    name: str,
    layer: nn.Conv2d | nn.Linear,
    mode: str,
    scale: float,
    n: int,
    eps: float,
    shared_gamma: nn.Parameter | None,
    n_init: int,
) -> None:
    weight = layer.weight.detach()
    is_conv = isinstance(layer, nn.Conv2d)
    if mode == "snconv" and is_conv:
        normalizer: Normalizer = ConvSpectralNorm(
            layer, scale, n, eps, init_power_iterations=n_init
        )
        normalizer.layer_name = name
        layer.register_forward_pre_hook(_snconv_pre_hook)
    elif mode in ("bsn", "bssn") and is_conv:
        normalizer = BidirectionalSpectralNorm(weight, scale, n, eps, init_power_iterations=n_init)
    else:  # sn, ssn, the gamma modes, and every linear layer (docs/normalization.md)
        normalizer = SpectralNorm(weight, scale, n, eps, init_power_iterations=n_init)
    # unsafe=True: skip parametrize's consistency forward, which would advance the vectors.
    parametrize.register_parametrization(layer, "weight", normalizer, unsafe=True)
    if mode in GAMMA_MODES:
        gamma = shared_gamma if shared_gamma is not None else new_gamma(weight)
        parametrize.register_parametrization(layer, "weight", GammaScale(gamma), unsafe=True)
        if layer.bias is not None:
            parametrize.register_parametrization(layer, "bias", GammaScale(gamma), unsafe=True)


def _snconv_pre_hook(layer: nn.Conv2d, args: tuple) -> None:
    # Reads the normalizer from `layer`, not a closure, so deep copies stay self-contained.
    normalizer = layer.parametrizations.weight[0]
    size = tuple(args[0].shape[-2:])
    if normalizer.ready:
        normalizer.check_input(normalizer.layer_name, size)
    else:
        normalizer.initialize(layer.parametrizations.weight.original, size)


def _dry_run(module: nn.Module, input_size: Sequence[int]) -> None:
    if not (
        isinstance(input_size, Sequence)
        and len(input_size) >= 2
        and all(isinstance(d, int) and d > 0 for d in input_size)
    ):
        raise ValueError(
            f"input_size must be the shape of one sample, e.g. (3, 32, 32); got {input_size!r}"
        )
    param = next(module.parameters())
    x = torch.zeros(1, *input_size, device=param.device, dtype=param.dtype)
    modes = {m: m.training for m in module.modules()}
    try:  # eval mode: no batch-norm statistics updated, no power iteration advanced
        module.eval()
        with torch.no_grad():
            module(x)
    finally:
        for m, training in modes.items():
            m.training = training


def unwrap(module: nn.Module) -> nn.Module:
    """The user's module inside DistributedDataParallel / DataParallel / torch.compile."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


def normalized_layers(module: nn.Module) -> Iterator[tuple[str, nn.Module, Normalizer]]:
    """(name, layer, normalizer) for every layer whose weight a bssn normalizer divides."""
    for name, layer in unwrap(module).named_modules():
        if parametrize.is_parametrized(layer, "weight"):
            first = layer.parametrizations.weight[0]
            if isinstance(first, Normalizer):
                yield name, layer, first


def _gamma(layer: nn.Module) -> nn.Parameter | None:
    for p in layer.parametrizations.weight:
        if isinstance(p, GammaScale):
            return p.gamma
    return None


@torch.no_grad()
def sigmas(module: nn.Module) -> dict[str, dict[str, float]]:
    """Layer name -> its current normalizing constant(s), for logging; never advances.

    ``{"sigma": ...}`` for sn/ssn/snconv (snconv: sigma(T_w)); for bsn/bssn convs also
    ``sigma_w1`` and ``sigma_w2``, whose mean is ``sigma``; gamma modes add ``gamma``.
    The constant is the spectral-norm estimate itself: the forward weight is
    ``scale * w / sigma``. Names are those of the unwrapped module (no DDP prefix).
    """
    out: dict[str, dict[str, float]] = {}
    for name, layer, normalizer in normalized_layers(module):
        values = normalizer.sigmas(layer.parametrizations.weight.original)
        gamma = _gamma(layer)
        if gamma is not None:
            values["gamma"] = float(gamma)
        out[name] = values
    return out
