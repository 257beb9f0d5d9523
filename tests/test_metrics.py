"""harness.metrics (docs/metrics.md): FID/IS math, uint8 conversion, protocols, weights lookup,
reference-statistics cache and an end-to-end run on Inception weights of random values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from torch.utils.data import Dataset
from torch_fidelity.metric_isc import isc_features_to_metric

import harness.metrics.frechet as frechet_module
from harness.metrics import (
    INCEPTION_WEIGHTS_FILENAME,
    PROTOCOLS,
    FeatureMoments,
    InceptionWeightsNotFound,
    compute_metrics,
    frechet_distance,
    get_protocol,
    inception_score,
    inception_weights_cache_path,
    load_inception,
    reference_statistics,
    reference_stats_path,
    resolve_inception_weights,
    to_uint8,
    weights_sha256,
)
from harness.metrics.extractor import extract, extract_generated
from harness.metrics.inception_score import IS_HEADS
from harness.metrics.reference_stats import real_indices

# --- Frechet distance ------------------------------------------------------------------


def _fid_by_eigh(mu1, sigma1, mu2, sigma2) -> float:
    """Independent FID: tr sqrt(sigma1 sigma2) = sum of sqrt(eig(sqrt(s1) s2 sqrt(s1)))."""
    w, v = scipy.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    eig = scipy.linalg.eigh(root1 @ sigma2 @ root1, eigvals_only=True)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def _gaussian_stats(rng, n: int, d: int, shift: float):
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    x = rng.normal(size=(n, d)) @ mixing + shift
    return x.mean(axis=0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("n", [400, 24], ids=["well-conditioned", "near-singular"])
def test_frechet_distance_matches_eigh_reference(n):
    rng = np.random.default_rng(n)
    d = 48
    mu1, s1 = _gaussian_stats(rng, n, d, 0.0)
    mu2, s2 = _gaussian_stats(rng, n, d, 0.3)
    expected = _fid_by_eigh(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_of_identical_statistics_is_zero():
    mu, sigma = _gaussian_stats(np.random.default_rng(1), 300, 32, 1.0)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def test_frechet_distance_retries_with_eps_when_sqrtm_is_not_finite(monkeypatch):
    mu1, s1 = _gaussian_stats(np.random.default_rng(2), 200, 16, 0.0)
    mu2, s2 = _gaussian_stats(np.random.default_rng(3), 200, 16, 0.5)
    real_sqrtm = scipy.linalg.sqrtm
    calls = []

    def failing_once(a):
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(frechet_module.scipy.linalg, "sqrtm", failing_once)
    eps = 1e-2
    got = frechet_distance(mu1, s1, mu2, s2, eps=eps)
    offset = eps * np.eye(16)
    np.testing.assert_allclose(calls[1], (s1 + offset) @ (s2 + offset))
    # The retry changes only the cross term; the traces are those of the given covariances.
    shifted = _fid_by_eigh(mu1, s1 + offset, mu2, s2 + offset)
    assert got == pytest.approx(shifted - 2 * 16 * eps, rel=1e-9)


def test_frechet_distance_rejects_a_large_imaginary_part(monkeypatch):
    mu, sigma = _gaussian_stats(np.random.default_rng(4), 100, 8, 0.0)
    real_sqrtm = scipy.linalg.sqrtm

    def with_imaginary_diagonal(imaginary: complex):
        return lambda a: real_sqrtm(a).real + imaginary * np.eye(a.shape[0])

    monkeypatch.setattr(frechet_module.scipy.linalg, "sqrtm", with_imaginary_diagonal(0.5j))
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(mu, sigma, mu, sigma)
    monkeypatch.setattr(frechet_module.scipy.linalg, "sqrtm", with_imaginary_diagonal(1e-6j))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def test_frechet_distance_checks_shapes():
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


def test_feature_moments_match_numpy_over_batches():
    rng = np.random.default_rng(5)
    # A mean far from zero checks the shifted accumulation against cancellation.
    x = rng.normal(size=(37, 6)) * 0.01 + 1000.0
    moments = FeatureMoments()
    for block in np.split(x, [5, 20, 21]):
        moments.update(torch.from_numpy(block))
    mu, sigma = moments.statistics()
    assert moments.count == 37
    np.testing.assert_allclose(mu, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-7, atol=1e-12)


# --- Inception Score -------------------------------------------------------------------


def _is_direct(logits: np.ndarray, splits: int) -> tuple[float, float]:
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = []
    for part in np.split(p, splits):
        marginal = part.mean(axis=0)
        kl = (part * (np.log(part) - np.log(marginal))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_matches_direct_computation():
    logits = np.random.default_rng(6).normal(scale=3.0, size=(60, 12))
    mean, std = inception_score(logits, splits=3)
    expected_mean, expected_std = _is_direct(logits, 3)
    assert mean == pytest.approx(expected_mean, rel=1e-12)
    assert std == pytest.approx(expected_std, rel=1e-9)
    library = isc_features_to_metric(torch.from_numpy(logits), splits=3, shuffle=False)
    assert mean == pytest.approx(library["inception_score_mean"], rel=1e-12)


def test_inception_score_extremes():
    classes, splits = 7, 2
    labels = np.tile(np.arange(classes), 4)
    one_hot = 1000.0 * np.eye(classes)[labels]
    mean, std = inception_score(one_hot, splits)
    assert mean == pytest.approx(classes, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    constant = np.tile(np.random.default_rng(7).normal(size=classes), (28, 1))
    mean, std = inception_score(constant, splits)
    assert mean == pytest.approx(1.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_needs_a_sample_per_split():
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.zeros((5, 3)), splits=10)


# --- uint8 conversion ------------------------------------------------------------------


@pytest.mark.parametrize("output_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_to_uint8_is_exact_on_the_255_levels(output_range):
    lo, hi = output_range
    levels = torch.arange(256)
    images = (lo + levels.double() / 255.0 * (hi - lo)).float().reshape(1, 1, 16, 16)
    assert torch.equal(to_uint8(images, output_range).flatten(), levels.to(torch.uint8))


def test_to_uint8_rounds_and_clamps():
    images = torch.tensor([-3.0, -1.0, 0.0, 0.999, 1.0, 7.0]).reshape(1, 1, 1, 6)
    expected = [0, 0, 128, 255, 255, 255]  # 0 -> 127.5 rounds half to even
    assert to_uint8(images, (-1, 1)).flatten().tolist() == expected
    with pytest.raises(ValueError, match="output_range"):
        to_uint8(images, (1, 1))
    with pytest.raises(TypeError):
        to_uint8(images.to(torch.uint8), (0, 1))


# --- protocols -------------------------------------------------------------------------


def test_protocol_registry():
    assert get_protocol("is50k") == PROTOCOLS["is50k"]
    assert (PROTOCOLS["is50k"].kind, PROTOCOLS["is50k"].num_gen, PROTOCOLS["is50k"].splits) == (
        "is",
        50_000,
        10,
    )
    fid = PROTOCOLS["fid10k_5k"]
    assert (fid.kind, fid.num_gen, fid.num_real) == ("fid", 10_000, 5_000)
    full = PROTOCOLS["fid50k_full"]
    assert (full.kind, full.num_gen, full.num_real) == ("fid", 50_000, None)
    with pytest.raises(AttributeError):
        fid.num_gen = 1  # type: ignore[misc]


def test_unknown_metric_names_the_bad_value_and_the_allowed_set():
    with pytest.raises(ValueError, match=r"'fid50k'.*fid10k_5k, fid50k_full, is50k"):
        get_protocol("fid50k")
    with pytest.raises(ValueError, match="'kid'"):
        compute_metrics(
            ["is50k", "kid"],
            _never_called,
            (-1, 1),
            None,
            weights_path=None,
            device="cpu",
            cache_dir=".",
        )


def _never_called(n: int) -> torch.Tensor:
    raise AssertionError("no image should be generated")


def test_every_logit_protocol_has_a_head_of_its_own_extractor():
    logit_kinds = ("is", "confident")
    for p in PROTOCOLS.values():
        if p.kind in logit_kinds:
            assert IS_HEADS[p.head].extractor == p.extractor, p.name
    # A head of another extractor, or none, fails before any weights or image.
    wrong = dataclasses.replace(PROTOCOLS["cs_mnist10k"], name="cs_wrong", head="tfgan")
    orphan = dataclasses.replace(PROTOCOLS["is50k"], name="is_orphan", head=None)
    for bad, message in ((wrong, r"cs_wrong: head 'tfgan'.*allowed: classifier"),
                         (orphan, r"is_orphan: head None.*allowed: tfgan, openai")):  # fmt: skip
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(PROTOCOLS, bad.name, bad)
            with pytest.raises(ValueError, match=message):
                compute_metrics(
                    [bad.name], _never_called, (-1, 1), None,
                    weights_path=None, device="cpu", cache_dir=".",
                )  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown IS head 'tf'; allowed: tfgan, openai"):
        extract_generated(
            _never_called, (-1, 1), None, stats_at=[], num_logits=4, batch_size=4, heads=["tf"]
        )
    with pytest.raises(ValueError, match=r"num_logits=4 needs the heads"):
        extract_generated(
            _never_called, (-1, 1), None, stats_at=[], num_logits=4, batch_size=4, heads=[]
        )


def test_overrides_only_scale_down():
    with pytest.raises(ValueError, match="num_gen_override"):
        compute_metrics(
            ["fid10k_5k"],
            _never_called,
            (-1, 1),
            TinyImages(4),
            weights_path=None,
            device="cpu",
            cache_dir=".",
            num_gen_override=20_000,
        )


# --- weights lookup --------------------------------------------------------------------


def test_missing_weights_offline_names_both_options(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cache = tmp_path / "torch_home" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILENAME
    assert inception_weights_cache_path() == cache
    with pytest.raises(InceptionWeightsNotFound) as error:
        resolve_inception_weights(None)
    message = str(error.value)
    assert f"eval.inception_weights=/path/to/{INCEPTION_WEIGHTS_FILENAME}" in message
    assert str(cache) in message
    assert isinstance(error.value, FileNotFoundError)

    with pytest.raises(InceptionWeightsNotFound, match="eval.inception_weights="):
        compute_metrics(
            ["is50k"], _never_called, (-1, 1), None, weights_path=None, device="cpu", cache_dir="."
        )
    with pytest.raises(InceptionWeightsNotFound, match=INCEPTION_WEIGHTS_FILENAME):
        resolve_inception_weights(tmp_path / "nowhere.pth")

    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"weights")
    assert resolve_inception_weights(None) == str(cache)
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"other")
    assert resolve_inception_weights(str(explicit)) == str(explicit)
    assert weights_sha256(explicit) != weights_sha256(cache)
    assert len(weights_sha256(explicit)) == 16


# --- generation and reference statistics with a stand-in extractor ----------------------


class StandInExtractor(torch.nn.Module):
    """Same interface as the Inception extractor, cheap features (mean colour, contrast)."""

    features_list = ("2048", "logits_unbiased", "logits")

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.batches: list[int] = []

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        self.batches.append(images.shape[0])
        x = images.float().flatten(2)
        pool = torch.cat([x.mean(2), x.std(2)], dim=1) * self.scale
        return pool, pool[:, :4], pool[:, :4] + 1.0  # 2048, logits_unbiased, logits


def test_extract_generated_batches_and_checkpoints():
    extractor = StandInExtractor()
    generator = torch.Generator().manual_seed(0)
    drawn: list[torch.Tensor] = []

    def sample(n: int) -> torch.Tensor:
        drawn.append(torch.rand(n, 1, 8, 8, generator=generator))  # grayscale, in (0, 1)
        return drawn[-1]

    out = extract_generated(
        sample,
        (0.0, 1.0),
        extractor,
        stats_at=[6, 10],
        num_logits=7,
        batch_size=4,
        heads=["tfgan", "openai"],
        progress=False,
    )
    assert [d.shape[0] for d in drawn] == [4, 2, 4]
    assert extractor.batches == [4, 2, 4]
    assert sorted(out.stats) == [6, 10]
    assert out.logits["tfgan"].shape == out.logits["openai"].shape == (7, 4)
    np.testing.assert_array_equal(out.logits["tfgan"], out.logits["openai"] + 1.0)  # the bias
    first6 = to_uint8(torch.cat(drawn)[:6], (0, 1)).expand(-1, 3, -1, -1)
    with torch.no_grad():
        features, *_ = StandInExtractor()(first6)
    mu, sigma = out.stats[6]
    np.testing.assert_allclose(mu, features.double().mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(features.double().numpy(), rowvar=False), rtol=1e-5)


class TinyImages(Dataset):
    """uint8 [3, 16, 16] smooth random images, counting reads."""

    name = "tiny/smooth"
    resolution = 16

    def __init__(self, n: int) -> None:
        coarse = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(n))
        smooth = torch.nn.functional.interpolate(coarse, size=16, mode="bilinear")
        self.images = (smooth * 255).round().to(torch.uint8)
        self.reads = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        self.reads += 1
        return self.images[i]


def test_real_indices_are_a_seeded_subset():
    a = real_indices(100, 30, seed=0)
    assert len(np.unique(a)) == 30 and a.max() < 100
    assert np.array_equal(a, real_indices(100, 30, seed=0))
    assert not np.array_equal(a, real_indices(100, 30, seed=1))
    assert np.array_equal(real_indices(5, None, seed=3), np.arange(5))
    with pytest.raises(ValueError, match="num_real"):
        real_indices(10, 11, seed=0)


def test_reference_stats_path_keys():
    base = dict(dataset_name="cifar10", resolution=32, dataset_size=50_000, seed=0)
    subset = reference_stats_path("c", num_real=5000, weights_hash="a" * 16, **base)
    assert subset.name == f"cifar10-32px-5000of50000-seed0-inception-{'a' * 16}.npz"
    assert reference_stats_path("c", num_real=5000, weights_hash="b" * 16, **base) != subset
    assert reference_stats_path("c", num_real=None, weights_hash="a" * 16, **base).name == (
        f"cifar10-32px-full50000-inception-{'a' * 16}.npz"
    )


def test_reference_statistics_cache_write_is_atomic(tmp_path, monkeypatch):
    dataset = TinyImages(6)
    kwargs = dict(
        extractor=StandInExtractor(),
        weights_hash="0" * 16,
        cache_dir=tmp_path,
        seed=0,
        batch_size=4,
        progress=False,
    )

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        reference_statistics(dataset, 5, **kwargs)
    assert [p for p in tmp_path.iterdir() if p.suffix != ".lock"] == []  # the lock file stays
    monkeypatch.undo()

    dataset.reads = 0
    first = reference_statistics(dataset, 5, **kwargs)
    assert first.computed and first.num_images == 5 and dataset.reads == 5
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".lock"] == [first.path.name]
    again = reference_statistics(dataset, 5, **kwargs)
    assert not again.computed and dataset.reads == 5
    np.testing.assert_array_equal(again.sigma, first.sigma)


# --- end to end on Inception weights of random values -----------------------------------


@pytest.fixture(scope="module")
def random_weights(random_inception_weights) -> tuple[Path, Path]:
    return random_inception_weights(1), random_inception_weights(2)


class CountingSampler:
    """Serves fixed images in a given range, recording the requested counts."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.requests: list[int] = []

    def __call__(self, n: int) -> torch.Tensor:
        start = sum(self.requests)
        self.requests.append(n)
        return self.images[start : start + n]


