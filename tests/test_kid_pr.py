"""KID and precision/recall protocols against torch-fidelity's own functions (docs/metrics.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import calculate_precision_recall_full
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

import harness.metrics.compute as metrics_compute
from harness.metrics import PROTOCOLS, compute_metrics, get_protocol, load_inception
from harness.metrics.extractor import extract
from harness.metrics.image_files import ImageFiles
from harness.metrics.kid_pr import kernel_inception_distance, precision_recall


def features(seed: int, n: int, shift: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 32, generator=generator).abs() + shift  # ReLU-like, as pool3


def test_protocols_fix_their_settings() -> None:
    kid, pr = get_protocol("kid50k_full"), get_protocol("pr50k3_full")
    assert (kid.kind, kid.num_gen, kid.num_real, kid.subsets, kid.subset_size) == (
        "kid", 50_000, None, 100, 1000
    )  # fmt: skip
    assert (pr.kind, pr.num_gen, pr.num_real, pr.neighborhood) == ("pr", 50_000, None, 3)
    assert kid.extractor == pr.extractor == "inception-v3-compat"
    # Every protocol names an extractor torch-fidelity knows (the classifier's is registered).
    assert {p.extractor for p in PROTOCOLS.values()} <= set(FEATURE_EXTRACTORS_REGISTRY)
    with pytest.raises(ValueError, match=r"num_gen=3 is not allowed for pr50k3_full.*4\.\.50000"):
        pr.count("gen", 3, "num_gen")


def test_kid_is_torch_fidelitys() -> None:
    gen, real = features(0, 300, 0.1), features(1, 400)
    mean, std, size = kernel_inception_distance(gen, real, subsets=50, subset_size=200)
    # torch-fidelity's defaults: cubic kernel, gamma 1/d, coef0 1, rng_seed 2020.
    expected = kid_features_to_metric(gen, real, kid_subsets=50, kid_subset_size=200, verbose=False)
    assert size == 200
    assert (mean, std) == (
        expected["kernel_inception_distance_mean"],
        expected["kernel_inception_distance_std"],
    )
    assert mean > 0.01  # the shift is detected
    same, _, _ = kernel_inception_distance(features(2, 300), real, subsets=50, subset_size=200)
    assert abs(same) < mean / 4  # one distribution: zero up to subset noise
    # Fewer samples than a subset: the subsets take every sample (stylegan2-ada's rule).
    _, _, small = kernel_inception_distance(gen[:30], real, subsets=5, subset_size=1000)
    assert small == 30


def test_precision_recall_is_torch_fidelitys() -> None:
    gen, real = features(0, 300, 0.5), features(1, 200)
    got = precision_recall(gen, real, neighborhood=3)
    precision, recall = calculate_precision_recall_full(gen, real, neighborhood=3)
    assert (got["precision"], got["recall"]) == (precision, recall)
    assert got["f_score"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert 0 < precision < 1 and 0 < recall < 1
    with pytest.raises(ValueError, match="k=3 needs more than 3 samples"):
        precision_recall(gen[:3], real, neighborhood=3)


def test_compute_metrics_feeds_them_the_pool3_features(
    tmp_path, random_inception_weights, monkeypatch
) -> None:
    """KID and precision/recall of compute_metrics equal torch-fidelity's functions on the
    extractor's features of the same images (generated: their first n)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    monkeypatch.setattr(FeatureExtractorInceptionV3, "INPUT_IMAGE_SIZE", 75)
    rng = np.random.default_rng(0)
    gen_npz, real_npz = tmp_path / "gen.npz", tmp_path / "real.npz"
    np.savez(gen_npz, rng.integers(0, 256, (14, 16, 16, 3), dtype=np.uint8))
    np.savez(real_npz, rng.integers(0, 200, (12, 16, 16, 3), dtype=np.uint8))
    weights = random_inception_weights(2)
    generated, real = ImageFiles(gen_npz), ImageFiles(real_npz)
    results = compute_metrics(
        ["kid50k_full", "pr50k3_full"], generated.sampler(), None, real,
        weights_path=weights, device="cpu", batch_size=5, cache_dir=tmp_path / "cache",
        num_gen_override=10, progress=False,
    )  # fmt: skip
    extractor = load_inception(weights, "cpu")
    gen_f = extract(extractor, torch.stack([generated[i] for i in range(10)]))[0]
    real_f = extract(extractor, torch.stack([real[i] for i in range(12)]))[0]
    kid = kid_features_to_metric(gen_f, real_f, kid_subsets=100, kid_subset_size=10)
    assert results["kid50k_full"]["mean"] == pytest.approx(
        kid["kernel_inception_distance_mean"], rel=1e-5
    )
    assert (results["kid50k_full"]["num_gen"], results["kid50k_full"]["num_real"]) == (10, 12)
    assert results["kid50k_full"]["subset_size"] == 10 and results["kid50k_full"]["reduced"]
    precision, recall = calculate_precision_recall_full(gen_f, real_f, neighborhood=3)
    assert results["pr50k3_full"]["precision"] == pytest.approx(precision)
    assert results["pr50k3_full"]["recall"] == pytest.approx(recall)

    # The real features are cached: a second call never extracts a real image.
    calls = []
    original = metrics_compute.reference_features

    def spy(*args, **kwargs):
        calls.append(original(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(metrics_compute, "reference_features", spy)
    compute_metrics(
        ["kid50k_full"], ImageFiles(gen_npz).sampler(), None, real, weights_path=weights,
        device="cpu", batch_size=5, cache_dir=tmp_path / "cache", num_gen_override=10,
        progress=False,
    )  # fmt: skip
    assert calls and not calls[0].computed
