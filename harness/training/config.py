"""Structured configs: every key has a typed default; unknown keys fail at composition.

Groups mirror the paper (docs/training.md): dataset, model, norm, loss, optim, train,
eval, logger; `scale` and `seed` are top level so sweeps read
``python train.py -m norm=bssn scale=1.0,1.2 seed=0,1,2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


@dataclass
class DatasetConfig:
    name: str = MISSING  # one of data.DATASETS
    root: str = "${oc.env:BSSN_DATA,datasets}"  # folder holding the dataset's files
    resolution: int = MISSING  # training resolution (docs/metrics.md)
    download: bool = True  # use torchvision's download where one exists
    num_workers: int = 4  # decoding workers (ILSVRC2012 streams through them)
    # Where decoded arrays and Inception statistics are cached; None = <root>/.bssn_cache.
    # Set it when the root is read-only (a shared cluster copy).
    cache_dir: str | None = None


@dataclass
class ModelConfig:
    name: str = MISSING  # one of models.MODELS
    z_dim: int = 128
    negative_slope: float = 0.1  # D's leaky-ReLU slope (0 for the ResNet)
    width: float = 1.0  # cnn only: channel counts times this (1 = the paper's network)
    # Whether the D steps' G forwards update G's batch-norm running statistics: yes in the
    # authors' CNN, no in their ResNet (harness/training/batchnorm.py).
    bn_stats_on_d_step: bool = True


@dataclass
class NormConfig:
    mode: str = "bssn"  # one of bssn.MODES
    n_power_iterations: int = 1  # per D step (docs/normalization.md)
    # Steps on the random start vectors before training; None = init_power_iterations_for:
    # 0 as in the authors' code (u drawn once), bssn's 15 for the Thm. 1 option
    # (docs/reference_differences.md K4).
    init_power_iterations: int | None = None
    # Thm. 1 experiment (Fig. 3): layer i normalized to a random spectral norm c_i with
    # geometric mean layer_scales_geomean (sn/snconv/bsn only); None = every layer 1.
    layer_scales_geomean: float | None = None
    layer_scales_log_std: float = 0.5  # std of log c_i before recentring
    layer_scales_seed: int = 0


@dataclass
class LossConfig:
    name: str = "hinge"  # hinge | wgan_gp
    gp_weight: float = 10.0  # wgan_gp only: weight of the gradient penalty


@dataclass
class OptimConfig:
    name: str = "adam"
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999


@dataclass
class TrainConfig:
    iterations: int = 400_000  # generator steps
    batch_size: int = 64  # D's global batch (split across DDP ranks)
    g_batch_size: int | None = None  # G's global batch; None = batch_size
    n_dis: int = 1  # D steps per G step
    log_freq: int = 100  # scalars, sigmas and gradient norms every this many iterations
    # bssn.analysis scalars (Prop. 1 per-sample gradients, operator norms, variances) every
    # this many iterations, on a log step; 0 = never. They cost far more than the rest.
    analysis_freq: int = 1000
    vis_freq: int = 5000  # sample grid of fixed latents; 0 = never
    ckpt_freq: int = 5000  # checkpoint; the last iteration is always saved
    keep_checkpoints: int = 2  # newest full checkpoints kept on disk
    device: str = "auto"  # auto | cpu | cuda
    sync_batchnorm: bool = True  # DDP: G's batch norm over the global batch, as single-GPU
    # CPU intra-op threads; None = the CPUs this process may use, divided among the processes
    # sharing them (SLURM_CPUS_PER_TASK, affinity, LOCAL_WORLD_SIZE, BSSN_RUNS_PER_DEVICE).
    threads: int | None = None
    compile: bool = False  # torch.compile G and D (their fwd+bwd); slower on CPU, for GPUs
    # torch.compile mode: default | reduce-overhead (CUDA graphs) | max-autotune | ...
    compile_mode: str = "default"
    # Checkpoints exist but none is valid: start from 0 (they are renamed *.invalid)
    # instead of stopping with an error that names them.
    start_over: bool = False


@dataclass
class EvalConfig:
    every: int = 0  # IS/FID every this many iterations; 0 = never
    metrics: list[str] = field(default_factory=lambda: ["is50k", "fid10k_5k"])
    inception_weights: str | None = None  # path to weights-inception-2015-12-05-6726825d.pth
    download_weights: bool = True  # else only eval.inception_weights or torch-fidelity's cache
    # The classifier metrics' weights (fd_mnist10k_test, ...): None = the file
    # scripts.train_classifier writes under <dataset.root>/.bssn_cache/classifiers/, trained
    # there on first use; a path must exist. Never downloaded.
    classifier_weights: str | None = None
    batch_size: int = 250
    num_gen: int | None = None  # smoke tests only: fewer generated images than the protocol
    num_real: int | None = None  # smoke tests only: fewer real images than the FID protocol


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline (no account needed) | online | disabled
    project: str = "bssn"
    entity: str | None = None
    group: str | None = None


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    tensorboard: bool = False
    progress: bool = True  # progress bar on rank 0


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    norm: NormConfig = field(default_factory=NormConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    scale: float = 1.0  # s of ssn/bssn (and of the scaled inits); must be 1 for other modes
    seed: int = 0
    out_dir: str = "runs"
    # The run directory: re-running the same command resumes it (see harness.training.checkpoint).
    run_name: str = "${dataset.name}-${model.name}-${norm.mode}-s${scale}-seed${seed}"


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


LOSSES = ("hinge", "wgan_gp")
OPTIMIZERS = ("adam",)
DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
WANDB_MODES = ("offline", "online", "disabled")

#: Keys that may change when a run resumes: they do not change what is being trained.
RESUMABLE_CHANGES = (
    "train.iterations",
    "train.log_freq",
    "train.analysis_freq",
    "train.threads",
    "train.compile",
    "train.compile_mode",
    "train.vis_freq",
    "train.ckpt_freq",
    "train.keep_checkpoints",
    "train.start_over",
    "train.device",
    "dataset.root",
    "dataset.download",
    "dataset.num_workers",
    "dataset.cache_dir",
    "eval",
    "logger",
    "out_dir",
    "run_name",
)


def init_power_iterations_for(norm: DictConfig | NormConfig) -> int:
    """The warm-up power steps a run uses: ``norm.init_power_iterations`` when set, else 0
    (the authors' start, docs/reference_differences.md K4) for ordinary runs and bssn's
    warm-up (15, as torch's ``spectral_norm``) for the Thm. 1 option.

    The Thm. 1 runs (Fig. 3) are about layer i *having* the spectral norm c_i: the figure sets
    gradient ratios against spectral-norm ratios. Without the warm-up a layer divides by a
    one-step estimate of sigma, which is below sigma, so at the first steps its norm is above
    c_i (by ~10% on MNIST's CNN) and the layers' ratios are not the drawn ones. Ordinary runs
    have every layer's target 1 and keep the reference's start.
    """
    if norm.init_power_iterations is not None:
        return int(norm.init_power_iterations)
    if norm.layer_scales_geomean is not None:
        from bssn.parametrizations import INIT_POWER_ITERATIONS

        return INIT_POWER_ITERATIONS
    return 0


def _one_of(key: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def _positive(key: str, value: Any, zero_ok: bool = False) -> None:
    ok = (
        isinstance(value, (int, float))
        and math.isfinite(value)
        and (value >= 0 if zero_ok else value > 0)
    )
    if not ok:
        raise ValueError(f"{key}={value!r} must be {'>= 0' if zero_ok else '> 0'}")


def _unknown_keys(node: dict, schema: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in node.items():
        if key not in schema:
            out.append(f"{prefix}{key}")
        elif isinstance(schema[key], dict) and isinstance(value, dict):
            out += _unknown_keys(value, schema[key], f"{prefix}{key}.")
    return out


def validate(cfg: DictConfig) -> None:
    """Reject nonsense before any work starts, naming the key, the value and what is allowed."""
    import bssn
    from data import DATASETS
    from models import MODELS

    # Hydra lets `+key=value` append even to typed nodes; the schema has the last word.
    unknown = _unknown_keys(
        OmegaConf.to_container(cfg, resolve=False),
        OmegaConf.to_container(OmegaConf.structured(Config), resolve=False),
    )
    if unknown:
        raise ValueError(
            f"unknown config keys: {', '.join(unknown)} (see harness/training/config.py)"
        )

    _one_of("dataset.name", cfg.dataset.name, DATASETS)
    _one_of("model.name", cfg.model.name, MODELS)
    _one_of("norm.mode", cfg.norm.mode, bssn.MODES)
    _one_of("loss.name", cfg.loss.name, LOSSES)
    _one_of("optim.name", cfg.optim.name, OPTIMIZERS)
    _one_of("train.device", cfg.train.device, DEVICES)
    _one_of("train.compile_mode", cfg.train.compile_mode, COMPILE_MODES)
    _one_of("logger.wandb.mode", cfg.logger.wandb.mode, WANDB_MODES)
    bssn.modes.check_scale(cfg.scale, cfg.norm.mode)
    bssn.modes.check_power_iterations(cfg.norm.n_power_iterations)
    if cfg.norm.init_power_iterations is not None:
        bssn.modes.check_power_iterations(
            cfg.norm.init_power_iterations, "norm.init_power_iterations", low=0
        )
    if cfg.norm.layer_scales_geomean is not None:
        from bssn.analysis.thm1 import LAYER_SCALE_MODES

        _one_of("norm.mode (with norm.layer_scales_geomean)", cfg.norm.mode, LAYER_SCALE_MODES)
        _positive("norm.layer_scales_geomean", cfg.norm.layer_scales_geomean)
        _positive("norm.layer_scales_log_std", cfg.norm.layer_scales_log_std, zero_ok=True)
    for key in (
        "train.iterations",
        "train.batch_size",
        "train.n_dis",
        "train.log_freq",
        "train.keep_checkpoints",
        "optim.lr_g",
        "optim.lr_d",
        "dataset.resolution",
        "model.z_dim",
        "eval.batch_size",
    ):
        section, name = key.split(".")
        _positive(key, cfg[section][name])
    for key in (
        "train.vis_freq",
        "train.analysis_freq",
        "train.ckpt_freq",
        "eval.every",
        "loss.gp_weight",
        "dataset.num_workers",
        "model.negative_slope",
    ):
        section, name = key.split(".")
        _positive(key, cfg[section][name], zero_ok=True)
    if cfg.train.threads is not None:
        _positive("train.threads", cfg.train.threads)
    if cfg.train.g_batch_size is not None:
        _positive("train.g_batch_size", cfg.train.g_batch_size)
    for key in ("beta1", "beta2"):
        if not 0 <= cfg.optim[key] < 1:
            raise ValueError(f"optim.{key}={cfg.optim[key]!r} must be in [0, 1)")
    if cfg.eval.every:
        from harness.metrics import PROTOCOLS

        for name in cfg.eval.metrics:
            _one_of("eval.metrics", name, tuple(PROTOCOLS))
            PROTOCOLS[name].check_dataset(cfg.dataset.name)


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """'key: saved -> current' for every key that differs, outside RESUMABLE_CHANGES."""
    out = []
    for key in sorted(set(saved) | set(current)):
        path = f"{prefix}{key}"
        if any(path == k or path.startswith(k + ".") for k in RESUMABLE_CHANGES):
            continue
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, path + ".")
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")
    return out
