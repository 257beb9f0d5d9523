"""Periodic IS/FID in training and evaluate.py, end to end (docs/metrics.md).

Inception weights of random values (the real architecture, written by conftest), fed
75x75 inputs (its minimum) instead of 299x299, and FID on a 64-d projection
(conftest.ProjectedFrechet) keep every evaluation to a few seconds on two CPU cores; the
299x299 path and the full FID are covered by test_metrics.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
from conftest import ProjectedFrechet
from hydra import compose, initialize_config_dir
from test_train import ROOT, compose_cfg, run
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

import harness.metrics.compute as metrics_compute
from data import load_dataset
from harness.metrics import INCEPTION_WEIGHTS_FILENAME, InceptionWeightsNotFound, weights_sha256
from harness.training import checkpoint
from harness.training.checkpoint_eval import evaluate, register_configs
from harness.training.loop import train
from harness.training.periodic_eval import check_counts, evaluate_generator
from harness.training.run_log import read_metrics
from models import build_models

register_configs()
COUNTS = ["eval.num_gen=10", "eval.num_real=10", "eval.batch_size=10"]
QUIET = ["train.log_freq=4", "train.vis_freq=0", "norm=sn"]  # cheap: the evaluations are tested


def eval_overrides(weights: Path, data_root: Path) -> list[str]:
    return [
        "eval.every=2",
        "eval.metrics=[is50k,fid10k_5k]",
        f"eval.inception_weights={weights}",
        f"dataset.root={data_root}",
        *COUNTS,
        *QUIET,
    ]


@pytest.fixture(scope="module")
def fast_metrics():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics_compute, "frechet_distance", ProjectedFrechet())
        patch.setattr(FeatureExtractorInceptionV3, "INPUT_IMAGE_SIZE", 75)  # 16x fewer FLOPs
        yield


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, random_inception_weights, fast_metrics) -> tuple[Path, Path]:
    """A 4-iteration run evaluated at steps 2 and 4, and the weights it used."""
    out = tmp_path_factory.mktemp("evaluated")
    weights = random_inception_weights(1)
    return run(out, *eval_overrides(weights, out / "data")), weights


def test_periodic_eval_logs_writes_and_summarizes(evaluated_run) -> None:
    run_dir, weights = evaluated_run
    evals = [r for r in read_metrics(run_dir) if "is50k" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all({"is50k", "is50k_std", "fid10k_5k"} <= r.keys() for r in evals)

    assert sorted(p.name for p in (run_dir / "eval").iterdir()) == [
        "step_0000002.json",
        "step_0000004.json",
    ]
    result = json.loads((run_dir / "eval" / "step_0000004.json").read_text())
    assert result["step"] == 4
    assert (result["is50k"]["num_gen"], result["is50k"]["reduced"]) == (10, True)
    fid = result["fid10k_5k"]
    assert (fid["num_gen"], fid["num_real"], fid["reduced"]) == (10, 10, True)
    assert fid["value"] == evals[1]["fid10k_5k"] and result["is50k"]["mean"] == evals[1]["is50k"]
    assert result["protocol"]["weights_sha256"] == weights_sha256(weights)
    stats = Path(result["protocol"]["reference_stats"]["fid10k_5k"])
    assert stats.parent == run_dir.parent / "data" / ".bssn_cache" / "inception"
    assert stats.name.startswith("shapes-16px-10of10000-seed0-") and stats.is_file()

    summary = json.loads((run_dir / "summary.json").read_text())
    assert [e["step"] for e in summary["history"]] == [2, 4]
    for name, goal, pick in (("is50k", "max", max), ("fid10k_5k", "min", min)):
        best = pick(evals, key=lambda r, name=name: r[name])
        assert summary["metrics"][name] == {
            "best": best[name],
            "best_step": best["step"],
            "goal": goal,
            "latest": evals[1][name],
            "latest_step": 4,
        }


def test_evaluation_runs_g_in_eval_mode_and_leaves_the_rng_alone(
    tmp_path, random_inception_weights, fast_metrics
) -> None:
    g = build_models("cnn", 16, 3)[0]
    modes: list[bool] = []
    g.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    real = load_dataset("shapes", str(tmp_path), 16)
    cfg = compose_cfg(tmp_path, *eval_overrides(random_inception_weights(1), tmp_path))
    rng = torch.get_rng_state()
    # Uncached real statistics: their DataLoader draws a seed from the global RNG.
    evaluate_generator(
        g, real, cfg.eval, seed=0, device=torch.device("cpu"), num_workers=0, progress=False
    )
    assert modes == [False] and g.training
    assert torch.equal(torch.get_rng_state(), rng)  # so training continues as without evaluation


def test_resume_keeps_and_cuts_back_the_summary(evaluated_run, tmp_path, fast_metrics) -> None:
    reference, weights = evaluated_run
    run_dir = tmp_path / reference.name
    shutil.copytree(reference, run_dir)
    # As if killed after evaluating step 4 but before its checkpoint: resume from step 2.
    checkpoint.list_checkpoints(run_dir)[-1].unlink()
    kept = run_dir / "eval" / "step_0000002.json"
    kept_mtime = kept.stat().st_mtime_ns

    # The same data root: the cached real statistics are reused.
    run(tmp_path, *eval_overrides(weights, reference.parent / "data"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary == json.loads((reference / "summary.json").read_text())
    assert kept.stat().st_mtime_ns == kept_mtime  # step 2 kept, step 4 evaluated again
    assert sorted(p.name for p in (run_dir / "eval").iterdir()) == [
        "step_0000002.json",
        "step_0000004.json",
    ]
    assert [r["step"] for r in read_metrics(run_dir) if "is50k" in r] == [2, 4]


def test_missing_weights_fail_before_training(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    for override, reason in (
        ("eval.download_weights=true", "downloading it failed (<urlopen error no network>)"),
        ("eval.download_weights=false", "downloading is not allowed"),
    ):
        cfg = compose_cfg(tmp_path, "eval.every=2", override)
        run_dir = Path(cfg.out_dir) / cfg.run_name
        with pytest.raises(InceptionWeightsNotFound) as error:
            train(cfg, run_dir)
        message = str(error.value)
        assert reason in message
        assert f"eval.inception_weights=/path/to/{INCEPTION_WEIGHTS_FILENAME}" in message
        assert (
            str(tmp_path / "torch_home" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILENAME)
            in message
        )
        assert not run_dir.exists()  # nothing was loaded, built or trained


def test_counts_beyond_the_protocol_are_refused() -> None:
    cfg = compose_cfg(Path("unused"), "eval.num_real=6000")
    with pytest.raises(
        ValueError, match=r"eval.num_real=6000 is not allowed for fid10k_5k.*2..5000"
    ):
        check_counts(cfg.eval)
    with pytest.raises(ValueError, match=r"eval.num_gen=5 is not allowed for is50k.*10..50000"):
        check_counts(compose_cfg(Path("unused"), "eval.num_gen=5").eval)


def evaluate_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("evaluate", overrides=list(overrides))


def test_evaluate_py_reproduces_the_logged_values_and_resumes(evaluated_run, fast_metrics) -> None:
    run_dir, weights = evaluated_run
    args = [f"run_dir={run_dir}", f"eval.inception_weights={weights}", "progress=false", *COUNTS]
    rows = evaluate(evaluate_cfg(*args))
    files = [run_dir / "eval" / f"ckpt_000000{s}.is50k+fid10k_5k.gen10.real10.json" for s in (2, 4)]
    assert [Path(r["file"]) for r in rows] == files and not any(r["skipped"] for r in rows)
    logged = {r["step"]: r for r in read_metrics(run_dir) if "is50k" in r}
    for row, ckpt in zip(rows, checkpoint.list_checkpoints(run_dir), strict=True):
        stored = json.loads(Path(row["file"]).read_text())
        assert stored["checkpoint"] == str(ckpt) and stored["step"] == row["step"]
        assert (stored["fid10k_5k"]["num_gen"], stored["fid10k_5k"]["num_real"]) == (10, 10)
        assert stored["protocol"]["weights_sha256"] == weights_sha256(weights)
        assert stored["is50k"]["mean"] == pytest.approx(logged[row["step"]]["is50k"], rel=1e-6)
        assert stored["fid10k_5k"]["value"] == pytest.approx(
            logged[row["step"]]["fid10k_5k"], rel=1e-6
        )

    before = [f.stat().st_mtime_ns for f in files]
    second = subprocess.run(
        [sys.executable, str(ROOT / "evaluate.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert [f.stat().st_mtime_ns for f in files] == before
    assert second.stdout.count("| reused |") == 2, second.stdout
    assert "| ckpt_0000004.pt | 4 |" in second.stdout
