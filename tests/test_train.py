"""The training loop end to end on tiny runs: logs, resume, kills, failures, DDP on CPU."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import bssn
from data import DatasetNotFoundError
from harness import threads
from harness.training import checkpoint
from harness.training.config import init_power_iterations_for, register_configs
from harness.training.loop import ConfigMismatchError, NonFiniteLossError, train
from harness.training.run_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
register_configs()
TINY = [
    "experiment=quickstart",
    "dataset.resolution=16",
    "train.batch_size=8",
    "train.iterations=4",
    "train.log_freq=2",
    "train.vis_freq=2",
    "train.ckpt_freq=2",
    "logger.progress=false",
]


def compose_cfg(out: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=[*TINY, f"out_dir={out}", *overrides])


def run(out: Path, *overrides: str) -> Path:
    cfg = compose_cfg(out, *overrides)
    run_dir = Path(cfg.out_dir) / cfg.run_name
    train(cfg, run_dir)
    return run_dir


def final_state(run_dir: Path) -> dict:
    return torch.load(checkpoint.list_checkpoints(run_dir)[-1], weights_only=True)


def tiny_state(step: int, **changes) -> dict:
    """A valid checkpoint of a one-weight G and D (checkpoint.validate accepts it)."""
    state = {
        "step": step,
        "G": {"w": torch.ones(2)},
        "D": {"w": torch.ones(2)},
        "opt_g": {},
        "opt_d": {},
        "stream": {},
        "rng": {},
        "config": {},
        "wandb_id": None,
        "format": checkpoint.FORMAT,
    }
    return state | changes


def assert_same_state(a: dict, b: dict, **tol) -> None:
    for part in ("G", "D"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            if tol:
                torch.testing.assert_close(a[part][k], b[part][k], **tol, msg=f"{part}.{k}")
            else:
                assert torch.equal(a[part][k], b[part][k]), f"{part}.{k}"


def test_tiny_run_writes_everything(tmp_path: Path) -> None:
    run_dir = run(tmp_path, "norm=bssn", "scale=1.2")
    assert run_dir.name == "shapes-cnn-bssn-s1.2-seed0"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    keys = set(records[-1])
    assert {
        "d_loss",
        "g_loss",
        "d_real",
        "d_fake",
        "it_per_s",
        "input_grad_norm/real",
        "input_grad_norm/fake",
    } <= keys
    assert sum(k.startswith("sigma/") for k in keys) == 8  # 7 convs and the linear layer
    assert sum(k.startswith("grad_norm/") for k in keys) == 8
    assert sum(k.startswith("sigma_w2/") for k in keys) == 7  # bsn: both reshapes for the 7 convs
    assert all(v > 0 for k, v in records[-1].items() if k.startswith(("sigma/", "grad_norm/")))
    csv_rows = (run_dir / "scalars.csv").read_text().splitlines()
    assert csv_rows[0] == "step,key,value" and len(csv_rows) == 1 + sum(len(r) - 1 for r in records)
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "step_0000002.png",
        "step_0000004.png",
    ]
    assert [p.name for p in checkpoint.list_checkpoints(run_dir)] == [
        "ckpt_0000002.pt",
        "ckpt_0000004.pt",
    ]
    saved = final_state(run_dir)
    assert {
        "G",
        "D",
        "opt_g",
        "opt_d",
        "stream",
        "rng",
        "config",
        "step",
        "wandb_id",
    } <= saved.keys()
    assert saved["stream"]["batches_consumed"] == 4
    assert any(k.endswith("w2._u") for k in saved["D"])  # power-iteration vectors are saved
    assert "bssn" in (run_dir / "config.yaml").read_text()


def entries_equal(a, b, where: str = "") -> list[str]:
    """Where two checkpoints differ: torch.equal on tensors (and dtypes), == on the rest."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(map(str, a.keys() ^ b.keys()))}"]
        return [d for k in a for d in entries_equal(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: lengths {len(a)} != {len(b)}"]
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in entries_equal(x, y, f"{where}[{i}]")]
    if torch.is_tensor(a) or torch.is_tensor(b):
        same = torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype
        return [] if same and torch.equal(a, b) else [where]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def count_entries(state) -> int:
    """Leaves of a checkpoint (a tensor or a plain value each)."""
    if isinstance(state, dict):
        return sum(count_entries(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(count_entries(v) for v in state)
    return 1


def test_resume_continues_identically(tmp_path: Path) -> None:
    """The resumed run's final checkpoint equals the uninterrupted run's, entry by entry:
    weights, Adam states, data position, every RNG state (torch, numpy, Python, latents)."""
    args = ("train.n_dis=2", "seed=3")
    straight = run(tmp_path, "train.iterations=6", *args)
    a = final_state(straight)
    straight.rename(straight.with_name("straight"))  # same out_dir and run_name: equal configs
    half = run(tmp_path, "train.iterations=3", *args)
    assert final_state(half)["step"] == 3
    random.seed(0), np.random.seed(0)  # whatever happens in between, the resume undoes
    resumed = run(tmp_path, "train.iterations=6", *args)
    b = final_state(resumed)
    assert entries_equal(a, b) == [] and count_entries(a) > 100
    steps = [
        json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [2, 3, 4, 6]  # each run logs its last step; nothing logged twice
    # numpy and Python are seeded from the run's seed (nothing in the loop draws from them;
    # a user's model may).
    np.random.seed(3)
    random.seed(3)
    fresh = checkpoint.rng_state(torch.Generator())
    assert entries_equal(a["rng"]["numpy"], fresh["numpy"]) == []
    assert entries_equal(a["rng"]["python"], fresh["python"]) == []


def test_cpu_thread_count_is_kept_for_the_run_and_its_resume(tmp_path: Path, monkeypatch) -> None:
    """Automatic threads are chosen once on the CPU (the count changes float rounding) and a
    resume restores the count its checkpoint was trained with, whatever the load is now."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "threads_for_this_process", lambda: 2)
    monkeypatch.setattr(threads.LoadAwareThreads, "_measure", lambda self: 2)
    first = run(tmp_path, "train.iterations=2")
    assert final_state(first)["cpu_threads"] == 2
    monkeypatch.setattr(threads.LoadAwareThreads, "_measure", lambda self: 1)  # now loaded
    resumed = run(tmp_path, "train.iterations=4")
    assert final_state(resumed)["cpu_threads"] == 2
    torch.set_num_threads(1)


def test_finished_run_is_not_trained_again(tmp_path: Path, caplog) -> None:
    run_dir = run(tmp_path)
    before = checkpoint.list_checkpoints(run_dir)[-1].stat().st_mtime_ns
    with caplog.at_level("INFO"):
        run(tmp_path)
    assert "already finished" in caplog.text
    assert checkpoint.list_checkpoints(run_dir)[-1].stat().st_mtime_ns == before


def test_checkpoint_from_another_config_is_refused(tmp_path: Path) -> None:
    run(tmp_path, "norm=sn", "run_name=shared")
    with pytest.raises(
        ConfigMismatchError, match=r"norm.mode: 'sn' -> 'bssn'\n  scale: 1.0 -> 1.2"
    ):
        run(tmp_path, "norm=bssn", "scale=1.2", "run_name=shared")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch
) -> None:
    from harness.training import losses

    calls = {"n": 0}
    real_hinge = losses.hinge_g

    def poisoned(d_fake):
        calls["n"] += 1
        return real_hinge(d_fake) * (float("nan") if calls["n"] == 3 else 1.0)

    monkeypatch.setattr(losses, "hinge_g", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"between iterations 2 and 4.*ckpt_0000002.pt"):
        run(tmp_path, "run_name=nan")
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "nan")] == ["ckpt_0000002.pt"]


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        run(
            tmp_path,
            "dataset=cifar10",
            f"dataset.root={tmp_path / 'nothing'}",
            "dataset.download=false",
            "train.batch_size=8",
            "dataset.resolution=32",
        )


def test_wgan_without_penalty_is_plain_wgan(tmp_path: Path) -> None:
    """loss=wgan_gp with gp_weight=0 trains the plain WGAN loss, never silently the hinge."""
    run_dir = run(tmp_path, "loss=wgan_gp", "loss.gp_weight=0")
    last = read_metrics(run_dir)[-1]
    assert "gradient_penalty" not in last
    assert last["d_loss"] == pytest.approx(last["d_fake"] - last["d_real"], abs=1e-5)


@pytest.mark.parametrize("preset", ["gamma_same", "gamma_diff"])
def test_wgan_gp_with_gamma(tmp_path: Path, preset: str) -> None:
    run_dir = run(tmp_path, f"experiment=[quickstart,{preset}]")
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["gradient_penalty"] >= 0 and "gamma/features.0" in last and "gamma/linear" in last


def _cli(out: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *TINY, f"out_dir={out}", *overrides]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    """SIGKILL a real training process after its first checkpoint; resuming finishes identically."""
    args = ["train.iterations=40", "train.ckpt_freq=5", "train.log_freq=5", "train.vis_freq=0"]
    straight = run(tmp_path / "straight", *args)
    out = tmp_path / "killed"
    # The thread count of the in-process run: bit-identity needs the same reduction order.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(
        _cli(out, *args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    run_dir = out / straight.name
    deadline = time.time() + 120
    while (
        not checkpoint.list_checkpoints(run_dir) and time.time() < deadline and proc.poll() is None
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps_at_kill = final_state(run_dir)["step"]
    assert 5 <= steps_at_kill < 40, "the process was not killed mid-run"
    resumed = subprocess.run(_cli(out, *args), env=env, capture_output=True, text=True, check=True)
    assert f"from step {steps_at_kill}" in resumed.stderr + resumed.stdout
    assert_same_state(final_state(straight), final_state(run_dir))


_SLOW_SAVE = """
import sys, time, torch
from pathlib import Path
from harness.training.checkpoint import save_atomic
class Slow:
    def __reduce__(self):
        time.sleep(60)
        return (int, (0,))
Path(sys.argv[1] + ".started").touch()
save_atomic({"step": 2, "payload": torch.zeros(1000), "slow": Slow()}, Path(sys.argv[1]))
"""


def test_kill_during_checkpoint_write_keeps_the_previous_one(tmp_path: Path) -> None:
    target = tmp_path / "checkpoints" / "ckpt_0000002.pt"
    checkpoint.save_checkpoint(tmp_path, 1, tiny_state(1), keep=2)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SAVE, str(target)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    while not Path(str(target) + ".started").exists():
        time.sleep(0.05)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    assert not target.exists()
    assert list(target.parent.glob(".ckpt_0000002.pt.*.tmp"))  # killed inside the write
    state, path = checkpoint.load_latest(tmp_path)
    assert state["step"] == 1 and path.name == "ckpt_0000001.pt"


def test_unreadable_newest_checkpoint_falls_back_with_a_warning(tmp_path: Path, caplog) -> None:
    checkpoint.save_checkpoint(tmp_path, 1, tiny_state(1), keep=3)
    (tmp_path / "checkpoints" / "ckpt_0000002.pt").write_bytes(b"truncated")
    state, _ = checkpoint.load_latest(tmp_path)
    assert state["step"] == 1 and "ckpt_0000002.pt does not load" in caplog.text


def test_checkpoint_of_another_format_is_not_resumed(tmp_path: Path, caplog) -> None:
    checkpoint.save_checkpoint(tmp_path, 1, tiny_state(1), keep=3)
    checkpoint.save_atomic(
        tiny_state(2, format=checkpoint.FORMAT + 1), tmp_path / "checkpoints" / "ckpt_0000002.pt"
    )
    state, path = checkpoint.load_latest(tmp_path)
    assert state["step"] == 1 and path.name == "ckpt_0000001.pt"
    assert f"checkpoint format {checkpoint.FORMAT + 1}, expected {checkpoint.FORMAT}" in caplog.text


@pytest.mark.slow
def test_ddp_on_cpu_matches_the_single_process_run(tmp_path: Path) -> None:
    """torchrun, 2 CPU processes (gloo), global batch 8, against one process with batch 8.

    One iteration (two D steps, one G step). The all-reduced per-layer gradients of the
    second D step and the sigmas agree to float rounding, and so do almost all weights.
    Adam's first step moves each weight by lr * g / |g|: where a gradient is ~0 (e.g.
    biases before a batch norm), rounding flips its sign, a 2 lr difference, and from
    there the runs drift apart over many steps, as any two reduction orders do.
    """
    args = [
        "train.iterations=1",
        "train.log_freq=1",
        "train.n_dis=2",
        "train.vis_freq=0",
        "norm=bssn",
        "scale=1.2",
    ]
    single = run(tmp_path / "single", *args)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={port}",
        *_cli(tmp_path / "ddp", *args)[1:],
    ]
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=ROOT, timeout=300)
    ddp = tmp_path / "ddp" / single.name
    for a, b in zip(read_metrics(single), read_metrics(ddp), strict=True):
        for key in a:
            if key.startswith(("grad_norm/", "sigma")):
                # 1e-3: the second D step follows an Adam step, whose near-zero gradients
                # can flip sign under another reduction order (measured: up to 2.2e-4).
                assert b[key] == pytest.approx(a[key], rel=1e-3), (a["step"], key)
    a, b = final_state(single), final_state(ddp)
    assert_same_state(a, b, rtol=0, atol=2 * 2e-4 * 1.01)  # lr = 2e-4
    close = sum(int(((a[p][k] - b[p][k]).abs() <= 1e-5).sum()) for p in ("G", "D") for k in a[p])
    assert close / sum(v.numel() for p in ("G", "D") for v in a[p].values()) > 0.98


def test_wandb_offline_by_default_and_resumes_the_same_run(tmp_path: Path, monkeypatch) -> None:
    """The default logger needs no account or network; a resumed run keeps its W&B id."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = run(tmp_path, "logger=offline", "train.iterations=2")
    wandb_id = final_state(run_dir)["wandb_id"]
    assert wandb_id and list((run_dir / "wandb").glob(f"offline-run-*-{wandb_id}"))
    run(tmp_path, "logger=offline", "train.iterations=4")
    assert final_state(run_dir)["wandb_id"] == wandb_id
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{wandb_id}"))) >= 1
    assert not [
        p for p in (run_dir / "wandb").glob("offline-run-*") if not p.name.endswith(wandb_id)
    ]


@pytest.mark.parametrize("keep", [True, False])
def test_d_step_updates_g_batch_norm_statistics_only_where_the_reference_does(keep) -> None:
    """ResNet (model.bn_stats_on_d_step=false): the D step's G forward leaves G's running
    statistics alone; CNN (true): it updates them. The fakes are the same either way."""
    import bssn
    from harness.training.loop import discriminator_update

    torch.manual_seed(0)
    g = torch.nn.Sequential(torch.nn.Linear(4, 12), torch.nn.BatchNorm1d(12), torch.nn.Tanh())
    d = bssn.apply(torch.nn.Sequential(torch.nn.Linear(12, 1)), "sn")
    before = {k: v.clone() for k, v in g.state_dict().items()}
    real, z = torch.randn(8, 12), torch.randn(8, 4)
    opt = torch.optim.Adam(d.parameters())
    out = discriminator_update(d, d, g, opt, real, z, bn_stats_on_d_step=not keep)
    after = g.state_dict()
    stats = ("1.running_mean", "1.running_var", "1.num_batches_tracked")
    assert all(torch.equal(before[k], after[k]) == keep for k in stats)
    with torch.no_grad():  # batch statistics normalize the fakes in both cases
        g_batch = torch.nn.functional.batch_norm(g[0](z), None, None, g[1].weight, g[1].bias, True)
    torch.testing.assert_close(out["fake"], torch.tanh(g_batch))


def test_reference_training_defaults(tmp_path: Path) -> None:
    cnn = compose_cfg(tmp_path)
    assert init_power_iterations_for(cnn.norm) == 0 and cnn.model.bn_stats_on_d_step
    # The Thm. 1 option needs each layer at its c_i from the start, so it warms up; a set
    # value wins either way.
    thm1 = compose_cfg(tmp_path, "norm=sn", "norm.layer_scales_geomean=1.0")
    assert init_power_iterations_for(thm1.norm) == bssn.parametrizations.INIT_POWER_ITERATIONS
    thm1_cold = compose_cfg(
        tmp_path, "norm=sn", "norm.layer_scales_geomean=1.0", "norm.init_power_iterations=0"
    )
    assert init_power_iterations_for(thm1_cold.norm) == 0
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        resnet = compose("config", overrides=["dataset=imagenet"])
    assert resnet.model.name == "resnet" and not resnet.model.bn_stats_on_d_step
    # The loop hands the setting to bssn.apply: the same draws, warmed up or not.
    from data import load_dataset
    from harness.training.distributed import Context
    from harness.training.loop import build

    images, ctx = load_dataset("shapes", str(tmp_path), resolution=16), Context(0, 1, "cpu")
    cold = dict(build(cnn, images, ctx)[1].named_buffers())
    warm = dict(
        build(compose_cfg(tmp_path, "norm.init_power_iterations=15"), images, ctx)[
            1
        ].named_buffers()
    )
    assert cold.keys() == warm.keys() and len(cold) > 0
    assert any(not torch.equal(cold[k], warm[k]) for k in cold)
    bad = compose_cfg(tmp_path, "norm.init_power_iterations=-1")
    with pytest.raises(ValueError, match="norm.init_power_iterations must be an integer >= 0"):
        train(bad, tmp_path / "bad")
