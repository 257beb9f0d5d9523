"""Sweeps: the grids sweeper, the Table 1 and appendix presets, SLURM submission and DDP
under submitit, make_table1's aggregation, and a tiny local sweep that ends in a table."""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import sys
from pathlib import Path

import pytest
import submitit
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from submitit.core.utils import DelayedSubmission

import bssn
from harness.results import build_table, expected_from_preset, find_runs
from harness.results.paper import PAPER
from harness.training import distributed
from harness.training.checkpoint import latest_step
from harness.training.config import register_configs, to_container
from hydra_plugins.bssn_sweeps.grid_sweeper import expand
from scripts import make_table1

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

register_configs()
# test_train's TINY run, cut to 2 iterations that log once (at the end: the analysis scalars
# cost seconds per log on a CPU) and checkpoint after each.
TINY = [
    "experiment=quickstart",
    "dataset.resolution=16",
    "train.batch_size=8",
    "train.iterations=2",
    "train.log_freq=100",
    "train.vis_freq=0",
    "train.ckpt_freq=1",
    "logger.progress=false",
]
SPEC_SCALES = [0.7, 0.8, 0.9, 1.0, 1.2, 1.4, 1.6]
CIFAR_BSSN = SPEC_SCALES + [1.8, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.2, 3.4, 3.6, 3.8, 4.0]
CIFAR_SSN = CIFAR_BSSN + [4.5, 5.0, 5.5, 6.0, 7.0, 8.0, 9.0, 10.0]


def compose_cfg(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def multirun(monkeypatch, *overrides: str) -> None:
    """`python train.py -m <overrides>` in this process (so monkeypatches reach the jobs)."""
    import train as train_script

    # --config-path: imported (not run), hydra.main would look for a `configs` module.
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "--config-path", str(CONFIGS), *overrides])
    try:
        train_script.main()
    finally:
        GlobalHydra.instance().clear()


# --- the grids sweeper ------------------------------------------------------------------


def test_expand_unions_products_and_the_command_line_wins() -> None:
    grids = [{"norm": "sn,bsn"}, {"norm": "bssn", "scale": "1.0,1.2"}]
    assert expand({"seed": "range(2)"}, grids, ["seed=7", "train.iterations=5"]) == [
        ["seed=7", "norm=sn", "train.iterations=5"],
        ["seed=7", "norm=bsn", "train.iterations=5"],
        ["seed=7", "norm=bssn", "scale=1.0", "train.iterations=5"],
        ["seed=7", "norm=bssn", "scale=1.2", "train.iterations=5"],
    ]
    assert expand({}, [{"norm": "sn"}, {"norm": "sn"}], []) == [["norm=sn"]]  # once
    # No grids: params times the command line, like Hydra's basic sweeper.
    assert expand({"seed": "0,1"}, [], ["norm=ssn,bssn"]) == [
        ["seed=0", "norm=ssn"],
        ["seed=0", "norm=bssn"],
        ["seed=1", "norm=ssn"],
        ["seed=1", "norm=bssn"],
    ]


@pytest.mark.parametrize(
    "preset,seeds,scales",
    [
        ("table1_cifar10", 5, {"ssn": CIFAR_SSN, "bssn": CIFAR_BSSN}),
        ("table1_stl10", 5, {"ssn": SPEC_SCALES, "bssn": SPEC_SCALES}),
        ("table1_celeba", 5, {"ssn": SPEC_SCALES, "bssn": SPEC_SCALES}),
        ("table1_imagenet", 3, {"ssn": [1.0, 1.2, 1.4, 1.6], "bssn": [1.0, 1.2, 1.4, 1.6]}),
    ],
)
def test_table1_presets_sweep_the_papers_grid_and_only_valid_cells(preset, seeds, scales) -> None:
    cells = expected_from_preset(preset, CONFIGS)
    dataset = preset.removeprefix("table1_")
    want = {(dataset, norm, 1.0, seed) for norm in ("sn", "bsn") for seed in range(seeds)}
    want |= {
        (dataset, norm, s, seed) for norm, ss in scales.items() for s in ss for seed in range(seeds)
    }
    assert cells == want
    for _, norm, scale, _ in cells:
        bssn.modes.check_scale(scale, norm)  # sn/bsn at 1 only: what bssn.apply accepts


