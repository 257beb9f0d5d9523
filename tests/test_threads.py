"""harness.threads: the default CPU thread count and the OpenMP wait policy."""

from __future__ import annotations

import os
import subprocess
import sys

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
        assert threads.configure(3) == 3 and torch.get_num_threads() == 3
        clean_env.setenv("OMP_NUM_THREADS", "2")
        assert threads.configure(None) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_wait_policy_is_set_before_torch_loads_openmp() -> None:
    """In a fresh process the entry points' import order gives libgomp the policy."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = (
        "from harness import threads; ok = threads.set_wait_policy_env(); import os, torch; "
        "print(ok, os.environ['OMP_WAIT_POLICY'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["True", threads.WAIT_POLICY]
    late = "import torch; from harness import threads; print(threads.set_wait_policy_env())"
    out = subprocess.run(
        [sys.executable, "-c", late], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False"]  # too late: reported, so callers can warn
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's choice is kept
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["True", "ACTIVE"]
