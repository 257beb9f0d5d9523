"""IS/FID of the generator during training and of saved checkpoints (docs/metrics.md).

The metrics are `harness.metrics` protocols (`is50k`, `fid10k_5k`, `fid50k_full`,
`kid50k_full`, `pr50k3_full`, and the repo's classifier metrics `fd_mnist10k_test`,
`cs_mnist10k`, ...). G is evaluated in eval mode on latents from a generator seeded with
the run's seed plus EVAL_SEED_OFFSET, created afresh for every evaluation: every
evaluation of a run (and evaluate.py on its checkpoints) sees the same latents, so values
differ only through G.
The real images are the training (or, for protocols that say so, the test) split at
training resolution; their reference statistics are cached under
`<dataset.root>/.bssn_cache/inception/` (or dataset.cache_dir), one file per split,
extractor and weights. The classifier metrics' classifier is the run's dataset's
(eval.classifier_weights, or trained on first use: harness/metrics/classifier_train.py).

Outputs of periodic evaluation, in the run directory:
- `metrics.jsonl` (and W&B/TensorBoard): flat scalars `is50k`, `is50k_std`, `fid10k_5k`, …
  at the evaluation's step;
- `eval/step_<7 digits>.json`: compute_metrics' full result (counts, weights sha256, …);
- `summary.json`: per metric the best value (max IS, min FID), its iteration and the
  latest value, with the history it was computed from. On resume from step N, both are cut
  back to N, like metrics.jsonl.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from data import ImageSet, load_dataset
from data.stream import cache_root
from harness.atomic import atomic_write
from harness.metrics import (
    INCEPTION_WEIGHTS_FILENAME,
    PROTOCOLS,
    check_inception_weights,
    compute_metrics,
    get_protocol,
    is_official,
    resolve_inception_weights,
    weights_sha256,
)
from harness.metrics.classifier_train import resolve_classifier_weights
from harness.metrics.protocols import CLASSIFIER, INCEPTION

from .run_log import RunLog

log = logging.getLogger(__name__)

#: Evaluation latents come from a generator seeded with the run's seed plus this offset.
EVAL_SEED_OFFSET = 2**21
SUMMARY = "summary.json"
_STEP_FILE = re.compile(r"^step_(\d{7,})\.json$")


class DataKey(NamedTuple):
    """A dataset as the run reads it: the classifier metrics' classes and test split."""

    name: str
    root: str
    resolution: int


def reference_cache_dir(dataset_root: str | os.PathLike, cache_dir: str | None = None) -> Path:
    """Where the real images' reference statistics are cached (every extractor: the file
    names say which): beside the dataset, or under dataset.cache_dir when set."""
    return cache_root(dataset_root, cache_dir) / "inception"


def check_counts(eval_cfg: DictConfig) -> None:
    """Reject eval.num_gen / eval.num_real that some requested protocol cannot use."""
    for name in eval_cfg.metrics:
        p = get_protocol(name)
        p.count("gen", eval_cfg.num_gen, "eval.num_gen")
        if p.needs_real:
            p.count("real", eval_cfg.num_real, "eval.num_real")


def _extractors(eval_cfg: DictConfig) -> set[str]:
    return {get_protocol(name).extractor for name in eval_cfg.metrics}


def preflight(eval_cfg: DictConfig, dataset_cfg: DictConfig | None = None) -> str | None:
    """Check the counts and find the weights before any work starts; returns the Inception
    weights' path (None when no Inception metric is requested).

    Raises InceptionWeightsNotFound (naming eval.inception_weights and torch-fidelity's
    cache path), or InvalidInceptionWeights for a file that does not load, instead of
    failing at the first evaluation, hours into training. With `dataset_cfg`, the
    classifier metrics' dataset is checked and their classifier found, or trained now
    (scripts.train_classifier) rather than at the first evaluation.
    """
    check_counts(eval_cfg)
    if dataset_cfg is not None and CLASSIFIER in _extractors(eval_cfg):
        for name in eval_cfg.metrics:
            get_protocol(name).check_dataset(dataset_cfg.name)
        resolve_classifier_weights(
            eval_cfg.classifier_weights, dataset_cfg.name, dataset_cfg.root,
            dataset_cfg.resolution, cache_dir=dataset_cfg.cache_dir,
        )  # fmt: skip
    if INCEPTION not in _extractors(eval_cfg):
        return None
    path = resolve_inception_weights(
        eval_cfg.inception_weights, allow_download=eval_cfg.download_weights
    )
    sha256 = check_inception_weights(path)  # a garbage file fails now, naming itself
    if not is_official(sha256):
        log.warning(
            "Inception weights %s (sha256 %s) are not the official %s: IS/FID will not be "
            "comparable with published values (recorded in every result's protocol)",
            path,
            sha256,
            INCEPTION_WEIGHTS_FILENAME,
        )
    return path