@pytest.mark.slow
def test_end_to_end_fid_and_is(tmp_path, random_weights, projected_frechet):
    fid_spy = projected_frechet
    weights_a, weights_b = random_weights
    dataset = TinyImages(10)
    cache = tmp_path / "stats"
    common = dict(
        weights_path=str(weights_a),
        device="cpu",
        batch_size=4,
        cache_dir=cache,
        num_gen_override=10,
        num_real_override=10,
        progress=False,
    )

    same = CountingSampler(dataset.images.float() / 127.5 - 1.0)  # the real images, in (-1, 1)
    first = compute_metrics(["is50k", "fid10k_5k"], same, (-1.0, 1.0), dataset, **common)
    assert same.requests == [4, 4, 2] and dataset.reads == 10
    fid = first["fid10k_5k"]
    assert (fid["num_gen"], fid["num_real"], fid["reduced"]) == (10, 10, True)
    assert (first["is50k"]["num_gen"], first["is50k"]["splits"], first["is50k"]["reduced"]) == (
        10,
        10,
        True,
    )
    # One image per split: p(y) = p(y|x), so IS is exactly 1 (the unit tests check the value).
    assert first["is50k"]["mean"] == pytest.approx(1.0, abs=1e-9)
    hash_a = weights_sha256(weights_a)
    assert first["protocol"]["weights_sha256"] == hash_a
    stats_file = Path(first["protocol"]["reference_stats"]["fid10k_5k"])
    assert stats_file.is_file() and hash_a in stats_file.name

    noise = CountingSampler(torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(9)))
    second = compute_metrics(["fid10k_5k"], noise, (0.0, 1.0), dataset, **common)
    assert noise.requests == [4, 4, 2]
    assert dataset.reads == 10  # the cached statistics were reused, not re-extracted
    assert second["fid10k_5k"]["value"] > 0.1
    assert abs(fid["value"]) < 1e-6 * second["fid10k_5k"]["value"]
    assert fid_spy.shapes == [((2048,), (2048, 2048), (2048,), (2048, 2048))] * 2

    extractor_b, hash_b = load_inception(weights_b, "cpu"), weights_sha256(weights_b)
    pool, logits = extract(extractor_b, dataset.images[:1])
    assert pool.shape == (1, 2048)
    assert logits["logits"].shape == logits["logits_unbiased"].shape == (1, 1008)
    other = reference_statistics(
        dataset,
        10,
        extractor=extractor_b,
        weights_hash=hash_b,
        cache_dir=cache,
        seed=0,
        batch_size=5,
        progress=False,
    )
    assert other.computed and other.path.is_file() and stats_file.is_file()
    assert other.path.name == stats_file.name.replace(hash_a, hash_b) != stats_file.name


