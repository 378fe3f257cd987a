"""The metrics of a deployed detector: the threshold fixed on validation reals for a target FPR, the
TPR/FPR read there on test, balanced accuracy and the calibration of P(fake) (issue #24)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from stigbench.measures import metrics as M

# detection_metrics before the deployed metrics, on the hand-typed case below (from the module at a58d35a).
OLD_KEYS = ["auc", "ap", "acc", "acc_real", "acc_fake", "eer", "tpr_at_fpr05"]
Y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
S = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.65, 0.7])
OLD_VALUES = {"auc": 0.84375, "ap": 0.8541666666666666, "acc": 0.75, "acc_real": 0.75, "acc_fake": 0.75,
              "eer": 0.25, "tpr_at_fpr05": 0.5}
DEPLOYED_KEYS = ["balanced_acc", "ece", "ece_balanced", "tpr_at_fpr1", "fpr_at_fpr1", "tpr_at_fpr01", "fpr_at_fpr01"]


def flagged_share(scores: np.ndarray, t: float) -> float:
    return float(np.mean(scores >= t))


def test_min_reals_is_ceil_of_one_over_fpr():
    assert [M.min_reals(f) for f in (0.01, 0.001, 0.05, 0.3, 1.0)] == [100, 1000, 20, 4, 1]
    with pytest.raises(ValueError):
        M.min_reals(0.0)


@pytest.mark.parametrize("n,fpr,decimals", [(100, 0.01, None), (1000, 0.01, None), (1000, 0.001, None),
                                            (5000, 0.01, 2), (777, 0.05, 1), (2000, 0.001, 3),
                                            (100, 0.29, None)])  # 0.29 * 100 = 28.999999999999996
def test_fpr_threshold_is_the_lowest_score_that_keeps_the_fpr(n, fpr, decimals):
    s = np.random.default_rng(n).random(n)
    if decimals is not None:  # many ties, some at the boundary
        s = np.round(s, decimals)
    t = M.fpr_threshold(s, fpr)
    assert flagged_share(s, t) <= fpr
    lower = s[s < t]
    if lower.size:  # the next lower distinct score would flag too many reals
        assert flagged_share(s, lower.max()) > fpr
    assert t in s or t > s.max()


def test_fpr_threshold_leaves_out_a_tie_that_would_exceed_the_fpr():
    low = np.linspace(0, 0.5, 198)
    assert M.fpr_threshold(np.r_[low, 0.9, 0.9], 0.01) == 0.9  # 2 of 200 flagged = 1 %
    t = M.fpr_threshold(np.r_[low[1:], 0.9, 0.9, 0.9], 0.01)  # 3 of 200 tied at the top
    assert t > 0.9 and flagged_share(np.r_[low[1:], 0.9, 0.9, 0.9], t) == 0.0
    assert t == np.nextafter(0.9, 1.0)
    # a tie just below the top: the top alone is kept
    assert M.fpr_threshold(np.r_[low[2:], 0.95, 0.9, 0.9, 0.9], 0.01) == 0.95


def test_fpr_threshold_is_not_measurable_below_one_over_fpr_reals():
    rng = np.random.default_rng(0)
    assert np.isnan(M.fpr_threshold(rng.random(99), 0.01))
    assert np.isnan(M.fpr_threshold(rng.random(999), 0.001))
    assert np.isnan(M.fpr_threshold(rng.random(96), 0.001))
    assert np.isnan(M.fpr_threshold([], 0.01))
    s = rng.random(100)
    assert M.fpr_threshold(s, 0.01) == s.max()  # one false alarm in 100 = 1 %
    s = rng.random(1000)
    assert M.fpr_threshold(s, 0.001) == s.max()
    thresholds = M.deployed_thresholds(rng.random(500))
    assert list(thresholds) == ["1", "01"] and np.isfinite(thresholds["1"]) and np.isnan(thresholds["01"])
    with pytest.raises(ValueError, match="NaN"):
        M.fpr_threshold(np.r_[rng.random(200), np.nan], 0.01)


def test_without_fpr_thresholds_the_output_is_the_old_one():
    m = M.detection_metrics(Y, S, 0.5)
    assert list(m) == OLD_KEYS and m == OLD_VALUES
    ci = M.detection_metrics_with_ci(Y, S, 0.5, n_boot=50, seed=1)
    assert list(ci) == OLD_KEYS
    deployed = M.detection_metrics_with_ci(Y, S, 0.5, n_boot=50, seed=1, fpr_thresholds={"1": 0.75, "01": np.nan})
    assert list(deployed) == OLD_KEYS + DEPLOYED_KEYS
    assert {k: deployed[k] for k in OLD_KEYS} == ci  # same values, same intervals (same resamples)
    assert list(M.detection_metrics(Y, S, 0.5, fpr_thresholds={})) == OLD_KEYS + DEPLOYED_KEYS[:3]
    assert set(DEPLOYED_KEYS) <= set(M.METRICS)
    with pytest.raises(ValueError, match="unknown FPR"):
        M.detection_metrics(Y, S, 0.5, fpr_thresholds={"05": 0.5})


def split(seed: int = 0, n_val: int = 2000, n0: int = 600, n1: int = 400):
    rng = np.random.default_rng(seed)
    val_reals = rng.beta(2, 5, n_val)
    y = np.r_[np.zeros(n0), np.ones(n1)].astype(int)
    s = np.r_[rng.beta(2, 5, n0), rng.beta(5, 2, n1)]
    return val_reals, y, s


def test_tpr_and_fpr_at_the_validation_threshold_are_direct_counts_and_intervals_hold_them():
    val_reals, y, s = split()
    thresholds = M.deployed_thresholds(val_reals)
    out = M.detection_metrics_with_ci(y, s, 0.5, n_boot=200, seed=3, fpr_thresholds=thresholds)
    for suffix in ("1", "01"):
        t = thresholds[suffix]
        assert flagged_share(val_reals, t) <= M.FPR_TARGETS[suffix]
        assert out[f"tpr_at_fpr{suffix}"][0] == flagged_share(s[y == 1], t)
        assert out[f"fpr_at_fpr{suffix}"][0] == flagged_share(s[y == 0], t)
    for name, (v, lo, hi) in out.items():
        assert lo <= v <= hi, name
    assert out["tpr_at_fpr1"][0] > out["tpr_at_fpr01"][0] > 0  # a stricter FPR catches fewer fakes


def test_a_test_score_equal_to_the_threshold_is_flagged():
    t = M.fpr_threshold(np.arange(100) / 100, 0.01)
    assert t == 0.99
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.99, 0.1, 0.5, 0.98, 0.99, 0.5, 1.0, 0.985])
    m = M.detection_metrics(y, s, 0.5, fpr_thresholds={"1": t})
    assert m["tpr_at_fpr1"] == 0.5 and m["fpr_at_fpr1"] == 0.25


def test_nan_threshold_gives_nan_values_and_intervals_without_warnings():
    _, y, s = split()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = M.detection_metrics_with_ci(y, s, 0.5, n_boot=20, fpr_thresholds=M.deployed_thresholds(s[:150]))
    assert np.isfinite(out["tpr_at_fpr1"]).all() and np.isfinite(out["fpr_at_fpr1"]).all()
    assert np.isnan(out["tpr_at_fpr01"]).all() and np.isnan(out["fpr_at_fpr01"]).all()


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.72])
def test_balanced_acc_equals_sklearn(threshold):
    _, y, s = split(seed=1, n0=700, n1=150)
    m = M.detection_metrics(y, s, threshold, fpr_thresholds={})
    assert m["balanced_acc"] == pytest.approx(balanced_accuracy_score(y, s >= threshold), abs=1e-15)


def test_ece_by_hand():
    # 4 bins [0, .25), [.25, .5), [.5, .75), [.75, 1]: .25 opens the second, 1.0 goes in the last
    y, s = [0, 1, 0, 1, 1], [0.25, 0.25, 0.5, 0.75, 1.0]
    assert M.ece(y, s, n_bins=4) == pytest.approx(2 / 5 * 0.25 + 1 / 5 * 0.5 + 2 / 5 * 0.125, abs=1e-15)
    assert M.ece([0, 0, 1, 1], [0.125, 0.25, 0.75, 1.0], n_bins=2) == 0.15625
    # bins are closed on the left: .2 and .25 apart, .8 and 1.0 together (right-closed bins give .3375)
    assert M.ece([0, 1, 0, 1], [0.2, 0.25, 0.8, 1.0], n_bins=4) == pytest.approx((0.2 + 0.75 + 0.8) / 4, abs=1e-15)
    assert M.ece([0, 1] * 50, [0.5] * 100) == 0.0


def test_ece_is_small_when_calibrated_and_large_when_not():
    rng = np.random.default_rng(0)
    s = rng.random(100_000)
    y = (rng.random(s.size) < s).astype(int)  # label ~ Bernoulli(score): calibrated by construction
    assert M.ece(y, s) < 0.01 and M.balanced_ece(y, s) < 0.01
    assert M.ece(y, s**3) > 0.1  # over-confident in "real"
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.ece(y, s + 0.5)


def test_balanced_ece_weighs_the_classes_equally():
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(300), np.ones(300)].astype(int)
    s = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    assert M.balanced_ece(y, s) == pytest.approx(M.ece(y, s), abs=1e-15)
    # 3 reals, 1 fake, all at 0.25 in one bin: calibrated for the 25 % prior, not for a 50 % one.
    # weights 1/6 (reals) and 1/2 (fake): |3 * 1/6 * (0 - .25) + 1/2 * (1 - .25)| = .25
    assert M.ece([0, 0, 0, 1], [0.25] * 4, n_bins=2) == 0.0
    assert M.balanced_ece([0, 0, 0, 1], [0.25] * 4, n_bins=2) == pytest.approx(0.25, abs=1e-15)


def test_calibration_in_all_metrics_matches_the_functions_and_is_nan_for_non_probabilities():
    _, y, s = split(seed=4)
    m = M.detection_metrics(y, s, 0.5, fpr_thresholds={})
    assert m["ece"] == M.ece(y, s, M.ECE_BINS) and m["ece_balanced"] == M.balanced_ece(y, s, M.ECE_BINS)
    logits = M.detection_metrics(y, np.log(s / (1 - s)), 0.0, fpr_thresholds={})
    assert np.isnan(logits["ece"]) and np.isnan(logits["ece_balanced"])
    assert logits["balanced_acc"] == m["balanced_acc"]
