"""generate.py, the generator export and evaluate.py on image files, end to end on MNIST.

A short MNIST run (tiny files in MNIST's real idx format) is evaluated during training;
generate.py writes 10k of its samples to an .npz, and evaluate.py scores the .npz against
MNIST's training set: the numbers equal those logged by the run and those evaluate.py gets
from the run's checkpoint. Inception weights of random values, 75x75 inputs and FID on a
64-d projection keep it to seconds (as tests/test_evaluate.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from test_data import write_mnist
from test_evaluate import fast_metrics  # noqa: F401  (a fixture)
from test_train import ROOT

from harness.metrics import to_uint8
from harness.training import checkpoint
from harness.training.checkpoint_eval import evaluate, format_table
from harness.training.checkpoint_eval import register_configs as register_evaluate
from harness.training.config import register_configs as register_train
from harness.training.generation import generate
from harness.training.generation import register_configs as register_generate
from harness.training.generator_file import EXPORT_FORMAT, load_generator
from harness.training.loop import train
from harness.training.periodic_eval import EVAL_SEED_OFFSET, latent_sampler
from harness.training.run_log import read_metrics

register_train()
register_evaluate()
register_generate()

METRICS = "eval.metrics=[is50k,fid10k_5k,kid50k_full,pr50k3_full]"
COUNTS = ["eval.num_gen=10", "eval.num_real=10", "eval.batch_size=10"]


def compose_in(config: str, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config, overrides=list(overrides))


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory, random_inception_weights, fast_metrics) -> dict:  # noqa: F811
    """A 4-iteration MNIST run evaluated at its end with all four metric kinds."""
    out = tmp_path_factory.mktemp("mnist")
    write_mnist(out / "data", n=40)
    weights = random_inception_weights(1)
    common = [
        f"eval.inception_weights={weights}",
        f"dataset_root={out / 'data'}",
        METRICS,
        *COUNTS,
        "progress=false",
    ]
    cfg = compose_in(
        "config",
        "dataset=mnist",
        f"dataset.root={out / 'data'}",
        "dataset.download=false",
        "dataset.num_workers=0",
        "logger=files",
        "logger.progress=false",
        "norm=sn",
        "train.device=cpu",
        "train.batch_size=8",
        "train.iterations=4",
        "train.log_freq=2",
        "train.vis_freq=0",
        "train.ckpt_freq=2",
        "eval.every=4",
        f"eval.inception_weights={weights}",
        METRICS,
        *COUNTS,
        f"out_dir={out / 'runs'}",
    )
    run_dir = Path(cfg.out_dir) / cfg.run_name
    train(cfg, run_dir)
    return {"run_dir": run_dir, "out": out, "weights": weights, "common": common}


def run_generate(*overrides: str) -> dict:
    return generate(compose_in("generate", "progress=false", *overrides))


@pytest.mark.slow
def test_npz_of_the_run_scores_as_the_run(mnist_run, fast_metrics) -> None:  # noqa: F811
    run_dir, out, common = mnist_run["run_dir"], mnist_run["out"], mnist_run["common"]
    npz = out / "samples.npz"
    # A larger batch than evaluation's 10: latents are drawn on the CPU, in order.
    info = run_generate(f"run_dir={run_dir}", "num=10000", f"out={npz}", "batch_size=500")
    assert info["step"] == 4 and info["seed"] == EVAL_SEED_OFFSET  # the run's seed is 0
    assert info["shape"] == [10000, 28, 28, 1]
    with np.load(npz) as archive:
        samples = archive["arr_0"]
    assert samples.dtype == np.uint8 and samples.shape == (10000, 28, 28, 1)
    assert len(np.unique(samples.reshape(10000, -1)[:50], axis=0)) == 50  # distinct samples

    # What periodic evaluation scored: G (eval mode) on the evaluation sampler's latents.
    g = load_generator(run_dir).g
    with torch.no_grad():
        first = to_uint8(latent_sampler(g, EVAL_SEED_OFFSET, torch.device("cpu"))(10), (0, 1))
    assert np.array_equal(samples[:10], first.permute(0, 2, 3, 1).numpy())

    scored = evaluate(compose_in("evaluate", f"images={npz}", "real_dataset=mnist", *common))[0]
    logged = [r for r in read_metrics(run_dir) if "is50k" in r][-1]
    assert logged["step"] == 4
    last = checkpoint.list_checkpoints(run_dir)[-1]
    from_run = evaluate(compose_in("evaluate", f"checkpoint={last}", *common))[0]
    assert from_run["step"] == 4
    for result in (scored, from_run):
        assert result["is50k"]["mean"] == pytest.approx(logged["is50k"], rel=1e-6)
        assert result["fid10k_5k"]["value"] == pytest.approx(logged["fid10k_5k"], rel=1e-6)
        assert result["kid50k_full"]["mean"] == pytest.approx(logged["kid50k_full"], rel=1e-6)
        for key in ("precision", "recall"):
            assert result["pr50k3_full"][key] == logged[f"pr50k3_full_{key}"]
        assert result["fid10k_5k"]["num_gen"] == 10 and result["fid10k_5k"]["reduced"]
    # The same cached reference statistics as the run's.
    assert scored["protocol"]["reference_stats"] == from_run["protocol"]["reference_stats"]


def test_png_folder_and_grid(mnist_run, tmp_path, fast_metrics) -> None:  # noqa: F811
    run_dir, common = mnist_run["run_dir"], mnist_run["common"]
    npz, folder, grid = tmp_path / "s.npz", tmp_path / "pngs", tmp_path / "grid.png"
    run_generate(f"run_dir={run_dir}", "num=20", f"out={npz}", "batch_size=10", "seed=5")
    info = run_generate(
        f"run_dir={run_dir}", "num=20", f"out={folder}", f"grid={grid}", "batch_size=10", "seed=5"
    )
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(20)]
    with np.load(npz) as archive:
        from_npz = archive["arr_0"]
    from_png = np.stack([np.asarray(Image.open(f))[:, :, None] for f in files])
    assert np.array_equal(from_png, from_npz)  # lossless, same images for the same seed
    with Image.open(grid) as image:  # 20 samples, 8 per row: 3 rows of 28 + 2 padding
        assert image.size == (2 + 8 * 30, 2 + 3 * 30)
    assert str(grid) in info["written"]

    metrics = ["eval.metrics=[is50k,fid10k_5k]"]
    a = evaluate(compose_in("evaluate", f"images={npz}", "real_dataset=mnist", *common, *metrics))
    b = evaluate(
        compose_in("evaluate", f"images={folder}", "real_dataset=mnist", *common, *metrics)
    )
    assert a[0]["is50k"] == b[0]["is50k"] and a[0]["fid10k_5k"] == b[0]["fid10k_5k"]
    # Against another .npz instead of a dataset: itself scores FID ~0.
    c = evaluate(
        compose_in(
            "evaluate",
            f"images={npz}",
            f"real={npz}",
            f"out={tmp_path / 'r.json'}",
            *common,
            "eval.metrics=[fid10k_5k]",
        )  # fmt: skip
    )
    assert c[0]["fid10k_5k"]["value"] == pytest.approx(0.0, abs=1e-3)
    assert json.loads((tmp_path / "r.json").read_text())["real"] == str(npz)

    # A run against files: its evaluation images (the default seed) against the .npz.
    last = checkpoint.list_checkpoints(run_dir)[-1]
    fid = [*common, "eval.metrics=[fid10k_5k]"]
    run_vs = evaluate(compose_in("evaluate", f"checkpoint={last}", f"real={npz}", *fid))[0]
    assert Path(run_vs["file"]).name.startswith("ckpt_0000004.fid10k_5k.gen10.real10.vs-s-")
    own = tmp_path / "own.npz"
    run_generate(f"run_dir={run_dir}", "num=10", f"out={own}", "batch_size=10")
    files_vs = evaluate(compose_in("evaluate", f"images={own}", f"real={npz}", *fid))[0]
    assert run_vs["fid10k_5k"]["value"] == pytest.approx(files_vs["fid10k_5k"]["value"], rel=1e-6)


def test_generation_is_deterministic_for_a_seed(mnist_run, tmp_path) -> None:
    run_dir = mnist_run["run_dir"]
    arrays = []
    for name, seed, batch in (("a", 3, 4), ("b", 3, 4), ("c", 4, 4)):
        run_generate(f"run_dir={run_dir}", "num=8", f"out={tmp_path / name}.npz",
                     f"seed={seed}", f"batch_size={batch}")  # fmt: skip
        with np.load(tmp_path / f"{name}.npz") as archive:
            arrays.append(archive["arr_0"])
    assert np.array_equal(arrays[0], arrays[1])
    assert not np.array_equal(arrays[0], arrays[2])


HYDRA_FREE_LOAD = """
import sys, torch
import models
export = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
G = models.build_generator(**export["config"]).eval()
G.load_state_dict(export["G"])
z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    torch.save(G(z), sys.argv[2])
assert "hydra" not in sys.modules and "omegaconf" not in sys.modules, "Hydra was imported"
"""


def test_export_loads_with_weights_only_without_hydra(mnist_run, tmp_path) -> None:
    run_dir = mnist_run["run_dir"]
    export = tmp_path / "G.pt"
    info = run_generate(f"run_dir={run_dir}", f"export={export}")
    assert info["written"] == [str(export)] and info["shape"] is None
    content = torch.load(export, weights_only=True)
    assert content["format"] == EXPORT_FORMAT and content["step"] == 4
    assert content["config"] == {"name": "dcgan_mnist", "resolution": 28, "channels": 1,
                                 "z_dim": 128, "width": 1.0}  # fmt: skip

    subprocess.run(
        [sys.executable, "-c", HYDRA_FREE_LOAD, str(export), str(tmp_path / "out.pt")],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    g = load_generator(run_dir).g
    z = torch.randn(4, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "out.pt"), g(z))

    # generate.py from the export writes what it writes from the run.
    # generate.py from the export and from the training checkpoint writes what it writes
    # from the run.
    ckpt = checkpoint.list_checkpoints(run_dir)[-1]
    arrays = []
    for i, source in enumerate(
        (f"checkpoint={export}", f"checkpoint={ckpt}", f"run_dir={run_dir}")
    ):
        run_generate(source, "num=6", f"out={tmp_path / str(i)}.npz", "batch_size=3")
        with np.load(tmp_path / f"{i}.npz") as archive:
            arrays.append(archive["arr_0"])
    assert np.array_equal(arrays[0], arrays[2]) and np.array_equal(arrays[1], arrays[2])


def test_bad_inputs_name_the_problem(mnist_run, tmp_path) -> None:
    run_dir, common = mnist_run["run_dir"], mnist_run["common"]
    with pytest.raises(ValueError, match="nothing to write"):
        run_generate(f"run_dir={run_dir}")
    with pytest.raises(ValueError, match=r"out=x\.png must end in \.npz"):
        run_generate(f"run_dir={run_dir}", "out=x.png")
    with pytest.raises(FileNotFoundError, match="no valid"):
        run_generate(f"run_dir={tmp_path}", "out=x.npz")
    junk = tmp_path / "junk.pt"
    torch.save({"a": torch.zeros(1)}, junk)
    with pytest.raises(ValueError, match="neither a generator export"):
        run_generate(f"checkpoint={junk}", "out=x.npz")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no image files"):
        evaluate(compose_in("evaluate", f"images={empty}", "real_dataset=mnist", *common))
    floats = tmp_path / "floats.npz"
    np.savez(floats, np.zeros((4, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match=r"arr_0 must be uint8 \[N, H, W, C\], got float32"):
        evaluate(compose_in("evaluate", f"images={floats}", "real_dataset=mnist", *common))
    few = tmp_path / "few.npz"
    np.savez(few, np.zeros((6, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError, match="holds 6 images; is50k needs 10"):
        evaluate(compose_in("evaluate", f"images={few}", "real_dataset=mnist", *common))
    with pytest.raises(ValueError, match="give real_dataset=<name>"):
        evaluate(compose_in("evaluate", f"images={few}", *common))
    with pytest.raises(ValueError, match="applies to images= only"):
        evaluate(compose_in("evaluate", f"run_dir={run_dir}", "real_dataset=mnist", *common))


def test_printed_tables_label_reduced_counts() -> None:
    row = {
        "checkpoint": "ckpt_0000004.pt",
        "step": 4,
        "skipped": False,
        "is50k": {"mean": 1.5, "std": 0.1, "num_gen": 20, "reduced": True},
        "fid50k_full": {"value": 3.0, "num_gen": 50000, "num_real": 60000, "reduced": False},
    }
    table = format_table([row], ["is50k", "fid50k_full"])
    assert "| is50k (reduced: gen 20) | fid50k_full |" in table