def test_dry_run_lists_jobs_and_status_and_launches_nothing(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "runs"
    finished = out / "stl10-cnn-bssn-s1.2-seed0" / "checkpoints"
    half = out / "stl10-cnn-sn-s1.0-seed0" / "checkpoints"
    for folder, step in ((finished, 800_000), (half, 5000)):
        folder.mkdir(parents=True)
        (folder / f"ckpt_{step:07d}.pt").touch()
    multirun(
        monkeypatch,
        "experiment=table1_stl10",
        "seed=0",
        f"out_dir={out}",
        "hydra.sweeper.dry_run=true",
    )
    log = capsys.readouterr().out
    assert "16 jobs, 2 trained once as the same configuration as another" in log
    assert "14 distinct runs: 13 to launch, 1 finished (dry run: nothing launched)" in log
    assert f"finished               {out}/stl10-cnn-bssn-s1.2-seed0" in log
    assert f"resumes at 5000/800000 {out}/stl10-cnn-sn-s1.0-seed0" in log
    assert f"new                    {out}/stl10-cnn-ssn-s0.7-seed0" in log
    # ssn at 1 is sn: not launched, its cell is read from the sn run.
    assert (
        f"same as                {out}/stl10-cnn-sn-s1.0-seed0  (seed=0 norm=ssn scale=1.0" in log
    )
    assert (
        f"same as                {out}/stl10-cnn-bsn-s1.0-seed0  (seed=0 norm=bssn scale=1.0" in log
    )
    assert f"{out}/stl10-cnn-ssn-s1.0-seed0" not in log
    assert sorted(p.name for p in out.iterdir()) == [
        "stl10-cnn-bssn-s1.2-seed0",
        "stl10-cnn-sn-s1.0-seed0",
    ]


def test_a_started_twin_is_kept_rather_than_trained_again(tmp_path, monkeypatch, capsys) -> None:
    """A bssn 1.0 run from an older sweep stands for bsn; bsn is not started from scratch."""
    out = tmp_path / "runs"
    folder = out / "stl10-cnn-bssn-s1.0-seed0" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "ckpt_0800000.pt").touch()
    multirun(
        monkeypatch,
        "experiment=table1_stl10",
        "seed=0",
        f"out_dir={out}",
        "hydra.sweeper.dry_run=true",
    )
    log = capsys.readouterr().out
    assert f"finished               {out}/stl10-cnn-bssn-s1.0-seed0" in log
    assert f"same as                {out}/stl10-cnn-bssn-s1.0-seed0  (seed=0 norm=bsn" in log
    assert "14 distinct runs: 13 to launch, 1 finished" in log


@pytest.mark.slow  # composes and validates all 240 jobs
def test_table1_cifar10_dry_run_counts_230_distinct_runs(tmp_path, monkeypatch, capsys) -> None:
    """240 grid jobs, of which ssn and bssn at 1.0 (5 seeds each) are sn and bsn."""
    multirun(
        monkeypatch,
        "experiment=table1_cifar10",
        f"out_dir={tmp_path}",
        "hydra.sweeper.dry_run=true",
    )
    log = capsys.readouterr().out
    assert "240 jobs, 10 trained once as the same configuration as another" in log
    assert "230 distinct runs: 230 to launch, 0 finished (dry run: nothing launched)" in log


