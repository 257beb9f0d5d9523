"""harness.threads: the default CPU thread count and the OpenMP wait policy."""

from __future__ import annotations

import os

import pytest
import torch

from harness import threads

ENV_KEYS = (
    "OMP_NUM_THREADS",
    "SLURM_CPUS_PER_TASK",
    "LOCAL_WORLD_SIZE",
    threads.RUNS_PER_DEVICE_ENV,
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    return monkeypatch


def test_default_is_the_affinity_mask_divided_among_sharers(clean_env: pytest.MonkeyPatch) -> None:
    assert threads.threads_for_this_process() == 8
    clean_env.setenv("SLURM_CPUS_PER_TASK", "6")  # smaller than the mask: SLURM's share
    assert threads.threads_for_this_process() == 6
    clean_env.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: 2 ranks on this node
    assert threads.threads_for_this_process() == 3
    clean_env.setenv(threads.RUNS_PER_DEVICE_ENV, "4")  # 4 runs packed per GPU: 8 sharers
    assert threads.threads_for_this_process() == 1  # never 0
    clean_env.setenv("OMP_NUM_THREADS", "5")  # the user's explicit choice wins
    assert threads.threads_for_this_process() == 5


def test_bad_values_name_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(threads.RUNS_PER_DEVICE_ENV, "two")
    with pytest.raises(ValueError, match="BSSN_RUNS_PER_DEVICE='two'"):
        threads.threads_for_this_process()
    with pytest.raises(ValueError, match="train.threads=0"):
        threads.configure(0)


def test_configure_sets_torch_threads(clean_env: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        assert threads.configure(3) is None and torch.get_num_threads() == 3
        clean_env.setenv("OMP_NUM_THREADS", "2")
        assert threads.configure(None) is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_load_aware_threads_leave_busy_cpus_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """From /proc/stat-like counters: 4 CPUs, one kept busy by another process."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    clock = {"busy": 0.0, "total": 0.0, "own": 0.0}
    monkeypatch.setattr(threads, "_cpu_times", lambda cpus: (clock["busy"], clock["total"]))
    monkeypatch.setattr(os, "times", lambda: os.times_result((clock["own"], 0, 0, 0, 0)))
    monkeypatch.setattr(threads.time, "sleep", lambda s: advance(s, busy_cpus=1, own_cpus=0))

    def advance(seconds: float, busy_cpus: float, own_cpus: float) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        clock["total"] += 4 * seconds * tick
        clock["busy"] += (busy_cpus + own_cpus) * seconds * tick
        clock["own"] += own_cpus * seconds

    adaptive = threads.LoadAwareThreads(limit=4, period=0.0)
    assert adaptive.threads == 3  # one CPU is another process's
    advance(10, busy_cpus=0, own_cpus=3)  # the neighbour left; our 3 threads ran
    assert adaptive.update() == 4
    advance(10, busy_cpus=2, own_cpus=2)  # two busy neighbours arrive
    assert adaptive.update() == 2
    advance(10, busy_cpus=2, own_cpus=2)
    assert adaptive.update() is None  # unchanged
    advance(10, busy_cpus=6, own_cpus=0.5)  # more busy threads than CPUs: at least 1
    assert adaptive.update() == 1
