"""Datasets and the batch stream (docs/training.md, docs/metrics.md), on tiny files in the
real formats.

torchvision md5-checks the CIFAR10, STL10 and CelebA files against the published
archives, which fabricated files can never match. Tests that load such files replace
torchvision's ``check_integrity`` in that dataset's module by a presence check (the
``integrity_is_presence`` fixture); the library itself never bypasses it, and
``test_fabricated_cifar_fails_integrity`` shows the real check rejecting them.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import pickle
import shutil
import struct
import urllib.error
import urllib.request
from pathlib import Path

import cv2  # test-only (requirements-dev.txt): the reference preprocessing's resize
import numpy as np
import pytest
import torch
import torchvision.datasets.celeba as tv_celeba
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.stl10 as tv_stl10
from PIL import Image
from torch.utils.data import TensorDataset
from torchvision.transforms import v2

import data.stream as stream_module
from data import DATASETS, BatchStream, DatasetNotFoundError, ImageSet, load_dataset
from data.resize import center_crop, center_square_crop, resize_bilinear
from data.stream import cache_path, epoch_permutation
from data.synthetic import FOREGROUND_MIN, ShapesDataset, make_shapes

# ---------------------------------------------------------------- fabricated files


def _idx(array: np.ndarray) -> bytes:
    """uint8 array in the IDX format of the MNIST files (magic 0x0000 08 <ndim>)."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, n: int = 20, extracted: bool = True) -> np.ndarray:
    """The four MNIST files (gzipped, and extracted as torchvision leaves them)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    for prefix, count in (("train", n), ("t10k", n // 2)):
        for kind, array in (
            ("images-idx3", images[:count]),
            ("labels-idx1", np.arange(count) % 10),
        ):
            payload = _idx(array)
            (raw / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(payload))
            if extracted:
                (raw / f"{prefix}-{kind}-ubyte").write_bytes(payload)
    return images


def write_cifar10(root: Path, per_batch: int = 3) -> np.ndarray:
    """cifar-10-batches-py: pickled dicts with 'data' uint8 [n, 3072] (CHW rows)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    train = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        hwc = rng.integers(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
        rows = hwc.transpose(0, 3, 1, 2).reshape(per_batch, 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows, "labels": [0] * per_batch}, f, protocol=2)
        if name != "test_batch":
            train.append(hwc)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f, protocol=2)
    return np.concatenate(train)


def write_stl10(root: Path, n: int = 4) -> np.ndarray:
    """stl10_binary: each image 3 x 96 x 96 bytes, every channel stored column-major."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    unlabeled = rng.integers(0, 256, size=(n, 96, 96, 3), dtype=np.uint8)  # [N, row, col, c]
    for name, hwc in (
        ("unlabeled_X", unlabeled),
        ("train_X", unlabeled[:2]),
        ("test_X", unlabeled[:2]),
    ):
        (folder / f"{name}.bin").write_bytes(hwc.transpose(0, 3, 2, 1).tobytes())
    for name in ("train_y", "test_y"):
        (folder / f"{name}.bin").write_bytes(bytes([1, 2]))
    return unlabeled


def write_celeba(root: Path, n: int = 4) -> None:
    """celeba/: 178x218 aligned JPEGs (blue in the central 128x128, red around) + list files."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    image = np.zeros((218, 178, 3), dtype=np.uint8)
    image[..., 0] = 255
    image[45:173, 25:153] = (0, 0, 255)
    for name in names:
        Image.fromarray(image).save(folder / "img_align_celeba" / name, quality=95)
    rows = {
        "list_eval_partition.txt": (None, [f"{name} {min(i, 2)}" for i, name in enumerate(names)]),
        "identity_CelebA.txt": (None, [f"{name} {i}" for i, name in enumerate(names)]),
        "list_attr_celeba.txt": ("Smiling Young", [f"{name} -1  1" for name in names]),
        "list_bbox_celeba.txt": (
            "image_id x_1 y_1 width height",
            [f"{name} 1 2 3 4" for name in names],
        ),
        "list_landmarks_align_celeba.txt": (
            "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
            "leftmouth_x leftmouth_y rightmouth_x rightmouth_y",
            [f"{name} " + " ".join(["50"] * 10) for name in names],
        ),
    }
    for filename, (header, lines) in rows.items():
        head = [] if header is None else [str(n), header]
        (folder / filename).write_text("\n".join(head + lines) + "\n")