@pytest.mark.parametrize("scaled,plain", [("ssn", "sn"), ("bssn", "bsn")])
def test_scale_one_twins_train_bit_identical_networks(tmp_path, scaled, plain) -> None:
    """Why the sweeper trains ssn/bssn at 1.0 once: they are sn/bsn to the last bit."""
    from harness.training.loop import train

    states = []
    for norm in (scaled, plain):
        cfg = compose_cfg(*TINY, f"norm={norm}", "scale=1.0", f"out_dir={tmp_path}")
        train(cfg, tmp_path / norm)
        ckpt = torch.load(
            sorted((tmp_path / norm / "checkpoints").iterdir())[-1], weights_only=False
        )
        states.append(ckpt)
    for part in ("G", "D"):
        assert states[0][part].keys() == states[1][part].keys()
        for key, value in states[0][part].items():
            assert torch.equal(value, states[1][part][key]), f"{part}.{key}"


def test_a_bad_cell_fails_before_anything_is_launched(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(
        ValueError, match=r"sweep job seed=0 norm=sn .*scale=1\.5.*: mode 'sn' has no scale"
    ):
        multirun(
            monkeypatch, "experiment=table1_stl10", "seed=0", "scale=1.5", f"out_dir={tmp_path}"
        )
    assert not tmp_path.joinpath("multirun.yaml").exists()


@pytest.mark.parametrize("dataset", ["cifar10", "stl10"])
def test_appendix_grid_cells_are_the_single_presets_runs(dataset) -> None:
    """Each appendix grid job is the run its single-setting preset makes, in the same folder."""
    master = compose_cfg(f"experiment=appendix_{dataset}", hydra=True)
    sweeper = OmegaConf.to_container(master.hydra.sweeper)
    jobs = expand(sweeper["params"], sweeper["grids"], ["seed=0"])
    # (sn, bsn) in 4 settings; the gamma variants in those 4 and the base setting, as the
    # authors' same_gamma/diff_gamma configs run them.
    assert len(jobs) == 4 * 2 + 5 * 2
    folders = set()
    for job in jobs:
        values = dict(line.split("=", 1) for line in job)
        setting = Path(values["out_dir"]).name
        if values["norm"].endswith("_gamma"):
            gamma = f"gamma_{values['norm'].split('_')[1]}"
            other = setting.removeprefix("gamma").removeprefix("_")
            single = f"[{other},{gamma}]" if other else gamma
            extra = [f"out_dir={values['out_dir']}"]
        else:
            single, extra = setting, []
        grid_cfg = compose_cfg(f"experiment=appendix_{dataset}", *job)
        single_cfg = compose_cfg(
            f"dataset={dataset}", f"experiment={single}", f"norm={values['norm']}", "seed=0", *extra
        )
        assert to_container(grid_cfg) == to_container(single_cfg), job
        folders.add(grid_cfg.out_dir)
    assert len(folders) == 9


# --- SLURM and DDP under submitit -----------------------------------------------------


def test_slurm_launcher_submits_one_array_with_ddp_and_requeue(tmp_path, monkeypatch) -> None:
    """The real launcher path up to `sbatch`, which is a stand-in that keeps the script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    done = JobReturn(status=JobStatus.COMPLETED, _return_value=None)
    monkeypatch.setattr(submitit.slurm.slurm.SlurmJob, "results", lambda self: [done])
    out = tmp_path / "runs"

    multirun(
        monkeypatch,
        "experiment=table1_imagenet",
        "seed=0",
        f"out_dir={out}",
        "launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.nodes=2",
        "hydra.launcher.timeout_min=600",
    )

    script = (tmp_path / "submitted.sh").read_text()
    for line in (
        "--partition=gpu",
        "--nodes=2",
        "--gpus-per-node=4",
        "--ntasks-per-node=4",
        "--cpus-per-task=8",
        "--mem=48GB",  # mem_gb_per_run 12 x 4 processes
        "--time=600",
        "--signal=USR2@120",
        "--array=0-7%8",  # 10 cells, 8 distinct runs: ssn/bssn at 1.0 are sn/bsn
    ):
        assert f"#SBATCH {line}\n" in script, line
    assert "export SUBMITIT_EXECUTOR=slurm" in script and "srun --unbuffered" in script
    assert "-m submitit.core._submit" in script
    pickles = sorted(out.glob(".submitit/4242_*/4242_*_submitted.pkl"))
    assert len(pickles) == 8
    job = DelayedSubmission.load(pickles[0])
    assert job._timeout_countdown == 20  # requeues after up to 20 time-outs; preemption always
    assert "experiment=table1_imagenet" in job.args[0] and "norm=sn" in job.args[0]
    # What submitit's signal handler pickles for the requeued job: the same job again.
    requeued = job.function.checkpoint(*job.args)
    assert isinstance(requeued, DelayedSubmission) and requeued.args == job.args


SLURM_TASK = {
    "SUBMITIT_EXECUTOR": "slurm",
    "SLURM_JOB_ID": "4242",
    "SLURM_NTASKS": "8",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NODEID": "1",
    "SLURM_PROCID": "5",
    "SLURM_LOCALID": "1",
    "SLURM_JOB_NODELIST": "gpu[017-018]",
}
TORCHRUN_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


@pytest.fixture
def clean_env(monkeypatch):
    """No torchrun/submitit variables, and whatever a test exports is undone afterwards
    (a WORLD_SIZE left behind would make later runs wait for ranks that never come)."""
    for key in (*TORCHRUN_VARS, *SLURM_TASK, "SLURM_ARRAY_JOB_ID", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.setenv(key, "")  # records the original value, restored at teardown
        monkeypatch.delenv(key)
    return monkeypatch


def test_submitit_task_gets_torchrun_variables(clean_env) -> None:
    assert not distributed.export_submitit_env()  # not under submitit: nothing to do
    for key, value in SLURM_TASK.items():
        clean_env.setenv(key, value)
    assert distributed.export_submitit_env()
    got = {key: os.environ[key] for key in TORCHRUN_VARS}
    assert {
        k: got[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")
    } == {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "gpu017",
    }
    assert 20_000 <= int(got["MASTER_PORT"]) <= 60_000
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # each task sees the node's GPUs
    # Another task of the same job agrees on the master.
    clean_env.delenv("WORLD_SIZE")
    clean_env.delenv("MASTER_PORT")
    clean_env.setenv("SLURM_PROCID", "0")
    assert distributed.export_submitit_env()
    assert (os.environ["RANK"], os.environ["MASTER_PORT"]) == ("0", got["MASTER_PORT"])


def test_torchrun_variables_are_left_alone(clean_env) -> None:
    for key, value in SLURM_TASK.items():
        clean_env.setenv(key, value)
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("RANK", "1")
    assert not distributed.export_submitit_env()
    assert (os.environ["WORLD_SIZE"], os.environ["RANK"]) == ("2", "1")


def test_two_submitit_tasks_form_one_process_group(tmp_path, clean_env) -> None:
    """A real 2-task submitit job (local executor, CPU/gloo): setup joins both ranks."""
    executor = submitit.LocalExecutor(folder=tmp_path / "%j")
    executor.update_parameters(tasks_per_node=2, timeout_min=2)
    contexts = executor.submit(distributed.setup, "cpu").results()
    assert sorted((c.rank, c.world_size) for c in contexts) == [(0, 2), (1, 2)]


# --- make_table1 on fabricated logs ---------------------------------------------------


def write_run(
    root: Path, base: dict, norm: str, scale: float, seed: int, history: list[dict], **changes
) -> Path:
    config = OmegaConf.create(base)
    config.norm.mode, config.scale, config.seed = norm, scale, seed
    for key, value in changes.items():
        OmegaConf.update(config, key, value)
    run_dir = root / f"cifar10-cnn-{norm}-s{scale}-seed{seed}"
    run_dir.mkdir(parents=True)
    OmegaConf.save(config, run_dir / "config.yaml")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in history))
    return run_dir


def log(
    is_final: float, fid_final: float, is_mid: float = 1.0, fid_mid: float = 100.0
) -> list[dict]:
    return [
        {"step": 100, "d_loss": 1.0},
        {"step": 200_000, "is50k": is_mid, "fid10k_5k": fid_mid},
        {"step": 400_000, "is50k": is_final, "is50k_std": 0.1, "fid10k_5k": fid_final},
    ]


SN_IS, SN_FID = [7.0, 7.1, 7.2, 7.3, 7.4], [30.0, 31.0, 32.0, 33.0, 34.0]
BSSN_IS = {1.0: [7.4, 7.5, 7.6, 7.5, 7.5], 1.2: [7.7, 7.8, 7.9, 7.8]}  # seed 4 of 1.2 never ran
BSSN_FID = {
    1.0: [26.0, 27.0, 28.0, 27.0],
    1.2: [29.0, 30.0, 31.0, 30.0],
}  # seed 4 of 1.0: no final FID


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory) -> Path:
    """cifar10 runs in the paper's setting: sn (5 seeds), bssn at 1.0 and 1.2, and gaps."""
    root = tmp_path_factory.mktemp("table1")
    base = OmegaConf.to_container(compose_cfg("experiment=table1_cifar10"), resolve=True)
    for seed in range(5):
        write_run(
            root,
            base,
            "sn",
            1.0,
            seed,
            log(SN_IS[seed], SN_FID[seed], is_mid=7.9 if seed == 0 else 1.0),
        )
        history = log(BSSN_IS[1.0][seed], BSSN_FID[1.0][min(seed, 3)])
        if seed == 4:
            history[-1].pop("fid10k_5k")
        write_run(root, base, "bssn", 1.0, seed, history)
    for seed in range(4):
        write_run(root, base, "bssn", 1.2, seed, log(BSSN_IS[1.2][seed], BSSN_FID[1.2][seed]))
    write_run(root, base, "bssn", 1.4, 0, log(9.9, 1.0)[:2])  # stopped at 200k of 400k
    return root


def se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values))


