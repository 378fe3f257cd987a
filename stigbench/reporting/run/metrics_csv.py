"""A run's ``metrics.csv`` read back, the layer every table of the reports starts from: text columns
as plain strings with their defaults, the rows on the run's own test split and those on other
datasets' (cross-dataset scoring), condition labels, the columns that name a detector variant, and the
long-to-wide pivot. Pure: frames in, frames out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stigbench.core.contracts import is_released
from stigbench.evaluation.rows import is_baseline


#: Values of the grouping columns that mean "the standard setting" (not shown when nothing else occurs).
DEFAULT_TRAINED_ON = "fake"
DEFAULT_PERTURBATION = "none"
STRING_COLUMNS = ("dataset", "test_dataset", "refiner", "detector", "trained_on", "condition", "perturbation", "metric",
                  "knowledge", "target", "budget", "direction")


def condition_label(condition: str, refiner: str) -> str:
    """``fake`` or ``refined:<refiner>``: one label per scored set."""
    return condition if not refiner else f"{condition}:{refiner}"


def clean_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """A copy with the text columns as plain strings (missing -> ``""``; a missing perturbation or
    training set -> the default), as it comes back from ``pd.read_csv`` or straight from the runner."""
    m = metrics.copy()
    for col in STRING_COLUMNS:
        if col not in m:
            m[col] = ""
        m[col] = m[col].astype(object).where(m[col].notna(), "").astype(str)
    m.loc[m["perturbation"] == "", "perturbation"] = DEFAULT_PERTURBATION
    own = m["test_dataset"] == ""  # runs before cross-dataset scoring: every row is on its own dataset
    m.loc[own, "test_dataset"] = m.loc[own, "dataset"]
    has_det = m["detector"] != ""
    m.loc[has_det & (m["trained_on"] == ""), "trained_on"] = DEFAULT_TRAINED_ON
    for col in ("value", "ci_low", "ci_high"):
        if col not in m:
            m[col] = np.nan
        m[col] = pd.to_numeric(m[col], errors="coerce").astype(float)
    return m


def own_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The cleaned rows scored on the dataset the run trained on (``test_dataset == dataset``): every
    row of a run without cross-dataset scoring, and what every table and figure but the
    cross-dataset ones is built from."""
    m = clean_metrics(metrics)
    return m[m["test_dataset"] == m["dataset"]]


def cross_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The cleaned rows scored on another dataset's test split (``test_dataset != dataset``)."""
    m = clean_metrics(metrics)
    return m[m["test_dataset"] != m["dataset"]]


def baseline(frame: pd.DataFrame) -> pd.Series:
    """Per row: a detector every condition is read against (trained on the original fakes, or scoring
    with its authors' released weights), not the adaptive defender
    (:func:`stigbench.evaluation.rows.is_baseline`)."""
    return frame["trained_on"].map(is_baseline).astype(bool)


def mark_released(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose score-only detectors read ``NAME (released <sha256[:12]>)`` in ``detector``: the mark
    that tables without a ``trained_on`` column carry."""
    out = frame.copy()
    rel = out["trained_on"].map(is_released).astype(bool)
    out.loc[rel, "detector"] = out.loc[rel, "detector"] + " (" + out.loc[rel, "trained_on"] + ")"
    return out


def read_metrics(path: Path) -> pd.DataFrame:
    """A ``metrics.csv`` with empty text cells as ``""`` and numbers as floats."""
    return clean_metrics(pd.read_csv(path, keep_default_na=False))  # numbers are coerced there


def variant_columns(frame: pd.DataFrame) -> list[str]:
    """``detector``, then ``trained_on`` and ``perturbation`` where something other than the default
    occurs: the columns that name a detector variant in a table."""
    return ["detector"] + [c for c, default in (("trained_on", DEFAULT_TRAINED_ON), ("perturbation", DEFAULT_PERTURBATION))
                           if (frame[c] != default).any()]


def perturbed(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` holds results under a test-time perturbation (then tables show the column)."""
    return bool((frame["perturbation"] != DEFAULT_PERTURBATION).any())


def wide_table(rows: pd.DataFrame, keys: list[str], metric_names: list[str]) -> pd.DataFrame:
    """One row per ``keys`` (order of first appearance), columns ``<metric>`` then
    ``<metric>_ci_low``/``_ci_high`` at the end."""
    agg = rows.groupby(keys + ["metric"], sort=False)[["value", "ci_low", "ci_high"]].mean()
    order = rows[keys].drop_duplicates()
    out = order.reset_index(drop=True)
    idx = pd.MultiIndex.from_frame(order) if len(keys) > 1 else pd.Index(order[keys[0]])
    for part, suffix in (("value", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high")):
        table = agg[part].unstack("metric")
        for name in metric_names:
            col = table[name] if name in table else pd.Series(np.nan, index=table.index)
            out[name + suffix] = col.reindex(idx).to_numpy(dtype=float)
    return out


def value_columns(table: pd.DataFrame, skip: Sequence[str]) -> list[str]:
    return [c for c in table.columns if c not in skip and not c.endswith(("_ci_low", "_ci_high"))]


__all__ = [
    "DEFAULT_PERTURBATION", "DEFAULT_TRAINED_ON", "STRING_COLUMNS", "baseline", "clean_metrics", "condition_label",
    "mark_released",
    "cross_rows", "own_rows", "perturbed", "read_metrics", "value_columns", "variant_columns", "wide_table"
]
