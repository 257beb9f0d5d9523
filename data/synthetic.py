"""The "shapes" dataset: a download-free toy image set for the quick start.

Not part of the paper (docs/training.md uses MNIST, CIFAR10, STL10, CelebA and
ILSVRC2012); it exists so that training, metrics and plots can be exercised on a machine
without any dataset. Every image is one filled circle, square or triangle of random size,
position and light colour on black, drawn with 2x2 supersampling so that edges are
smooth. Generation is vectorized numpy and fully determined by the seed.

Revision 2 (REVISION) put the shapes on black: on revision 1's random background colour, a
quarter-width GAN spent the quick start's few thousand steps on the colour pairs and drew
coloured blobs; on black it draws recognizable shapes in the same time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

SHAPE_KINDS = ("circle", "square", "triangle")
DEFAULT_COUNT = 10_000
DEFAULT_RESOLUTION = 32
#: Bumped whenever the images a seed draws change, so that files derived from them (the
#: shape classifier, harness.metrics.classifier) are not reused across revisions.
REVISION = 2
#: Each channel of a shape's colour is drawn from [FOREGROUND_MIN, 255] (black background).
FOREGROUND_MIN = 96
_SUPERSAMPLE = 2
_CHUNK = 2048  # images drawn per vectorized step, bounding memory at large resolutions


def make_shapes(
    count: int = DEFAULT_COUNT, resolution: int = DEFAULT_RESOLUTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, kinds)``: uint8 [count, 3, resolution, resolution] and int64 [count].

    ``kinds[i]`` indexes SHAPE_KINDS. The same (count, resolution, seed) always gives the
    same arrays.
    """
    if count < 1 or resolution < 8:
        raise ValueError(f"need count >= 1 and resolution >= 8, got {count=} {resolution=}")
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, len(SHAPE_KINDS), size=count)
    # Radius of the circle / half side of the square / circumradius of the triangle.
    size = rng.uniform(0.18, 0.42, size=count) * resolution
    centre = size[:, None] + rng.uniform(0.0, 1.0, size=(count, 2)) * (
        resolution - 2 * size[:, None]
    )
    background = np.zeros((count, 3), dtype=np.int64)
    foreground = rng.integers(FOREGROUND_MIN, 256, size=(count, 3))

    hits = np.empty((count, 1, resolution, resolution), dtype=np.int16)
    for kind in range(len(SHAPE_KINDS)):
        members = np.flatnonzero(kinds == kind)
        for start in range(0, len(members), _CHUNK):
            part = members[start : start + _CHUNK]
            hits[part, 0] = _subpixel_hits(kind, size[part], centre[part], resolution)
    # Integer blend with the covered fraction hits / _SUPERSAMPLE**2, rounded to nearest.
    full = _SUPERSAMPLE**2
    bg = background[:, :, None, None].astype(np.int16)
    fg = foreground[:, :, None, None].astype(np.int16)
    images = ((bg * (full - hits) + fg * hits + full // 2) // full).astype(np.uint8)
    return images, kinds.astype(np.int64)


def _subpixel_hits(kind: int, size: np.ndarray, centre: np.ndarray, resolution: int) -> np.ndarray:
    """How many of the _SUPERSAMPLE**2 subpixel samples of each pixel fall inside a shape of
    SHAPE_KINDS[kind]; int16 [n, resolution, resolution]."""
    s = size.astype(np.float32)[:, None, None]
    cx = centre[:, 0].astype(np.float32)[:, None, None]
    cy = centre[:, 1].astype(np.float32)[:, None, None]
    hits = np.zeros((len(size), resolution, resolution), dtype=np.int16)
    offsets = (np.arange(_SUPERSAMPLE, dtype=np.float32) + 0.5) / _SUPERSAMPLE
    for oy in offsets:
        dy = (np.arange(resolution, dtype=np.float32) + oy)[None, :, None] - cy  # [n, H, 1]
        for ox in offsets:
            dx = (np.arange(resolution, dtype=np.float32) + ox)[None, None, :] - cx  # [n, 1, W]
            hits += _inside(SHAPE_KINDS[kind], dx, dy, s)
    return hits


def _inside(kind: str, dx: np.ndarray, dy: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Whether the point (dx, dy) from the centre lies in the shape of size s."""
    if kind == "circle":
        return dx**2 + dy**2 <= s**2
    if kind == "square":
        return (np.abs(dx) <= s) & (np.abs(dy) <= s)
    # Upward equilateral triangle inscribed in the circle of radius s: apex at dy = -s,
    # base at dy = s / 2, half-width growing as tan(30 deg) = 1 / sqrt(3) from the apex.
    return (dy <= s / 2) & (np.abs(dx) <= (dy + s) / np.sqrt(np.float32(3.0)))


class ShapesDataset(Dataset):
    """``make_shapes`` as a Dataset of ``(uint8 tensor [3, R, R], kind)`` pairs."""

    def __init__(
        self, count: int = DEFAULT_COUNT, resolution: int = DEFAULT_RESOLUTION, seed: int = 0
    ) -> None:
        images, kinds = make_shapes(count, resolution, seed)
        self.images = torch.from_numpy(images)
        self.kinds = torch.from_numpy(kinds)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.kinds[index])
