"""Image resizing and cropping as the authors' preprocessing scripts do them.

The reference resizes with ``cv2.resize(image, (w, h))``, whose default is
``INTER_LINEAR``: bilinear interpolation on the half-pixel grid (output pixel i samples
the input at (i + 0.5) * in / out - 0.5, clamped at the borders) with no antialiasing, so
a 2x reduction averages 2 pixels per axis. ``F.interpolate(mode="bilinear",
align_corners=False, antialias=False)`` is that same definition; OpenCV computes it in
fixed point on uint8, so the two agree within one grey level (tests/test_data.py checks
this against OpenCV itself). Crops take the central square with the offset rounded down,
``(size - crop) // 2``, as the reference's integer arithmetic does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_bilinear(image: Tensor, size: tuple[int, int]) -> Tensor:
    """uint8 image(s) [..., C, H, W] resized to ``size`` = (h, w) as cv2 INTER_LINEAR does."""
    if image.dtype != torch.uint8 or image.dim() < 3:
        raise ValueError(
            f"resize_bilinear takes uint8 [..., C, H, W] images, got {image.dtype} "
            f"{tuple(image.shape)}"
        )
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be two positive integers (h, w), got {size!r}")
    if tuple(image.shape[-2:]) == (h, w):
        return image
    lead = image.shape[:-3]
    flat = image.reshape(-1, *image.shape[-3:]).float()
    out = F.interpolate(flat, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).reshape(*lead, image.shape[-3], h, w)


def center_crop(image: Tensor, height: int, width: int) -> Tensor:
    """The central ``height`` x ``width`` window of [..., H, W], offsets rounded down."""
    full_h, full_w = image.shape[-2:]
    if not (1 <= height <= full_h and 1 <= width <= full_w):
        raise ValueError(
            f"cannot crop {height}x{width} from a {full_h}x{full_w} image: the crop must fit"
        )
    top, left = (full_h - height) // 2, (full_w - width) // 2
    return image[..., top : top + height, left : left + width]


def center_square_crop(image: Tensor) -> Tensor:
    """The largest central square of [..., H, W] (the reference's ILSVRC2012 crop)."""
    side = min(image.shape[-2:])
    return center_crop(image, side, side)


class Resize:
    """Transform: uint8 [C, H, W] -> resize_bilinear to (size, size)."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, image: Tensor) -> Tensor:
        return resize_bilinear(image, (self.size, self.size))

    def __repr__(self) -> str:
        return f"Resize({self.size}, cv2 INTER_LINEAR)"


class CenterCrop:
    """Transform: the central ``size`` x ``size`` window, or the largest central square
    when ``size`` is None."""

    def __init__(self, size: int | None) -> None:
        self.size = size

    def __call__(self, image: Tensor) -> Tensor:
        if self.size is None:
            return center_square_crop(image)
        return center_crop(image, self.size, self.size)

    def __repr__(self) -> str:
        return f"CenterCrop({'square' if self.size is None else self.size})"