def test_means_standard_errors_best_scale_and_paper_difference(fabricated) -> None:
    table = build_table(find_runs(fabricated))
    rows = {(r.group.metric, r.group.norm): r for r in table.rows}
    sn_is = rows[("is50k", "sn")]
    assert (sn_is.group.n, sn_is.group.mean) == (5, pytest.approx(7.2))
    assert sn_is.group.se == pytest.approx(se(SN_IS)) == pytest.approx(0.0707, abs=1e-4)
    assert sn_is.paper == PAPER[("cifar10", "IS", "sn")]
    assert sn_is.z == pytest.approx((7.2 - 7.12) / math.hypot(se(SN_IS), 0.07))
    assert rows[("fid10k_5k", "sn")].group.se == pytest.approx(se(SN_FID))
    # The best scale per metric, as the paper picks it: IS from 1.2, FID from 1.0.
    bssn_is, bssn_fid = rows[("is50k", "bssn")], rows[("fid10k_5k", "bssn")]
    assert (bssn_is.group.scale, bssn_is.scales_compared, bssn_is.group.n) == (1.2, 2, 4)
    assert bssn_is.group.mean == pytest.approx(statistics.fmean(BSSN_IS[1.2]))
    assert (bssn_fid.group.scale, bssn_fid.group.n) == (1.0, 4)
    assert bssn_fid.group.mean == pytest.approx(27.0)
    assert bssn_fid.paper == PAPER[("cifar10", "FID", "bssn")]
    assert table.notes == []


