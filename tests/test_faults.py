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
from test_train import ROOT, TINY, compose_cfg, count_entries, entries_equal

from harness.training import checkpoint
from harness.training.loop import train

#: 80 iterations, a checkpoint every 2 (many writes to land in), one log line at the end.
ARGS = ["train.iterations=80", "train.ckpt_freq=2", "train.log_freq=100", "train.vis_freq=0"]


def _train_child(cfg, run_dir: str) -> None:
    train(cfg, Path(run_dir))


@pytest.fixture(scope="module")
def forkserver():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "harness.training.loop", "data", "models"])
    return ctx


def _run_child(ctx, cfg, run_dir: Path) -> int:
    proc = ctx.Process(target=_train_child, args=(cfg, str(run_dir)))
    proc.start()
    proc.join()
    return proc.exitcode


def _uninterrupted(ctx, tmp_path: Path, *args: str) -> dict:
    """The final checkpoint of the run without faults, trained in a forkserver child like
    the faulty run (same thread settings, so the same float reductions). Its folder is then
    moved aside, so the faulty run has the same out_dir and run_name: an equal config."""
    cfg = compose_cfg(tmp_path, *args)
    run_dir = Path(cfg.out_dir) / cfg.run_name
    assert _run_child(ctx, cfg, run_dir) == 0
    state = torch.load(checkpoint.list_checkpoints(run_dir)[-1], weights_only=True)
    run_dir.rename(run_dir.with_name("uninterrupted"))
    return state


def _temporaries(run_dir: Path) -> list[Path]:
    return list(checkpoint.checkpoint_dir(run_dir).glob(".ckpt_*.tmp"))


def _kill_inside_a_write(proc, run_dir: Path, nth: int, timeout: float) -> None:
    """SIGKILL ``proc`` as soon as its ``nth`` checkpoint write of this attempt is seen in
    progress (its temporary file exists)."""
    seen, last, deadline = 0, None, time.monotonic() + timeout
    while proc.is_alive() and time.monotonic() < deadline:
        tmp = _temporaries(run_dir)
        if tmp and tmp[0] != last:
            seen, last = seen + 1, tmp[0]
            if seen == nth:
                break
        time.sleep(0.0005)
    proc.kill()


def _kill_after_a_checkpoint(proc, run_dir: Path, delay: float, timeout: float) -> None:
    """SIGKILL ``proc`` ``delay`` seconds after this attempt's first new checkpoint: a
    random moment among its iterations (and possibly its next write)."""
    before, deadline = checkpoint.latest_step(run_dir), time.monotonic() + timeout
    while proc.is_alive() and time.monotonic() < deadline:
        if checkpoint.latest_step(run_dir) != before:
            break
        time.sleep(0.001)
    time.sleep(delay)
    proc.kill()


@pytest.mark.slow
def test_sigkill_at_random_moments_changes_nothing(tmp_path: Path, forkserver) -> None:
    expected = _uninterrupted(forkserver, tmp_path, *ARGS)
    cfg = compose_cfg(tmp_path, *ARGS)
    run_dir = Path(cfg.out_dir) / cfg.run_name
    chance = random.Random(10)
    kills, in_write, attempts = [], 0, 0
    while len(kills) < 12 and attempts < 40:
        attempts += 1
        proc = forkserver.Process(target=_train_child, args=(cfg, str(run_dir)))
        proc.start()
        # Each attempt progresses a few iterations at most, so 12 kills fit in one run.
        mode = attempts % 3
        if mode == 0:  # a random moment of the start-up (data, models, checkpoint load)
            proc.join(chance.uniform(0.0, 0.5))
            proc.kill()
        elif mode == 1:  # inside the 1st or 2nd checkpoint write of this attempt
            _kill_inside_a_write(proc, run_dir, chance.randint(1, 2), timeout=60)
        else:  # a random moment of the iterations after a checkpoint
            _kill_after_a_checkpoint(proc, run_dir, chance.uniform(0.0, 0.15), timeout=60)
        proc.join()
        if proc.exitcode == 0:
            break  # the run finished before the kill
        assert proc.exitcode == -signal.SIGKILL, proc.exitcode
        torn = bool(_temporaries(run_dir))  # killed between a write's start and its rename
        in_write += torn
        kills.append((checkpoint.latest_step(run_dir), torn))
    assert _run_child(forkserver, cfg, run_dir) == 0
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
    expected = _uninterrupted(forkserver, tmp_path, *args)
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
    assert _run_child(forkserver, cfg, run_dir) == 0
    final = torch.load(checkpoint.list_checkpoints(run_dir)[-1], weights_only=True)
    assert entries_equal(expected, final) == []


@pytest.mark.slow
def test_train_py_stopped_by_sigusr2_saves_and_exits_140(tmp_path: Path) -> None:
    """The real entry point (Hydra and all) under SLURM's time-limit signal."""
    cmd = [sys.executable, str(ROOT / "train.py"), *TINY, f"out_dir={tmp_path}"]
    cmd += [*ARGS, "train.iterations=100000", "train.ckpt_freq=0", "run_name=r"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "r" / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGUSR2)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGUSR2, output[-2000:]
    assert "SIGUSR2 received" in output and "stopped by SIGUSR2" in output
    step = checkpoint.latest_step(tmp_path / "r")
    assert step and checkpoint.load(checkpoint.list_checkpoints(tmp_path / "r")[-1])["step"] == step
