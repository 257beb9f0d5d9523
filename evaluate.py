"""IS/FID of saved checkpoints, by metric protocol (docs/metrics.md).

    python evaluate.py run_dir=runs/cifar10-cnn-bssn-s1.2-seed0             # every checkpoint
    python evaluate.py checkpoint=runs/<run>/checkpoints/ckpt_0400000.pt eval=full
    python evaluate.py run_dir=runs/<run> dataset_root=/data eval.inception_weights=/w.pth

G is rebuilt from each checkpoint's saved config; the real images are the run's training
set (``dataset_root`` overrides where it is now). Results go to ``<run_dir>/eval/`` (or
``out_dir``) as one
JSON per checkpoint; running again skips the checkpoints already evaluated with the same
metrics, counts and Inception weights.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from harness.training.checkpoint_eval import evaluate, register_configs

register_configs()


@hydra.main(config_path="configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
