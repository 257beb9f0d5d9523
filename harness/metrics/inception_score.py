"""Inception Score from Inception logits (docs/metrics.md: 50,000 images, 10 splits).

Two classifier heads are in use with the same 2015-12-05 Inception weights
(docs/reference_differences.md):

- ``tfgan``, the authors' code (``is50k``): TF-GAN's ``run_inception`` output
  ``logits:0`` of its frozen graph, the final layer's output with its bias (the softmax's
  input), of which the reference keeps the first 1000 of the 1008 classes;
- ``openai``, the original Inception Score code and torch-fidelity's default
  (``is50k_openai``): pool3 times the final weights without the bias, all 1008 classes.

The repo's classifier (classifier.py) has one logits output, read whole by its one head,
``classifier`` (cs_mnist10k, confident_shapes2k; docs/metrics.md "Classifier metrics").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special

from harness.metrics.protocols import CLASSIFIER, INCEPTION


@dataclass(frozen=True)
class ISHead:
    """Which output of which torch-fidelity extractor an IS head reads, and how many
    leading classes."""

    extractor: str  # protocols.INCEPTION or protocols.CLASSIFIER
    feature: str  # Inception's "logits" (with the final bias) or "logits_unbiased"; the
    # classifier's "logits"
    classes: int | None  # the first `classes` columns; None for all

    def select(self, logits: np.ndarray) -> np.ndarray:
        return logits if self.classes is None else logits[:, : self.classes]

    def describe(self) -> str:
        return (
            f"{self.feature}, " + (f"first {self.classes}" if self.classes else "all") + " classes"
        )


IS_HEADS: dict[str, ISHead] = {
    "tfgan": ISHead(INCEPTION, "logits", 1000),
    "openai": ISHead(INCEPTION, "logits_unbiased", 1008),  # all of Inception's classes
    "classifier": ISHead(CLASSIFIER, "logits", None),
}


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Mean and standard deviation over splits of exp(mean_x KL(p(y|x) || p(y))).

    `logits`: [N, classes] pre-softmax scores of one head (IS_HEADS). Splits are
    consecutive blocks, as in the original OpenAI code; p(y) is the mean prediction within
    each split. The std is the population std (ddof=0), as there.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, classes], got shape {logits.shape}")
    n = logits.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be in 1..{n} (the number of samples), got {splits}")

    log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        part = slice(i * n // splits, (i + 1) * n // splits)
        p_part, log_p_part = p[part], log_p[part]
        marginal = p_part.mean(axis=0)
        # xlogy: a class with p = 0 everywhere in the split contributes 0, not 0 * log 0.
        kl = (p_part * log_p_part).sum(axis=1) - scipy.special.xlogy(p_part, marginal).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
