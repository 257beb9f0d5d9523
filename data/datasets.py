"""Training image sets at their training resolution (docs/training.md, docs/metrics.md).

``load_dataset`` wraps torchvision's dataset classes (and their downloads) and returns an
``ImageSet``: a Dataset of uint8 [C, H, W] tensors, labels dropped. Preprocessing follows
the authors' released preprocessing scripts:

- MNIST 28x28x1 and CIFAR10 32x32 (the 50k training images) as stored;
- STL10: the 100k ``unlabeled`` images, 96x96 resized to 48x48;
- CelebA: all 202,599 aligned images (torchvision split ``"all"``, as the reference
  preprocessing reads every file of img_align_celeba.zip), center crop 128x128, resized
  to 64x64;
- ILSVRC2012: ``<root>/train`` as an ImageFolder, the central square cropped, then
  resized to 128x128;
- "shapes": the download-free synthetic set of ``data.synthetic``.

Every resize is ``cv2.resize``'s default (bilinear on the half-pixel grid, no
antialiasing), done in torch by ``data.resize``; crops round their offsets down, as the
reference's integer arithmetic does (docs/reference_differences.md).

Float conversion (``ImageSet.to_float``): MNIST x / 255 in [0, 1] (docs/architectures.md), every
other set x / 127.5 - 1 in [-1, 1].

Missing or corrupt files raise ``DatasetNotFoundError`` naming the expected on-disk
layout; nothing falls back to another dataset or to random data.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision.transforms import v2

from data.resize import CenterCrop, Resize
from data.synthetic import ShapesDataset

DATASETS = ("mnist", "cifar10", "stl10", "celeba", "imagenet", "shapes")
SPLITS = ("train", "test")

DEFAULT_RESOLUTION = {
    "mnist": 28,
    "cifar10": 32,
    "stl10": 48,
    "celeba": 64,
    "imagenet": 128,
    "shapes": 32,
}
_NATIVE_SIZE = {"mnist": 28, "cifar10": 32, "stl10": 96}
_CELEBA_CROP = 128
# A download stalled on a firewalled machine must fail, not hang: seconds without any
# bytes on one socket operation before urllib gives up.
_DOWNLOAD_SOCKET_TIMEOUT_S = 60.0
# What torchvision raises for absent, truncated or checksum-failing files and for failed
# downloads (URLError is an OSError).
_LOAD_ERRORS = (
    RuntimeError,
    OSError,
    AssertionError,
    ValueError,
    KeyError,
    EOFError,
    pickle.UnpicklingError,
)


#: Compute nodes often have no internet: the files then come from the prepare step.
PREPARE_HINT = (
    "On a cluster, run the prepare step once where the internet is, with this run's "
    "overrides: python -m harness.prepare <overrides> (README, 'Clusters')."
)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing or corrupt and could not be downloaded."""


@dataclass(frozen=True, eq=False)
class ImageSet(Dataset):
    """Images of one dataset split at training resolution, as uint8 [C, H, W] tensors."""

    name: str
    root: str
    split: str
    resolution: int
    channels: int
    fits_in_memory: bool
    source: Dataset
    """Yields ``(image, label)`` pairs; ``transform`` maps ``image`` to uint8 [C, H, W]."""
    transform: Callable[[Any], torch.Tensor] | None
    #: The whole set as uint8 [N, C, H, W] straight from the arrays torchvision read from
    #: disk (MNIST, CIFAR10 at their native size): no per-image PIL round trip.
    all_images: Callable[[], torch.Tensor] | None = None

    @property
    def value_range(self) -> tuple[float, float]:
        """Range of ``to_float`` outputs: (0, 1) for MNIST, (-1, 1) otherwise."""
        return (0.0, 1.0) if self.name == "mnist" else (-1.0, 1.0)

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 in ``value_range``: x / 255 or x / 127.5 - 1."""
        low, high = self.value_range
        return images.float() / (255.0 / (high - low)) + low

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        try:
            image = self.source[index][0]
            return image if self.transform is None else self.transform(image)
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for a broken file
            raise CorruptImageError(
                f"{self.name} image {index} ({_item_path(self.source, index)}) cannot be "
                f"decoded ({type(err).__name__}: {err}); expected layout: "
                f"{_expected_layout(self.name, self.root, self.split)}. Replace or remove it."
            ) from err


class CorruptImageError(OSError):
    """One image of a dataset does not decode (truncated, not an image); names the file."""


def _item_path(source: Dataset, index: int) -> str:
    """The file behind ``source[index]`` for torchvision's folder datasets, else the index."""
    if hasattr(source, "samples"):  # ImageFolder
        return str(source.samples[index][0])
    if hasattr(source, "filename"):  # CelebA
        return os.path.join(source.root, source.base_folder, "img_align_celeba",
                            source.filename[index])  # fmt: skip
    return f"item {index}"


