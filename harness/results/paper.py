"""The paper's Table 1 (docs/table1.md) and the training setting behind it (section 4)."""

from typing import Any

#: Metric key of the paper's protocol -> the Table 1 column it fills (docs/metrics.md).
PAPER_PROTOCOLS = {"is50k": "IS", "fid10k_5k": "FID"}

#: (dataset, IS|FID, norm) -> (mean, standard error) over seeds.
PAPER: dict[tuple[str, str, str], tuple[float, float]] = {
    ("cifar10", "IS", "sn"): (7.12, 0.07),
    ("cifar10", "FID", "sn"): (31.43, 0.90),
    ("cifar10", "IS", "ssn"): (7.38, 0.06),
    ("cifar10", "FID", "ssn"): (29.31, 0.23),
    ("cifar10", "IS", "bsn"): (7.54, 0.04),
    ("cifar10", "FID", "bsn"): (26.94, 0.58),
    ("cifar10", "IS", "bssn"): (7.54, 0.04),
    ("cifar10", "FID", "bssn"): (26.94, 0.58),
    ("stl10", "IS", "sn"): (9.05, 0.05),
    ("stl10", "FID", "sn"): (44.35, 0.54),
    ("stl10", "IS", "ssn"): (9.28, 0.03),
    ("stl10", "FID", "ssn"): (43.52, 0.26),
    ("stl10", "IS", "bsn"): (9.25, 0.01),
    ("stl10", "FID", "bsn"): (42.98, 0.54),
    ("stl10", "IS", "bssn"): (9.25, 0.01),
    ("stl10", "FID", "bssn"): (42.90, 0.17),
    ("celeba", "FID", "sn"): (9.43, 0.09),
    ("celeba", "FID", "ssn"): (8.50, 0.20),
    ("celeba", "FID", "bsn"): (9.05, 0.13),
    ("celeba", "FID", "bssn"): (9.05, 0.13),
    ("imagenet", "IS", "sn"): (12.84, 0.33),
    ("imagenet", "FID", "sn"): (75.06, 2.38),
    ("imagenet", "IS", "ssn"): (12.84, 0.33),
    ("imagenet", "FID", "ssn"): (73.21, 1.92),
    ("imagenet", "IS", "bsn"): (1.77, 0.13),
    ("imagenet", "FID", "bsn"): (265.20, 19.01),
    ("imagenet", "IS", "bssn"): (13.23, 0.16),
    ("imagenet", "FID", "bssn"): (69.04, 1.46),
}

_CNN_SETTING = {
    "model.name": "cnn",
    "loss.name": "hinge",
    "train.batch_size": 64,
    "train.g_batch_size": None,
    "train.n_dis": 1,
    "optim.lr_g": 1e-4,
    "optim.lr_d": 1e-4,
    "optim.beta1": 0.5,
    "optim.beta2": 0.999,
}

#: dataset -> the Table 1 values of the keys that change what is trained (docs/training.md).
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    "cifar10": _CNN_SETTING | {"dataset.resolution": 32, "train.iterations": 400_000},
    "stl10": _CNN_SETTING | {"dataset.resolution": 48, "train.iterations": 800_000},
    "celeba": _CNN_SETTING | {"dataset.resolution": 64, "train.iterations": 400_000},
    "imagenet": {
        "model.name": "resnet",
        "loss.name": "hinge",
        "dataset.resolution": 128,
        "train.iterations": 500_000,
        "train.batch_size": 16,
        "train.g_batch_size": 32,
        "train.n_dis": 5,
        "optim.lr_g": 2e-4,
        "optim.lr_d": 2e-4,
        "optim.beta1": 0.0,
        "optim.beta2": 0.9,
    },
}


def _get(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def setting_mismatches(dataset: str, config: dict[str, Any]) -> list[str]:
    """'key: ours vs paper' for each Table 1 setting the config does not share.

    A dataset the paper has no Table 1 column for mismatches as a whole.
    """
    if dataset not in PAPER_SETTINGS:
        return [f"dataset.name: {dataset!r} is not in the paper's Table 1"]
    return [
        f"{key}: {_get(config, key)!r} vs {value!r}"
        for key, value in PAPER_SETTINGS[dataset].items()
        if _get(config, key) != value
    ]
