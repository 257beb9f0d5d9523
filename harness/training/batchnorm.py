"""G's batch-norm running statistics, updated on the steps the reference code updates them.

The authors' ResNet (ILSVRC2012) runs G's batch-norm update ops with the G step only, so
the fake batches of the D steps never enter the running averages; their CNN updates the
averages at every G forward, D steps included (docs/reference_differences.md). The running
averages matter only for samples drawn in eval mode (sample grids, IS/FID).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

_STATS = ("running_mean", "running_var", "num_batches_tracked")


@contextlib.contextmanager
def running_stats_kept(module: nn.Module, keep: bool = True) -> Iterator[None]:
    """Forwards inside leave every batch norm's running statistics as they were (``keep``),
    while still normalizing with the batch's own statistics in training mode."""
    if not keep:
        yield
        return
    saved = [
        (buffer, buffer.clone())
        for layer in module.modules()
        if isinstance(layer, nn.modules.batchnorm._BatchNorm)
        for name in _STATS
        if (buffer := getattr(layer, name, None)) is not None
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
