"""Inception Score from Inception logits (docs/metrics.md: 50,000 images, 10 splits)."""

from __future__ import annotations

import numpy as np
import scipy.special


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Mean and standard deviation over splits of exp(mean_x KL(p(y|x) || p(y))).

    `logits`: [N, classes] pre-softmax scores (torch-fidelity's 'logits_unbiased', the
    reference code's softmax input). Splits are consecutive blocks, as in the original
    OpenAI code; p(y) is the mean prediction within each split. The std is the population
    std (ddof=0), as there.
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