def classifier_weights_for(
    eval_cfg: DictConfig, data: DataKey, cache_dir: str | None = None
) -> str | None:
    """eval.classifier_weights, or the default classifier of the dataset `data` (trained on
    first use); None when no requested metric uses the classifier."""
    if CLASSIFIER not in _extractors(eval_cfg):
        return None
    return resolve_classifier_weights(
        eval_cfg.classifier_weights, data.name, data.root, data.resolution, cache_dir=cache_dir
    )


def weights_identity(
    eval_cfg: DictConfig, inception: str | None, data: DataKey, cache_dir: str | None = None
) -> str:
    """compute_metrics' `weights_sha256` for these metrics on the dataset `data`: the
    extractors' hashes joined by '+', in sorted extractor order."""
    paths = {INCEPTION: inception} if INCEPTION in _extractors(eval_cfg) else {}
    if CLASSIFIER in _extractors(eval_cfg):
        paths[CLASSIFIER] = classifier_weights_for(eval_cfg, data, cache_dir)
    return "+".join(weights_sha256(paths[name]) for name in sorted(paths))


@functools.lru_cache(maxsize=4)
def _test_split(name: str, root: str, resolution: int) -> ImageSet:
    # The training split was opened (and its archives extracted) first: no download here.
    return load_dataset(name, root, resolution, download=False, split="test")


def test_split_for(eval_cfg: DictConfig, data: DataKey) -> ImageSet | None:
    """The test split of the dataset `data` when a requested metric compares against it."""
    if any(get_protocol(n).real_split == "test" for n in eval_cfg.metrics):
        return _test_split(data.name, str(data.root), data.resolution)
    return None


def latent_sampler(g: nn.Module, seed: int, device: torch.device) -> Callable[[int], Tensor]:
    """sample(n): G on the next n latents of a generator seeded with `seed`.

    The latents are drawn on the CPU, so they are the same on every device; generate.py
    draws with the same function, so its images are the ones evaluation scores when the
    seed and batch size are the same.
    """
    latents = torch.Generator().manual_seed(seed)

    def sample(n: int) -> Tensor:
        return g(torch.randn(n, g.z_dim, generator=latents).to(device))

    return sample


def evaluate_generator(
    g: nn.Module,
    real: ImageSet,
    eval_cfg: DictConfig,
    *,
    seed: int,
    device: torch.device,
    num_workers: int,
    progress: bool,
    cache_dir: str | None = None,
    data: DataKey | None = None,
) -> dict[str, Any]:
    """compute_metrics of G (eval mode, then restored) on latents seeded with `seed`.

    `data`: the run's dataset when `real` is not it (images from files, evaluate.py
    real=<folder or .npz>): it picks the classifier, and the files are then the real images
    of every protocol, test-split ones included. None: `real` is the run's training set.

    `num_workers` decode the real images (dataset.num_workers). The global RNG state is
    restored afterwards (the real images' DataLoader draws from it), so a run with
    evaluations trains exactly as one without.
    """
    if data is None:
        data = DataKey(real.name, real.root, real.resolution)
        test = test_split_for(eval_cfg, data)
    else:
        test = real
    classifier_weights = classifier_weights_for(eval_cfg, data, cache_dir)
    sample = latent_sampler(g, seed, device)
    was_training = g.training
    g.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            return compute_metrics(
                list(eval_cfg.metrics), sample, g.output_range, real,
                weights_path=eval_cfg.inception_weights, device=device,
                batch_size=eval_cfg.batch_size, cache_dir=reference_cache_dir(real.root, cache_dir),
                num_gen_override=eval_cfg.num_gen, num_real_override=eval_cfg.num_real,
                num_workers=num_workers, progress=progress,
                classifier_weights=classifier_weights, test_dataset=test,
            )  # fmt: skip
    finally:
        g.train(was_training)


