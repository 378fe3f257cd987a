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

from stigbench.evaluation.rows import base_row
from stigbench.measures import metrics as M

SCORE_COLUMNS = ["test_dataset", "detector", "trained_on", "condition", "refiner", "perturbation", "path", "label",
                 "score"]
THRESHOLD_COLUMNS = ["detector", "trained_on", "refiner", "threshold"]
GROUP = ["test_dataset", "detector", "trained_on", "condition", "refiner", "perturbation"]
_TEXT = {c: str for c in ("test_dataset", "detector", "trained_on", "condition", "refiner", "perturbation", "path")}


def read_scores(path: str | Path) -> pd.DataFrame:
    """``scores.csv`` as written by a run (empty refiner names stay empty strings; floats round-trip)."""
    return pd.read_csv(path, keep_default_na=False, dtype={**_TEXT, "label": np.int64, "score": np.float64})


def read_thresholds(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, dtype={**_TEXT, "threshold": np.float64})


def threshold_of(thresholds: pd.DataFrame, detector: str, trained_on: str, refiner: str) -> float:
    """A detector fitted on original fakes has one threshold for every condition; an adaptive one
    (``trained_on == "refined"``) has one per refiner it was retrained against."""
    key = refiner if trained_on == "refined" else ""
    hit = thresholds[(thresholds.detector == detector) & (thresholds.trained_on == trained_on)
                     & (thresholds.refiner == key)]
    if len(hit) != 1:
        raise ValueError(f"thresholds.csv has {len(hit)} rows for detector {detector!r} trained on "
                         f"{trained_on!r} (refiner {key!r}); expected 1")
    return float(hit.threshold.iloc[0])


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
        values = M.detection_metrics_with_ci(labels, g["score"].to_numpy(np.float64), threshold, n_boot=n_boot,
                                             seed=seed)
        base = base_row(dataset, seed, test_dataset, refiner=refiner, detector=det, trained_on=trained_on,
                        condition=condition, perturbation=pert)
        rows += [{**base, "metric": m, "value": v, "ci_low": lo, "ci_high": hi} for m, (v, lo, hi) in values.items()]
    return rows
