"""Prepare once, where the internet is, everything a set of runs reads (README, "Clusters").

    python -m harness.prepare experiment=table1_cifar10            # the overrides of the runs
    python -m harness.prepare dataset=mnist dataset.root=/data

Composes the runs' config as train.py does (same overrides), then, printing each step:
1. the dataset: torchvision downloads it if missing and md5-checks the files it has;
2. the decoded-image cache ``<root>/.bssn_cache/<name>_train_<res>.npy`` the runs load;
3. when the config evaluates (``eval.every > 0``): the Inception weights (downloaded into
   torch-fidelity's cache, or ``eval.inception_weights``), checked against the official
   sha256, and
4. the FID reference statistics of every FID metric in ``eval.metrics``, cached under
   ``<root>/.bssn_cache/inception/`` (the runs' first evaluation would compute them).
   The repo's classifier metrics (docs/metrics.md) instead get their classifier (found,
   or trained: harness/metrics/classifier_train.py) and their test-split statistics.

Afterwards runs with ``dataset.download=false eval.download_weights=false`` (the cluster
setting) never touch the network, and a missing piece stops them at start-up. Each cache
is built under a file lock, so running this while runs start is safe. One dataset per
call: a sweep over several datasets needs one call per dataset.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def compose_run_config(overrides: list[str]) -> DictConfig:
    """The config ``python train.py <overrides>`` would run, validated."""
    from harness.training.config import register_configs, validate

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    validate(cfg)
    return cfg


def prepare(
    cfg: DictConfig, device: str = "auto", allow_other_weights: bool = False, say=print
) -> None:
    from data import load_dataset
    from data.stream import cache_path, decoded_images

    d = cfg.dataset
    say(f"[dataset] {d.name} under {Path(d.root).expanduser()} (download if missing, md5 checks)")
    images = load_dataset(d.name, d.root, d.resolution, download=True)
    res = images.resolution
    say(f"[dataset] ready: {len(images)} training images at {res}x{res}")

    if images.fits_in_memory and images.name != "shapes":
        data = decoded_images(images, d.num_workers, show_progress=True)
        say(f"[decoded cache] {cache_path(images)}: uint8 {tuple(data.shape)}")
    else:
        say(f"[decoded cache] none for {d.name} (generated or decoded on the fly)")

    if not cfg.eval.every:
        say("[inception] skipped: this config does not evaluate (eval.every=0)")
    else:
        from harness.metrics.protocols import CLASSIFIER, INCEPTION, get_protocol

        extractors = {get_protocol(name).extractor for name in cfg.eval.metrics}
        if INCEPTION in extractors:
            _prepare_eval(cfg, images, device, allow_other_weights, say)
        if CLASSIFIER in extractors:
            _prepare_classifier(cfg, images, say)
    say(
        "done: runs of this config can start offline with "
        "dataset.download=false eval.download_weights=false"
    )


def _prepare_eval(cfg, images, device: str, allow_other_weights: bool, say) -> None:
    from harness.metrics import get_protocol, load_inception, reference_statistics, weights_sha256
    from harness.metrics.protocols import INCEPTION
    from harness.metrics.weights import OFFICIAL_SHA256_PREFIX, resolve_inception_weights
    from harness.training.periodic_eval import check_counts, reference_cache_dir

    e = cfg.eval
    check_counts(e)
    weights = resolve_inception_weights(e.inception_weights, allow_download=True)
    digest = weights_sha256(weights)
    if not digest.startswith(OFFICIAL_SHA256_PREFIX):
        message = (
            f"{weights} has sha256 {digest}..., not the official weights' "
            f"{OFFICIAL_SHA256_PREFIX}...; IS/FID computed with it are not comparable"
        )
        if not allow_other_weights:
            raise ValueError(message + " (--allow-other-weights accepts it)")
        say(f"[inception] WARNING: {message}")
    say(f"[inception] weights {weights} (sha256 {digest}...)")

    fids = [
        p
        for p in map(get_protocol, e.metrics)
        if p.kind == "fid" and p.extractor == INCEPTION and p.real_split == "train"
    ]
    if not fids:
        return
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    torch_device = torch.device(auto if device == "auto" else device)
    extractor = load_inception(weights, torch_device)
    for p in fids:
        stats = reference_statistics(
            images,
            p.count("real", e.num_real, "eval.num_real"),
            extractor=extractor,
            weights_hash=digest,
            cache_dir=reference_cache_dir(images.root),
            seed=0,  # compute_metrics' default: the runs' real subset
            batch_size=e.batch_size,
            num_workers=cfg.dataset.num_workers,
        )
        state = "computed" if stats.computed else "already cached"
        say(f"[reference stats] {p.name}: {stats.path} ({stats.num_images} images, {state})")


def _prepare_classifier(cfg, images, say) -> None:
    """The classifier metrics' classifier and the Frechet statistics of their real split."""
    from harness.metrics.extractor import load_extractor
    from harness.metrics.protocols import CLASSIFIER, get_protocol
    from harness.metrics.reference_stats import reference_statistics
    from harness.metrics.weights import weights_sha256
    from harness.training.periodic_eval import (
        DataKey,
        classifier_weights_for,
        preflight,
        reference_cache_dir,
        test_split_for,
    )

    e, d = cfg.eval, cfg.dataset
    preflight(e, d)  # checks the dataset; trains the classifier if missing
    data = DataKey(images.name, images.root, images.resolution)
    weights = classifier_weights_for(e, data, d.cache_dir)
    digest = weights_sha256(weights)
    say(f"[classifier] weights {weights} (sha256 {digest})")
    extractor = load_extractor(CLASSIFIER, weights, "cpu")
    splits = {"train": images, "test": test_split_for(e, data)}
    for p in map(get_protocol, e.metrics):
        if p.extractor != CLASSIFIER or p.kind != "fid":
            continue
        stats = reference_statistics(
            splits[p.real_split],
            p.count("real", e.num_real, "eval.num_real"),
            extractor=extractor,
            weights_hash=digest,
            cache_dir=reference_cache_dir(images.root, d.cache_dir),
            seed=0,  # compute_metrics' default: the runs' real subset
            batch_size=e.batch_size,
            num_workers=d.num_workers,
            extractor_name=CLASSIFIER,
        )
        state = "computed" if stats.computed else "already cached"
        say(f"[reference stats] {p.name}: {stats.path} ({stats.num_images} images, {state})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.prepare",
        description="Download and verify the dataset, decoded cache, Inception weights and "
        "FID reference statistics the runs of a config need.",
    )
    parser.add_argument("overrides", nargs="*", help="the runs' Hydra overrides, as for train.py")
    parser.add_argument("--device", default="auto", help="for the FID statistics (auto|cpu|cuda)")
    parser.add_argument(
        "--allow-other-weights",
        action="store_true",
        help="accept Inception weights whose sha256 is not the official one",
    )
    args = parser.parse_args(argv)
    prepare(compose_run_config(args.overrides), args.device, args.allow_other_weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
