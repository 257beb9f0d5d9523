"""Training the metric classifier of harness.metrics.classifier on a dataset's training split.

`python -m scripts.train_classifier` runs it; the metrics also run it on first use when
no weights exist at the default path. It reports the accuracy on the test split (MNIST's
10k test images; for shapes, the set drawn with another seed) and stores it in the file.
Deterministic on CPU for a given seed and thread count; the sha256 identifies the result.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data import ImageSet, load_dataset
from data.stream import cache_root, decoded_images
from harness.metrics.classifier import (
    Classifier,
    ClassifierNotFound,
    default_weights_path,
    save_classifier,
    uint8_to_input,
)
from harness.metrics.weights import weights_sha256

log = logging.getLogger(__name__)

NUM_CLASSES = {"mnist": 10, "shapes": 3}


def labels_of(images: ImageSet) -> torch.Tensor:
    """int64 labels of every item: MNIST's targets, the shapes' kinds."""
    for attribute in ("targets", "kinds"):
        labels = getattr(images.source, attribute, None)
        if labels is not None:
            return torch.as_tensor(labels, dtype=torch.int64)
    raise ValueError(f"dataset {images.name!r} has no labels; classifiers exist for {NUM_CLASSES}")


def accuracy(model: Classifier, images: torch.Tensor, labels: torch.Tensor, channels: int) -> float:
    """Top-1 accuracy over uint8 images, in batches."""
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(images), 1000):
            x = uint8_to_input(images[start : start + 1000], channels)
            correct += int((model(x)[1].argmax(1) == labels[start : start + 1000]).sum())
    return correct / len(images)


def train_classifier(
    dataset: str,
    root: str | os.PathLike,
    resolution: int,
    out: str | os.PathLike,
    *,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    download: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train on the training split, measure the test split, write `out`; returns the
    metadata (with `sha256` of the written file and `test_accuracy`)."""
    if dataset not in NUM_CLASSES:
        raise ValueError(f"no classifier for dataset {dataset!r}; allowed: {sorted(NUM_CLASSES)}")
    for key, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{key} must be positive, got {value}")
    started = time.perf_counter()
    train_set = load_dataset(dataset, str(root), resolution, download=download, split="train")
    test_set = load_dataset(dataset, str(root), resolution, download=download, split="test")
    x_train = decoded_images(train_set, num_workers=0, show_progress=progress)
    y_train, y_test = labels_of(train_set), labels_of(test_set)
    x_test = decoded_images(test_set, num_workers=0, show_progress=progress)
    channels = train_set.channels

    torch.manual_seed(seed)
    model = Classifier(channels, NUM_CLASSES[dataset])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        opt, lr, total_steps=epochs * -(-len(x_train) // batch_size)
    )
    order_rng = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=order_rng)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            _, logits = model(uint8_to_input(x_train[idx], channels))
            loss = loss_fn(logits, y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total += loss.item() * len(idx)
        log.info("classifier epoch %d: train loss %.4f", epoch + 1, total / len(order))
    test_accuracy = accuracy(model, x_test, y_test, channels)
    meta = {
        "channels": channels,
        "num_classes": NUM_CLASSES[dataset],
        "resolution": resolution,
        "dataset": dataset,
        "test_accuracy": test_accuracy,
        "num_test": len(x_test),
        "epochs": epochs,
        "seed": seed,
    }
    save_classifier(out, model, **meta)
    meta["sha256"] = weights_sha256(out)
    meta["seconds"] = time.perf_counter() - started
    meta["path"] = str(out)
    return meta


def resolve_classifier_weights(
    path: str | os.PathLike | None,
    dataset: str,
    root: str | os.PathLike,
    resolution: int,
    *,
    train_if_missing: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> str:
    """The classifier weights file: `path` if given (it must exist), else the default path
    under `<cache_dir or root/.bssn_cache>/classifiers/`, trained there first if missing."""
    if path is not None:
        if not Path(path).expanduser().is_file():
            raise ClassifierNotFound(
                f"eval.classifier_weights={path} is not a file; write one with "
                f"python -m scripts.train_classifier --dataset {dataset} --out {path}"
            )
        return str(Path(path).expanduser())
    default = default_weights_path(cache_root(root, cache_dir), dataset, resolution)
    if not default.is_file():
        if not train_if_missing:
            raise ClassifierNotFound(
                f"no classifier at {default}; train it with python -m scripts.train_classifier "
                f"--dataset {dataset} --root {root} --resolution {resolution}"
            )
        log.info("training the %s metric classifier (first use) into %s", dataset, default)
        meta = train_classifier(dataset, root, resolution, default, progress=False)
        log.info("classifier: test accuracy %.4f, sha256 %s", meta["test_accuracy"], meta["sha256"])
    return str(default)
