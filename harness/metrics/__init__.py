"""IS and FID by protocol name, on torch-fidelity's inception-v3-compat, and the repo's own
classifier metrics (harness/metrics/classifier.py) through the same code (docs/metrics.md)."""

from harness.metrics.classifier import CLASSIFIER_EXTRACTOR, ClassifierNotFound
from harness.metrics.compute import compute_metrics, confident_fraction
from harness.metrics.extractor import NonFiniteImagesError, load_inception, to_uint8
from harness.metrics.frechet import FeatureMoments, frechet_distance
from harness.metrics.inception_score import inception_score
from harness.metrics.protocols import PROTOCOLS, MetricProtocol, get_protocol
from harness.metrics.reference_stats import (
    ReferenceStats,
    reference_statistics,
    reference_stats_path,
)
from harness.metrics.weights import (
    INCEPTION_WEIGHTS_FILENAME,
    InceptionWeightsNotFound,
    InvalidInceptionWeights,
    check_inception_weights,
    inception_weights_cache_path,
    is_official,
    resolve_inception_weights,
    weights_sha256,
)

__all__ = [
    "CLASSIFIER_EXTRACTOR",
    "ClassifierNotFound",
    "confident_fraction",
    "INCEPTION_WEIGHTS_FILENAME",
    "PROTOCOLS",
    "FeatureMoments",
    "InceptionWeightsNotFound",
    "InvalidInceptionWeights",
    "NonFiniteImagesError",
    "check_inception_weights",
    "is_official",
    "MetricProtocol",
    "ReferenceStats",
    "compute_metrics",
    "frechet_distance",
    "get_protocol",
    "inception_score",
    "inception_weights_cache_path",
    "load_inception",
    "reference_statistics",
    "reference_stats_path",
    "resolve_inception_weights",
    "to_uint8",
    "weights_sha256",
]
