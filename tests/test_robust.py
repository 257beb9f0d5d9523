"""Issue 10: runs and sweeps never lose or mix work. One test (at least) per reported case:
sweep collisions, invalid checkpoints, the run-dir lock, logs cut mid-line, NaN values and
weights, bad Inception weights, evaluate.py's inputs and outputs, data errors, stale
temporary files, file modes, RNG states. Signals and SIGKILLs: test_faults.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from test_sweeps import multirun, write_run
from test_train import ROOT, compose_cfg, run, tiny_state

from data import DatasetNotFoundError, load_dataset
from data.datasets import CorruptImageError
from harness.atomic import atomic_write
from harness.metrics import InvalidInceptionWeights, NonFiniteImagesError
from harness.metrics.extractor import extract_generated
from harness.results import build_table, find_runs
from harness.training import checkpoint, checkpoint_eval
from harness.training.loop import NonFiniteLossError
from harness.training.run_lock import RunDirLockedError, RunLock
from harness.training.run_log import JSONL, RunLog, read_metrics
from harness.training.stop_signals import GracefulStop

#: Two iterations, a checkpoint after each, one log line (the analysis scalars are slow).
SHORT = ["train.iterations=2", "train.ckpt_freq=1", "train.log_freq=100", "train.vis_freq=0"]


def ckpt(run_dir: Path, step: int) -> Path:
    return checkpoint.checkpoint_dir(run_dir) / f"ckpt_{step:07d}.pt"


# --- sweeps: a run's identity is its whole config ---------------------------------------


def test_sweep_over_a_key_not_in_run_name_refuses_to_launch(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ValueError, match=r"share a run directory") as err:
        multirun(
            monkeypatch, "experiment=quickstart", "optim.lr_d=1e-4,2e-4", f"out_dir={tmp_path}"
        )
    message = str(err.value)
    assert "optim.lr_d=0.0001" in message and "optim.lr_d=0.0002" in message
    assert "differ in optim.lr_d" in message and "run_name" in message
    assert not list(tmp_path.iterdir())  # nothing launched


def test_sweep_with_the_key_in_run_name_plans_every_job(tmp_path, monkeypatch, capsys) -> None:
    multirun(
        monkeypatch,
        "experiment=quickstart",
        "optim.lr_d=1e-4,2e-4",
        "run_name=q-lrd${optim.lr_d}",
        f"out_dir={tmp_path}",
        "hydra.sweeper.dry_run=true",
    )
    assert "2 distinct runs: 2 to launch" in capsys.readouterr().out


# --- checkpoints: validated before they count --------------------------------------------


def test_a_loadable_file_without_the_keys_is_invalid_and_named(tmp_path, caplog) -> None:
    checkpoint.save_checkpoint(tmp_path, 1, tiny_state(1), keep=3)
    foreign = ckpt(tmp_path, 2)
    torch.save({"format": checkpoint.FORMAT, "weights": torch.ones(1)}, foreign)
    state, path = checkpoint.load_latest(tmp_path)
    assert state["step"] == 1
    assert f"{foreign} lacks the checkpoint keys D, G, config" in caplog.text
    assert foreign.with_name(foreign.name + ".invalid").exists()  # no longer counted


def test_pickled_objects_are_refused_by_weights_only_loading(tmp_path) -> None:
    checkpoint.save_atomic(tiny_state(1, extra=Path("x")), ckpt(tmp_path, 1))
    with pytest.raises(checkpoint.InvalidCheckpointError, match=r"ckpt_0000001.pt does not load"):
        checkpoint.load(ckpt(tmp_path, 1))


def test_newest_checkpoint_with_nan_weights_is_skipped(tmp_path, caplog) -> None:
    checkpoint.save_checkpoint(tmp_path, 1, tiny_state(1), keep=3)
    checkpoint.save_atomic(
        tiny_state(2, D={"w": torch.tensor([1.0, float("nan")])}), ckpt(tmp_path, 2)
    )
    state, path = checkpoint.load_latest(tmp_path)
    assert path == ckpt(tmp_path, 1)
    assert "ckpt_0000002.pt has non-finite weights: D.w" in caplog.text


def test_non_finite_weights_are_never_saved() -> None:
    with pytest.raises(checkpoint.InvalidCheckpointError, match="non-finite weights: G.w"):
        checkpoint.save_checkpoint(
            Path("/nonexistent"), 1, tiny_state(1, G={"w": torch.tensor([float("inf")])}), keep=1
        )


def test_no_valid_checkpoint_stops_naming_them_and_start_over_is_explicit(tmp_path) -> None:
    cfg_args = ("run_name=r", *SHORT, "train.keep_checkpoints=1")
    folder = checkpoint.checkpoint_dir(tmp_path / "r")
    folder.mkdir(parents=True)
    (folder / "ckpt_0000010.pt").write_bytes(b"truncated")
    (folder / "ckpt_0000020.pt").write_bytes(b"")
    with pytest.raises(checkpoint.NoValidCheckpointError) as err:
        run(tmp_path, *cfg_args)
    assert "ckpt_0000010.pt" in str(err.value) and "ckpt_0000020.pt" in str(err.value)
    assert "train.start_over=true" in str(err.value)
    assert not (tmp_path / "r" / JSONL).exists()  # nothing trained, nothing logged

    run(tmp_path, *cfg_args, "train.start_over=true")
    # Retention kept the new valid checkpoint; the corrupt high-numbered ones are set aside.
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "r")] == ["ckpt_0000002.pt"]
    assert sorted(p.name for p in folder.glob("*.invalid")) == [
        "ckpt_0000010.pt.invalid",
        "ckpt_0000020.pt.invalid",
    ]
    assert checkpoint.load(ckpt(tmp_path / "r", 2))["step"] == 2


def test_nan_weights_stop_naming_the_true_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    from harness.training import loop

    calls = {"n": 0}
    real_update = loop.generator_update

    def poisoning(d_raw, g_train, opt_g, z):
        loss = real_update(d_raw, g_train, opt_g, z)
        calls["n"] += 1
        if calls["n"] == 2:  # the weights break; the loss of this step was still finite
            with torch.no_grad():
                next(g_train.parameters()).fill_(float("nan"))
        return loss

    monkeypatch.setattr(loop, "generator_update", poisoning)
    with pytest.raises(NonFiniteLossError, match=r"weights became NaN/Inf by iteration 2") as err:
        run(tmp_path, "run_name=nan", *SHORT)
    assert str(ckpt(tmp_path / "nan", 1)) in str(err.value)
    assert checkpoint.list_checkpoints(tmp_path / "nan") == [ckpt(tmp_path / "nan", 1)]


# --- one process per run directory ---------------------------------------------------------

_HOLD = """
import sys, time
from harness.training.run_lock import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_second_launch_on_a_run_dir_exits_naming_the_holder(tmp_path) -> None:
    run_dir = tmp_path / "r"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirLockedError, match=rf"pid {holder.pid}\)") as err:
            run(tmp_path, "run_name=r", *SHORT)
        assert f"host {socket.gethostname()}" in str(err.value)
        assert not (run_dir / "config.yaml").exists() and not (run_dir / JSONL).exists()
    finally:
        holder.kill()  # SIGKILL: the OS releases the lock
        holder.wait()
    with RunLock(run_dir):  # free again
        pass


