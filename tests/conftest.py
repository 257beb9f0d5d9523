"""Shared fixtures. Tests run on CPU with one thread each: their tensors are small, and the
suite's subprocesses (torchrun ranks, train.py runs) share the CI box's 2 cores. Two
threads were 30x slower on power-iteration tests when another process was busy."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from harness import allocator, threads

# Subprocesses inherit the setting; an explicit OMP_NUM_THREADS of the caller wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
threads.configure(None)
allocator.keep_freed_memory()  # as training does (harness/allocator.py)

# W&B's settings, cache and data go to a folder of this test process (each pytest-xdist
# worker has its own, inherited by the runs it starts), never to the user's home, and two
# workers never share them.
_wandb_home = tempfile.mkdtemp(prefix="bssn-tests-wandb-")
atexit.register(shutil.rmtree, _wandb_home, ignore_errors=True)
for _name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
    os.environ[_name] = os.path.join(_wandb_home, _name.lower())

#: The real MNIST files beside the checkout (developers' machines only; users lack it).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    import torch

    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_DATA}/MNIST/raw (only on developer machines)")
    return SHARED_DATA


def write_random_inception_weights(path: Path, seed: int) -> Path:
    """A state dict of torch-fidelity's Inception shapes with He-scaled random values.

    Built without any download: the module is constructed with weight loading stubbed out.
    Identity batch norms and He-scaled convolutions keep the features of order one. The
    architecture is the real one, so timings taken with it are representative.
    """
    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tf_inception, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(
            tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda *a, **k: None
        )
        shapes = tf_inception.FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"]
        ).state_dict()
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in shapes.items():
        if key.endswith("conv.weight") or key == "fc.weight":
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif key.endswith(("bn.weight", "running_var")):
            state[key] = torch.ones_like(value)
        elif key.endswith("num_batches_tracked"):
            state[key] = value
        else:
            state[key] = torch.zeros_like(value)
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def random_inception_weights(tmp_path_factory) -> Callable[[int], Path]:
    """seed -> a random Inception weights file (written once per seed and session)."""
    folder = tmp_path_factory.mktemp("inception")

    def make(seed: int) -> Path:
        path = folder / f"random-{seed}.pth"
        return path if path.is_file() else write_random_inception_weights(path, seed)

    return make


class ProjectedFrechet:
    """frechet_distance on a fixed random 64-d projection of the 2048-d statistics.

    scipy's sqrtm of a 2048x2048 matrix takes 10 to 100 s on two shared cores; projecting
    keeps the production function in the loop, near-singular covariances included (10
    samples), at a millisecond each. Projected FID is 0 for equal statistics and grows with
    their difference, like FID.
    """

    def __init__(self, dim: int = 64) -> None:
        gaussian = np.random.default_rng(0).normal(size=(2048, dim))
        self.basis = np.linalg.qr(gaussian)[0]
        self.shapes: list[tuple] = []

    def __call__(self, mu1, sigma1, mu2, sigma2) -> float:
        from harness.metrics import frechet_distance

        self.shapes.append((mu1.shape, sigma1.shape, mu2.shape, sigma2.shape))
        p = self.basis
        return frechet_distance(mu1 @ p, p.T @ sigma1 @ p, mu2 @ p, p.T @ sigma2 @ p)


@pytest.fixture
def projected_frechet(monkeypatch) -> ProjectedFrechet:
    """compute_metrics' FID on a 64-d projection (see ProjectedFrechet); returns the spy."""
    import harness.metrics.compute as metrics_compute

    spy = ProjectedFrechet()
    monkeypatch.setattr(metrics_compute, "frechet_distance", spy)
    return spy
