"""Detection metrics as pure functions of ``(labels, scores)``; label 1 = fake, higher score = faker.

AUC is the Mann-Whitney statistic (ties count one half), AP the step-wise area under the
precision-recall curve (as scikit-learn's ``average_precision_score``), EER the point where the
false-positive rate equals the false-negative rate (linearly interpolated on the ROC), accuracy
the fraction correct at a threshold fixed beforehand on the validation split. The metrics of a
deployed detector read it at a threshold fixed on the validation reals for a target false-positive
rate (:func:`fpr_threshold`) and ask whether its P(fake) is calibrated (:func:`ece`). Confidence
intervals come from a stratified bootstrap (reals and fakes resampled separately).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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


def _counts(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true/false positives at each distinct score (descending), and the sorted scores."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    return tps, (last + 1) - tps, s[last]


def _eer_from_roc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    diff = fpr - (1.0 - tpr)  # increases from -1 to +1 along the curve
    k = int(np.flatnonzero(diff >= 0)[0])
    if k == 0 or diff[k] == 0:
        return float(fpr[k])
    # Intersect the segment (k-1, k) with the line FPR = FNR.
    t = -diff[k - 1] / (diff[k] - diff[k - 1])
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` with thresholds decreasing; starts at ``(0, 0)``."""
    labels, scores = _check(labels, scores)
    tps, fps, thresholds = _counts(labels, scores)
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]], np.r_[np.inf, thresholds]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds (no interpolation)."""
    labels, scores = _check(labels, scores)
    tps, fps, _ = _counts(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, tps / tps[-1]]) * tps / (tps + fps)))


def eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate: where FPR = 1 - TPR on the ROC, interpolated between its points."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return _eer_from_roc(fpr, tpr)


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


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, max_fpr: float = 0.05) -> float:
    """Highest true-positive rate among ROC points with false-positive rate <= ``max_fpr``."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def min_reals(fpr: float) -> int:
    """The fewest validation reals that can fix a threshold at false-positive rate ``fpr``: ``ceil(1/fpr)``,
    the smallest ``n`` with ``1/n <= fpr`` (one false alarm among fewer reals already exceeds ``fpr``)."""
    if not 0 < fpr <= 1:
        raise ValueError(f"fpr must be in (0, 1], got {fpr}")
    n = math.ceil(1 / fpr)
    # 1/fpr may round either way in floating point; settle on the exact criterion 1/n <= fpr.
    while n > 1 and 1 / (n - 1) <= fpr:
        n -= 1
    while 1 / n > fpr:
        n += 1
    return n


def fpr_threshold(real_scores: np.ndarray, fpr: float) -> float:
    """The operating threshold of a deployed detector at false-positive rate ``fpr``, fixed on the scores
    of the clean validation reals: the lowest validation score ``t`` whose share of reals flagged
    (``score >= t``) is at most ``fpr``. Ties are flagged together, so a tie that would push the share
    past ``fpr`` is left out whole; when the highest score alone is tied too often, ``t`` is the next
    float above it (nothing flagged). Any threshold between the next lower validation score and ``t``
    flags the same reals; ``t`` is the one that sits on a score, like the thresholds of :func:`roc_curve`.

    NaN (not measurable) with fewer than :func:`min_reals` = ``ceil(1/fpr)`` reals: then a single false
    alarm already exceeds ``fpr`` (96 reals cannot fix a 0.1 % threshold: one alarm is 1 %), and a
    threshold above every real would claim a rate the data cannot support."""
    need = min_reals(fpr)
    s = np.asarray(real_scores, dtype=np.float64).ravel()
    if not np.isfinite(s).all():
        raise ValueError("real scores contain NaN or infinity")
    if s.size < need:
        return float("nan")
    k = int(np.floor(fpr * s.size))  # the most reals that may be flagged: the largest k with k/n <= fpr
    if (k + 1) / s.size <= fpr:
        k += 1
    elif k / s.size > fpr:
        k -= 1
    u, counts = np.unique(s, return_counts=True)
    flagged = np.cumsum(counts[::-1])  # reals with score >= each distinct score, highest score first
    j = int(np.searchsorted(flagged, k, side="right"))  # distinct scores (from the top) that fit in k
    return float(np.nextafter(u[-1], np.inf)) if j == 0 else float(u[::-1][j - 1])