def write_imagenet(root: Path) -> None:
    """train/<wnid>/*.JPEG, 200x150 images: blue centre, 20-pixel red side bands."""
    image = np.zeros((150, 200, 3), dtype=np.uint8)
    image[...] = (0, 0, 255)
    image[:, :20] = image[:, -20:] = (255, 0, 0)
    for wnid in ("n01440764", "n01443537"):
        (root / "train" / wnid).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(image).save(root / "train" / wnid / f"{wnid}_{i}.JPEG", quality=95)


@pytest.fixture
def integrity_is_presence(monkeypatch: pytest.MonkeyPatch) -> None:
    def present(fpath: str, md5: str | None = None) -> bool:
        return os.path.isfile(fpath)

    for module in (tv_cifar, tv_stl10, tv_celeba):
        monkeypatch.setattr(module, "check_integrity", present)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No network: every urlopen (and CelebA's Google Drive fetch) fails; returns the URLs tried."""
    tried: list[str] = []

    def refuse(url: object, *args: object, **kwargs: object) -> None:
        tried.append(getattr(url, "full_url", str(url)))
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(tv_celeba, "download_file_from_google_drive", refuse)
    return tried


# ---------------------------------------------------------------- load_dataset


def test_mnist_idx_files(tmp_path: Path) -> None:
    images = write_mnist(tmp_path)
    train = load_dataset("mnist", str(tmp_path), download=False)
    assert (len(train), train.resolution, train.channels, train.value_range) == (
        20,
        28,
        1,
        (0.0, 1.0),
    )
    assert train.fits_in_memory
    item = train[3]
    assert item.dtype == torch.uint8 and item.shape == (1, 28, 28)
    assert torch.equal(item[0], torch.from_numpy(images[3]))
    assert len(load_dataset("mnist", str(tmp_path), download=False, split="test")) == 10
    floats = train.to_float(torch.tensor([0, 255], dtype=torch.uint8))
    assert floats.tolist() == [0.0, 1.0]


def test_cifar10_pickle_batches(tmp_path: Path, integrity_is_presence: None) -> None:
    images = write_cifar10(tmp_path)
    train = load_dataset("cifar10", str(tmp_path), download=False)
    assert (len(train), train.resolution, train.value_range) == (15, 32, (-1.0, 1.0))
    assert torch.equal(train[7], torch.from_numpy(images[7]).permute(2, 0, 1))
    assert train.to_float(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]


def test_stl10_unlabeled_resized_to_48(tmp_path: Path, integrity_is_presence: None) -> None:
    images = write_stl10(tmp_path)
    native = load_dataset("stl10", str(tmp_path), resolution=96, download=False)
    assert len(native) == 4
    # Exact round trip through the column-major file layout.
    assert torch.equal(native[1], torch.from_numpy(images[1]).permute(2, 0, 1))
    small = load_dataset("stl10", str(tmp_path), download=False)
    assert small.resolution == 48 and small[0].shape == (3, 48, 48)
    # The reference's preprocessing: cv2.resize(image, (48, 48)), INTER_LINEAR.
    expected = torch.from_numpy(cv2.resize(images[0], (48, 48))).permute(2, 0, 1)
    assert (small[0].int() - expected.int()).abs().max() <= 1


def test_celeba_center_crop_128_then_64(tmp_path: Path, integrity_is_presence: None) -> None:
    write_celeba(tmp_path)
    faces = load_dataset("celeba", str(tmp_path), download=False)
    assert len(faces) == 4  # split "all": every listed image
    image = faces[0].int()
    assert image.shape == (3, 64, 64)
    # Only the blue central square survives the crop (JPEG blurs its border a little).
    assert image[2, 2:-2, 2:-2].min() > 200 and image[0, 2:-2, 2:-2].max() < 60
    assert len(load_dataset("celeba", str(tmp_path), download=False, split="test")) == 2


def test_imagenet_folder_resized_and_cropped_to_128(tmp_path: Path) -> None:
    write_imagenet(tmp_path)
    images = load_dataset("imagenet", str(tmp_path))
    assert len(images) == 4 and not images.fits_in_memory
    image = images[0].int()
    assert image.shape == (3, 128, 128)
    # The central 150x150 square (25 pixels off each side) drops the 20-pixel red bands
    # before the resize, so only blue is left.
    assert image[2].min() > 200 and image[0].max() < 60


def test_imagenet_crops_the_central_square_then_resizes_as_the_reference(tmp_path: Path) -> None:
    # 100x131: an odd margin (31) whose offset the reference rounds down, 15 (torchvision's
    # CenterCrop rounds it up, 16); every column and row has its own value.
    rows, cols = np.meshgrid(np.arange(100), np.arange(131), indexing="ij")
    image = np.stack([cols * 7 % 256, rows * 5 % 256, (cols + rows) % 256], -1).astype(np.uint8)
    (tmp_path / "train" / "n0").mkdir(parents=True)
    Image.fromarray(image).save(tmp_path / "train" / "n0" / "a.png")
    got = load_dataset("imagenet", str(tmp_path))[0]
    # fjxmlzn/BSN dataset_preprocess/ImageNet: central square, then cv2.resize.
    want = torch.from_numpy(cv2.resize(image[:, 15:115], (128, 128))).permute(2, 0, 1)
    assert (got.int() - want.int()).abs().max() <= 1
    # Resizing the short side first, then cropping (the old order), is a different image.
    old = v2.CenterCrop(128)(
        v2.Resize(128, antialias=True)(torch.from_numpy(image).permute(2, 0, 1))
    )
    assert (old.int() - want.int()).abs().max() > 8


@pytest.mark.parametrize(
    "shape,size",
    [((96, 96), (48, 48)), ((128, 128), (64, 64)), ((150, 113), (128, 128)), ((37, 53), (64, 29))],
)
def test_resize_matches_opencv_inter_linear(shape, size) -> None:
    """STL10 96->48, CelebA 128->64, and non-integer factors both ways, on random pixels."""
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    want = cv2.resize(image, (size[1], size[0]))  # cv2 takes (width, height)
    got = resize_bilinear(torch.from_numpy(image).permute(2, 0, 1), size).permute(1, 2, 0)
    assert got.shape == want.shape
    assert np.abs(got.numpy().astype(int) - want.astype(int)).max() <= 1


def test_resize_is_the_half_pixel_bilinear_without_antialiasing() -> None:
    """Answers known by hand: a 2x reduction averages pixel pairs, so an impulse keeps half
    its height in one output pixel (an antialiased filter spreads it: 3/8 and 1/8)."""
    row = torch.tensor([[[0, 0, 0, 255, 0, 0, 0, 0]]], dtype=torch.uint8)
    assert resize_bilinear(row, (1, 4)).flatten().tolist() == [0, 128, 0, 0]  # 127.5, rounded
    old = v2.Resize((1, 4), antialias=True)(row).flatten().tolist()
    assert old != [0, 128, 0, 0]
    # 3 -> 2 samples the input at x = (i + 0.5) * 1.5 - 0.5 = 0.25 and 1.75.
    three = torch.tensor([[[0, 100, 200]]], dtype=torch.uint8)
    assert resize_bilinear(three, (1, 2)).flatten().tolist() == [25, 175]
    # 2 -> 4 (upsampling): x = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
    two = torch.tensor([[[0, 200]]], dtype=torch.uint8)
    assert resize_bilinear(two, (1, 4)).flatten().tolist() == [0, 50, 150, 200]
    with pytest.raises(ValueError, match="uint8"):
        resize_bilinear(three.float(), (1, 2))
    with pytest.raises(ValueError, match="cannot crop 4x4 from a 1x3"):
        center_crop(three, 4, 4)
    assert center_square_crop(torch.arange(18).reshape(1, 3, 6))[0, 0].tolist() == [1, 2, 3]


def test_shapes_dataset_is_seeded_and_in_range(tmp_path: Path) -> None:
    a, kinds = make_shapes(200, 16, seed=5)
    b, _ = make_shapes(200, 16, seed=5)
    c, _ = make_shapes(200, 16, seed=6)
    assert a.shape == (200, 3, 16, 16) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert set(kinds.tolist()) == {0, 1, 2}
    # A light shape on black: every image has a black pixel and a pixel at least
    # FOREGROUND_MIN bright in every channel (fully covered by the shape).
    assert (a.max(axis=1).min(axis=(1, 2)) == 0).all()
    assert (a.min(axis=1).max(axis=(1, 2)) >= FOREGROUND_MIN).all()
    shapes = load_dataset("shapes", str(tmp_path / "unused"), resolution=16)
    assert len(shapes) == 10_000 and shapes[0].shape == (3, 16, 16)
    assert not (tmp_path / "unused").exists()


def test_unknown_dataset_and_split_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'svhn'.*mnist"):
        load_dataset("svhn", str(tmp_path))
    with pytest.raises(ValueError, match="'val'"):
        load_dataset("mnist", str(tmp_path), split="val")
    assert DATASETS == ("mnist", "cifar10", "stl10", "celeba", "imagenet", "shapes")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("stl10", "stl10_binary/unlabeled_X.bin"),
        ("celeba", "celeba/img_align_celeba"),
        ("imagenet", "train/<wnid>/*.JPEG"),
    ],
)
def test_missing_files_name_the_expected_path(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, str(tmp_path), download=False)
    message = str(info.value)
    assert os.path.join(str(tmp_path), expected) in message
    assert isinstance(info.value, FileNotFoundError)
    if name != "imagenet":
        assert "dataset.download=true" in message


