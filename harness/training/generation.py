"""generate.py: samples of a trained G as PNG files, a grid and/or an .npz; G's export.

G comes from a run directory (its newest valid checkpoint), a training checkpoint or a
generator-only export (harness.training.generator_file), and runs in eval mode. Latents
come from periodic evaluation's sampler: the same seed and batch size give the same
images on any device, and the default seed is the run's evaluation seed, so the samples
are exactly the images the run's IS/FID scored (eval.batch_size defaults to 250 too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig
from PIL import Image
from torchvision.utils import make_grid
from tqdm import tqdm

from harness.atomic import atomic_write
from harness.metrics import to_uint8

from .checkpoint_eval import _device
from .generator_file import load_generator, save_export
from .periodic_eval import EVAL_SEED_OFFSET, latent_sampler

log = logging.getLogger(__name__)

GRID_ROW = 8


def write_png(image: torch.Tensor, path: Path) -> None:
    """A uint8 [C, H, W] image (C = 1: grayscale) as a PNG file (lossless)."""
    array = image.permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path)


@dataclass
class GenerateConfig:
    run_dir: str | None = None  # G of this run's newest valid checkpoint
    checkpoint: str | None = None  # or of this training checkpoint or generator export
    num: int = 64  # samples to write to `out`
    seed: int | None = None  # None = the run's evaluation seed (seed + 2**21)
    batch_size: int = 250  # latents are drawn per batch (eval.batch_size's default)
    out: str | None = None  # *.npz (arr_0 uint8 [N, H, W, C]) or a folder for PNG files
    grid: str | None = None  # a PNG grid of the first grid_count samples, 8 per row
    grid_count: int = 64
    export: str | None = None  # write G alone here (loads with torch.load(weights_only=True))
    device: str = "auto"  # auto | cpu | cuda
    progress: bool = True


def register_configs() -> None:
    ConfigStore.instance().store(name="base_generate", node=GenerateConfig)


def _check(cfg: DictConfig) -> None:
    if cfg.out is None and cfg.grid is None and cfg.export is None:
        raise ValueError(
            "nothing to write: give out=<file.npz or folder>, grid=<file.png> "
            "and/or export=<file.pt>"
        )
    for key in ("num", "batch_size", "grid_count"):
        if cfg[key] < 1:
            raise ValueError(f"{key}={cfg[key]} must be >= 1")
    if cfg.out is not None and Path(cfg.out).suffix not in ("", ".npz"):
        raise ValueError(f"out={cfg.out} must end in .npz (one array) or name a folder (PNGs)")
    if cfg.grid is not None and Path(cfg.grid).suffix != ".png":
        raise ValueError(f"grid={cfg.grid} must end in .png")


def generate(cfg: DictConfig) -> dict[str, Any]:
    """Write what `cfg` asks for; returns {"seed", "step", "source", "shape", "written"}."""
    _check(cfg)
    loaded = load_generator(cfg.run_dir, cfg.checkpoint)
    written: list[str] = []
    if cfg.export is not None:
        written.append(str(save_export(loaded.export, cfg.export)))
    seed = loaded.export["seed"] + EVAL_SEED_OFFSET if cfg.seed is None else cfg.seed
    info = {"seed": seed, "step": loaded.export["step"], "source": str(loaded.source)}
    if cfg.out is None and cfg.grid is None:
        return info | {"shape": None, "written": written}

    device = _device(cfg.device)
    g = loaded.g.to(device)
    sample = latent_sampler(g, seed, device)
    total = cfg.num if cfg.out is not None else min(cfg.num, cfg.grid_count)
    folder = Path(cfg.out) if cfg.out is not None and Path(cfg.out).suffix == "" else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    parts, grid_parts, done = [], [], 0
    with torch.no_grad(), tqdm(total=total, unit="img", disable=not cfg.progress) as bar:
        while done < total:
            n = min(cfg.batch_size, total - done)
            images = to_uint8(sample(n), g.output_range).cpu()  # [n, C, H, W]
            if folder is not None:
                for i, image in enumerate(images):
                    write_png(image, folder / f"{done + i:06d}.png")
            elif cfg.out is not None:
                parts.append(images.permute(0, 2, 3, 1).numpy())
            if done < cfg.grid_count:
                grid_parts.append(images[: cfg.grid_count - done])
            done += n
            bar.update(n)

    shape = [total, *images.shape[2:], images.shape[1]]
    if folder is not None:
        written.append(f"{folder}/000000.png .. {total - 1:06d}.png")
    elif cfg.out is not None:
        with atomic_write(Path(cfg.out).expanduser()) as f:
            np.savez(f, arr_0=np.concatenate(parts))
        written.append(str(cfg.out))
    if cfg.grid is not None:
        grid = make_grid(torch.cat(grid_parts), nrow=GRID_ROW, padding=2, pad_value=255)
        Path(cfg.grid).expanduser().parent.mkdir(parents=True, exist_ok=True)
        write_png(grid, Path(cfg.grid).expanduser())
        written.append(str(cfg.grid))
    return info | {"shape": shape, "written": written}