def test_lock_is_exclusive_within_one_process_too(tmp_path) -> None:
    with RunLock(tmp_path):
        with pytest.raises(RunDirLockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()


# --- logs that survive anything --------------------------------------------------------------


def _write_log(run_dir: Path, text: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / JSONL).write_text(text)


def test_partial_last_line_is_dropped_on_resume_with_a_warning(tmp_path, caplog) -> None:
    _write_log(
        tmp_path, '{"step": 1, "d_loss": 1.0}\n{"step": 2, "d_loss": 0.5}\n{"step": 3, "d_lo'
    )
    (tmp_path / "scalars.csv").write_text("step,key,value\n1,d_loss,1.0\n2,d_loss,0.5\n3,d_lo")
    wandb = OmegaConf.create({"mode": "disabled"})
    RunLog(tmp_path, {}, wandb, False, resume_step=2).close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    assert f"{tmp_path / JSONL} line 3 dropped on resume (partial last line)" in caplog.text
    assert (tmp_path / "scalars.csv").read_text().endswith("2,d_loss,0.5\n")


def test_readers_skip_bad_lines_and_read_nan_values(tmp_path, caplog) -> None:
    _write_log(
        tmp_path, '{"step": 1, "d_loss": "nan"}\n{"step": 2, "d_l\n{"step": 3, "g_loss": "inf"}\n'
    )
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 3]
    assert np.isnan(records[0]["d_loss"]) and records[1]["g_loss"] == float("inf")
    assert f"{tmp_path / JSONL} line 2 skipped" in caplog.text


