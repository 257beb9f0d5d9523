"""When the power iteration advances (docs/normalization.md).

The reference code advances u (and v) exactly once per discriminator optimizer step, on
the real-data pass; the fake-data pass, the gradient-penalty pass and the generator's
update reuse that sigma. In a training loop::

    with bssn.discriminator_step(D):     # advances once, then holds u, v fixed
        d_loss = loss(D(x_real), D(G(z).detach()))
    ...
    with bssn.frozen(D):                 # generator step: never advances
        g_loss = -D(G(z)).mean()

Advancing at the start of the step is the same as advancing on the real pass: the real
pass would compute sigma from the freshly advanced vectors, and so do all passes here.
Outside these blocks a normalized module behaves like torch's spectral_norm: each forward
in training mode advances. Eval mode never advances.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from .normalize import normalized_layers


def advance(module: nn.Module) -> None:
    """Advance every normalizer of ``module`` that is in training mode, once, now.

    An snconv layer that has not yet seen an input is skipped: its first forward sets it
    up (with the initial power iterations).
    """
    for _, layer, normalizer in normalized_layers(module):
        if normalizer.training and normalizer.ready:
            normalizer.advance(layer.parametrizations.weight.original)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Within the block, forwards of ``module`` use the stored u, v without advancing."""
    normalizers = [n for _, _, n in normalized_layers(module)]
    previous = [n.auto_advance for n in normalizers]
    for n in normalizers:
        n.auto_advance = False
    try:
        yield
    finally:
        for n, auto in zip(normalizers, previous, strict=True):
            n.auto_advance = auto


@contextmanager
def discriminator_step(module: nn.Module) -> Iterator[None]:
    """One D optimizer step: advance once (the real pass's update), then hold u, v fixed."""
    advance(module)
    with frozen(module):
        yield
