"""Spectral normalization and its variants for GAN discriminators.

After Lin, Sekar, Fanti, "Why Spectral Normalization Stabilizes GANs: Analysis and
Improvements" (NeurIPS 2021). Three lines put BSSN on any discriminator::

    import bssn
    D = bssn.apply(D, "bssn", scale=1.2)
    with bssn.discriminator_step(D): ...   # one power iteration per D step

See ``bssn.apply`` for the modes and ``bssn.power_iteration`` for the update rule.
"""

from .modes import MODES, SCALED_MODES, SPECTRAL_MODES
from .normalize import apply, normalized_layers, sigmas, unwrap
from .parametrizations import (
    BidirectionalSpectralNorm,
    ConvSpectralNorm,
    GammaScale,
    Normalizer,
    SpectralNorm,
    alpha,
)
from .power_iteration import advance, discriminator_step, frozen

__all__ = [
    "MODES",
    "SCALED_MODES",
    "SPECTRAL_MODES",
    "BidirectionalSpectralNorm",
    "ConvSpectralNorm",
    "GammaScale",
    "Normalizer",
    "SpectralNorm",
    "advance",
    "alpha",
    "apply",
    "discriminator_step",
    "frozen",
    "normalized_layers",
    "sigmas",
    "unwrap",
]
__version__ = "0.1.0"
