"""Detection metrics as pure functions of ``(labels, scores)``; label 1 = fake, higher score = faker.

AUC is the Mann-Whitney statistic (ties count one half), AP the step-wise area under the
precision-recall curve (as scikit-learn's ``average_precision_score``), EER the point where the
false-positive rate equals the false-negative rate (linearly interpolated on the ROC), accuracy
the fraction correct at a threshold fixed beforehand on the validation split. Confidence intervals
come from a stratified bootstrap (reals and fakes resampled separately).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    if labels.min(initial=1) == labels.max(initial=0):
        raise ValueError("need both real (0) and fake (1) examples")
    return labels, scores


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve = P(score_fake > score_real) + 0.5 P(tie)."""
    labels, scores = _check(labels, scores)
    ranks = rankdata(scores)  # average ranks handle ties
    n1 = int(labels.sum())
    n0 = labels.size - n1
    return float((ranks[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` with thresholds decreasing; starts at ``(0, 0)``."""
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0.0, tps / y.sum()]
    fpr = np.r_[0.0, fps / (y.size - y.sum())]
    return fpr, tpr, np.r_[np.inf, s[last]]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds (no interpolation)."""
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[last]
    precision = tps / (last + 1)
    recall = tps / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate: where FPR = 1 - TPR on the ROC, interpolated between its points."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # increases from -1 to +1 along the curve
    k = int(np.flatnonzero(diff >= 0)[0])
    if k == 0 or diff[k] == 0:
        return float(fpr[k])
    # Intersect the segment (k-1, k) with the line fpr = fnr.
    t = -diff[k - 1] / (diff[k] - diff[k - 1])
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def accuracy(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Fraction correct when ``score >= threshold`` means fake."""
    labels, scores = _check(labels, scores)
    return float(np.mean((scores >= threshold) == (labels == 1)))


def class_accuracy(labels: np.ndarray, scores: np.ndarray, threshold: float, label: int) -> float:
    """Accuracy on one class only (``label`` 0: reals kept as real; 1: fakes caught)."""
    labels, scores = _check(labels, scores)
    sel = labels == label
    return float(np.mean((scores[sel] >= threshold) == (label == 1)))


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold that maximises accuracy on ``(labels, scores)`` (the validation split).

    Candidates are midpoints between consecutive distinct scores (plus both ends), so the chosen
    threshold does not sit on a validation score; ties go to the one nearest the median candidate.
    """
    labels, scores = _check(labels, scores)
    u = np.unique(scores)
    cands = np.r_[u[0] - 1e-6, (u[:-1] + u[1:]) / 2, u[-1] + 1e-6]
    pred = scores[None, :] >= cands[:, None]
    acc = (pred == (labels == 1)[None, :]).mean(axis=1)
    best = np.flatnonzero(acc == acc.max())
    return float(cands[best[len(best) // 2]])


def detection_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """The benchmark's per-condition detection metrics."""
    return {
        "auc": auc(labels, scores),
        "ap": average_precision(labels, scores),
        "acc": accuracy(labels, scores, threshold),
        "eer": eer(labels, scores),
    }


def bootstrap_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 500,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile confidence interval of ``metric`` under a stratified bootstrap."""
    labels, scores = _check(labels, scores)
    if n_boot <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx0, idx1 = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    values = np.empty(n_boot)
    for b in range(n_boot):
        sel = np.r_[rng.choice(idx0, idx0.size), rng.choice(idx1, idx1.size)]
        values[b] = metric(labels[sel], scores[sel])
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