def test_missing_unfinished_and_metricless_runs_are_reported(fabricated) -> None:
    problems = build_table(find_runs(fabricated)).problems
    assert "cifar10 bssn s=1.2 seed=4: no run" in problems
    assert [p for p in problems if p.startswith("cifar10 bssn s=1.4")] == [
        *(f"cifar10 bssn s=1.4 seed={s}: no run" for s in range(1, 5)),
        f"cifar10 bssn s=1.4 seed=0: unfinished (200000/400000 iterations), not counted: "
        f"{fabricated}/cifar10-cnn-bssn-s1.4-seed0",
    ]
    assert (
        f"cifar10 bssn s=1 seed=4: fid10k_5k last logged at step 200000, not at the final step "
        f"400000; not counted: {fabricated}/cifar10-cnn-bssn-s1.0-seed4"
    ) in problems
    assert len(problems) == 7
    # Against the preset's grid, every cell never run is reported too.
    expected = expected_from_preset("table1_cifar10", CONFIGS)
    problems = build_table(find_runs(fabricated), expected=expected).problems
    assert "cifar10 ssn s=10 seed=3: no run" in problems
    # The sn runs are ssn's 1.0 cells and the bssn 1.0 runs are bsn's: 10 fewer missing.
    twins = [p for p in problems if p.startswith(("cifar10 ssn s=1 ", "cifar10 bsn s=1 "))]
    assert twins == [  # the bssn run's own gap, under its twin cell too
        f"cifar10 bsn s=1 seed=4: fid10k_5k last logged at step 200000, not at the final step "
        f"400000; not counted: {fabricated}/cifar10-cnn-bssn-s1.0-seed4"
    ]
    assert sum(p.endswith(": no run") for p in problems) == 240 - 15 - 10


