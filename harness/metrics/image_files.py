"""Images from files as uint8 [C, H, W]: a folder of image files or an .npz (docs/metrics.md).

The .npz layout is the common reference-batch evaluators': ``arr_0`` uint8 [N, H, W, C]
(C = 1 or 3). A folder holds image files (PNG, JPEG, BMP, WebP), read in name order,
all of one size. Both are datasets with the `name` and `resolution` that reference
statistics key their cache on; the name carries the content's sha256, so a cache entry
never outlives a change of the files.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _read_image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        array = np.array(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


class ImageFiles(Dataset):
    """uint8 [C, H, W] images of a folder or an .npz, in order; square images only."""

    def __init__(self, path: str | os.PathLike, key: str = "images") -> None:
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            self.files = sorted(
                p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not self.files:
                raise FileNotFoundError(
                    f"{key}={path} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
                )
            self.array = None
            first = _read_image(self.files[0])
            shape, count = first.shape, len(self.files)
        elif self.path.suffix == ".npz" and self.path.is_file():
            with np.load(self.path) as archive:
                if "arr_0" not in archive:
                    raise ValueError(f"{key}={path} has no arr_0 (found {sorted(archive)})")
                self.array = archive["arr_0"]
            if self.array.dtype != np.uint8 or self.array.ndim != 4:
                raise ValueError(
                    f"{key}={path}: arr_0 must be uint8 [N, H, W, C], got "
                    f"{self.array.dtype} {list(self.array.shape)}"
                )
            self.files = [self.path]
            shape, count = self.array.shape[1:], len(self.array)
        else:
            raise FileNotFoundError(f"{key}={path} is neither a folder of images nor an .npz file")
        height, width, channels = shape
        if height != width or channels not in (1, 3) or count < 1:
            raise ValueError(
                f"{key}={path}: images must be square with 1 or 3 channels, got "
                f"{height}x{width}x{channels}"
            )
        self.resolution, self.channels, self.count, self._shape = height, channels, count, shape
        self.root = str(self.path.parent)  # reference statistics are cached beside the files
        # The cache key of reference statistics: which files, and their exact content.
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", self.path.stem or "images")
        self.name = f"{stem}-{_digest(self.files)}"

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.array is not None:
            image = self.array[index]
        else:
            image = _read_image(self.files[index])
            if image.shape != self._shape:
                raise ValueError(
                    f"{self.files[index]} is {list(image.shape)} (H, W, C); the folder's first "
                    f"image is {list(self._shape)}: all images must have one size"
                )
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))

    def sampler(self) -> Callable[[int], torch.Tensor]:
        """sample(n): the next n images [n, C, H, W] in order (compute_metrics' generated side)."""
        position = 0

        def sample(n: int) -> torch.Tensor:
            nonlocal position
            if position + n > self.count:
                raise ValueError(f"{self.path} holds {self.count} images, {position + n} needed")
            batch = torch.stack([self[i] for i in range(position, position + n)])
            position += n
            return batch

        return sample