def test_is_heads_tfgan_keeps_the_bias_and_the_first_1000_classes() -> None:
    """The reference's head (fjxmlzn/BSN gan/metric.py: TF-GAN's 'logits:0', [:, :1000],
    softmax) against the original OpenAI one (no bias, all 1008), on logits where the
    eight extra classes and the bias matter."""
    rng = np.random.default_rng(0)
    unbiased = rng.normal(0, 3, (40, 1008))
    bias = rng.normal(0, 2, 1008)
    biased = unbiased + bias
    biased[:20, 1000:] += 10  # half the images put their mass on the 8 unused classes
    assert IS_HEADS["tfgan"].select(biased).shape == (40, 1000)
    assert IS_HEADS["openai"].select(unbiased).shape == (40, 1008)
    # The reference's arithmetic, written out: softmax of the first 1000, then its KL loop.
    preds = np.exp(biased[:, :1000]) / np.exp(biased[:, :1000]).sum(1, keepdims=True)
    parts = np.split(preds, 10)
    scores = [np.exp(np.mean(np.sum(p * (np.log(p) - np.log(p.mean(0))), 1))) for p in parts]
    mean, std = inception_score(IS_HEADS["tfgan"].select(biased), 10)
    assert mean == pytest.approx(np.mean(scores), rel=1e-9)
    assert std == pytest.approx(np.std(scores), rel=1e-9)
    assert inception_score(IS_HEADS["openai"].select(unbiased), 10)[0] != pytest.approx(mean)
    assert PROTOCOLS["is50k"].head == "tfgan" and PROTOCOLS["is50k_openai"].head == "openai"