def test_sn_runs_are_read_back_as_the_ssn_scale_one_cell(fabricated) -> None:
    expected = expected_from_preset("table1_cifar10", CONFIGS)
    table = build_table(find_runs(fabricated), expected=expected)
    groups = {(g.metric, g.norm, g.scale): g for g in table.groups}
    assert groups[("is50k", "ssn", 1.0)].values == groups[("is50k", "sn", 1.0)].values
    assert groups[("is50k", "ssn", 1.0)].values == dict(enumerate(SN_IS))
    assert groups[("is50k", "bsn", 1.0)].values == groups[("is50k", "bssn", 1.0)].values
    rows = {(r.group.metric, r.group.norm): r for r in table.rows}
    assert rows[("is50k", "ssn")].group.mean == pytest.approx(7.2)  # its only scale so far
    assert sorted(table.notes) == [
        "cifar10: bsn at scale 1 is the bssn runs (the same network, trained once)",
        "cifar10: ssn at scale 1 is the sn runs (the same network, trained once)",
    ]
    # Without ssn or bsn in the table, nothing stands in (the other test: notes == []).


def test_best_during_training_takes_each_runs_best_value(fabricated) -> None:
    table = build_table(find_runs(fabricated), best_during_training=True)
    sn_is = next(r for r in table.rows if (r.group.metric, r.group.norm) == ("is50k", "sn"))
    assert sn_is.group.values[0] == 7.9 and sn_is.group.values[1] == 7.1
    assert table.value == "best during training"


def test_runs_of_two_settings_or_twice_the_same_cell_are_refused(tmp_path) -> None:
    base = OmegaConf.to_container(compose_cfg("experiment=table1_cifar10"), resolve=True)
    write_run(tmp_path / "a", base, "sn", 1.0, 0, log(7.0, 30.0))
    write_run(tmp_path / "a", base, "sn", 1.0, 1, log(7.0, 30.0), **{"optim.lr_d": 2e-4})
    with pytest.raises(
        ValueError, match=r"different training settings.*\n  optim.lr_d: 0.0001 -> 0.0002"
    ):
        build_table(find_runs(tmp_path / "a"))
    write_run(tmp_path / "b" / "x", base, "sn", 1.0, 0, log(7.0, 30.0))
    write_run(tmp_path / "b" / "y", base, "sn", 1.0, 0, log(7.0, 30.0))
    with pytest.raises(ValueError, match="several runs of the same dataset/norm/scale/seed"):
        build_table(find_runs(tmp_path / "b"))


