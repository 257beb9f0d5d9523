"""CPU threads per process: a default that is right without thought, on shared machines too.

Two decisions, both taken before any heavy work:

- how many intra-op threads (``threads_for_this_process``): the CPUs this process may run
  on (its affinity mask, which SLURM, taskset and containers set; ``SLURM_CPUS_PER_TASK``
  when smaller), divided among the processes that share them: torchrun's
  ``LOCAL_WORLD_SIZE`` and ``BSSN_RUNS_PER_DEVICE`` (runs packed per GPU, each seeing the
  whole allocation); then no more than the CPUs of that set that other processes leave
  idle (``LoadAwareThreads``, from /proc/stat: a thread on a CPU another process keeps
  busy stalls every barrier of its siblings). An explicit ``OMP_NUM_THREADS`` always wins.
OpenMP's wait policy is left at libgomp's default (spin, then sleep): with no more threads
than idle CPUs spinning is fastest (on the development machine, 2 threads ran at 14.1 it/s
spinning and 8.4 with OMP_WAIT_POLICY=PASSIVE), and with a thread on a busy CPU every
policy loses to fewer threads (README, Performance).
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)

#: Runs packed on one device (and so on one CPU set) by a launcher; divides the threads.
RUNS_PER_DEVICE_ENV = "BSSN_RUNS_PER_DEVICE"


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


def explicit_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS")
    return _positive_int("OMP_NUM_THREADS", value.split(",")[0]) if value else None


def threads_for_this_process() -> int:
    """``OMP_NUM_THREADS`` when set, else available_cpus() // sharing_processes() (>= 1)."""
    return explicit_threads() or max(1, available_cpus() // sharing_processes())


def _cpu_times(cpus: set[int]) -> tuple[float, float]:
    """(busy, total) jiffies summed over ``cpus``, from /proc/stat."""
    busy = total = 0.0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                values = [float(x) for x in fields[:8]]
                total += sum(values)
                busy += sum(values) - values[3] - values[4]  # minus idle and iowait
    return busy, total


class LoadAwareThreads:
    """Threads = the CPUs of this process's set that other processes leave idle (>= 1,
    <= ``limit``), re-measured every ``period`` seconds over the time since the last look.

    Busy CPUs come from /proc/stat over the process's affinity set, minus this process's
    own CPU time (os.times), so jobs on other CPUs of a node do not count. Where /proc/stat
    is unavailable the count stays at ``limit``.
    """

    def __init__(self, limit: int, period: float = 10.0, first_window: float = 0.2) -> None:
        self.limit, self.period = limit, period
        try:
            self.cpus = os.sched_getaffinity(0)
        except AttributeError:
            self.cpus = set(range(os.cpu_count() or 1))
        self._snapshot = self._now()
        self._last = time.monotonic()
        self.threads = limit
        if self._snapshot is not None and limit > 1:
            time.sleep(first_window)
            self.threads = self._measure()

    def _now(self) -> tuple[float, float, float] | None:
        try:
            busy, total = _cpu_times(self.cpus)
        except (OSError, ValueError):
            return None
        own = os.times()
        return busy, total, own.user + own.system

    def _measure(self) -> int:
        now = self._now()
        if now is None or self._snapshot is None:
            return self.limit
        busy, total, own = (a - b for a, b in zip(now, self._snapshot, strict=True))
        self._snapshot, self._last = now, time.monotonic()
        if total <= 0:
            return self.threads
        # jiffies -> CPUs: total jiffies over the window cover len(cpus) CPUs.
        seconds = total / len(self.cpus) / os.sysconf("SC_CLK_TCK")
        busy_elsewhere = max(0.0, busy / total * len(self.cpus) - own / max(seconds, 1e-9))
        idle = round(len(self.cpus) - busy_elsewhere)
        return max(1, min(self.limit, idle))

    def update(self) -> int | None:
        """Re-measure when ``period`` has passed; returns the new count when it changed."""
        if self.limit == 1 or time.monotonic() - self._last < self.period:
            return None
        n = self._measure()
        if n == self.threads:
            return None
        self.threads = n
        return n


def configure(threads: int | None = None, *, follow_load: bool = True) -> LoadAwareThreads | None:
    """Set torch's intra-op threads: ``threads``, ``OMP_NUM_THREADS``, or the load-aware
    default above. Returns the LoadAwareThreads to ``update`` from a loop when the count is
    automatic and ``follow_load`` is set, else None (a fixed count)."""
    import torch

    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise ValueError(f"train.threads={threads!r} must be a positive integer or null (auto)")
    adaptive = None
    if threads is not None:
        n = int(threads)
    elif explicit_threads() is not None:
        n = explicit_threads()
    else:
        chooser = LoadAwareThreads(threads_for_this_process())
        n = chooser.threads
        adaptive = chooser if follow_load else None
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    log.info("CPU threads: %d", n)
    return adaptive


def is_automatic(threads: int | None) -> bool:
    """Whether the count is chosen here (neither ``threads`` nor OMP_NUM_THREADS is given)."""
    return threads is None and explicit_threads() is None


def update(adaptive: LoadAwareThreads | None) -> None:
    """From a training loop: follow the load (cheap; re-measures every ``period`` s)."""
    if adaptive is not None and (n := adaptive.update()) is not None:
        import torch

        torch.set_num_threads(n)
        log.info("CPU threads: %d (other processes' load changed)", n)
