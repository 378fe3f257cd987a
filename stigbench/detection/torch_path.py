"""Fitted scikit-learn classifiers re-expressed in torch: the last step of a feature detector's torch path.

A white-box attack needs the gradient of a detector's logit with respect to the image. A feature
detector computes its features in torch (:meth:`~stigbench.detection.base.FeatureDetector.torch_features`)
and hands them to scikit-learn, which has no gradients; here the fitted estimators of the built-in
detectors become ``float64`` torch functions of the features with the numbers of ``predict_proba``
(``P(fake) = sigmoid(logit)``, the logit of class ``FAKE`` whatever the order of ``classes_``):

* ``Pipeline(StandardScaler, LogisticRegression)``: ``logit = w · (x − mean) / scale + b``;
* ``Pipeline(StandardScaler, CalibratedClassifierCV(SVC(kernel="rbf"), method="sigmoid", ensemble=False))``:
  the SVM's decision ``d = Σ_i α_i · exp(−γ ‖x − sv_i‖²) + ρ`` (scikit-learn's public ``dual_coef_``
  and ``intercept_``, sign-flipped for two classes, and the fitted ``_gamma``), then Platt's sigmoid as
  scikit-learn's ``_SigmoidCalibration`` applies it, ``P(classes_[1]) = expit(−(a·d + b))``, so
  ``logit = −(a·d + b)``.

Any number of leading ``StandardScaler`` steps is allowed (none too). Any other estimator has no torch
path: :func:`unsupported` says why, for a fitted or an unfitted estimator (the plan asks before fitting).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stigbench.core.contracts import FAKE


def _steps(estimator: Any) -> tuple[list[Any], Any]:
    """``(leading steps, final step)`` of a ``Pipeline``; ``([], estimator)`` for a bare estimator."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        steps = [step for _, step in estimator.steps]
        return steps[:-1], steps[-1]
    return [], estimator


def _final_unsupported(final: Any) -> str | None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    if type(final) is LogisticRegression:
        return None
    if isinstance(final, KNeighborsClassifier):
        return "a k-NN classifier has no gradient (its P(fake) is a vote count)"
    if type(final) is CalibratedClassifierCV:
        svm = final.estimator
        if type(svm) is not SVC or svm.kernel != "rbf":
            return f"only an RBF SVC is converted inside CalibratedClassifierCV, not {svm!r}"
        if final.method != "sigmoid":
            return f"only sigmoid (Platt) calibration is converted, not method={final.method!r}"
        if final.ensemble is not False:
            return "a calibrated ensemble (ensemble != False) averages several SVMs' probabilities; not converted"
        return None
    return (f"no torch version of {type(final).__name__} (converted: LogisticRegression and a "
            "sigmoid-calibrated RBF SVC, after StandardScaler steps)")


def unsupported(estimator: Any) -> str | None:
    """``None`` when :func:`estimator_logits` converts ``estimator`` (fitted or not, judged by its
    structure and hyper-parameters), else one sentence saying why not."""
    from sklearn.preprocessing import StandardScaler

    leading, final = _steps(estimator)
    for step in leading:
        if type(step) is not StandardScaler:
            return f"no torch version of the pipeline step {type(step).__name__} (only StandardScaler)"
    return _final_unsupported(final)


def _tensor(array: Any, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float64), device=like.device)


def _fake_logit(logit: torch.Tensor, classes: Any) -> torch.Tensor:
    """The logit of ``FAKE`` from the logit of ``classes[1]`` (a binary model's positive class)."""
    classes = list(classes)
    if len(classes) != 2 or FAKE not in classes:
        raise ValueError(f"expected a binary classifier with class {FAKE} (fake), got classes_ {classes}")
    return logit if classes[1] == FAKE else -logit


def rbf_decision(svm: Any, x: torch.Tensor) -> torch.Tensor:
    """``SVC.decision_function`` of a fitted two-class RBF SVC, for ``float64`` ``x`` ``(N, D)``."""
    sv = _tensor(svm.support_vectors_, x)
    # ‖x − sv‖² expanded: (N, S) memory instead of (N, S, D); on standardised features the cancellation
    # costs ~1e-15, far below what the score is compared at.
    sq = (x * x).sum(-1, keepdim=True) + (sv * sv).sum(-1) - 2.0 * (x @ sv.T)
    kernel = torch.exp(-float(svm._gamma) * sq.clamp_min(0.0))
    return kernel @ _tensor(svm.dual_coef_, x)[0] + float(svm.intercept_[0])


def estimator_logits(estimator: Any, x: torch.Tensor) -> torch.Tensor:
    """``(N,)`` ``float64`` logits of ``FAKE`` of a fitted ``estimator`` on features ``x`` ``(N, D)``,
    differentiable in ``x``; ``sigmoid`` of them is ``estimator.predict_proba(x)``'s ``FAKE`` column.
    Raises ``ValueError`` for an estimator :func:`unsupported` refuses."""
    from sklearn.linear_model import LogisticRegression

    reason = unsupported(estimator)
    if reason is not None:
        raise ValueError(f"no torch path: {reason}")
    leading, final = _steps(estimator)
    x = x.to(torch.float64)
    for scaler in leading:  # StandardScaler.transform, element-wise as scikit-learn does it
        if scaler.with_mean:
            x = x - _tensor(scaler.mean_, x)
        if scaler.with_std:
            x = x / _tensor(scaler.scale_, x)
    if type(final) is LogisticRegression:
        if final.coef_.shape[0] != 1:
            raise ValueError(f"expected a binary LogisticRegression, got coef_ of shape {final.coef_.shape}")
        logit = x @ _tensor(final.coef_, x)[0] + float(final.intercept_[0])
        return _fake_logit(logit, final.classes_)
    calibrated = final.calibrated_classifiers_
    if len(calibrated) != 1 or len(calibrated[0].calibrators) != 1:
        raise ValueError("expected one binary calibrated classifier (ensemble=False)")
    platt = calibrated[0].calibrators[0]
    decision = rbf_decision(calibrated[0].estimator, x)
    return _fake_logit(-(float(platt.a_) * decision + float(platt.b_)), final.classes_)
