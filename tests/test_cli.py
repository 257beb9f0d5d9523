"""The command lines as a reader first meets them: help, the resolved config, train.log."""

from __future__ import annotations

import subprocess
import sys

from test_train import ROOT


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_help_shows_only_what_applies() -> None:
    evaluate = cli("evaluate.py", "--help")
    for key in ("run_dir:", "images:", "real:", "real_dataset:", "kid50k_full", "pr50k3_full"):
        assert key in evaluate
    # train.py's groups (norm, model, optim, …) do not apply to evaluate.py.
    assert "Configuration groups" not in evaluate and "norm:" not in evaluate
    generate = cli("generate.py", "--help")
    for key in ("run_dir:", "num:", "seed:", "out:", "grid:", "export:"):
        assert key in generate
    assert "Configuration groups" not in generate


def test_cfg_job_resolve_prints_the_resolved_config() -> None:
    resolved = cli("train.py", "experiment=quickstart", "seed=3", "--cfg", "job", "--resolve")
    assert "run_name: shapes-cnn-bssn-s1.0-seed3" in resolved and "${" not in resolved


def test_train_log_holds_the_console_log(tmp_path) -> None:
    cli(
        "train.py", "experiment=quickstart", "dataset.resolution=16", "train.batch_size=8",
        "train.iterations=2", "train.log_freq=2", "train.vis_freq=0", "train.ckpt_freq=2",
        f"out_dir={tmp_path}", f"dataset.root={tmp_path / 'data'}", "logger.progress=false",
    )  # fmt: skip
    log = (tmp_path / "shapes-cnn-bssn-s1.0-seed0" / "train.log").read_text()
    assert "training " in log and "iterations 1..2" in log
    assert "step 2/2: d_loss=" in log and "g_loss=" in log
