from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from stigbench.measures import metrics as M


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


@pytest.mark.parametrize("y,s", list(cases()))
def test_all_metrics_agree_with_single_metric_functions(y, s):
    t = float(np.median(s))
    m = M.detection_metrics(y, s, t)
    assert m["auc"] == pytest.approx(M.auc(y, s), abs=1e-12)
    assert m["ap"] == pytest.approx(M.average_precision(y, s), abs=1e-12)
    assert m["eer"] == pytest.approx(M.eer(y, s), abs=1e-12)
    assert m["acc"] == pytest.approx(M.accuracy(y, s, t), abs=1e-12)
    assert m["acc_real"] == pytest.approx(M.class_accuracy(y, s, t, 0))
    assert m["acc_fake"] == pytest.approx(M.class_accuracy(y, s, t, 1))
    assert m["tpr_at_fpr05"] == pytest.approx(M.tpr_at_fpr(y, s, 0.05))
    assert set(m) <= set(M.METRICS)


def test_tpr_at_fpr_by_hand():
    y = np.array([0] * 20 + [1] * 4)
    s = np.r_[np.linspace(0, 0.5, 19), 0.95, [0.9, 0.97, 0.98, 0.4]]
    # one real scores 0.95: at FPR 1/20 = 5 % the fakes above it (0.97, 0.98) and then 0.95 itself...
    assert M.tpr_at_fpr(y, s, 0.05) == pytest.approx(0.75)
    assert M.tpr_at_fpr(y, s, 0.0) == pytest.approx(0.5)


def test_metrics_with_ci_share_resamples_and_bracket_values():
    y, s = next(cases())
    out = M.detection_metrics_with_ci(y, s, 0.4, n_boot=100, seed=1)
    for name, (v, lo, hi) in out.items():
        assert lo <= v + 1e-9 and v - 1e-9 <= hi, name
    assert out == M.detection_metrics_with_ci(y, s, 0.4, n_boot=100, seed=1)
    assert np.isnan(M.detection_metrics_with_ci(y, s, 0.4, n_boot=0)["auc"][1])
