"""The metrics of a deployed detector: the threshold fixed on validation reals for a target FPR, the
TPR/FPR read there on test, balanced accuracy and the calibration of P(fake) (issue #24)."""

from __future__ import annotations

import numpy as np
import pytest

from stigbench.measures import metrics as M


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
    with pytest.raises(ValueError, match="NaN"):
        M.fpr_threshold(np.r_[rng.random(200), np.nan], 0.01)


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
