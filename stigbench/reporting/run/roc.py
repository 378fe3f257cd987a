"""ROC points of a run from its ``scores.csv``, and the panels (one per detector variant) that its
figures are split into."""

from __future__ import annotations

from typing import Any

import pandas as pd

from stigbench.measures.metrics import roc_curve
from stigbench.reporting.run.metrics_csv import DEFAULT_PERTURBATION, DEFAULT_TRAINED_ON


def panel_keys(frame: pd.DataFrame) -> list[str]:
    """The columns that split a detector's results into separate panels (present ones only)."""
    return ["detector"] + [c for c in ("trained_on", "perturbation") if c in frame]


def panel_title(key: tuple[Any, ...], cols: list[str]) -> str:
    """``durall (trained on refined), jpeg:75``: the title of one detector variant's panel."""
    parts = dict(zip(cols, key))
    title = str(parts["detector"])
    if parts.get("trained_on", DEFAULT_TRAINED_ON) not in ("", DEFAULT_TRAINED_ON):
        title += f" (trained on {parts['trained_on']})"
    if parts.get("perturbation", DEFAULT_PERTURBATION) not in ("", DEFAULT_PERTURBATION):
        title += f", {parts['perturbation']}"
    return title


def clean_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """A copy of a ``scores.csv`` frame with its text columns as plain strings (missing -> ``""``)."""
    s = scores.copy()
    for col in ("detector", "condition", "refiner", "trained_on", "perturbation"):
        if col in s:
            s[col] = s[col].astype(object).where(s[col].notna(), "").astype(str)
    return s


def roc_data(scores: pd.DataFrame) -> pd.DataFrame:
    """ROC points of every (detector[, trained_on, perturbation], condition, refiner) in ``scores.csv``
    form, from :func:`stigbench.measures.metrics.roc_curve`: columns ``detector, [trained_on, perturbation,]
    condition, refiner, fpr, tpr, threshold`` (the first point has threshold ``inf``)."""
    s = clean_scores(scores)
    keys = panel_keys(s) + ["condition", "refiner"]
    parts = []
    for key, g in s.groupby(keys, sort=False):
        fpr, tpr, thr = roc_curve(g["label"].to_numpy(), g["score"].to_numpy())
        part = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})
        for col, value in zip(keys, key):
            part.insert(len(part.columns) - 3, col, value)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=[*keys, "fpr", "tpr", "threshold"])
    return pd.concat(parts, ignore_index=True)


__all__ = ["clean_scores", "panel_keys", "panel_title", "roc_data"]
