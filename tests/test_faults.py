"""Injected faults on real CPU runs: SIGKILL at random moments (inside checkpoint writes
too), and the graceful stop signals SIGTERM, SIGUSR2 and SIGINT. Each time the run is
resumed, and its final checkpoint must equal an uninterrupted run's, entry by entry.

Runs are forked from a forkserver that has already imported torch and the harness, so a
relaunch costs milliseconds, not an interpreter start-up: ten kills stay cheap.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train import ROOT, TINY, compose_cfg, count_entries, entries_equal, run

from harness.training import checkpoint
from harness.training.loop import train

#: 40 iterations, a checkpoint every 2 (many writes to land in), one log line at the end.
ARGS = ["train.iterations=40", "train.ckpt_freq=2", "train.log_freq=100", "train.vis_freq=0"]


def _train_child(cfg, run_dir: str) -> None:
    train(cfg, Path(run_dir))


@pytest.fixture(scope="module")
def forkserver():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "harness.training.loop", "data", "models"])
    return ctx


def _uninterrupted(tmp_path: Path, *args: str) -> dict:
    """The final checkpoint of the run without faults; its folder is then moved aside, so
    the faulty run uses the same out_dir and run_name (and so an equal config)."""
    run_dir = run(tmp_path, *args)
    state = torch.load(checkpoint.list_checkpoints(run_dir)[-1], weights_only=True)
    run_dir.rename(run_dir.with_name("uninterrupted"))
    return state


def _temporaries(run_dir: Path) -> list[Path]:
    return list(checkpoint.checkpoint_dir(run_dir).glob(".ckpt_*.tmp"))


def _kill_inside_a_write(proc, run_dir: Path, nth: int, timeout: float) -> bool:
    """SIGKILL ``proc`` as soon as its ``nth`` checkpoint write of this attempt is seen in
    progress (a temporary file exists); True if it was."""
    seen, last, deadline = 0, None, time.monotonic() + timeout
    while proc.is_alive() and time.monotonic() < deadline:
        tmp = _temporaries(run_dir)
        if tmp and tmp[0] != last:
            seen, last = seen + 1, tmp[0]
            if seen == nth:
                proc.kill()
                return True
        time.sleep(0.0005)
    proc.kill()
    return False


@pytest.mark.slow
def test_sigkill_at_random_moments_changes_nothing(tmp_path: Path, forkserver) -> None:
    expected = _uninterrupted(tmp_path, *ARGS)
    cfg = compose_cfg(tmp_path, *ARGS)
    run_dir = Path(cfg.out_dir) / cfg.run_name
    chance = random.Random(10)
    kills, in_write, attempts = [], 0, 0
    while len(kills) < 12 and attempts < 40:
        attempts += 1
        proc = forkserver.Process(target=_train_child, args=(cfg, str(run_dir)))
        proc.start()
        if attempts % 2:  # at a random moment of the run
            proc.join(chance.uniform(0.05, 2.0))
            proc.kill()
        else:  # inside the 1st to 3rd checkpoint write of this attempt
            _kill_inside_a_write(proc, run_dir, chance.randint(1, 3), timeout=20)
        proc.join()
        if proc.exitcode == 0:
            break  # the run finished before the kill
        assert proc.exitcode == -signal.SIGKILL, proc.exitcode
        torn = bool(_temporaries(run_dir))  # killed between a write's start and its rename
        in_write += torn
        kills.append((checkpoint.latest_step(run_dir), torn))
    proc = forkserver.Process(target=_train_child, args=(cfg, str(run_dir)))
    proc.start()
    proc.join()
    assert proc.exitcode == 0
    final = torch.load(checkpoint.list_checkpoints(run_dir)[-1], weights_only=True)
    differences = entries_equal(expected, final)
    print(
        f"{len(kills)} SIGKILLs ({in_write} inside a checkpoint write), newest checkpoint "
        f"step at each kill: {[step for step, _ in kills]}; final checkpoint: "
        f"{count_entries(final)} entries compared, {len(differences)} differ"
    )
    assert len(kills) >= 10 and in_write >= 3, kills
    assert differences == []
    assert not _temporaries(run_dir)  # each relaunch removed the torn writes
    assert len(checkpoint.list_checkpoints(run_dir)) <= 2  # train.keep_checkpoints


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR2, signal.SIGINT])
def test_stop_signal_checkpoints_exits_and_resumes_identically(
    tmp_path: Path, forkserver, sig: signal.Signals
) -> None:
    args = [*ARGS, "train.iterations=30", "train.ckpt_freq=0"]  # only the last is scheduled
    expected = _uninterrupted(tmp_path, *args)
    cfg = compose_cfg(tmp_path, *args)
    run_dir = Path(cfg.out_dir) / cfg.run_name
    proc = forkserver.Process(target=_train_child, args=(cfg, str(run_dir)))
    proc.start()
    deadline = time.monotonic() + 60
    while not (run_dir / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # into the iterations
    os.kill(proc.pid, sig)
    proc.join(60)
    assert proc.exitcode == 128 + sig  # 143 / 140 / 130: "stopped by this signal"
    stopped_at = checkpoint.latest_step(run_dir)
    assert stopped_at is not None and stopped_at < 30, "no checkpoint, or the run had finished"
    run(tmp_path, *args)
    final = torch.load(checkpoint.list_checkpoints(run_dir)[-1], weights_only=True)
    assert entries_equal(expected, final) == []


@pytest.mark.slow
def test_train_py_stopped_by_sigusr2_saves_and_exits_140(tmp_path: Path) -> None:
    """The real entry point (Hydra and all) under SLURM's time-limit signal."""
    cmd = [sys.executable, str(ROOT / "train.py"), *TINY, f"out_dir={tmp_path}"]
    cmd += [*ARGS, "train.iterations=100000", "train.ckpt_freq=0", "run_name=r"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "r" / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGUSR2)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGUSR2, stderr[-2000:]
    assert "SIGUSR2 received" in stderr
    step = checkpoint.latest_step(tmp_path / "r")
    assert step and checkpoint.load(checkpoint.list_checkpoints(tmp_path / "r")[-1])["step"] == step
