"""Distances between two sets of feature vectors, as pure functions: the statistics and distances
behind FID and KID (:mod:`stigbench.evaluation.quality` extracts the features, from images or their
spectra, and :mod:`stigbench.evaluation.quality_rows` puts the stages together).

* **Fréchet distance** (FID, Heusel et al., NeurIPS 2017) between Gaussians fitted to two feature
  sets, ``FD = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})``.
* **KID** (Bińkowski et al., ICLR 2018): the unbiased estimator of MMD² with the cubic polynomial
  kernel ``k(x, y) = (x·y / d + 1)^3``, averaged over random subsets. Unlike FID it is unbiased,
  which matters for the few hundred images of a test split.

Everything is float64 NumPy.
"""

from __future__ import annotations

import math

import numpy as np


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (``ddof=1``) of ``(N, D)`` features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features (N >= 2, D), got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _psd_eigvals(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with round-off noise set to 0.

    Eigenvalues below ``max|w| * n * eps`` (NumPy's ``matrix_rank`` tolerance) are zero up to
    rounding; left in, their square roots (~1e-8 of the largest) would add up over the ~2000 null
    directions of a covariance estimated from fewer images than dimensions.
    """
    tol = np.abs(w).max(initial=0.0) * w.size * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(_psd_eigvals(w))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})`` (Fréchet distance of two Gaussians).

    ``tr((S1 S2)^{1/2})`` equals ``sum sqrt(eig(S1^{1/2} S2 S1^{1/2}))``, a symmetric PSD matrix, so it
    is computed with ``eigh`` only. This avoids ``scipy.linalg.sqrtm`` on the non-symmetric ``S1 S2``
    — its complex parts and the eps offset pytorch-fid needs when ``S1 S2`` is singular, which it is
    whenever there are fewer images than dimensions (500 images, 2048-d Inception features).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    tr_covmean = np.sqrt(_psd_eigvals(np.linalg.eigvalsh((m + m.T) / 2))).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_distance_features(x: np.ndarray, y: np.ndarray) -> float:
    """:func:`frechet_distance` of the Gaussians fitted to features ``x`` and ``y``, without D x D matrices.

    With centred features ``A`` (n1 x D) and ``B`` (n2 x D), ``S1 S2 = A^T (A B^T) B / c`` with
    ``c = (n1 - 1)(n2 - 1)``; its non-zero eigenvalues are the squared singular values of ``A B^T``,
    so ``tr((S1 S2)^{1/2}) = ||A B^T||_* / sqrt(c)`` (nuclear norm). For a few hundred images and
    2048-d features this is an n1 x n2 SVD instead of two 2048 x 2048 eigendecompositions — exact,
    and with no null-space round-off at all. :func:`stigbench.evaluation.quality_rows.quality_metrics` uses it
    when ``n1 n2 <= D^2``.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"need feature matrices (N >= 2, D) of equal width, got {x.shape} and {y.shape}")
    mx, my = x.mean(axis=0), y.mean(axis=0)
    a, b = x - mx, y - my
    n1, n2 = len(x) - 1, len(y) - 1
    tr_covmean = np.linalg.svd(a @ b.T, compute_uv=False).sum() / math.sqrt(n1 * n2)
    diff = mx - my
    return float(diff @ diff + (a * a).sum() / n1 + (b * b).sum() / n2 - 2.0 * tr_covmean)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with ``k(a, b) = (a·b / d + 1)^3``: diagonal terms left out of the within-set means."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kid(features_x: np.ndarray, features_y: np.ndarray, n_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel inception distance: mean and standard deviation (``ddof=0``, as torch-fidelity) of the
    unbiased MMD² over ``n_subsets`` random subsets of ``min(subset_size, n_x, n_y)`` images each,
    drawn without replacement from each set by ``numpy.random.default_rng(seed)``.

    The standard deviation describes the spread over (overlapping) subsets; it is not a confidence
    interval, and it is 0 when both sets are no larger than ``subset_size`` (each subset is then the
    whole set). Values are raw MMD² (papers often print them x 1000).
    """
    x, y = np.asarray(features_x, np.float64), np.asarray(features_y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need feature matrices of equal width, got {x.shape} and {y.shape}")
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError("KID needs at least 2 images per set")
    if n_subsets < 1:
        raise ValueError("n_subsets must be >= 1")
    if m == len(x) == len(y):
        # Every "subset" would be a permutation of the full sets, and MMD² is permutation invariant:
        # one evaluation gives the mean, and the spread is zero.
        return _mmd2_unbiased(x, y), 0.0
    rng = np.random.default_rng(seed)
    vals = np.array([
        _mmd2_unbiased(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
        for _ in range(n_subsets)
    ])
    return float(vals.mean()), float(vals.std())


__all__ = ["feature_stats", "frechet_distance", "frechet_distance_features", "kid"]
