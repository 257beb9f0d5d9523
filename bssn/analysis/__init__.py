"""The paper's theory made measurable (docs/normalization.md and docs/figures.md).

- ``theory``: the closed-form bounds of Prop. 1 and Thms. 2 and 3;
- ``measure``: the quantities they bound, read off a discriminator's effective weights;
- ``thm1``: random per-layer spectral norms with a fixed geometric mean (Thm. 1, Fig. 3);
- ``log_scalars``: all of it as flat scalars, which the training loop logs every
  ``train.log_freq`` iterations and ``scripts/make_figures.py`` plots.
"""

from . import measure, theory, thm1
from .scalars import log_scalars
from .theory import prop1_bounds, thm2_bound, thm3_bound
from .thm1 import random_layer_scales, set_layer_scales

__all__ = [
    "log_scalars",
    "measure",
    "prop1_bounds",
    "random_layer_scales",
    "set_layer_scales",
    "theory",
    "thm1",
    "thm2_bound",
    "thm3_bound",
]
