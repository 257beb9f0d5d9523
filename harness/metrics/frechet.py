"""Frechet distance between Gaussians fitted to Inception features (FID, docs/metrics.md)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

#: Largest |imaginary part| on the diagonal of sqrtm(sigma1 sigma2) still treated as
#: round-off (the value pytorch-fid and TTUR use).
IMAGINARY_TOLERANCE = 1e-3


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    eps: float = 1e-6,
) -> float:
    """||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)), in float64.

    As TTUR's fid.py (the reference code's FID): scipy.linalg.sqrtm of the product; if that
    is not finite (near-singular covariances), retry with eps*I added to both; drop an
    imaginary part left by round-off and raise if it is not negligible.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,):
        raise ValueError(f"means must be vectors of equal length, got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"covariances must be {d}x{d}, got {sigma1.shape} and {sigma2.shape}")

    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        largest = np.max(np.abs(np.diagonal(covmean).imag))
        if largest > IMAGINARY_TOLERANCE:
            raise ValueError(f"sqrtm(sigma1 sigma2) has a non-negligible imaginary part {largest}")
        covmean = covmean.real

    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


class FeatureMoments:
    """Streaming mean and covariance (ddof=1, as np.cov) of feature batches, in float64.

    Streaming keeps memory at O(dim^2) whatever the image count (ILSVRC2012's full training
    set has 1.28M images); the sums stay on the features' device.
    """

    def __init__(self) -> None:
        self.count = 0
        self._shift: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None
        self._gram: torch.Tensor | None = None

    def update(self, features: torch.Tensor) -> None:
        """Add a [batch, dim] block of features."""
        if features.dim() != 2:
            raise ValueError(f"features must be [batch, dim], got {tuple(features.shape)}")
        f = features.detach().to(torch.float64)
        if self._shift is None:
            # Sums of shifted features avoid the cancellation of E[x x^T] - mu mu^T when
            # the mean is large against the spread.
            self._shift = f.mean(dim=0)
            self._sum = torch.zeros_like(self._shift)
            self._gram = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
        f = f - self._shift
        self._sum += f.sum(dim=0)
        self._gram += f.T @ f
        self.count += f.shape[0]

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) as float64 numpy arrays."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.count}")
        n = self.count
        mu = self._shift + self._sum / n
        sigma = (self._gram - torch.outer(self._sum, self._sum) / n) / (n - 1)
        return mu.cpu().numpy(), sigma.cpu().numpy()
