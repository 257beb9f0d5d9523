"""Clusters: the prepare step, offline runs, packed SLURM allocations (K runs per GPU) and
their requeue, and the cluster defaults of launcher=slurm."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from submitit.core.utils import DelayedSubmission
from test_data import write_mnist
from test_sweeps import TINY, multirun

from data import DatasetNotFoundError, load_dataset
from data.stream import cache_path
from harness import prepare
from harness.metrics import InceptionWeightsNotFound
from harness.training.checkpoint import latest_step, list_checkpoints
from hydra_plugins.bssn_sweeps.launchers import slurm_resources
from hydra_plugins.bssn_sweeps.packing import PackedRuns

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def stand_in_slurm(tmp_path, monkeypatch) -> Path:
    """`sbatch` keeps the script and answers job 4242; `scontrol` logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n'
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.log\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Every socket connection fails, and is recorded (the network unplugged)."""
    tried: list = []

    def refuse(self, address, *args):
        tried.append(address)
        raise OSError(f"network unplugged in this test: connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return tried


# --- the SLURM submission -------------------------------------------------------------


def test_table1_packed_four_per_gpu_renders_one_allocation_per_four_runs(
    stand_in_slurm, monkeypatch
) -> None:
    out = stand_in_slurm / "runs"
    multirun(
        monkeypatch,
        "experiment=table1_cifar10",
        "seed=0",  # 48 of the 240 cells: composing each job takes a while on 2 cores
        f"out_dir={out}",
        "launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.runs_per_gpu=4",
        "hydra.launcher.wait=false",
    )
    script = (stand_in_slurm / "submitted.sh").read_text()
    for line in (
        "--job-name=table1_cifar10",
        "--partition=gpu",
        "--array=0-11%12",  # 46 distinct runs (ssn/bssn at 1.0 are sn/bsn), 4 per allocation
        "--nodes=1",
        "--gpus-per-node=1",
        "--ntasks-per-node=1",  # one parent process; it starts the 4 runs
        "--cpus-per-task=16",  # 4 per run (dataset.num_workers)
        "--mem=48GB",  # 12 per run
        "--time=480",
        "--signal=USR2@120",
    ):
        assert f"#SBATCH {line}\n" in script, line
    assert f"source {sys.prefix}/bin/activate\n" in script  # setup: the submitting venv
    assert " python -u -m submitit.core._submit " in script  # not an absolute interpreter path
    pickles = sorted(out.glob(".submitit/4242_*/4242_*_submitted.pkl"))
    assert len(pickles) == 12
    runs, sizes = [], []
    for path in pickles:
        job = DelayedSubmission.load(path)
        assert isinstance(job.function, PackedRuns) and job.function.slots == 4
        (pack,) = job.args
        sizes.append(len(pack))
        runs += [" ".join(args[0]) for args in pack]
    assert sorted(sizes) == [2] + [4] * 11  # the last allocation takes the 2 left over
    assert len(set(runs)) == 46 and all("experiment=table1_cifar10" in r for r in runs)
    # The requeue path: submitit's signal handler pickles job.function.checkpoint(...), and
    # SLURM re-runs it: the same pack, whose runs resume from their checkpoints.
    job = DelayedSubmission.load(pickles[0])
    assert job._timeout_countdown == 20
    requeued = job.function.checkpoint(*job.args)
    assert isinstance(requeued, DelayedSubmission) and requeued.args == job.args
    assert requeued.function.slots == 4


def test_resources_gres_and_packing_limits() -> None:
    base = {
        "runs_per_gpu": 1, "cpus_per_run": 4, "mem_gb_per_run": 12, "gres_gpus": True,
        "python": "python", "wait": True, "nodes": 2, "gpus_per_node": 4, "tasks_per_node": 4,
        "cpus_per_task": None, "mem_gb": None, "gres": None, "setup": ["module load cuda"],
    }  # fmt: skip
    ddp = slurm_resources(base)  # DDP: one process per GPU, memory for each
    assert (ddp["gres"], ddp["gpus_per_node"], ddp["cpus_per_task"], ddp["mem_gb"]) == (
        "gpu:4", None, 4, 48,
    )  # fmt: skip
    assert ddp["setup"] == ["module load cuda"] and "runs_per_gpu" not in ddp
    with pytest.raises(ValueError, match=r"runs_per_gpu=2 .* needs nodes=1 and gpus_per_node=1"):
        slurm_resources(base | {"runs_per_gpu": 2})
    with pytest.raises(ValueError, match="runs_per_gpu=0 must be an integer >= 1"):
        slurm_resources(base | {"runs_per_gpu": 0})
    explicit = slurm_resources(base | {"cpus_per_task": 6, "mem_gb": 20, "gres_gpus": False})
    assert (explicit["cpus_per_task"], explicit["mem_gb"], explicit["gpus_per_node"]) == (6, 20, 4)


def test_job_name_falls_back_to_the_script(stand_in_slurm, monkeypatch) -> None:
    multirun(
        monkeypatch,
        "norm=sn,bsn",
        f"out_dir={stand_in_slurm / 'runs'}",
        "launcher=slurm",
        "hydra.launcher.wait=false",
        "hydra.launcher.gres_gpus=true",
        "hydra.launcher.setup=['module load cuda/12','source ~/envs/bssn/bin/activate']",
    )
    script = (stand_in_slurm / "submitted.sh").read_text()
    assert "#SBATCH --job-name=train\n" in script and "#SBATCH --gres=gpu:1\n" in script
    assert "--gpus-per-node" not in script
    assert "# setup\nmodule load cuda/12\nsource ~/envs/bssn/bin/activate\n" in script


# --- a packed allocation on this CPU: killed, requeued, equal to unpacked runs --------

PACKED = [
    *TINY,
    "train.iterations=40",
    "train.ckpt_freq=4",
    "train.keep_checkpoints=100",
    "seed=0",
]


@pytest.fixture
def allocations():
    """Starts allocations; kills what is left of them (their process groups) afterwards."""
    started: list[subprocess.Popen] = []
    yield started
    for job in started:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()


def allocation(folder: Path, tmp_path: Path, started: list) -> subprocess.Popen:
    """What `srun` starts on the compute node for job 4242 (one pack: no array; 2 CPUs)."""
    env = {
        **os.environ,
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_CPUS_PER_TASK": "2",
    }
    with open(tmp_path / "allocation.log", "ab") as log:
        job = subprocess.Popen(
            [sys.executable, "-u", "-m", "submitit.core._submit", str(folder)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started.append(job)
    return job


@pytest.mark.slow
def test_packed_allocation_is_preempted_requeued_and_matches_unpacked_runs(
    stand_in_slurm, monkeypatch, allocations
) -> None:
    tmp_path = stand_in_slurm
    out, ref = tmp_path / "packed", tmp_path / "unpacked"
    data = f"dataset.root={tmp_path / 'data'}"
    multirun(
        monkeypatch, *PACKED, data, "norm=ssn,bssn", f"out_dir={out}", "launcher=slurm",
        "hydra.launcher.runs_per_gpu=2", "hydra.launcher.wait=false",
    )  # fmt: skip
    runs = [out / f"shapes-cnn-{n}-s1.0-seed0" for n in ("ssn", "bssn")]
    (pickle_path,) = out.glob(".submitit/4242/4242_submitted.pkl")
    folder = out / ".submitit" / "%j"

    # Once both runs have checkpoints, SLURM signals the allocation (USR2, as before its
    # time limit): submitit requeues it through our checkpoint hook.
    job = allocation(folder, tmp_path, allocations)
    deadline = time.monotonic() + 600
    while not all(latest_step(r) for r in runs):
        assert job.poll() is None and time.monotonic() < deadline, tmp_path / "allocation.log"
        time.sleep(0.05)
    job.send_signal(signal.SIGUSR2)
    assert job.wait(timeout=120) != 0
    steps = [latest_step(r) for r in runs]
    assert min(steps) < 40, f"both runs finished before the signal: {steps}"
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    assert DelayedSubmission.load(pickle_path).function.slots == 2  # the pack, pickled again

    # The requeued allocation: each run resumes from its newest checkpoint.
    job = allocation(folder, tmp_path, allocations)
    assert job.wait(timeout=600) == 0, (tmp_path / "allocation.log").read_text()[-3000:]
    assert [latest_step(r) for r in runs] == [40, 40]
    children = [p.read_text() for p in sorted(out.glob(".submitit/4242/*_run*.log"))]
    assert len(children) == 2 and all("resuming" in text for text in children)

    # The same configs, unpacked and never interrupted: identical final checkpoints.
    # With the packed runs' thread count (2 CPUs / 2 runs): CPU kernels reduce in an order
    # that depends on it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        multirun(monkeypatch, *PACKED, data, "norm=ssn,bssn", f"out_dir={ref}")
    finally:
        torch.set_num_threads(threads)
    for run in runs:
        packed = torch.load(list_checkpoints(run)[-1], weights_only=False)
        plain = torch.load(list_checkpoints(ref / run.name)[-1], weights_only=False)
        for part in ("G", "D"):
            for key, value in plain[part].items():
                assert torch.equal(packed[part][key], value), (run.name, part, key)
        assert packed["stream"] == plain["stream"]
        assert torch.equal(packed["rng"]["z"], plain["rng"]["z"])


@pytest.mark.slow
def test_local_packed_launcher_splits_threads(tmp_path, monkeypatch) -> None:
    out = tmp_path / "runs"
    multirun(
        monkeypatch, *TINY, f"dataset.root={tmp_path / 'data'}", "norm=ssn,bssn", "seed=0,1",
        f"out_dir={out}", "launcher=local_packed", "hydra.launcher.runs_per_gpu=2",
    )  # fmt: skip
    runs = sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 4 and all(latest_step(r) == 2 for r in runs)
    logs = list((out / ".packed").glob("local_run*.log"))
    assert len(logs) == 4


# --- prepare, then offline runs -------------------------------------------------------


@pytest.mark.slow
def test_offline_mnist_sweep_needs_prepare_and_then_never_touches_the_network(
    tmp_path, monkeypatch, no_network, capsys
) -> None:
    root = tmp_path / "data"
    images = write_mnist(root, n=40, extracted=False)  # the archives, placed by hand
    cluster = [
        "dataset=mnist", f"dataset.root={root}", "dataset.download=false",
        "eval.download_weights=false", "train.batch_size=8", "train.iterations=2",
        "train.log_freq=100", "train.vis_freq=0", "logger=files", "logger.progress=false",
        "dataset.num_workers=0",
    ]  # fmt: skip
    sweep = [*cluster, f"out_dir={tmp_path / 'runs'}", "norm=sn,bsn"]

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the job's exception, not an exit
    with pytest.raises(DatasetNotFoundError, match=r"python -m harness\.prepare"):
        multirun(monkeypatch, *sweep)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))

    # The MNIST archives of this test fail torchvision's md5 check: as the real ones pass
    # it, so here (test_real_mnist_prepare uses the real files).
    monkeypatch.setattr("torchvision.datasets.utils.check_integrity", lambda *a, **k: True)
    assert prepare.main(cluster) == 0
    said = capsys.readouterr().out
    assert "[dataset] ready: 40 training images at 28x28" in said
    assert f"[decoded cache] {root}/.bssn_cache/mnist_train_28.npy: uint8 (40, 1, 28, 28)" in said
    assert "[inception] skipped" in said  # dataset=mnist defaults to eval=none
    cached = np.load(root / ".bssn_cache" / "mnist_train_28.npy")
    assert np.array_equal(cached[:, 0], images)

    multirun(monkeypatch, *sweep)
    runs = [tmp_path / "runs" / f"mnist-dcgan_mnist-{n}-s1.0-seed0" for n in ("sn", "bsn")]
    assert [latest_step(run) for run in runs] == [2, 2]
    assert no_network == []


def test_missing_weights_fail_at_start_naming_prepare_and_eval_none(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(InceptionWeightsNotFound, match=r"harness\.prepare.*eval=none"):
        multirun(
            monkeypatch, *TINY, "eval=paper", "eval.download_weights=false",
            f"out_dir={tmp_path / 'runs'}", "norm=sn",
        )  # fmt: skip


def test_prepare_fetches_weights_and_reference_statistics(
    tmp_path, monkeypatch, random_inception_weights, capsys
) -> None:
    weights = random_inception_weights(0)
    overrides = [
        "dataset=shapes", "dataset.resolution=16", "dataset.num_workers=0", "eval=paper",
        "eval.metrics=[fid10k_5k]", "eval.num_real=4", "eval.batch_size=4",
        f"eval.inception_weights={weights}", f"dataset.root={tmp_path}",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="not the official weights.*--allow-other-weights"):
        prepare.main(overrides)
    assert prepare.main(["--allow-other-weights", "--device", "cpu", *overrides]) == 0
    said = capsys.readouterr().out
    (stats,) = (tmp_path / ".bssn_cache" / "inception").glob("shapes-16px-4of10000-seed0-*.npz")
    assert f"[reference stats] fid10k_5k: {stats} (4 images, computed)" in said
    assert prepare.main(["--allow-other-weights", "--device", "cpu", *overrides]) == 0
    assert "(4 images, already cached)" in capsys.readouterr().out


@pytest.mark.shared_data
def test_real_mnist_prepare_extracts_verifies_and_caches(
    tmp_path, shared_data, no_network, capsys
) -> None:
    shutil.copytree(shared_data / "MNIST" / "raw", tmp_path / "MNIST" / "raw")
    assert prepare.main(["dataset=mnist", f"dataset.root={tmp_path}"]) == 0
    assert "uint8 (60000, 1, 28, 28)" in capsys.readouterr().out
    assert no_network == []
    images = load_dataset("mnist", str(tmp_path), download=False)
    assert cache_path(images).is_file()


# --- loggers ----------------------------------------------------------------------------


def test_tensorboard_gets_the_sample_grids_and_wandb_tags_name_the_cell(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from test_sweeps import compose_cfg

    from harness.training.config import to_container
    from harness.training.loop import train
    from harness.training.run_log import wandb_tags

    cfg = compose_cfg(
        *TINY, "train.vis_freq=1", "logger.tensorboard=true", f"dataset.root={tmp_path}"
    )
    train(cfg, tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [image.step for image in events.Images("samples")] == [1, 2]
    assert "d_loss" in events.Tags()["scalars"]
    assert wandb_tags(to_container(cfg)) == ["dataset:shapes", "norm:bssn", "scale:1.0"]
    assert compose_cfg("experiment=table1_stl10").logger.wandb.group == "table1_stl10"
