"""Config composition: groups, dataset-driven paper settings, presets, and bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from harness.training.config import config_differences, register_configs, to_container, validate

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
register_configs()


def make(*overrides: str):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize(
    "dataset,model,res,iters,lr,betas,n_dis,batch,g_batch",
    [
        ("cifar10", "cnn", 32, 400_000, 1e-4, (0.5, 0.999), 1, 64, None),
        ("stl10", "cnn", 48, 800_000, 1e-4, (0.5, 0.999), 1, 64, None),
        ("celeba", "cnn", 64, 400_000, 1e-4, (0.5, 0.999), 1, 64, None),
        ("imagenet", "resnet", 128, 500_000, 2e-4, (0.0, 0.9), 5, 16, 32),
        ("mnist", "dcgan_mnist", 28, 100_000, 1e-4, (0.5, 0.999), 1, 64, None),
    ],
)
def test_dataset_picks_model_and_paper_settings(
    dataset, model, res, iters, lr, betas, n_dis, batch, g_batch
) -> None:
    cfg = make(f"dataset={dataset}")
    validate(cfg)
    assert (cfg.model.name, cfg.dataset.resolution, cfg.train.iterations) == (model, res, iters)
    assert (cfg.optim.lr_g, cfg.optim.lr_d, (cfg.optim.beta1, cfg.optim.beta2)) == (lr, lr, betas)
    assert (cfg.train.n_dis, cfg.train.batch_size, cfg.train.g_batch_size) == (
        n_dis,
        batch,
        g_batch,
    )
    # MNIST (and shapes) default to eval=none: Inception IS/FID mean little there.
    assert cfg.loss.name == "hinge" and cfg.eval.every == (0 if dataset == "mnist" else 10_000)


def test_the_readme_command() -> None:
    cfg = make("dataset=cifar10", "norm=bssn", "scale=1.2")
    validate(cfg)
    resolved = to_container(cfg)
    assert resolved["norm"]["mode"] == "bssn" and resolved["scale"] == 1.2
    assert resolved["run_name"] == "cifar10-cnn-bssn-s1.2-seed0"
    assert resolved["logger"]["wandb"]["mode"] == "offline"


def test_command_line_beats_dataset_and_presets() -> None:
    cfg = make("dataset=cifar10", "model=resnet", "optim.lr_d=3e-4", "experiment=ndis5")
    assert (cfg.model.name, cfg.optim.lr_d, cfg.train.n_dis, cfg.optim.beta2) == (
        "resnet",
        3e-4,
        5,
        0.9,
    )


@pytest.mark.parametrize(
    "preset,check",
    [
        (
            "table1_cifar10",
            lambda c: c.dataset.name == "cifar10" and c.eval.metrics == ["is50k", "fid10k_5k"],
        ),
        ("table1_imagenet", lambda c: c.model.name == "resnet" and c.train.n_dis == 5),
        ("lr_g2e-4_d1e-4", lambda c: (c.optim.lr_g, c.optim.lr_d) == (2e-4, 1e-4)),
        ("stl10_ndis5", lambda c: c.train.iterations == 400_000 and c.dataset.resolution == 48),
        (
            "gamma_same",
            lambda c: (
                c.norm.mode == "sn_same_gamma"
                and c.loss.name == "wgan_gp"
                and c.loss.gp_weight == 10
            ),
        ),
        ("gamma_diff", lambda c: c.norm.mode == "sn_diff_gamma" and c.loss.name == "wgan_gp"),
        (
            "quickstart",
            lambda c: (
                c.dataset.name == "shapes"
                and c.eval.every == 0
                and c.logger.wandb.mode == "disabled"
                and c.model.width == 0.25
            ),
        ),
        (
            "mnist_table",
            lambda c: (
                c.dataset.name == "mnist"
                and list(c.eval.metrics) == ["fd_mnist10k_test", "cs_mnist10k"]
                and c.eval.every > 0
                and c.model.width == 1.0
            ),
        ),
    ],
)
def test_experiment_presets(preset: str, check) -> None:
    cfg = make(f"experiment={preset}")
    validate(cfg)
    assert check(cfg)


def test_unknown_keys_and_wrong_types_fail_at_composition() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        make("train.iteration=5")
    assert "Key 'iteration' not in 'TrainConfig'" in str(err.value.__cause__)
    with pytest.raises(ValueError, match=r"unknown config keys: train.iteration"):
        validate(make("+train.iteration=5"))  # Hydra lets '+' append; validate refuses
    with pytest.raises(ConfigCompositionException) as err:
        make("train.iterations=many")
    assert isinstance(err.value.__cause__, ValidationError)
    with pytest.raises(ConfigCompositionException, match="norm"):
        make("norm=bnss")


@pytest.mark.parametrize(
    "override,message",
    [
        ("scale=0", "positive finite"),
        ("scale=-1.2", "positive finite"),
        ("scale=nan", "positive finite"),
        ("norm=sn scale=1.2", "'sn' has no scale"),
        ("dataset.name=cifar100", "dataset.name='cifar100'.*cifar10"),
        ("model.name=bigresnet", "model.name='bigresnet'.*cnn, resnet, dcgan_mnist"),
        ("loss.name=wgan", "loss.name='wgan'.*hinge, wgan_gp"),
        ("train.n_dis=0", r"train.n_dis=0 must be > 0"),
        ("train.device=tpu", "train.device='tpu'.*auto, cpu, cuda"),
        ("logger.wandb.mode=on", "logger.wandb.mode='on'.*offline, online, disabled"),
        ("optim.beta2=1.0", r"optim.beta2=1.0 must be in \[0, 1\)"),
        ("eval.metrics=[fid50k]", "eval.metrics='fid50k'.*fid10k_5k"),
        ("norm.n_power_iterations=0", "n_power_iterations"),
    ],
)
def test_bad_values_are_rejected_by_name(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate(make(*override.split()))


def test_config_differences_ignore_what_may_change_on_resume() -> None:
    a = to_container(make("dataset=cifar10"))
    b = to_container(
        make("dataset=cifar10", "train.iterations=500000", "logger=files", "dataset.root=/data")
    )
    assert config_differences(a, b) == []
    c = to_container(make("dataset=cifar10", "norm=ssn", "scale=1.4"))
    assert config_differences(a, c) == ["norm.mode: 'bssn' -> 'ssn'", "scale: 1.0 -> 1.4"]