def test_make_table1_writes_markdown_latex_and_csv(fabricated, tmp_path, capsys) -> None:
    assert make_table1.main([str(fabricated), "--out", str(tmp_path)]) == 0
    md = (tmp_path / "table1.md").read_text()
    assert "| CIFAR10 | IS (is50k) | SN | 1 | 0,1,2,3,4 | 7.20 ± 0.07 | 7.12 ± 0.07 | +0.8 |" in md
    assert (
        "| CIFAR10 | FID (fid10k_5k) | BSSN | 1 (best of 2) | 0,1,2,3 | "
        "27.00 ± 0.41 | 26.94 ± 0.58 | +0.1 |" in md
    )
    assert "- cifar10 bssn s=1.2 seed=4: no run" in md
    tex = (tmp_path / "table1.tex").read_text()
    assert (
        r"CIFAR10 & IS (is50k) & BSSN & 1.2 (best of 2) & 0,1,2,3 & "
        r"$7.80 \pm 0.04$ & $7.54 \pm 0.04$ & +4.5 \\" in tex
    )
    rows = list(csv.DictReader((tmp_path / "table1.csv").open()))
    assert len(rows) == 4 and {r["norm"] for r in rows} == {"sn", "bssn"}
    assert float(rows[0]["mean"]) == pytest.approx(7.2) and rows[0]["paper_mean"] == "7.12"
    scales = list(csv.DictReader((tmp_path / "scales.csv").open()))
    assert len(scales) == 6 and sum(r["picked"] == "True" for r in scales) == 4
    assert "missing or left out: cifar10 bssn s=1.2 seed=4: no run" in capsys.readouterr().err


# --- a tiny local sweep, end to end ---------------------------------------------------


@pytest.mark.slow
def test_tiny_sweep_skips_finished_resumes_the_rest_and_ends_in_a_table(
    tmp_path, monkeypatch, capsys
) -> None:
    """2 norms x 2 scales x 2 seeds of 2 iterations on 16x16 shapes (training scalars stand
    in for IS/FID: Inception takes about a second per image on a CPU; the IS/FID columns are
    tested on fabricated logs above)."""
    out = tmp_path / "runs"
    sweep = [
        *TINY,
        f"out_dir={out}",
        f"dataset.root={tmp_path / 'data'}",
        "norm=ssn,bssn",
        "scale=1.0,1.2",
        "seed=0,1",
    ]
    multirun(monkeypatch, *sweep)
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert runs == sorted(
        f"shapes-cnn-{n}-s{s}-seed{seed}"
        for n in ("ssn", "bssn")
        for s in ("1.0", "1.2")
        for seed in (0, 1)
    )
    assert all(latest_step(out / r) == 2 for r in runs)

    # Interrupted run: its last checkpoint is gone. Re-launching resumes it alone.
    victim = out / "shapes-cnn-bssn-s1.2-seed1"
    (victim / "checkpoints" / "ckpt_0000002.pt").unlink()
    untouched = {
        r: (out / r / "checkpoints" / "ckpt_0000002.pt").stat().st_mtime_ns
        for r in runs
        if r != victim.name
    }
    capsys.readouterr()
    multirun(monkeypatch, *sweep)
    text = capsys.readouterr().out
    # ssn/bssn without sn/bsn in the sweep: no cell has a twin, all 8 are distinct runs.
    assert "8 distinct runs: 1 to launch, 7 finished" in text and "resumes at 1/2" in text
    assert "same as" not in text
    assert latest_step(victim) == 2
    assert all(
        (out / r / "checkpoints" / "ckpt_0000002.pt").stat().st_mtime_ns == t
        for r, t in untouched.items()
    )

    table_dir = tmp_path / "table"
    make_table1.main(
        [str(out), "--metric", "d_real:max", "--metric", "d_loss:min", "--out", str(table_dir)]
    )
    rows = list(csv.DictReader((table_dir / "table1.csv").open()))
    assert [(r["metric"], r["norm"], r["best_of"], r["seeds"]) for r in rows] == [
        ("d_real", "ssn", "2", "0 1"),
        ("d_real", "bssn", "2", "0 1"),
        ("d_loss", "ssn", "2", "0 1"),
        ("d_loss", "bssn", "2", "0 1"),
    ]
    assert all(math.isfinite(float(r["mean"])) and math.isfinite(float(r["se"])) for r in rows)
    assert "## Missing or left out\n\n- none" in (table_dir / "table1.md").read_text()
