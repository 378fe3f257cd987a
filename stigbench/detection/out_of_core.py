"""Feature matrices too large to hold in memory: on disk, and a scaler + classifier fitted on them with
the numbers of an in-memory fit.

A detector whose feature vector is a full-size spectrum (``frank-dct``: 4,096 log-DCT coefficients
per image) would hold N x D floats for its training set, 390 MB at 12,000 images, and scikit-learn's
``StandardScaler`` adds two more matrices of that size: a centred temporary while fitting and its
output when transforming. Here the matrix is a memory-mapped scratch file
(:func:`stigbench.core.io.scratch_array`); a leading ``StandardScaler`` is fitted and applied to it
in row chunks, in place, and the final estimator (a logistic regression) reads the mapped matrix,
which scikit-learn does without copying.

The numbers are those of ``pipeline.fit(x)``/``pipeline.predict_proba(x)``, bit for bit: NumPy sums a
C-ordered matrix over axis 0 one row after the other, so adding the rows in the same order gives
the same floats, and transforming is element-wise. ``tests/test_memory.py`` checks this against
scikit-learn; anything the exact path does not cover (other pipelines, NaN or infinite features,
a scikit-learn without the helpers used here) takes scikit-learn's own path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Rows per chunk when scaling on disk (8 MiB of 4,096 float64 features).
CHUNK_ROWS = 256


def scaler_pipeline(estimator: Any) -> tuple[Any, Any] | None:
    """``(scaler, final)`` when ``estimator`` is a two-step ``Pipeline`` starting with a centring and
    scaling ``StandardScaler``, else ``None``."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if not isinstance(estimator, Pipeline) or len(estimator.steps) != 2:
        return None
    scaler, final = estimator.steps[0][1], estimator.steps[1][1]
    if type(scaler) is not StandardScaler or not (scaler.with_mean and scaler.with_std) or final == "passthrough":
        return None
    return scaler, final


def _row_sums(x: np.ndarray, shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Column sums of ``x`` (or of ``x - shift`` and of its squares), adding rows in order, as
    ``np.sum(axis=0)`` does on a C-ordered matrix."""
    total = squares = None
    for start in range(0, len(x), CHUNK_ROWS):
        chunk = np.asarray(x[start:start + CHUNK_ROWS])
        if shift is not None:
            chunk = chunk - shift
        for row in chunk:
            if total is None:
                total = row.copy()
                squares = row * row if shift is not None else None
            else:
                total += row
                if squares is not None:
                    squares += row * row
    assert total is not None
    return total, squares


def fit_scaler(scaler: Any, x: np.ndarray) -> bool:
    """Fit ``scaler`` (a ``StandardScaler``) on ``x`` as ``scaler.fit(x)`` would, chunk by chunk.

    Follows scikit-learn's two-pass variance (``sklearn.utils.extmath._incremental_mean_and_var`` on
    a first call): ``mean = sum / n``, ``var = (sum((x - mean)^2) - sum(x - mean)^2 / n) / n``. Returns
    ``False``, leaving the scaler unfitted, when ``x`` holds NaN or infinite values or scikit-learn
    lacks the helpers used for its near-constant features.
    """
    try:
        from sklearn.preprocessing._data import _handle_zeros_in_scale, _is_constant_feature
    except ImportError:
        return False
    if x.ndim != 2:
        return False
    n, d = x.shape
    if n < 2 or not all(np.isfinite(x[s:s + CHUNK_ROWS]).all() for s in range(0, n, CHUNK_ROWS)):
        return False
    # scikit-learn's own fit on two rows sets every attribute (n_features_in_, the types); the
    # statistics are then replaced by those of all rows.
    scaler.fit(np.asarray(x[:2]))
    count = np.full(d, float(n))
    total, _ = _row_sums(x)
    shift = total / count
    correction, squares = _row_sums(x, shift)
    assert squares is not None
    squares -= correction**2 / count
    mean = (0.0 + total) / count
    var = squares / count
    n_seen = type(scaler.n_samples_seen_)(n)
    scaler.mean_, scaler.var_, scaler.n_samples_seen_ = mean, var, n_seen
    scaler.scale_ = _handle_zeros_in_scale(np.sqrt(var), copy=False, constant_mask=_is_constant_feature(var, mean, n_seen))
    return True


def transform_in_place(scaler: Any, x: np.ndarray) -> None:
    """``x[:] = scaler.transform(x)``, chunk by chunk (element-wise, so the same floats)."""
    for start in range(0, len(x), CHUNK_ROWS):
        x[start:start + CHUNK_ROWS] = scaler.transform(x[start:start + CHUNK_ROWS])


def fit_on_disk(estimator: Any, x: np.ndarray, labels: np.ndarray) -> None:
    """``estimator.fit(x, labels)`` for a matrix this process owns (it is scaled in place): a scaler
    pipeline never copies ``x`` into memory."""
    parts = scaler_pipeline(estimator)
    if parts is None or not fit_scaler(parts[0], x):
        estimator.fit(np.asarray(x), labels)  # a view of the mapped file, read by scikit-learn as it is
        return
    transform_in_place(parts[0], x)
    estimator.steps = list(estimator.steps)  # as Pipeline.fit leaves it
    parts[1].fit(np.asarray(x), labels)


def predict_proba_on_disk(estimator: Any, x: np.ndarray) -> np.ndarray:
    """``estimator.predict_proba(x)`` for a matrix this process owns (it is scaled in place)."""
    parts = scaler_pipeline(estimator)
    if parts is None:
        return estimator.predict_proba(np.asarray(x))
    transform_in_place(parts[0], x)
    return parts[1].predict_proba(np.asarray(x))
