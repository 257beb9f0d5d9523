"""Several sweep runs on one device: each run its own process, CPU threads split between them.

A 32x32 CNN at batch 64 is launch-bound on a modern GPU: one run keeps a small fraction of
the device busy, so K runs side by side finish K cells in about the time of one (README,
"Clusters"). ``PackedRuns`` is what one SLURM allocation of one GPU executes (the launcher
``bssn_slurm`` with ``runs_per_gpu=K``), and what ``bssn_local`` runs on a workstation.

Each run is a child process ``python -m hydra_plugins.bssn_sweeps.packing <spec>`` that
composes its sweep job and runs it as Hydra's launchers do (``run_job``): its own run
directory, log, lock and checkpoints. The child's environment says how it is packed:

- ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``: the allocation's CPUs divided by the runs
  started together (``SLURM_CPUS_PER_TASK``, else this machine's CPUs), at least 1;
- ``BSSN_RUNS_PER_DEVICE``: how many runs share the device;
- ``WORLD_SIZE=1``, ``RANK=0``, ``LOCAL_RANK=0``: a packed run is one process, never DDP.

Requeue: submitit calls ``checkpoint`` when SLURM signals the allocation (preemption, time
limit). It forwards the signal to the children, which checkpoint and exit (or die, losing
at most ``train.ckpt_freq`` iterations), waits for them, and resubmits the same pack: each
run resumes from its newest checkpoint and a finished run returns at once.
"""

# No `from __future__ import annotations`: Hydra's plugin scan executes this module outside
# sys.modules (see grid_sweeper.py).
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Environment variable telling a run how many runs share its device.
RUNS_PER_DEVICE_ENV = "BSSN_RUNS_PER_DEVICE"
#: Seconds the children get to checkpoint and exit after the allocation is signalled.
SIGNAL_GRACE_S = 90
_POLL_S = 0.2


def available_cpus() -> int:
    """The CPUs this allocation (SLURM_CPUS_PER_TASK) or this process may use."""
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def child_environment(slots: int, index: int) -> dict[str, str]:
    threads = str(max(1, available_cpus() // slots))
    return {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        RUNS_PER_DEVICE_ENV: str(slots),
        "BSSN_PACKED_INDEX": str(index),
        "WORLD_SIZE": "1",
        "RANK": "0",
        "LOCAL_RANK": "0",
    }


def run_one(launcher: Any, job_args: tuple) -> Any:
    """One sweep job, as Hydra's launchers run it: compose its config, then ``run_job``."""
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    overrides, job_dir_key, job_num, job_id, singleton_state = job_args
    Singleton.set_state(singleton_state)
    setup_globals()
    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
    with open_dict(config.hydra.job) as job:
        job.id = os.environ.get("SLURM_JOB_ID", job_id)
        job.num = job_num
    return run_job(
        hydra_context=launcher.hydra_context,
        task_function=launcher.task_function,
        config=config,
        job_dir_key=job_dir_key,
        job_subdir_key="hydra.sweep.subdir",
    )


class PackedRuns:
    """Runs sweep jobs as child processes, ``slots`` at a time; returns their JobReturns.

    Called with a list of job argument tuples (the submitit launcher's), in ``folder``
    (child specs, results and logs; ``None``: submitit's job folder).
    """

    def __init__(self, launcher: Any, slots: int, folder: str | None = None) -> None:
        if slots < 1:
            raise ValueError(f"runs_per_gpu={slots} must be >= 1")
        self.launcher = launcher
        self.slots = slots
        self.folder = folder
        self._children: list[subprocess.Popen] = []

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_children": []}  # processes belong to one allocation

    def _folder(self) -> tuple[Path, str]:
        if self.folder is not None:
            return Path(self.folder), "local"
        import submitit

        env = submitit.JobEnvironment()
        return env.paths.folder, str(env.job_id)

    def __call__(self, jobs: list[tuple]) -> list[Any]:
        import cloudpickle

        folder, tag = self._folder()
        folder.mkdir(parents=True, exist_ok=True)
        pending = list(enumerate(jobs))
        running: dict[int, tuple[subprocess.Popen, Path]] = {}
        results: dict[int, Any] = {}
        slots = min(self.slots, len(jobs))
        while pending or running:
            while pending and len(running) < slots:
                i, job_args = pending.pop(0)
                spec = folder / f"{tag}_run{i}.pkl"
                spec.with_suffix(".result.pkl").unlink(missing_ok=True)
                with open(spec, "wb") as f:
                    cloudpickle.dump((self.launcher, job_args), f)
                with open(spec.with_suffix(".log"), "ab") as out:
                    child = subprocess.Popen(
                        [sys.executable, "-m", "hydra_plugins.bssn_sweeps.packing", str(spec)],
                        env=child_environment(slots, len(running)),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        preexec_fn=_stop_with_parent,
                    )
                log.info("run %d (%s) started: pid %d", i, " ".join(job_args[0]), child.pid)
                running[i] = (child, spec)
                self._children.append(child)
            for i, (child, spec) in list(running.items()):
                if child.poll() is not None:
                    results[i] = _result(spec, child.returncode)
                    del running[i]
            time.sleep(_POLL_S)
        return [results[i] for i in range(len(jobs))]

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's requeue hook: stop the runs so they checkpoint, then resubmit the pack."""
        import submitit

        alive = [c for c in self._children if c.poll() is None]
        for child in alive:
            child.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + SIGNAL_GRACE_S
        for child in alive:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _stop_with_parent() -> None:
    """In the child (Linux): SIGTERM when the parent dies, as SLURM would stop the whole
    allocation; a run never outlives its pack and races its requeued self."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _result(spec: Path, returncode: int) -> Any:
    """The child's JobReturn, or a failed one when the child died without writing it."""
    import cloudpickle
    from hydra.core.utils import JobReturn, JobStatus

    path = spec.with_suffix(".result.pkl")
    if path.is_file():
        with open(path, "rb") as f:
            return cloudpickle.load(f)
    error = RuntimeError(
        f"packed run {spec.stem} exited with code {returncode} without a result; "
        f"its output is in {spec.with_suffix('.log')}"
    )
    return JobReturn(status=JobStatus.FAILED, _return_value=error)


def main(spec: str) -> int:
    """Child process: run the job in ``spec`` and pickle its JobReturn beside it."""
    import cloudpickle

    with open(spec, "rb") as f:
        launcher, job_args = cloudpickle.load(f)
    result = run_one(launcher, job_args)
    out = Path(spec).with_suffix(".result.pkl")
    try:
        payload = cloudpickle.dumps(result)
    except Exception:  # an exception that does not pickle: keep its text
        result._return_value = RuntimeError(traceback.format_exc())
        payload = cloudpickle.dumps(result)
    from harness.atomic import atomic_write

    with atomic_write(out) as f:
        f.write(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
