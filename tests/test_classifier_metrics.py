"""The classifier metrics (harness/metrics/classifier.py): a real classifier trained on the
shapes, served through torch-fidelity's registry and the protocol code, checked against
torch-fidelity's own metric functions; MNIST's on the real files when present."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_fidelity
from torch.utils.data import Dataset

from data import load_dataset
from harness.metrics import (
    CLASSIFIER_EXTRACTOR,
    ClassifierNotFound,
    compute_metrics,
    confident_fraction,
    get_protocol,
    inception_score,
    weights_sha256,
)
from harness.metrics.classifier import load_classifier, save_classifier
from harness.metrics.classifier_train import resolve_classifier_weights, train_classifier
from harness.metrics.extractor import extract, load_extractor
from harness.training.config import validate

RES = 16


@pytest.fixture(scope="module")
def shapes_classifier(tmp_path_factory) -> tuple[Path, dict]:
    """One epoch on the 10k training shapes at 16x16: a few CPU seconds."""
    out = tmp_path_factory.mktemp("clf") / "shapes-16px.pt"
    meta = train_classifier("shapes", "unused", RES, out, epochs=1, progress=False)
    return out, meta


class Uint8Images(Dataset):
    """uint8 [3, H, W] items, as torch-fidelity's inputs and the real datasets yield."""

    def __init__(self, images: torch.Tensor, name: str = "shapes", split: str = "test") -> None:
        self.images, self.name, self.split = images, name, split
        self.resolution = images.shape[-1]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def test_trained_classifier_is_a_real_signal(shapes_classifier):
    path, meta = shapes_classifier
    # Three classes: chance is 1/3; one epoch already separates the shapes.
    assert meta["test_accuracy"] > 0.7
    assert meta["sha256"] == weights_sha256(path) and len(meta["sha256"]) == 16
    model, stored = load_classifier(path)
    assert stored["test_accuracy"] == meta["test_accuracy"]
    assert (stored["channels"], stored["num_classes"], stored["resolution"]) == (3, 3, RES)


def test_registered_with_torch_fidelity(shapes_classifier):
    path, _ = shapes_classifier
    module = load_extractor(CLASSIFIER_EXTRACTOR, path, "cpu")
    assert module.get_name() == CLASSIFIER_EXTRACTOR
    images = load_dataset("shapes", "unused", RES, split="test")
    batch = torch.stack([images[i] for i in range(8)])
    features, outputs = extract(module, batch)
    logits = outputs["logits"]  # the classifier's one logits output (IS head "classifier")
    assert features.shape == (8, 128) and logits.shape == (8, 3)
    # Through torch-fidelity's own factory, features come in the order asked for.
    direct = torch_fidelity.utils.create_feature_extractor(
        CLASSIFIER_EXTRACTOR, ["logits"], cuda=False, feature_extractor_weights_path=str(path)
    )
    (only_logits,) = direct(batch)
    torch.testing.assert_close(only_logits, logits)