def test_restart_from_zero_truncates_the_old_log_and_removes_stale_temporaries(tmp_path) -> None:
    _write_log(tmp_path / "r", '{"step": 2, "d_loss": 1.0}\n{"step": 4, "d_loss": 1.0}\n')
    folder = checkpoint.checkpoint_dir(tmp_path / "r")
    folder.mkdir(parents=True)
    stale = folder / ".ckpt_0000001.pt.k2j3h4.tmp"  # a write killed by SIGKILL
    stale.write_bytes(b"x" * 1000)
    run_dir = run(tmp_path, "run_name=r", *SHORT)
    assert [r["step"] for r in read_metrics(run_dir)] == [2]  # not 2, 4, 2
    assert not stale.exists() and not list(folder.glob("*.tmp"))


def test_make_table1_reports_nan_values_instead_of_crashing(tmp_path) -> None:
    base = OmegaConf.to_container(compose_cfg(tmp_path, "experiment=table1_cifar10"), resolve=True)
    base["train"]["iterations"] = 10
    for seed, value in enumerate([7.0, 7.5, "nan"]):
        write_run(
            tmp_path, base, "sn", 1.0, seed, [{"step": 10, "is50k": value, "fid10k_5k": 30.0}]
        )
    # A crash mid-write in another run's log: skipped with a warning, not a crash.
    with (tmp_path / "cifar10-cnn-sn-s1.0-seed0" / JSONL).open("a") as f:
        f.write('{"step": 11, "is5')
    table = build_table(find_runs(tmp_path))
    is_row = next(r for r in table.rows if r.group.metric == "is50k")
    assert is_row.group.values == {0: 7.0, 1: 7.5}
    assert any("is50k is nan" in p and "seed=2" in p for p in table.problems)
    from scripts import make_table1

    assert make_table1.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0


# --- evaluation -----------------------------------------------------------------------------