def test_is50k_and_is50k_openai_read_their_heads_of_the_real_extractor(
    tmp_path, random_inception_weights
):
    state = torch.load(random_inception_weights(1), weights_only=False)
    generator = torch.Generator().manual_seed(0)
    state["fc.weight"] = state["fc.weight"] * 30  # peaked class probabilities
    state["fc.bias"] = torch.randn(1008, generator=generator) * 3  # the random file's is 0
    weights = tmp_path / "inception.pth"
    torch.save(state, weights)
    dataset = TinyImages(20)
    sample = CountingSampler(dataset.images.float() / 127.5 - 1.0)
    result = compute_metrics(
        ["is50k", "is50k_openai"],
        sample,
        (-1.0, 1.0),
        None,
        weights_path=str(weights),
        device="cpu",
        batch_size=20,
        cache_dir=tmp_path,
        num_gen_override=20,
        progress=False,
    )
    assert sample.requests == [20]  # one set of images for both
    extractor = load_inception(weights, "cpu")
    pool, logits = extract(extractor, dataset.images)
    w, b = extractor.fc.weight.double(), extractor.fc.bias.double()
    with_bias, without = (pool.double() @ w.T + b).numpy(), (pool.double() @ w.T).numpy()
    np.testing.assert_allclose(logits["logits"].double().numpy(), with_bias, rtol=1e-4, atol=1e-3)
    want = inception_score(with_bias[:, :1000], 10)[0]
    assert result["is50k"]["mean"] == pytest.approx(want, rel=1e-4)
    assert result["is50k_openai"]["mean"] == pytest.approx(
        inception_score(without, 10)[0], rel=1e-4
    )
    assert abs(result["is50k"]["mean"] - result["is50k_openai"]["mean"]) > 0.01
    assert result["is50k"]["head"] == "tfgan" and result["is50k_openai"]["head"] == "openai"
    assert result["protocol"]["is_heads"] == {
        "tfgan": "logits, first 1000 classes",
        "openai": "logits_unbiased, first 1008 classes",
    }
