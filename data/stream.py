"""The training input pipeline: an endless, resumable, rank-sharded stream of batches.

Batch order. Epoch e is a permutation of the dataset drawn from a torch.Generator seeded
by (seed, e), identical on every rank. Global batch k covers positions
[k*B, (k+1)*B) of its epoch's permutation (the incomplete last batch of an epoch is
dropped); rank r of W receives the contiguous slice [r*B/W, (r+1)*B/W) of it. W ranks
together therefore see exactly the single-process batch, and the stream depends only on
(seed, B, number of batches consumed), which is all a checkpoint needs (docs/training.md:
batch 64 throughout).

Two paths:
- datasets that fit in memory are decoded once into one uint8 [N, C, H, W] tensor,
  moved to ``device`` once and indexed there, so the accelerator never waits on input.
  MNIST and CIFAR10 at native size are arrays on disk and are taken as they are; the
  others are decoded image by image once. Both are cached as
  ``<cache_dir>/<name>_<split>_<resolution>.npy`` (``cache_dir`` defaults to
  ``<root>/.bssn_cache``; point it elsewhere when the root is read-only);
- ILSVRC2012 is decoded on the fly by DataLoader workers fed the same index slices.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from data.datasets import ImageSet
from harness.atomic import atomic_write, build_lock

log = logging.getLogger(__name__)

CACHE_DIR = ".bssn_cache"
_DECODE_BATCH = 256
_PREFETCH_FACTOR = 4


class _Order:
    """Maps global batch k to this rank's dataset indices."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        rank: int,
        world_size: int,
        device: torch.device,
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.per_rank = batch_size // world_size
        self.offset = rank * self.per_rank
        self.batches_per_epoch = size // batch_size
        self._epoch = -1
        self._permutation = torch.empty(0, dtype=torch.long)

    def indices(self, k: int) -> torch.Tensor:
        epoch, step = divmod(k, self.batches_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._permutation = (
                epoch,
                epoch_permutation(self.size, self.seed, epoch).to(self.device),
            )
        start = step * self.batch_size + self.offset
        return self._permutation[start : start + self.per_rank]


def epoch_permutation(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch ``epoch``: a CPU permutation of range(size) seeded by (seed, epoch)."""
    # SeedSequence mixes the pair into one well-spread 64-bit seed.
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return torch.randperm(size, generator=generator)


class _RankSlices(Sampler[list[int]]):
    """Batch sampler for the worker path: this rank's slices of batches start, start+1, ..."""

    def __init__(self, order: _Order) -> None:
        self.order = order
        self.start = 0

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            yield self.order.indices(k).tolist()
            k += 1


class BatchStream:
    """Endless batches of ``images`` as float tensors on ``device`` in ``images.value_range``.

    ``batch_size`` is the global batch B; ``next()`` returns this rank's
    [B // world_size, C, H, W] share. ``num_workers`` processes decode images (once for
    in-memory datasets, continuously for ILSVRC2012).
    """

    def __init__(
        self,
        images: ImageSet,
        batch_size: int,
        seed: int,
        device: torch.device | str,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 4,
        cache_dir: str | None = None,
    ) -> None:
        if batch_size < 1 or world_size < 1 or batch_size % world_size:
            raise ValueError(
                f"batch_size {batch_size} must be a positive multiple of world_size {world_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, world_size={world_size})")
        if len(images) < batch_size:
            raise ValueError(
                f"dataset {images.name!r} has {len(images)} images, "
                f"fewer than one batch of {batch_size}"
            )
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.device = torch.device(device)
        self._consumed = 0
        # In-memory batches are gathered on `device`; the worker path's indices stay on the CPU.
        order_device = self.device if images.fits_in_memory else torch.device("cpu")
        self._order = _Order(len(images), batch_size, seed, rank, world_size, order_device)
        if images.fits_in_memory:
            self._data = decoded_images(
                images, num_workers, show_progress=rank == 0, cache_dir=cache_dir
            ).to(self.device)
        else:
            self._sampler = _RankSlices(self._order)
            self._loader = DataLoader(
                images,
                batch_sampler=self._sampler,
                num_workers=num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=num_workers > 0,
                prefetch_factor=_PREFETCH_FACTOR if num_workers > 0 else None,
            )
            self._batches: Iterator[torch.Tensor] | None = None

    @property
    def batches_per_epoch(self) -> int:
        return self._order.batches_per_epoch

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return self._consumed // self.batches_per_epoch

    def next(self) -> torch.Tensor:
        """This rank's share of the next global batch."""
        if self.images.fits_in_memory:
            batch = self._data.index_select(0, self._order.indices(self._consumed))
        else:
            if self._batches is None:
                self._sampler.start = self._consumed
                self._batches = iter(self._loader)
            batch = next(self._batches).to(self.device, non_blocking=True)
        self._consumed += 1
        return self.images.to_float(batch)

    def state_dict(self) -> dict[str, int]:
        return {
            "batches_consumed": self._consumed,
            "seed": self.seed,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after ``state["batches_consumed"]`` batches of the same stream."""
        differ = [
            f"{key} {state[key]} != {getattr(self, key)}"
            for key in ("seed", "batch_size")
            if state[key] != getattr(self, key)
        ]
        if differ:
            raise ValueError(f"data stream state is from another stream: {', '.join(differ)}")
        self._consumed = int(state["batches_consumed"])
        if not self.images.fits_in_memory:
            self._batches = None  # the loader restarts from the restored position


def cache_root(dataset_root: str | os.PathLike, cache_dir: str | None = None) -> Path:
    """``cache_dir`` when given (dataset.cache_dir), else ``<dataset root>/.bssn_cache``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(dataset_root).expanduser() / CACHE_DIR


def cache_path(images: ImageSet, cache_dir: str | None = None) -> Path:
    name = f"{images.name}_{images.split}_{images.resolution}.npy"
    return cache_root(images.root, cache_dir) / name


def decoded_images(
    images: ImageSet,
    num_workers: int = 4,
    show_progress: bool = True,
    cache_dir: str | None = None,
) -> torch.Tensor:
    """All of ``images`` as one uint8 [N, C, H, W] CPU tensor, through the .npy cache
    (skipped for the synthetic shapes, which are cheaper to regenerate). The cache is
    checked by shape only: delete it after changing the preprocessing."""
    if images.name == "shapes":
        return _decode(images, num_workers, show_progress)
    path = cache_path(images, cache_dir)
    expected = (len(images), images.channels, images.resolution, images.resolution)
    cached = _read_cache(path, expected)
    if cached is not None:
        return cached
    with build_lock(path):  # the runs of a sweep start at once: one decodes, the others wait
        cached = _read_cache(path, expected)
        if cached is not None:
            return cached
        data = _decode(images, num_workers, show_progress)
        try:
            _save_atomic(path, data.numpy())
        except OSError as err:
            log.warning(
                "could not write the decoded-image cache %s (%s); the next run decodes again",
                path,
                err,
            )
    return data


def _read_cache(path: Path, expected: tuple[int, ...]) -> torch.Tensor | None:
    """The cached array if ``path`` holds uint8 images of shape ``expected``, else None."""
    if not path.exists():
        return None
    try:
        cached = np.load(path, mmap_mode="r")
        if cached.shape == expected and cached.dtype == np.uint8:
            return torch.from_numpy(np.array(cached))
        log.warning(
            "rebuilding %s: it holds %s %s, expected uint8 %s", path, cached.dtype, cached.shape,
            expected,
        )  # fmt: skip
    except (OSError, ValueError, EOFError) as err:
        log.warning("rebuilding unreadable %s: %s", path, err)
    return None


def _decode(images: ImageSet, num_workers: int, show_progress: bool) -> torch.Tensor:
    if images.all_images is not None:  # arrays on disk: no per-image decode
        return images.all_images()
    out = torch.empty(
        (len(images), images.channels, images.resolution, images.resolution), dtype=torch.uint8
    )
    loader = DataLoader(images, batch_size=_DECODE_BATCH, num_workers=num_workers)
    done = 0
    with tqdm(
        total=len(images), desc=f"decoding {images.name}", unit="img", disable=not show_progress
    ) as bar:
        for batch in loader:
            out[done : done + len(batch)] = batch
            done += len(batch)
            bar.update(len(batch))
    return out


def _save_atomic(path: Path, array: np.ndarray) -> None:
    # A temporary file unique to this process plus os.replace: concurrent ranks and
    # interrupted runs never leave a half-written cache under the final name.
    with atomic_write(path) as f:
        np.save(f, array)