def _calibration_gap(labels: np.ndarray, scores: np.ndarray, n_bins: int, balanced: bool) -> float:
    """``sum_b |sum_{i in b} w_i (y_i - s_i)|`` over equal-width bins of the score; bin of ``s`` is
    ``min(floor(n_bins * s), n_bins - 1)`` (bins ``[b/n_bins, (b+1)/n_bins)``, score 1.0 in the last).
    One ``bincount``, no loop over bins: the bootstrap calls it hundreds of times."""
    if balanced:
        n1 = np.count_nonzero(labels)
        w = np.where(labels == 1, 1 / (2 * n1), 1 / (2 * (labels.size - n1)))
    else:
        w = np.full(labels.size, 1 / labels.size)
    bins = np.minimum((scores * n_bins).astype(np.int64), n_bins - 1)
    return float(np.abs(np.bincount(bins, weights=w * (labels - scores), minlength=n_bins)).sum())


def _check_probabilities(labels: np.ndarray, scores: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = _check(labels, scores)
    if scores.min() < 0 or scores.max() > 1:
        raise ValueError("calibration needs scores that are P(fake) in [0, 1]")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return labels, scores


def ece(labels: np.ndarray, scores: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of P(fake) (Guo et al., "On Calibration of Modern Neural Networks",
    ICML 2017), in the reliability form for a binary detector: ``n_bins`` bins of equal width over
    [0, 1] on the predicted P(fake), ``[b/n_bins, (b+1)/n_bins)`` with a score of 1.0 in the last, and
    ``ECE = sum_b |B_b|/n * |mean(label in B_b) - mean(score in B_b)|``. 0 = calibrated."""
    labels, scores = _check_probabilities(labels, scores, n_bins)
    return _calibration_gap(labels, scores, n_bins, balanced=False)


def balanced_ece(labels: np.ndarray, scores: np.ndarray, n_bins: int = 15) -> float:
    """:func:`ece` with sample weights ``w_i = 1/(2 n_class(i))`` (reals and fakes weigh one half each,
    whatever the class sizes): ``sum_b W_b |ybar_b - sbar_b|`` with ``W_b`` the weight in bin ``b`` and
    weighted means, i.e. the calibration of P(fake) against a 50 % prior. Equals :func:`ece` when the
    classes have the same size."""
    labels, scores = _check_probabilities(labels, scores, n_bins)
    return _calibration_gap(labels, scores, n_bins, balanced=True)


def attack_success_rate(fake_scores: np.ndarray, refined_scores: np.ndarray, threshold: float) -> float:
    """The share of the fakes a detector flags at ``threshold`` (``score >= threshold``) whose refined
    versions it no longer flags: ``|{i: f_i >= t, r_i < t}| / |{i: f_i >= t}|``, with ``fake_scores[i]``
    and ``refined_scores[i]`` the same image before and after the attack. NaN when no fake is flagged
    (the attack has nothing to evade). The attack success rate of adversarial-robustness and watermark
    benchmarks, at the operating point the detector would be deployed with (its validation threshold)."""
    fake = np.asarray(fake_scores, dtype=np.float64).ravel()
    refined = np.asarray(refined_scores, dtype=np.float64).ravel()
    if fake.shape != refined.shape:
        raise ValueError(f"{fake.size} fake scores but {refined.size} refined scores: the same images are needed")
    flagged = fake >= threshold
    if not flagged.any():
        return float("nan")
    return float(np.mean(refined[flagged] < threshold))


@dataclass(frozen=True)
class MetricInfo:
    """How to read a metric: its family and which direction is better (for the detector, for
    detection metrics; "closer to the reals", for distances)."""

    family: str
    higher_is_better: bool
    description: str


FPR_TARGETS: dict[str, float] = {"1": 0.01, "01": 0.001}
"""The false-positive rates a deployed detector is read at, by the suffix of their metric names
(``tpr_at_fpr1``, ``fpr_at_fpr01``, ...)."""
ECE_BINS = 15  # Guo et al.'s number of bins


_AT_FPR = ("at the threshold fixed on the clean validation reals for {} false-positive rate; not measurable "
           "(NaN) with fewer than 1/FPR validation reals")
METRICS: dict[str, MetricInfo] = {
    "auc": MetricInfo("detection", True, "area under the ROC curve; 0.5 = chance, < 0.5 = over-correction"),
    "ap": MetricInfo("detection", True, "average precision (fake = positive)"),
    "acc": MetricInfo("detection", True, "accuracy at the validation-chosen threshold"),
    "acc_real": MetricInfo("detection", True, "accuracy on the real images at that threshold"),
    "acc_fake": MetricInfo("detection", True, "accuracy on the fake (or refined) images at that threshold"),
    "eer": MetricInfo("detection", False, "equal error rate"),
    "tpr_at_fpr05": MetricInfo("detection", True, "true-positive rate at 5 % false-positive rate"),
    "balanced_acc": MetricInfo("detection", True, "balanced accuracy (acc_real + acc_fake) / 2 at the "
                               "validation-chosen threshold"),
    "ece": MetricInfo("detection", False, "expected calibration error of P(fake), 15 equal-width bins"),
    "ece_balanced": MetricInfo("detection", False, "expected calibration error of P(fake), reals and fakes "
                               "weighted equally"),
    "tpr_at_fpr1": MetricInfo("detection", True, "share of test fakes flagged " + _AT_FPR.format("1 %")),
    "fpr_at_fpr1": MetricInfo("detection", False, "share of test reals flagged " + _AT_FPR.format("1 %")),
    "tpr_at_fpr01": MetricInfo("detection", True, "share of test fakes flagged " + _AT_FPR.format("0.1 %")),
    "fpr_at_fpr01": MetricInfo("detection", False, "share of test reals flagged " + _AT_FPR.format("0.1 %")),
    "acc_authors": MetricInfo("detection", True, "accuracy at the authors' own threshold (a released detector "
                              "scored as published: P(fake) > 0.5), beside the run's validation-chosen one"),
    "acc_real_authors": MetricInfo("detection", True, "accuracy on the real images at the authors' threshold"),
    "acc_fake_authors": MetricInfo("detection", True, "accuracy on the fake (or refined) images at the authors' "
                                   "threshold"),
    "false_alarm": MetricInfo("detection", False, "share of the attacked real test images flagged as fake at the "
                              "validation threshold (attacks on reals; 1 − acc_real)"),
    "val_reals": MetricInfo("detection", True, "the number of clean validation reals the FPR thresholds were fixed "
                            "on (a count, not a score)"),
    "asr": MetricInfo("detection", False, "attack success rate: share of the fakes flagged at the validation "
                      "threshold that are no longer flagged after the attack"),
    "lfd": MetricInfo("quality", False, "log frequency distance of mean log-spectra to the reals"),
    "psnr": MetricInfo("fidelity", True, "PSNR (dB) of each refined image to its original fake, averaged"),
    "ssim": MetricInfo("fidelity", True, "SSIM of each refined image to its original fake, averaged"),
}
for _prefix, _net in (("fid", "Inception-v3 (TF 2015-12-05) pool3"), ("fd_random", "a fixed random network")):
    _kid = "kid" if _prefix == "fid" else "kid_random"
    for _suffix, _domain in (("", "images"), ("_spectrum", "log-magnitude spectrum images")):
        METRICS[_prefix + _suffix] = MetricInfo("quality", False, f"Fréchet distance of {_net} features, {_domain}")
        METRICS[_kid + _suffix] = MetricInfo("quality", False, f"kernel inception distance ({_net}), {_domain}")


def deployed_thresholds(real_scores: np.ndarray) -> dict[str, float]:
    """``{suffix: fpr_threshold(real_scores, fpr)}`` over :data:`FPR_TARGETS`: the ``fpr_thresholds``
    argument of :func:`detection_metrics`, from the scores of the clean validation reals."""
    return {suffix: fpr_threshold(real_scores, fpr) for suffix, fpr in FPR_TARGETS.items()}


def _check_fpr_thresholds(fpr_thresholds: dict[str, float] | None) -> dict[str, float] | None:
    """In :data:`FPR_TARGETS` order, so the metric names are always described in :data:`METRICS`."""
    if fpr_thresholds is None:
        return None
    unknown = sorted(set(fpr_thresholds) - set(FPR_TARGETS))
    if unknown:
        raise ValueError(f"unknown FPR suffixes {unknown}; known: {list(FPR_TARGETS)}")
    return {k: float(fpr_thresholds[k]) for k in FPR_TARGETS if k in fpr_thresholds}


def _all_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float, *,
                 fpr_thresholds: dict[str, float] | None = None) -> dict[str, float]:
    """Every detection metric from one sort (the bootstrap calls this hundreds of times).

    With ``fpr_thresholds`` (even empty) the deployed-detector metrics follow the others: balanced
    accuracy at ``threshold``, the calibration errors, then per suffix the TPR on the fakes and the FPR on
    the reals at the threshold fixed on validation reals (NaN for a NaN threshold). Without it the output
    is the one that predates them, keys and values."""
    tps, fps, _ = _counts(labels, scores)
    n1, n0 = int(tps[-1]), int(fps[-1])
    tpr = np.r_[0.0, tps / n1]
    fpr = np.r_[0.0, fps / n0]
    # Trapezoids over distinct thresholds = Mann-Whitney with ties counted one half.
    auc_value = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    ap_value = float(np.sum(np.diff(tpr) * tps / (tps + fps)))
    eer_value = _eer_from_roc(fpr, tpr)
    pred = scores >= threshold
    real, fake = labels == 0, labels == 1
    acc_real = float(np.mean(~pred[real]))
    acc_fake = float(np.mean(pred[fake]))
    out = {
        "auc": auc_value,
        "ap": ap_value,
        "acc": float((acc_real * n0 + acc_fake * n1) / (n0 + n1)),
        "acc_real": acc_real,
        "acc_fake": acc_fake,
        "eer": eer_value,
        "tpr_at_fpr05": float(tpr[fpr <= 0.05 + 1e-12].max()),
    }
    if fpr_thresholds is None:
        return out
    out["balanced_acc"] = (acc_real + acc_fake) / 2
    # Calibration only means something for probabilities; other scores give "not measurable".
    probabilities = scores.min() >= 0 and scores.max() <= 1
    for key, balanced in (("ece", False), ("ece_balanced", True)):
        out[key] = _calibration_gap(labels, scores, ECE_BINS, balanced) if probabilities else float("nan")
    for suffix, t in fpr_thresholds.items():
        nan = math.isnan(t)  # compare nothing with NaN: no value, no warning
        out[f"tpr_at_fpr{suffix}"] = float("nan") if nan else float(np.mean(scores[fake] >= t))
        out[f"fpr_at_fpr{suffix}"] = float("nan") if nan else float(np.mean(scores[real] >= t))
    return out


def detection_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float, *,
                      fpr_thresholds: dict[str, float] | None = None) -> dict[str, float]:
    """The benchmark's per-condition detection metrics (names as in :data:`METRICS`).

    ``fpr_thresholds`` (``{suffix: threshold}`` with suffixes of :data:`FPR_TARGETS`, e.g. from
    :func:`deployed_thresholds` on the validation reals) adds the deployed-detector metrics after the
    others; without it the keys and values are the ones the benchmark has always written."""
    labels, scores = _check(labels, scores)
    return _all_metrics(labels, scores, threshold, fpr_thresholds=_check_fpr_thresholds(fpr_thresholds))


def detection_metrics_with_ci(labels: np.ndarray, scores: np.ndarray, threshold: float, n_boot: int = 500,
                              seed: int = 0, level: float = 0.95, *,
                              fpr_thresholds: dict[str, float] | None = None) -> dict[str, tuple[float, float, float]]:
    """``{name: (value, ci_low, ci_high)}`` with stratified-bootstrap percentile intervals.

    All metrics share the resamples, so their intervals are consistent with each other; the thresholds
    (``threshold`` and ``fpr_thresholds``, as in :func:`detection_metrics`) stay fixed, only the test
    images are resampled.
    """
    labels, scores = _check(labels, scores)
    fpr_thresholds = _check_fpr_thresholds(fpr_thresholds)
    values = _all_metrics(labels, scores, threshold, fpr_thresholds=fpr_thresholds)
    if n_boot <= 0:
        return {k: (v, float("nan"), float("nan")) for k, v in values.items()}
    rng = np.random.default_rng(seed)
    idx0, idx1 = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    boots: dict[str, list[float]] = {k: [] for k in values}
    for _ in range(n_boot):
        sel = np.r_[rng.choice(idx0, idx0.size), rng.choice(idx1, idx1.size)]
        for k, v in _all_metrics(labels[sel], scores[sel], threshold, fpr_thresholds=fpr_thresholds).items():
            boots[k].append(v)
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    return {k: (values[k], *map(float, np.quantile(boots[k], q))) for k in values}


def bootstrap_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 500,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile confidence interval of any ``metric(labels, scores)`` under a stratified bootstrap."""
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