#: idx files of MNIST: name -> the magic number of their header (LeCun's format).
_MNIST_MAGIC = {
    "train-images-idx3-ubyte": 2051,
    "train-labels-idx1-ubyte": 2049,
    "t10k-images-idx3-ubyte": 2051,
    "t10k-labels-idx1-ubyte": 2049,
}


def _check_mnist_headers(root: str) -> None:
    """An extracted MNIST file with a wrong magic number stops here, named (torchvision
    would fail later with a bare TypeError)."""
    raw = os.path.join(root, "MNIST", "raw")
    for name, magic in _MNIST_MAGIC.items():
        path = os.path.join(raw, name)
        if not os.path.isfile(path):
            continue  # absent: torchvision's own error (or download) takes it from here
        with open(path, "rb") as f:
            found = int.from_bytes(f.read(4), "big")
        if found != magic:
            raise DatasetNotFoundError(
                f"{path} is not an MNIST idx file: magic number {found}, expected {magic}. "
                f"Expected: {_expected_layout('mnist', root)}"
            )


def load_dataset(
    name: str,
    root: str,
    resolution: int | None = None,
    download: bool = True,
    split: str = "train",
) -> ImageSet:
    """Open dataset ``name`` under ``root`` (see the module docstring for preprocessing).

    ``resolution`` defaults to DEFAULT_RESOLUTION[name]. ``split="train"`` is the set GANs
    train on (docs/metrics.md); ``"test"`` is the held-out split (MNIST/CIFAR10 test,
    STL10 test, CelebA test, ``<root>/val`` for ILSVRC2012, another seed for shapes).
    ``download`` uses torchvision's download where one exists; files already present are
    checked, not downloaded again. ILSVRC2012 and shapes ignore it.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    resolution = DEFAULT_RESOLUTION[name] if resolution is None else int(resolution)
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    root = os.path.expanduser(str(root))
    train = split == "train"

    transform: v2.Compose | None
    all_images = None
    if name == "shapes":
        source, transform = ShapesDataset(resolution=resolution, seed=0 if train else 1), None
    elif name == "mnist":
        _check_mnist_headers(root)
        source = _open(name, root, split, download, lambda dl: tvd.MNIST(root, train, download=dl))
        transform = _pipeline(_resize_if(resolution, _NATIVE_SIZE[name]))
        if resolution == _NATIVE_SIZE[name]:  # uint8 [N, 28, 28], what PIL mode "L" holds
            all_images = lambda: source.data.unsqueeze(1).contiguous()  # noqa: E731
    elif name == "cifar10":
        source = _open(
            name, root, split, download, lambda dl: tvd.CIFAR10(root, train, download=dl)
        )
        transform = _pipeline(_resize_if(resolution, _NATIVE_SIZE[name]))
        if resolution == _NATIVE_SIZE[name]:  # uint8 [N, 32, 32, 3], as PIL RGB holds it
            all_images = lambda: torch.from_numpy(source.data).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    elif name == "stl10":
        stl_split = "unlabeled" if train else "test"
        source = _open(
            name, root, split, download, lambda dl: tvd.STL10(root, stl_split, download=dl)
        )
        transform = _pipeline(_resize_if(resolution, _NATIVE_SIZE[name]))
    elif name == "celeba":
        celeba_split = "all" if train else "test"
        source = _open(
            name, root, split, download,
            lambda dl: tvd.CelebA(root, celeba_split, target_type=[], download=dl),
        )  # fmt: skip
        transform = _pipeline(CenterCrop(_CELEBA_CROP), Resize(resolution), rgb=True)
    else:
        folder = os.path.join(root, _imagenet_folder(split))
        source = _open(name, root, split, False, lambda _: tvd.ImageFolder(folder))
        transform = _pipeline(CenterCrop(None), Resize(resolution))
    channels = channels_of(name)
    # ILSVRC2012 (1.28M images at 128x128, ~63 GB as uint8) is decoded on the fly instead.
    fits_in_memory = name != "imagenet"
    return ImageSet(
        name, root, split, resolution, channels, fits_in_memory, source, transform, all_images
    )


def channels_of(name: str) -> int:
    """Image channels of dataset ``name``: 1 for MNIST, 3 otherwise."""
    return 1 if name == "mnist" else 3


def _resize_if(resolution: int, native: int) -> list[Resize]:
    return [] if resolution == native else [Resize(resolution)]


def _pipeline(
    *steps: Callable[[torch.Tensor], torch.Tensor] | list[Resize], rgb: bool = False
) -> v2.Compose:
    """PIL image -> (RGB) -> uint8 [C, H, W] tensor -> (steps)."""
    flat = [t for step in steps for t in (step if isinstance(step, list) else [step])]
    return v2.Compose([*([v2.RGB()] if rgb else []), v2.PILToTensor(), *flat])


def _imagenet_folder(split: str) -> str:
    return "train" if split == "train" else "val"


def _open(
    name: str, root: str, split: str, download: bool, build: Callable[[bool], Dataset]
) -> Dataset:
    """``build(download)``, turning torchvision's missing/corrupt/download errors into
    DatasetNotFoundError."""
    try:
        with _socket_timeout(_DOWNLOAD_SOCKET_TIMEOUT_S) if download else contextlib.nullcontext():
            return build(download)
    except _LOAD_ERRORS as err:
        raise DatasetNotFoundError(_not_found_message(name, root, split, download, err)) from err


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # torchvision's urlopen calls pass no timeout, so they use the process default.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _expected_layout(name: str, root: str, split: str = "train") -> str:
    """The on-disk files load_dataset(name, root, split=split) reads, as text."""
    j = os.path.join
    if name == "mnist":
        raw = j(root, "MNIST", "raw")
        return (
            f"{raw}/train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (all four, extracted); "
            "if only their .gz archives are there, download=true checks their md5 and "
            "extracts them without network access"
        )
    if name == "cifar10":
        batches = j(root, "cifar-10-batches-py")
        return (
            f"{batches}/data_batch_1 .. data_batch_5, test_batch, batches.meta (md5-checked), "
            f"or the archive {j(root, 'cifar-10-python.tar.gz')}, which download=true "
            "extracts without network access"
        )
    if name == "stl10":
        binary = j(root, "stl10_binary")
        return (
            f"{binary}/unlabeled_X.bin (the 100k unlabeled images) and train_X.bin, "
            "train_y.bin, test_X.bin, test_y.bin (torchvision md5-checks all five), "
            f"or the archive {j(root, 'stl10_binary.tar.gz')}, which download=true "
            "extracts without network access"
        )
    if name == "celeba":
        base = j(root, "celeba")
        return (
            f"{base}/img_align_celeba/000001.jpg .. 202599.jpg and {base}/"
            "list_eval_partition.txt, identity_CelebA.txt, list_attr_celeba.txt, "
            "list_bbox_celeba.txt, list_landmarks_align_celeba.txt (md5-checked); "
            "downloading needs the gdown package and Google Drive access"
        )
    if name == "imagenet":
        folder = j(root, _imagenet_folder(split))
        return (
            f"{folder}/<wnid>/*.JPEG, one folder per class "
            f"(e.g. {folder}/n01440764/n01440764_10026.JPEG), from ILSVRC2012_img_"
            f"{_imagenet_folder(split)}.tar"
        )
    raise ValueError(f"no on-disk layout for dataset {name!r}")


def _not_found_message(name: str, root: str, split: str, download: bool, err: BaseException) -> str:
    lines = [
        f"dataset {name!r} ({split}) not found or corrupt under {root!r}: "
        f"{type(err).__name__}: {err}",
        f"expected: {_expected_layout(name, root, split)}",
    ]
    if name == "imagenet":
        lines.append("ILSVRC2012 cannot be downloaded automatically: get it from image-net.org.")
    elif download:
        lines.append(
            "Downloading failed (see the error above; no network access?): "
            "put the files there by hand and rerun."
        )
    else:
        lines.append("Set dataset.download=true to download it, or put the files there by hand.")
    if name != "imagenet":
        lines.append(PREPARE_HINT)
    return "\n".join(lines)
