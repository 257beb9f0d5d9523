"""CPU threads per process: a default that is right without thought, on shared machines too.

Two decisions, both taken before any heavy work:

- how many intra-op threads (``threads_for_this_process``): the CPUs this process may run
  on (its affinity mask, which SLURM, taskset and containers set; ``SLURM_CPUS_PER_TASK``
  when smaller), divided among the processes that share them: torchrun's
  ``LOCAL_WORLD_SIZE`` and ``BSSN_RUNS_PER_DEVICE`` (runs packed per GPU, each seeing the
  whole allocation). An explicit ``OMP_NUM_THREADS`` always wins.
- how OpenMP threads wait (``set_wait_policy_env``): libgomp's default spins for a while
  at every barrier. When another process shares the cores, a descheduled thread makes its
  sibling spin away a whole time slice at each of the thousands of barriers of a step:
  2 threads then ran 5x slower than 1 (README, Performance). ``OMP_WAIT_POLICY=PASSIVE``
  makes waiting threads sleep at once. libgomp reads it when it is loaded, i.e. at
  ``import torch``, so entry points import this module (which never imports torch at
  module level) before torch.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

#: Runs packed on one device (and so on one CPU set) by a launcher; divides the threads.
RUNS_PER_DEVICE_ENV = "BSSN_RUNS_PER_DEVICE"
#: What we set when the user set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT.
WAIT_POLICY = "PASSIVE"


_set_after_torch = False


def set_wait_policy_env() -> bool:
    """Default ``OMP_WAIT_POLICY`` to PASSIVE unless the user chose a policy. False when we
    set it after torch was imported: it then reaches subprocesses only."""
    global _set_after_torch
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY
        _set_after_torch = "torch" in sys.modules
    return not _set_after_torch


def _positive_int(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return n


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by SLURM_CPUS_PER_TASK."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm:
        cpus = min(cpus, _positive_int("SLURM_CPUS_PER_TASK", slurm))
    return max(cpus, 1)


def sharing_processes() -> int:
    """Processes that share this process's CPUs: torchrun's local ranks times packed runs."""
    n = 1
    for name in ("LOCAL_WORLD_SIZE", RUNS_PER_DEVICE_ENV):
        value = os.environ.get(name)
        if value:
            n *= _positive_int(name, value)
    return n


def threads_for_this_process() -> int:
    """``OMP_NUM_THREADS`` when set, else available_cpus() // sharing_processes() (>= 1)."""
    explicit = os.environ.get("OMP_NUM_THREADS")
    if explicit:
        return _positive_int("OMP_NUM_THREADS", explicit.split(",")[0])
    return max(1, available_cpus() // sharing_processes())


def configure(threads: int | None = None) -> int:
    """Set torch's intra-op threads (``threads`` or the default above); returns the count."""
    import torch

    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise ValueError(f"train.threads={threads!r} must be a positive integer or null (auto)")
    n = int(threads) if threads is not None else threads_for_this_process()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if _set_after_torch and n > 1:
        log.warning(
            "%d CPU threads, and torch was imported before harness set OMP_WAIT_POLICY: a busy "
            "neighbour process can slow training several-fold (README, Performance); import "
            "harness first or set OMP_WAIT_POLICY yourself",
            n,
        )
    return n