def scalars(results: dict[str, Any]) -> dict[str, float]:
    """Flat scalars of a compute_metrics result: `<is>`, `<is>_std`, `<fid>`, `<kid>`,
    `<kid>_std`, `<pr>_precision`, `<pr>_recall`, `<confident>`."""
    out: dict[str, float] = {}
    for name, value in results.items():
        if name in PROTOCOLS:
            out |= PROTOCOLS[name].scalars(value)
    return out


#: Every ranked scalar of every protocol and its better direction ("max" or "min").
GOALS = {key: goal for p in PROTOCOLS.values() for key, goal in p.goals().items()}


def write_json(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file and a rename: readers never see half a file."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def summarize(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric: best (max IS, precision, recall, confident; min FID, KID) and its step,
    latest and its step."""
    out: dict[str, dict[str, Any]] = {}
    for entry in sorted(history, key=lambda e: e["step"]):
        step = entry["step"]
        for name, value in entry.items():
            if name not in GOALS:
                continue
            higher = GOALS[name] == "max"
            best = out.get(name)
            improved = best is None or (value > best["best"] if higher else value < best["best"])
            out[name] = {
                "best": value if improved else best["best"],
                "best_step": step if improved else best["best_step"],
                "latest": value,
                "latest_step": step,
                "goal": GOALS[name],
            }
    return out


class Summary:
    """`<run_dir>/summary.json`: {"metrics": summarize(history), "history": [...]}."""

    def __init__(self, path: Path, history: list[dict[str, Any]]) -> None:
        self.path = path
        self.history = history

    @classmethod
    def load(cls, run_dir: Path, up_to_step: int) -> Summary:
        """The run's summary without evaluations after `up_to_step` (the resumed step)."""
        path = Path(run_dir) / SUMMARY
        history = json.loads(path.read_text())["history"] if path.is_file() else []
        kept = [e for e in history if e["step"] <= up_to_step]
        summary = cls(path, kept)
        if len(kept) != len(history):
            summary.save()
        return summary

    def add(self, step: int, values: dict[str, float]) -> None:
        self.history = [e for e in self.history if e["step"] != step] + [{"step": step, **values}]
        self.save()

    def save(self) -> None:
        write_json(self.path, {"metrics": summarize(self.history), "history": self.history})


class PeriodicEval:
    """Rank 0's evaluator during training; call it with the raw (non-DDP) G at each
    evaluation step."""

    def __init__(
        self, cfg: DictConfig, run_dir: Path, real: ImageSet, device: torch.device, start_step: int
    ) -> None:
        self.eval_cfg = cfg.eval
        self.seed = cfg.seed + EVAL_SEED_OFFSET
        self.real, self.device, self.progress = real, device, cfg.logger.progress
        self.num_workers = cfg.dataset.num_workers
        self.cache_dir = cfg.dataset.cache_dir
        self.folder = Path(run_dir) / "eval"
        # Results after the resumed step belong to an abandoned future of the run.
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                if (m := _STEP_FILE.match(path.name)) and int(m.group(1)) > start_step:
                    path.unlink()
        self.summary = Summary.load(run_dir, start_step)

    def __call__(self, step: int, g: nn.Module, run_log: RunLog) -> dict[str, float]:
        results = evaluate_generator(
            g,
            self.real,
            self.eval_cfg,
            seed=self.seed,
            device=self.device,
            num_workers=self.num_workers,
            progress=self.progress,
            cache_dir=self.cache_dir,
        )
        write_json(self.folder / f"step_{step:07d}.json", {"step": step, **results})
        values = scalars(results)
        run_log.log(step, values)
        self.summary.add(step, values)
        log.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
        return values
