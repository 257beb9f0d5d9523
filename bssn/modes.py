"""The normalization modes of docs/normalization.md, and validation of their arguments."""

from __future__ import annotations

import math
from numbers import Real

#: Every mode `bssn.apply` accepts, in the order of docs/normalization.md.
MODES: tuple[str, ...] = (
    "none",
    "sn",
    "snconv",
    "ssn",
    "bsn",
    "bssn",
    "sn_same_gamma",
    "sn_diff_gamma",
    "lecun",
    "xavier",
    "kaiming",
)

#: Modes whose forward weight is divided by a power-iteration estimate of a spectral norm.
SPECTRAL_MODES: frozenset[str] = frozenset(
    {"sn", "snconv", "ssn", "bsn", "bssn", "sn_same_gamma", "sn_diff_gamma"}
)

#: Modes that use `scale`: the scaled SN variants (Sec. 5 of the paper) and the scaled
#: initialisations of the Fig. 8 study. Every other mode requires scale == 1.
SCALED_MODES: frozenset[str] = frozenset({"ssn", "bssn", "lecun", "xavier", "kaiming"})

#: Initialisation baselines: weights are redrawn once, nothing is reparametrized.
INIT_MODES: frozenset[str] = frozenset({"lecun", "xavier", "kaiming"})

#: Modes with trainable gamma (SN_w with learned output scale; trained with WGAN-GP).
GAMMA_MODES: frozenset[str] = frozenset({"sn_same_gamma", "sn_diff_gamma"})


def check_mode(mode: object) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"unknown normalization mode {mode!r}; allowed: {', '.join(MODES)}")
    return mode


def check_scale(scale: object, mode: str) -> float:
    if isinstance(scale, bool) or not isinstance(scale, Real):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    if mode not in SCALED_MODES and scale != 1.0:
        raise ValueError(
            f"mode {mode!r} has no scale (got scale={scale}); the modes that take one are "
            f"{', '.join(m for m in MODES if m in SCALED_MODES)} (e.g. 'ssn' is 'sn' scaled)"
        )
    return scale


def check_power_iterations(n: object, name: str = "n_power_iterations", low: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {n!r}")
    return n
