"""Samples of a trained generator, and its generator-only export.

    python generate.py run_dir=runs/<run> num=10000 out=samples.npz   # arr_0 uint8 [N, H, W, C]
    python generate.py run_dir=runs/<run> num=100 out=samples/ grid=grid.png seed=0
    python generate.py run_dir=runs/<run> export=G.pt                 # G alone, weights_only

G comes from the run's newest valid checkpoint (or ``checkpoint=<ckpt_*.pt or export>``)
and runs in eval mode; the same seed and batch size give the same images. By default the
seed is the run's evaluation seed: the samples are the images its IS/FID scored.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from harness.training.generation import generate, register_configs

register_configs()


@hydra.main(config_path="configs", config_name="generate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    result = generate(cfg)
    shape = "" if result["shape"] is None else f" {result['shape']} (N, H, W, C)"
    print(f"G of {result['source']} (step {result['step']}), seed {result['seed']}{shape}:")
    for path in result["written"]:
        print(f"  {path}")


if __name__ == "__main__":
    main()
