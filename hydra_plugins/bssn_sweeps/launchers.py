"""Launchers ``bssn_slurm`` (``launcher=slurm``) and ``bssn_local`` (``launcher=local_packed``).

``bssn_slurm`` is hydra-submitit-launcher's SLURM launcher plus what a shared cluster needs
(README, "Clusters"):

- ``runs_per_gpu=K``: K sweep jobs per allocation of one GPU, each its own process
  (``packing.PackedRuns``), CPU threads split between them, requeue resuming each;
- resources per run: ``cpus_per_run`` and ``mem_gb_per_run`` times the runs (or the DDP
  processes) of an allocation, unless ``cpus_per_task`` / ``mem_gb`` are given;
- ``gres_gpus=true``: ``--gres=gpu:N`` instead of ``--gpus-per-node=N`` (older sites);
- ``setup`` (shell lines before ``srun``: module loads, venv activation) and ``python`` (the
  command in the job). Without ``setup``, the submitting venv is activated;
- ``wait=false``: submit and return; the submitting process need not stay alive.

``bssn_local`` runs a sweep on this machine, ``runs_per_gpu`` runs at a time through the
same ``PackedRuns`` (a workstation with one GPU).
"""

# No `from __future__ import annotations`: Hydra's plugin scan executes this module outside
# sys.modules (see grid_sweeper.py).
import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.bssn_sweeps.packing import PackedRuns

log = logging.getLogger(__name__)


@dataclass
class BssnSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.bssn_sweeps.launchers.BssnSlurmLauncher"
    runs_per_gpu: int = 1  # sweep jobs packed into one allocation of one GPU
    cpus_per_run: int = 4  # cpus_per_task = this x runs_per_gpu, unless cpus_per_task is set
    mem_gb_per_run: int = 12  # mem_gb = this x runs (or DDP processes), unless mem_gb is set
    gres_gpus: bool = False  # --gres=gpu:N instead of --gpus-per-node=N
    python: str = "python"  # the interpreter command in the job, after `setup`
    wait: bool = True  # false: submit, log the job ids and return


@dataclass
class BssnLocalConf:
    _target_: str = "hydra_plugins.bssn_sweeps.launchers.BssnLocalLauncher"
    runs_per_gpu: int = 2  # runs side by side, each with its share of the CPU threads
    folder: str = "${hydra.sweep.dir}/.packed"  # child specs, results and logs


ConfigStore.instance().store(
    group="hydra/launcher", name="bssn_slurm", node=BssnSlurmConf, provider="bssn"
)
ConfigStore.instance().store(
    group="hydra/launcher", name="bssn_local", node=BssnLocalConf, provider="bssn"
)


def _first_set(*values: Any) -> Any:
    """``${bssn.first_set:a,b}``: the first value that is not null (the job name is the
    experiment's, else the script's; oc.select returns a null it finds)."""
    return next((value for value in values if value is not None), None)


OmegaConf.register_new_resolver("bssn.first_set", _first_set, replace=True)

_OURS = ("runs_per_gpu", "cpus_per_run", "mem_gb_per_run", "gres_gpus", "python", "wait")


def slurm_resources(params: dict[str, Any]) -> dict[str, Any]:
    """submitit's launcher parameters for one allocation, from ours (see the module doc)."""
    p = dict(params)
    runs = p["runs_per_gpu"]
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"hydra.launcher.runs_per_gpu={runs!r} must be an integer >= 1")
    gpus = p.get("gpus_per_node")
    if runs > 1 and (p["nodes"] != 1 or gpus not in (1, None)):
        raise ValueError(
            f"hydra.launcher.runs_per_gpu={runs} packs single-GPU runs into one allocation; "
            f"it needs nodes=1 and gpus_per_node=1 (got nodes={p['nodes']}, "
            f"gpus_per_node={gpus}). DDP runs take one allocation each (runs_per_gpu=1)."
        )
    processes = 1 if runs > 1 else p["tasks_per_node"]  # packed: one parent, K children
    p["tasks_per_node"] = processes
    if p.get("cpus_per_task") is None:
        p["cpus_per_task"] = p["cpus_per_run"] * runs
    if p.get("mem_gb") is None:
        p["mem_gb"] = p["mem_gb_per_run"] * runs * processes
    if p["gres_gpus"] and gpus:
        if p.get("gres"):
            raise ValueError(
                f"hydra.launcher.gres_gpus=true and gres={p['gres']!r}: give one of the two"
            )
        p["gres"], p["gpus_per_node"] = f"gpu:{gpus}", None
    if p.get("setup") is None and sys.prefix != sys.base_prefix:
        p["setup"] = [f"source {shlex.quote(sys.prefix)}/bin/activate"]  # the submitting venv
    for key in _OURS:
        p.pop(key)
    return p


class BssnSlurmLauncher(SlurmLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        runs, python, wait = (self.params[k] for k in ("runs_per_gpu", "python", "wait"))
        params = slurm_resources(self.params)
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=params.pop("submitit_folder"),
            slurm_max_num_timeout=params.pop("max_num_timeout"),
            slurm_python=python,
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())  # the rest: slurm_<key>
        executor.update_parameters(
            **{(k if k in base else f"slurm_{k}"): v for k, v in params.items()}
        )
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        job_args = _job_args(job_overrides, initial_job_idx)
        if runs == 1:
            jobs = executor.map_array(self, *zip(*job_args, strict=True))
        else:
            packs = [job_args[i : i + runs] for i in range(0, len(job_args), runs)]
            jobs = executor.map_array(PackedRuns(self, runs), packs)
        ids = ", ".join(job.job_id for job in jobs[:3]) + (", ..." if len(jobs) > 3 else "")
        log.info(
            "submitted %d runs as %d SLURM jobs (%d run(s) each): %s",
            len(job_args), len(jobs), runs, ids,
        )  # fmt: skip
        if not wait:
            log.info("not waiting (hydra.launcher.wait=false); follow them with: squeue --me")
            return [
                JobReturn(status=JobStatus.COMPLETED, _return_value=f"submitted as {job.job_id}")
                for job in jobs
            ]
        if runs == 1:
            return [job.results()[0] for job in jobs]
        return [ret for job in jobs for ret in job.results()[0]]


class BssnLocalLauncher(Launcher):
    def __init__(self, runs_per_gpu: int, folder: str) -> None:
        self.runs_per_gpu = runs_per_gpu
        self.folder = folder
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        job_args = _job_args(job_overrides, initial_job_idx)
        return PackedRuns(self, self.runs_per_gpu, self.folder)(job_args)


def _job_args(job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[tuple]:
    """The submitit launcher's per-job arguments (overrides, dir key, number, id, state)."""
    out = []
    for i, overrides in enumerate(job_overrides):
        idx = initial_job_idx + i
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        out.append(
            (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
        )
    return out