def test_garbage_inception_weights_fail_at_start_up_naming_the_file(tmp_path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(InvalidInceptionWeights, match=rf"{garbage} does not load"):
        run(tmp_path, "run_name=r", "eval.every=1", f"eval.inception_weights={garbage}")
    assert not (tmp_path / "r").exists()  # before any data, model or file


def test_non_finite_generated_images_stop_evaluation() -> None:
    def sample(n: int) -> torch.Tensor:
        return torch.full((n, 3, 8, 8), float("nan"))

    with pytest.raises(NonFiniteImagesError, match="NaN/Inf pixels"):
        extract_generated(sample, (-1.0, 1.0), None, stats_at=[4], num_logits=4, batch_size=4)


def _evaluate_cfg(**keys):
    checkpoint_eval.register_configs()
    cfg = OmegaConf.structured(checkpoint_eval.EvaluateConfig)
    cfg.eval.metrics = ["is50k"]
    for key, value in keys.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_evaluate_skips_unreadable_checkpoints(tmp_path, monkeypatch, caplog) -> None:
    weights = tmp_path / "w.pth"
    weights.touch()
    monkeypatch.setattr(checkpoint_eval, "preflight", lambda eval_cfg: str(weights))
    evaluated = []

    def fake(state, ckpt_path, cfg, device, datasets):
        evaluated.append(ckpt_path.name)
        return {"checkpoint": str(ckpt_path), "step": state["step"],
                "is50k": {"mean": 1.0, "std": 0.0, "reduced": False}, "protocol": {}}  # fmt: skip

    monkeypatch.setattr(checkpoint_eval, "evaluate_checkpoint", fake)
    checkpoint.save_checkpoint(tmp_path, 1, tiny_state(1), keep=3)
    ckpt(tmp_path, 2).write_bytes(b"trunc")
    rows = checkpoint_eval.evaluate(_evaluate_cfg(run_dir=str(tmp_path)))
    assert evaluated == ["ckpt_0000001.pt"] and len(rows) == 1
    assert "skipped" in caplog.text and "ckpt_0000002.pt does not load" in caplog.text
    with pytest.raises(checkpoint.NoValidCheckpointError, match="ckpt_0000002.pt"):
        checkpoint_eval.evaluate(_evaluate_cfg(checkpoint=str(ckpt(tmp_path, 2))))


def test_evaluate_writes_results_next_to_the_run_never_at_the_root(tmp_path) -> None:
    loose = tmp_path / "x" / "model.pt"
    loose.parent.mkdir()
    loose.touch()
    results, _ = checkpoint_eval.checkpoints_of(_evaluate_cfg(checkpoint=str(loose)))
    assert results == tmp_path / "x" / "eval"
    inside = ckpt(tmp_path / "run", 5)
    inside.parent.mkdir(parents=True)
    inside.touch()
    results, _ = checkpoint_eval.checkpoints_of(_evaluate_cfg(checkpoint=str(inside)))
    assert results == tmp_path / "run" / "eval"
    out = tmp_path / "elsewhere"
    results, _ = checkpoint_eval.checkpoints_of(
        _evaluate_cfg(checkpoint=str(inside), out_dir=str(out))
    )
    assert results == out


# --- data errors name the file ----------------------------------------------------------------


def test_mnist_file_with_a_wrong_magic_is_named(tmp_path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes((1234).to_bytes(4, "big") + bytes(12))
    with pytest.raises(
        DatasetNotFoundError, match=r"train-images-idx3-ubyte is not an MNIST idx"
    ) as err:
        load_dataset("mnist", str(tmp_path), download=False)
    assert "magic number 1234, expected 2051" in str(err.value)


def test_truncated_jpeg_is_named_even_in_a_worker(tmp_path) -> None:
    folder = tmp_path / "train" / "n0001"
    folder.mkdir(parents=True)
    Image.new("RGB", (20, 20), "red").save(folder / "a.JPEG")
    Image.new("RGB", (20, 20), "blue").save(folder / "b.JPEG")
    data = (folder / "b.JPEG").read_bytes()
    (folder / "b.JPEG").write_bytes(data[: len(data) // 2])
    images = load_dataset("imagenet", str(tmp_path), resolution=8)
    assert images[0].shape == (3, 8, 8)
    loader = torch.utils.data.DataLoader(images, batch_size=2, num_workers=1)
    with pytest.raises(CorruptImageError, match=r"b\.JPEG\) cannot be decoded"):
        next(iter(loader))


# --- files follow the umask ---------------------------------------------------------------------


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664)])
def test_atomic_files_follow_the_umask(tmp_path, umask, mode) -> None:
    previous = os.umask(umask)
    try:
        with atomic_write(tmp_path / "f.bin") as f:
            f.write(b"x")
        RunLock(tmp_path).acquire().release()
    finally:
        os.umask(previous)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == mode
    assert (tmp_path / ".lock").stat().st_mode & 0o777 == mode


# --- graceful signals: the chain to submitit's handler ------------------------------------------


def test_stop_signal_hands_over_to_the_previous_handler_then_exits(tmp_path) -> None:
    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    try:
        with GracefulStop() as stop:
            os.kill(os.getpid(), signal.SIGUSR2)
            deadline = time.time() + 5
            while stop.received is None and time.time() < deadline:
                time.sleep(0.01)
            assert stop.received == signal.SIGUSR2 and seen == []  # recorded, not acted on
            with pytest.raises(SystemExit) as exit_info:
                stop.finish()
        assert seen == [signal.SIGUSR2]  # e.g. submitit's requeue
        assert exit_info.value.code == 128 + signal.SIGUSR2
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_second_ctrl_c_interrupts_at_once() -> None:
    with GracefulStop() as stop:
        stop._handle(signal.SIGINT, None)
        with pytest.raises(KeyboardInterrupt):
            stop._handle(signal.SIGINT, None)