@pytest.mark.parametrize("name", ["mnist", "cifar10", "stl10", "celeba"])
def test_failed_download_raises_not_found(tmp_path: Path, offline: list[str], name: str) -> None:
    with pytest.raises(DatasetNotFoundError, match="Downloading failed"):
        load_dataset(name, str(tmp_path), download=True)
    assert offline, "the download was never attempted"


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("mnist", write_mnist),
        ("cifar10", write_cifar10),
        ("stl10", write_stl10),
        ("celeba", write_celeba),
    ],
)
def test_download_with_files_present_stays_offline(
    tmp_path: Path, offline: list[str], integrity_is_presence: None, name: str, write
) -> None:
    write(tmp_path)
    assert len(load_dataset(name, str(tmp_path), download=True)) > 0
    assert offline == []


def test_mnist_archives_only_need_download_flag(tmp_path: Path) -> None:
    write_mnist(tmp_path, extracted=False)
    with pytest.raises(DatasetNotFoundError, match=r"\.gz archives"):
        load_dataset("mnist", str(tmp_path), download=False)


def test_fabricated_cifar_fails_integrity(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="corrupt"):
        load_dataset("cifar10", str(tmp_path), download=False)


def test_corrupt_mnist_file(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", str(tmp_path), download=False)


@pytest.mark.shared_data
def test_real_mnist(tmp_path: Path, shared_data: Path, offline: list[str]) -> None:
    # Copied so that extraction never writes into the shared folder.
    shutil.copytree(shared_data / "MNIST" / "raw", tmp_path / "MNIST" / "raw")
    train = load_dataset("mnist", str(tmp_path), download=True)
    assert offline == []  # the md5-verified archives are extracted, nothing is fetched
    assert len(train) == 60_000
    image = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.uint8 and image.max() == 255
    assert len(load_dataset("mnist", str(tmp_path), download=False, split="test")) == 10_000


# ---------------------------------------------------------------- BatchStream


def indexed_set(root: Path, n: int = 50) -> ImageSet:
    """Image i is filled with the value i, so batches reveal which images they hold."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return ImageSet(
        "shapes", str(root), "train", 2, 1, True, TensorDataset(images, torch.zeros(n)), None
    )


def indices(batch: torch.Tensor) -> list[int]:
    return ((batch[:, 0, 0, 0] + 1) * 127.5).round().long().tolist()


def take(stream: BatchStream, count: int) -> list[torch.Tensor]:
    return [stream.next() for _ in range(count)]


def test_stream_epochs_are_seeded_permutations(tmp_path: Path) -> None:
    stream = BatchStream(indexed_set(tmp_path), batch_size=8, seed=3, device="cpu", num_workers=0)
    assert stream.batches_per_epoch == 6 and stream.epoch == 0
    epoch0 = sum((indices(b) for b in take(stream, 6)), [])
    assert stream.epoch == 1
    epoch1 = sum((indices(b) for b in take(stream, 6)), [])
    assert epoch0 == epoch_permutation(50, 3, 0)[:48].tolist()
    assert len(set(epoch0)) == 48 and epoch0 != epoch1
    batch = BatchStream(indexed_set(tmp_path), 8, seed=3, device="cpu", num_workers=0).next()
    assert batch.dtype == torch.float32 and batch.shape == (8, 1, 2, 2)


def test_two_ranks_share_the_single_process_batch(tmp_path: Path) -> None:
    images = indexed_set(tmp_path)
    single = take(BatchStream(images, 8, seed=1, device="cpu", num_workers=0), 8)
    ranks = [
        take(BatchStream(images, 8, 1, "cpu", rank=r, world_size=2, num_workers=0), 8)
        for r in range(2)
    ]
    for k in range(8):
        assert ranks[0][k].shape == (4, 1, 2, 2)
        assert torch.equal(torch.cat([ranks[0][k], ranks[1][k]]), single[k])


def test_resume_across_an_epoch_boundary(tmp_path: Path) -> None:
    images = indexed_set(tmp_path)
    uninterrupted = take(BatchStream(images, 8, seed=2, device="cpu", num_workers=0), 10)
    first = BatchStream(images, 8, seed=2, device="cpu", num_workers=0)
    take(first, 4)
    state = first.state_dict()
    assert state == {"batches_consumed": 4, "seed": 2, "batch_size": 8}
    resumed = BatchStream(images, 8, seed=2, device="cpu", num_workers=0)
    resumed.load_state_dict(state)
    for expected, got in zip(uninterrupted[4:], take(resumed, 6), strict=True):
        assert torch.equal(expected, got)


def test_worker_path_matches_in_memory_path_and_resumes(tmp_path: Path) -> None:
    images = indexed_set(tmp_path)
    streamed = dataclasses.replace(images, fits_in_memory=False)
    in_memory = take(BatchStream(images, 8, seed=4, device="cpu", num_workers=0), 9)
    workers = BatchStream(streamed, 8, seed=4, device="cpu", num_workers=2)
    for expected, got in zip(in_memory[:3], take(workers, 3), strict=True):
        assert torch.equal(expected, got)
    workers.load_state_dict({"batches_consumed": 5, "seed": 4, "batch_size": 8})
    for expected, got in zip(in_memory[5:], take(workers, 4), strict=True):
        assert torch.equal(expected, got)


def test_imagenet_batches_from_workers(tmp_path: Path) -> None:
    write_imagenet(tmp_path)
    stream = BatchStream(
        load_dataset("imagenet", str(tmp_path)), 2, seed=0, device="cpu", num_workers=0
    )
    batch = stream.next()
    assert batch.shape == (2, 3, 128, 128) and -1.0 <= batch.min() and batch.max() <= 1.0
    assert not (tmp_path / ".bssn_cache").exists()


def test_decoded_cache_is_written_reused_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_mnist(tmp_path)
    images = load_dataset("mnist", str(tmp_path), download=False)
    first = take(BatchStream(images, 4, seed=0, device="cpu", num_workers=0), 3)
    cache = cache_path(images)
    assert cache == tmp_path / ".bssn_cache" / "mnist_train_28.npy"
    assert np.load(cache).shape == (20, 1, 28, 28)
    # No temp files left (the build lock's file stays, as OS file locks do).
    assert [p.name for p in cache.parent.iterdir() if p.suffix != ".lock"] == [cache.name]
    assert 0.0 <= min(b.min() for b in first) and max(b.max() for b in first) <= 1.0

    decode = stream_module._decode

    def must_not_decode(*args: object) -> torch.Tensor:
        raise AssertionError("decoded although the cache was valid")

    monkeypatch.setattr(stream_module, "_decode", must_not_decode)
    again = take(BatchStream(images, 4, seed=0, device="cpu", num_workers=0), 3)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))

    np.save(cache, np.zeros((3, 1, 28, 28), dtype=np.uint8))  # stale: wrong shape
    monkeypatch.setattr(stream_module, "_decode", decode)
    with caplog.at_level(logging.WARNING, logger="data.stream"):
        rebuilt = take(BatchStream(images, 4, seed=0, device="cpu", num_workers=0), 3)
    assert "rebuilding" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(first, rebuilt, strict=True))
    assert np.load(cache).shape == (20, 1, 28, 28)


def test_shapes_are_not_cached(tmp_path: Path) -> None:
    images = ImageSet("shapes", str(tmp_path), "train", 8, 3, True, ShapesDataset(40, 8), None)
    batch = BatchStream(images, 8, seed=0, device="cpu", num_workers=0).next()
    assert batch.shape == (8, 3, 8, 8) and -1.0 <= batch.min() and batch.max() <= 1.0
    assert not (tmp_path / ".bssn_cache").exists()


def test_stream_rejects_bad_configurations(tmp_path: Path) -> None:
    images = indexed_set(tmp_path)
    with pytest.raises(ValueError, match="world_size 3"):
        BatchStream(images, 8, seed=0, device="cpu", world_size=3, num_workers=0)
    with pytest.raises(ValueError, match="rank 2"):
        BatchStream(images, 8, seed=0, device="cpu", rank=2, world_size=2, num_workers=0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        BatchStream(images, 64, seed=0, device="cpu", num_workers=0)
    stream = BatchStream(images, 8, seed=0, device="cpu", num_workers=0)
    with pytest.raises(ValueError, match=r"seed 1 != 0") as info:
        stream.load_state_dict({"batches_consumed": 3, "seed": 1, "batch_size": 16})
    assert "batch_size 16 != 8" in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_stream_on_cuda_matches_cpu(tmp_path: Path) -> None:
    images = indexed_set(tmp_path)
    cpu = take(BatchStream(images, 8, seed=0, device="cpu", num_workers=0), 7)
    cuda = take(BatchStream(images, 8, seed=0, device="cuda", num_workers=0), 7)
    assert all(c.is_cuda and torch.equal(a, c.cpu()) for a, c in zip(cpu, cuda, strict=True))


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_array_decode_equals_the_per_image_pipeline(
    tmp_path: Path, name: str, integrity_is_presence: None
) -> None:
    """MNIST/CIFAR10 are taken from their arrays at once, bit-identical to PIL per image."""
    (write_mnist if name == "mnist" else write_cifar10)(tmp_path)
    images = load_dataset(name, str(tmp_path), download=False)
    assert images.all_images is not None
    per_image = torch.stack([images[i] for i in range(len(images))])
    assert torch.equal(stream_module._decode(images, 0, False), per_image)
    assert load_dataset(name, str(tmp_path), 16, download=False).all_images is None  # resized


def test_cache_dir_moves_the_cache_off_a_read_only_root(tmp_path: Path) -> None:
    write_mnist(tmp_path / "root")
    images = load_dataset("mnist", str(tmp_path / "root"), download=False)
    (tmp_path / "root").chmod(0o555)  # a shared, read-only copy
    try:
        BatchStream(images, 4, seed=0, device="cpu", num_workers=0, cache_dir=tmp_path / "c")
    finally:
        (tmp_path / "root").chmod(0o755)
    assert cache_path(images, tmp_path / "c") == tmp_path / "c" / "mnist_train_28.npy"
    assert np.load(tmp_path / "c" / "mnist_train_28.npy").shape == (20, 1, 28, 28)
    assert not (tmp_path / "root" / ".bssn_cache").exists()
