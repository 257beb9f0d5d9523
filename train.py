"""Train a GAN whose discriminator is normalized by one of the paper's modes.

    python train.py dataset=cifar10 norm=bssn scale=1.2
    python train.py -m norm=ssn,bssn scale=1.0,1.2 seed=0,1,2        # a sweep
    torchrun --nproc_per_node=4 train.py dataset=stl10 norm=bssn     # DDP

The run directory is ``${out_dir}/${run_name}``; running the same command again resumes
from its newest checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from tqdm.contrib.logging import logging_redirect_tqdm

from harness.training.config import register_configs
from harness.training.loop import train

register_configs()


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # Log lines go above the progress bar on the console, and to the run's train.log.
    with logging_redirect_tqdm():
        train(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
