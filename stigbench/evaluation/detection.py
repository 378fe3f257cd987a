"""The metrics stage for detectors: ``scores.csv`` + ``thresholds.csv`` -> the detection rows of ``metrics.csv``.

A pure function of what the run wrote: each (detector, trained_on, condition, refiner, perturbation)
group of scores — the test reals labelled 0 and one set of fakes labelled 1 — gives AUC, AP, accuracy
at the detector's validation threshold, per-class accuracy, EER and TPR at 5 % FPR, each with a
bootstrap interval (:func:`stigbench.measures.metrics.detection_metrics_with_ci`). Re-running it on a
run folder reproduces that run's rows exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stigbench.evaluation.rows import REAL_ATTACKED, base_row, is_baseline
from stigbench.measures import metrics as M

SCORE_COLUMNS = ["test_dataset", "detector", "trained_on", "condition", "refiner", "perturbation", "path", "label",
                 "score"]
#: ``threshold`` maximises validation accuracy; ``threshold_fpr<k>`` hold each target false-positive
#: rate on the ``val_reals`` validation reals (NaN: too few of them; the columns are absent in runs
#: written before stigbench 0.4).
THRESHOLD_COLUMNS = ["detector", "trained_on", "refiner", "threshold", "val_reals",
                     *(f"threshold_fpr{k}" for k in M.FPR_TARGETS), "authors_threshold"]
#: The metrics also read at a released detector's own threshold (``authors_threshold``), suffixed ``_authors``.
AUTHORS_METRICS = ("acc", "acc_real", "acc_fake")
GROUP = ["test_dataset", "detector", "trained_on", "condition", "refiner", "perturbation"]
_TEXT = {c: str for c in ("test_dataset", "detector", "trained_on", "condition", "refiner", "perturbation", "path")}


def read_scores(path: str | Path) -> pd.DataFrame:
    """``scores.csv`` as written by a run (empty refiner names stay empty strings; floats round-trip)."""
    return pd.read_csv(path, keep_default_na=False, dtype={**_TEXT, "label": np.int64, "score": np.float64})


def read_thresholds(path: str | Path) -> pd.DataFrame:
    """``thresholds.csv`` (NaN thresholds, where too few validation reals fix an operating point, read back as NaN)."""
    frame = pd.read_csv(path, keep_default_na=False, dtype=_TEXT)
    for column in frame.columns.drop(["detector", "trained_on", "refiner"], errors="ignore"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def _threshold_row(thresholds: pd.DataFrame, detector: str, trained_on: str, refiner: str) -> pd.Series:
    """A detector fitted on original fakes has one threshold row for every condition; an adaptive one
    (``trained_on == "refined"``) has one per refiner it was retrained against."""
    key = refiner if trained_on == "refined" else ""
    hit = thresholds[(thresholds.detector == detector) & (thresholds.trained_on == trained_on)
                     & (thresholds.refiner == key)]
    if len(hit) != 1:
        raise ValueError(f"thresholds.csv has {len(hit)} rows for detector {detector!r} trained on "
                         f"{trained_on!r} (refiner {key!r}); expected 1")
    return hit.iloc[0]


def threshold_of(thresholds: pd.DataFrame, detector: str, trained_on: str, refiner: str) -> float:
    """The validation-accuracy threshold of a detector (see :func:`_threshold_row`)."""
    return float(_threshold_row(thresholds, detector, trained_on, refiner)["threshold"])


def fpr_thresholds_of(thresholds: pd.DataFrame, detector: str, trained_on: str,
                      refiner: str) -> tuple[dict[str, float] | None, int | None]:
    """``({suffix: threshold}, number of validation reals)`` of the deployed operating points, or
    ``(None, None)`` for a ``thresholds.csv`` written before they existed."""
    row = _threshold_row(thresholds, detector, trained_on, refiner)
    if "val_reals" not in row.index or row["val_reals"] in ("", None):
        return None, None
    return {k: float(row[f"threshold_fpr{k}"]) for k in M.FPR_TARGETS}, int(row["val_reals"])


def authors_threshold_of(thresholds: pd.DataFrame, detector: str, trained_on: str, refiner: str) -> float | None:
    """The authors' own threshold of a released (score-only) detector; ``None`` for detectors the run
    trained and for a ``thresholds.csv`` written before the column existed."""
    row = _threshold_row(thresholds, detector, trained_on, refiner)
    value = pd.to_numeric(row.get("authors_threshold", np.nan), errors="coerce")
    return float(value) if np.isfinite(value) else None


def detection_rows(scores: pd.DataFrame, thresholds: pd.DataFrame, *, dataset: str, seed: int,
                   n_boot: int) -> list[dict[str, Any]]:
    """Metric rows (``metrics.csv`` columns) for every scored group, in the order the groups appear.
    Scores without a ``test_dataset`` column (runs before cross-dataset scoring) are on ``dataset``."""
    rows: list[dict[str, Any]] = []
    if "test_dataset" not in scores:
        scores = scores.assign(test_dataset=dataset)
    for (test_dataset, det, trained_on, condition, refiner, pert), g in scores.groupby(GROUP, sort=False):
        labels = g["label"].to_numpy(np.int64)
        if set(np.unique(labels)) != {0, 1}:
            raise ValueError(f"scores of {det}/{condition}/{refiner}/{pert} on {test_dataset} need both real (0) and "
                             "fake (1) labels")
        threshold = threshold_of(thresholds, det, trained_on, refiner)
        at_fpr, val_reals = fpr_thresholds_of(thresholds, det, trained_on, refiner)
        values = M.detection_metrics_with_ci(labels, g["score"].to_numpy(np.float64), threshold, n_boot=n_boot,
                                             seed=seed, fpr_thresholds=at_fpr)
        base = base_row(dataset, seed, test_dataset, refiner=refiner, detector=det, trained_on=trained_on,
                        condition=condition, perturbation=pert)
        rows += [{**base, "metric": m, "value": v, "ci_low": lo, "ci_high": hi} for m, (v, lo, hi) in values.items()]
        authors = authors_threshold_of(thresholds, det, trained_on, refiner)
        if authors is not None:  # the released detector as published, beside the run's own threshold
            # The authors' code calls P(fake) > t fake, the metrics P(fake) >= threshold: the next float up.
            at_authors = M.detection_metrics_with_ci(labels, g["score"].to_numpy(np.float64),
                                                     float(np.nextafter(authors, np.inf)), n_boot=n_boot, seed=seed)
            rows += [{**base, "metric": f"{m}_authors", "value": v, "ci_low": lo, "ci_high": hi}
                     for m, (v, lo, hi) in at_authors.items() if m in AUTHORS_METRICS]
        if condition == REAL_ATTACKED:  # the false alarm a platform fears: attacked reals flagged as fake
            _, lo, hi = values["acc_real"]
            rows.append({**base, "metric": "false_alarm", "value": 1.0 - values["acc_real"][0],
                         "ci_low": 1.0 - hi, "ci_high": 1.0 - lo})
        if val_reals is not None:  # what the deployed operating points were fixed on
            rows.append({**base, "metric": "val_reals", "value": float(val_reals), "ci_low": float("nan"),
                         "ci_high": float("nan")})
    return rows


def success_rows(scores: pd.DataFrame, thresholds: pd.DataFrame, *, dataset: str, seed: int,
                 n_boot: int) -> list[dict[str, Any]]:
    """``asr`` rows (:func:`stigbench.measures.metrics.attack_success_rate`): per detector trained on the
    fakes (or scoring as released), test set and perturbation, and per refiner, the share of the test fakes flagged at the
    validation threshold whose refined versions are no longer flagged. Fakes and refined fakes are
    paired by path; the interval is a percentile bootstrap over the flagged fakes. No row where no fake
    is flagged."""
    if "test_dataset" not in scores:
        scores = scores.assign(test_dataset=dataset)
    fakes = scores[(scores["label"] == 1) & scores["trained_on"].map(is_baseline)]
    rows: list[dict[str, Any]] = []
    keys = ["test_dataset", "detector", "trained_on", "perturbation"]
    for (test_dataset, det, trained_on, pert), g in fakes.groupby(keys, sort=False):
        fake = g[g["condition"] == "fake"].set_index("path")["score"]
        threshold = threshold_of(thresholds, det, trained_on, "")
        flagged = fake[fake >= threshold]
        if flagged.empty:
            continue
        for refiner, r in g[g["condition"] == "refined"].groupby("refiner", sort=False):
            refined = r.set_index("path")["score"].reindex(flagged.index).to_numpy(np.float64)
            if np.isnan(refined).any():
                raise ValueError(f"scores of {det}/refined:{refiner}/{pert} lack some of the fakes they refine")
            evaded = (refined < threshold).astype(np.float64)
            value = M.attack_success_rate(flagged.to_numpy(np.float64), refined, threshold)
            lo = hi = float("nan")
            if n_boot > 0:
                draws = np.random.default_rng(seed).integers(0, evaded.size, (n_boot, evaded.size))
                lo, hi = (float(q) for q in np.quantile(evaded[draws].mean(axis=1), [0.025, 0.975]))
            base = base_row(dataset, seed, test_dataset, refiner=refiner, detector=det, trained_on=trained_on,
                            condition="refined", perturbation=pert)
            rows.append({**base, "metric": "asr", "value": value, "ci_low": lo, "ci_high": hi})
    return rows