def test_fd_and_score_match_torch_fidelity(shapes_classifier, tmp_path):
    path, _ = shapes_classifier
    real = load_dataset("shapes", "unused", RES, split="test")
    reals = torch.stack([real[i] for i in range(600)])
    # "Generated": other shapes, darkened and noised so the distance is well above zero.
    gen = load_dataset("shapes", "unused", RES, split="train")
    fake = torch.stack([gen[i] for i in range(500)]).float() / 127.5 - 1.0
    fake = (0.6 * fake + 0.3 * torch.randn_like(fake)).clamp(-1, 1)
    fake_uint8 = ((fake + 1) / 2 * 255).round().to(torch.uint8)

    done = [0]

    def sample(n: int) -> torch.Tensor:
        done[0] += n
        return fake[done[0] - n : done[0]]

    ours = compute_metrics(
        ["fd_shapes2k_test", "confident_shapes2k"], sample, (-1.0, 1.0), None,
        test_dataset=Uint8Images(reals), weights_path=None, classifier_weights=path,
        device="cpu", batch_size=128, cache_dir=tmp_path, num_gen_override=500,
        progress=False,
    )  # fmt: skip
    theirs = torch_fidelity.calculate_metrics(
        input1=Uint8Images(fake_uint8), input2=Uint8Images(reals), fid=True, isc=True,
        isc_splits=10, samples_shuffle=False, feature_extractor=CLASSIFIER_EXTRACTOR,
        feature_extractor_weights_path=str(path), cuda=False, verbose=False, cache=False,
        batch_size=128, save_cpu_ram=True,
    )  # fmt: skip
    fd = ours["fd_shapes2k_test"]
    assert fd["value"] > 1.0 and (fd["num_gen"], fd["num_real"], fd["reduced"]) == (500, 600, True)
    assert fd["value"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert ours["protocol"]["weights_sha256"] == weights_sha256(path)
    assert "-test-" in Path(ours["protocol"]["reference_stats"]["fd_shapes2k_test"]).name

    # cs_*: the IS formula on the classifier's logits, as torch-fidelity's isc computes it.
    module = load_extractor(CLASSIFIER_EXTRACTOR, path, "cpu")
    logits = extract(module, fake_uint8)[1]["logits"]
    mean, _ = inception_score(logits.numpy(), 10)
    assert mean == pytest.approx(theirs["inception_score_mean"], rel=1e-4)
    probs = torch.softmax(logits.double(), 1).max(1).values
    expected = float((probs >= 0.9).double().mean())
    assert ours["confident_shapes2k"]["value"] == pytest.approx(expected, abs=1e-12)


def test_fd_of_the_test_split_against_itself_is_zero(shapes_classifier, tmp_path):
    path, _ = shapes_classifier
    real = load_dataset("shapes", "unused", RES, split="test")
    reals = torch.stack([real[i] for i in range(300)])
    as_float = reals.float() / 127.5 - 1.0
    done = [0]

    def sample(n: int) -> torch.Tensor:
        done[0] += n
        return as_float[done[0] - n : done[0]]

    result = compute_metrics(
        ["fd_shapes2k_test"], sample, (-1.0, 1.0), None, test_dataset=Uint8Images(reals),
        weights_path=None, classifier_weights=path, device="cpu", batch_size=100,
        cache_dir=tmp_path, num_gen_override=300, progress=False,
    )  # fmt: skip
    assert abs(result["fd_shapes2k_test"]["value"]) < 1e-6


def test_one_call_draws_the_images_once_for_every_extractor(
    shapes_classifier, tmp_path, random_inception_weights, monkeypatch
):
    """Inception (KID on the training split) and classifier protocols (FD on the test split,
    confident) in one call: each extractor sees the same generated images, drawn once, and
    every value equals the one computed alone; the reference files name split and extractor."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    monkeypatch.setattr(FeatureExtractorInceptionV3, "INPUT_IMAGE_SIZE", 75)  # speed
    path, _ = shapes_classifier
    test = load_dataset("shapes", "unused", RES, split="test")
    train = load_dataset("shapes", "unused", RES, split="train")
    tests = Uint8Images(torch.stack([test[i] for i in range(40)]))
    trains = Uint8Images(torch.stack([train[i] for i in range(30)]), split="train")
    fake = torch.stack([train[100 + i] for i in range(24)]).float() / 127.5 - 1.0
    fake = (0.7 * fake + 0.2 * torch.randn_like(fake)).clamp(-1, 1)

    def run(names: list[str], drawn: list[int]) -> dict:
        def sample(n: int) -> torch.Tensor:
            drawn.append(n)
            return fake[sum(drawn) - n : sum(drawn)]

        return compute_metrics(
            names, sample, (-1.0, 1.0), trains, test_dataset=tests,
            weights_path=random_inception_weights(3), classifier_weights=path, device="cpu",
            batch_size=8, cache_dir=tmp_path, num_gen_override=24, progress=False,
        )  # fmt: skip

    drawn: list[int] = []
    both = run(["kid50k_full", "fd_shapes2k_test", "confident_shapes2k"], drawn)
    assert sum(drawn) == 24  # once, not once per extractor
    assert both["protocol"]["extractors"] == ["bssn-classifier", "inception-v3-compat"]
    assert both["protocol"]["weights_sha256"] == (
        f"{weights_sha256(path)}+{weights_sha256(random_inception_weights(3))}"
    )
    files = {k: Path(v).name for k, v in both["protocol"]["reference_stats"].items()}
    assert files["fd_shapes2k_test"].startswith("shapes-test-16px-full40-bssn-classifier-")
    assert files["kid50k_full"].startswith("shapes-16px-full30-inception-")
    for name in ("kid50k_full", "fd_shapes2k_test", "confident_shapes2k"):
        alone = run([name], [])[name]
        assert alone == pytest.approx(both[name]), name


def test_confident_fraction_by_hand():
    sure, unsure = [10.0, 0.0, 0.0], [1.0, 1.0, 0.0]
    assert confident_fraction(np.array([sure, unsure, sure, unsure])) == 0.5
    with pytest.raises(ValueError, match="logits"):
        confident_fraction(np.zeros((0, 3)))


def test_bad_inputs_name_the_problem(shapes_classifier, tmp_path):
    path, _ = shapes_classifier
    module = load_extractor(CLASSIFIER_EXTRACTOR, path, "cpu")
    with pytest.raises(ValueError, match="trained at 16x16"):
        extract(module, torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ClassifierNotFound, match="eval.classifier_weights=/no/such.pt"):
        resolve_classifier_weights("/no/such.pt", "shapes", tmp_path, RES)
    with pytest.raises(ClassifierNotFound, match="train_classifier"):
        resolve_classifier_weights(None, "shapes", tmp_path, RES, train_if_missing=False)
    not_ours = tmp_path / "other.pt"
    torch.save({"weights": 1}, not_ours)
    with pytest.raises(ValueError, match="not a classifier written by"):
        load_classifier(not_ours)
    with pytest.raises(ValueError, match="fd_mnist10k_test is for dataset=mnist"):
        get_protocol("fd_mnist10k_test").check_dataset("cifar10")
    with pytest.raises(ValueError, match="need classifier_weights"):
        compute_metrics(
            ["confident_shapes2k"], lambda n: torch.zeros(n, 3, RES, RES), (-1.0, 1.0), None,
            weights_path=None, device="cpu", cache_dir=tmp_path,
        )  # fmt: skip
    with pytest.raises(ValueError, match="no classifier for dataset 'cifar10'"):
        train_classifier("cifar10", tmp_path, 32, tmp_path / "x.pt")


def test_config_refuses_a_classifier_metric_of_another_dataset():
    from hydra import compose, initialize_config_dir

    from harness.training.config import register_configs

    register_configs()
    configs = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=shapes", "eval.every=10",
                                           "eval.metrics=[fd_mnist10k_test]"])  # fmt: skip
    with pytest.raises(ValueError, match="fd_mnist10k_test is for dataset=mnist"):
        validate(cfg)


def test_first_use_trains_into_the_default_path(tmp_path, monkeypatch):
    calls = []

    def fake_train(dataset, root, resolution, out, **kwargs):
        calls.append((dataset, resolution))
        save_classifier(out, torch.nn.Linear(1, 1), channels=3)
        return {"test_accuracy": 1.0, "sha256": weights_sha256(out)}

    monkeypatch.setattr("harness.metrics.classifier_train.train_classifier", fake_train)
    first = resolve_classifier_weights(None, "shapes", tmp_path, RES)
    assert first == str(tmp_path / ".bssn_cache" / "classifiers" / "shapes-r2-16px.pt")
    assert resolve_classifier_weights(None, "shapes", tmp_path, RES) == first
    assert calls == [("shapes", RES)]  # trained once, then found


@pytest.mark.slow
@pytest.mark.shared_data
def test_mnist_classifier_and_metric_on_real_mnist(shared_data, tmp_path):
    shutil.copytree(shared_data / "MNIST" / "raw", tmp_path / "MNIST" / "raw")
    meta = train_classifier("mnist", tmp_path, 28, tmp_path / "m.pt", epochs=1, progress=False)
    assert meta["test_accuracy"] > 0.9 and meta["num_test"] == 10_000
    train = load_dataset("mnist", str(tmp_path), download=False)
    test = load_dataset("mnist", str(tmp_path), download=False, split="test")
    digits = torch.stack([train[i] for i in range(2000)]).float() / 255.0
    noise = torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    def score(images: torch.Tensor) -> dict:
        done = [0]

        def sample(n: int) -> torch.Tensor:
            done[0] += n
            return images[done[0] - n : done[0]]

        return compute_metrics(
            ["fd_mnist10k_test", "cs_mnist10k"], sample, (0.0, 1.0), train, test_dataset=test,
            weights_path=None, classifier_weights=tmp_path / "m.pt", device="cpu",
            batch_size=500, cache_dir=tmp_path / "stats", num_gen_override=2000,
            progress=False,
        )  # fmt: skip

    real, fake = score(digits), score(noise)
    assert real["fd_mnist10k_test"]["num_real"] == 10_000
    # Real training digits sit near the test digits; noise is far, and scores ~1 class.
    assert real["fd_mnist10k_test"]["value"] * 20 < fake["fd_mnist10k_test"]["value"]
    assert real["cs_mnist10k"]["mean"] > 8.0 > 2.0 > fake["cs_mnist10k"]["mean"]


@pytest.mark.slow
def test_training_logs_the_classifier_metrics_and_evaluate_py_reproduces_them(
    shapes_classifier, tmp_path
):
    from hydra import compose, initialize_config_dir

    from harness.training.checkpoint_eval import evaluate
    from harness.training.checkpoint_eval import register_configs as register_evaluate
    from harness.training.config import register_configs
    from harness.training.loop import train
    from harness.training.run_log import read_metrics

    path, _ = shapes_classifier
    register_configs()
    register_evaluate()
    configs = str(Path(__file__).resolve().parents[1] / "configs")
    counts = ["eval.num_gen=64", "eval.num_real=200"]
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        cfg = compose("config", overrides=[
            "experiment=quickstart", "eval=shapes_classifier", f"dataset.resolution={RES}",
            "train.batch_size=8", "train.iterations=2", "train.log_freq=100",
            "train.vis_freq=0", "train.ckpt_freq=2", "logger.progress=false", "eval.every=2",
            f"eval.classifier_weights={path}", f"dataset.root={tmp_path}", f"out_dir={tmp_path}",
            *counts,
        ])  # fmt: skip
        run_dir = Path(cfg.out_dir) / cfg.run_name
        train(cfg, run_dir)
        logged = [r for r in read_metrics(run_dir) if "fd_shapes2k_test" in r]
        assert [r["step"] for r in logged] == [2] and 0 <= logged[0]["confident_shapes2k"] <= 1
        args = [f"run_dir={run_dir}", f"eval.classifier_weights={path}", "progress=false"]
        metrics = "eval.metrics=[fd_shapes2k_test,confident_shapes2k]"
        (row,) = evaluate(compose("evaluate", overrides=[*args, metrics, *counts]))
    assert row["fd_shapes2k_test"]["value"] == pytest.approx(logged[0]["fd_shapes2k_test"])
    assert row["confident_shapes2k"]["value"] == logged[0]["confident_shapes2k"]
    assert row["protocol"]["weights_sha256"] == weights_sha256(path)
