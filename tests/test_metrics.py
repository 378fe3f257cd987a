from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from stigbench import metrics as M


def cases():
    rng = np.random.default_rng(0)
    for n0, n1, ties in [(50, 50, False), (30, 70, False), (40, 60, True), (5, 3, True)]:
        y = np.r_[np.zeros(n0), np.ones(n1)].astype(int)
        s = np.r_[rng.normal(0, 1, n0), rng.normal(0.8, 1, n1)]
        if ties:
            s = np.round(s, 1)
        yield y, s


@pytest.mark.parametrize("y,s", list(cases()))
def test_auc_and_ap_equal_sklearn(y, s):
    assert M.auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert M.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("y,s", list(cases()))
def test_roc_curve_matches_sklearn(y, s):
    fpr, tpr, _ = M.roc_curve(y, s)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)


def test_auc_invariant_to_monotone_transform_and_order():
    y, s = next(cases())
    perm = np.random.default_rng(1).permutation(len(y))
    assert M.auc(y, s) == pytest.approx(M.auc(y[perm], np.exp(s[perm])))
    assert M.auc(y, -s) == pytest.approx(1 - M.auc(y, s))


def test_eer_by_hand():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert M.eer(y, np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])) == 0.0
    assert M.eer(y, np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])) == 1.0
    # one fake below one real: FPR=FNR=0.25 at the threshold between them
    assert M.eer(y, np.array([0.1, 0.2, 0.3, 0.55, 0.5, 0.7, 0.8, 0.9])) == pytest.approx(0.25)
    # random scores give an EER near 0.5
    rng = np.random.default_rng(0)
    yy = rng.integers(0, 2, 4000)
    assert abs(M.eer(yy, rng.random(4000)) - 0.5) < 0.05


def test_threshold_and_accuracy():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.45, 0.4, 0.8, 0.9])
    t = M.best_threshold(y, s)
    assert M.accuracy(y, s, t) == pytest.approx(5 / 6)
    assert M.accuracy(y, s, 0.0) == 0.5
    assert M.class_accuracy(y, s, 0.5, 0) == 1.0 and M.class_accuracy(y, s, 0.5, 1) == pytest.approx(2 / 3)
    sep = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    t = M.best_threshold(y, sep)
    assert 0.3 < t < 0.7 and M.accuracy(y, sep, t) == 1.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="both"):
        M.auc(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        M.auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="labels"):
        M.auc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError):
        M.auc(np.array([0, 1, 1]), np.array([0.1, 0.2]))


def test_bootstrap_ci_brackets_value_and_is_seeded():
    y, s = next(cases())
    lo, hi = M.bootstrap_ci(y, s, M.auc, n_boot=200, seed=3)
    assert lo < M.auc(y, s) < hi
    assert (lo, hi) == M.bootstrap_ci(y, s, M.auc, n_boot=200, seed=3)
    assert all(np.isnan(M.bootstrap_ci(y, s, M.auc, n_boot=0)))
