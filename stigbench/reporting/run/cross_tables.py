"""The cross-dataset tables of one run, whose detectors also scored other datasets' test splits: AUC
per detector × test set, the test sets of ``run.json``'s ``cross`` (with their errors), and the quality
rows against each dataset's reals. The train × test matrix across runs is
:mod:`stigbench.reporting.compare.cross`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stigbench.reporting.render.metric_labels import ordered_metrics
from stigbench.reporting.render.numbers import format_ci
from stigbench.reporting.run.metrics_csv import (
    DEFAULT_PERTURBATION,
    baseline,
    mark_released,
    clean_metrics,
    condition_label,
    cross_rows,
    own_rows,
    wide_table,
)
from stigbench.reporting.run.quality_table import format_quality


def auc_rows(m: pd.DataFrame) -> pd.DataFrame:
    """The AUC rows of detectors trained on the fakes, scored on clean images, with ``condition_label``."""
    a = mark_released(m[(m["metric"] == "auc") & (m["detector"] != "") & baseline(m)
                        & (m["perturbation"] == DEFAULT_PERTURBATION) & m["condition"].isin(["fake", "refined"])])
    a["condition_label"] = [condition_label(c, r) for c, r in zip(a["condition"], a["refiner"])]
    return a


def cross_auc_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per detector (trained on the fakes, clean images) and test set it was scored on, its own test
    split first, then each other dataset's: ``detector, test_dataset, condition`` (``fake`` or
    ``refined:<refiner>``), ``auc, auc_ci_low, auc_ci_high``. Empty without cross rows."""
    m = clean_metrics(metrics)
    cols = ["detector", "test_dataset", "condition", "auc", "auc_ci_low", "auc_ci_high"]
    if not (m["test_dataset"] != m["dataset"]).any():
        return pd.DataFrame(columns=cols)
    a = auc_rows(m)
    if a.empty:
        return pd.DataFrame(columns=cols)
    a["own"] = (a["test_dataset"] != a["dataset"]).astype(int)
    a = a.sort_values("own", kind="stable").drop(columns="condition").rename(columns={"condition_label": "condition"})
    table = wide_table(a, ["detector", "test_dataset", "condition"], ["auc"])
    det_rank = {d: i for i, d in enumerate(dict.fromkeys(a["detector"]))}
    ds_rank = {d: i for i, d in enumerate(dict.fromkeys(a["test_dataset"]))}
    order = np.lexsort(((table["condition"] != "fake").to_numpy(int), table["test_dataset"].map(ds_rank).to_numpy(),
                        table["detector"].map(det_rank).to_numpy()))
    return table.iloc[order].reset_index(drop=True)[cols]


def display_cross(table: pd.DataFrame, cross: dict[str, Any], dataset: str) -> pd.DataFrame:
    """The cross-dataset AUC table for reading: one row per detector × test set, ``refiners trained on``
    (the dataset whose training split fitted the refiners that refined that test set's fakes, from
    ``run.json``'s ``cross``), then ``fake`` and each ``refined:<refiner>`` as ``AUC [lo, hi]``."""
    if table.empty:
        return pd.DataFrame()
    conds = [c for c in dict.fromkeys(table["condition"]) if c == "fake"]
    conds += [c for c in dict.fromkeys(table["condition"]) if c != "fake"]
    keys = table[["detector", "test_dataset"]].drop_duplicates().reset_index(drop=True)
    lookup = table.set_index(["detector", "test_dataset", "condition"])
    out = keys.rename(columns={"test_dataset": "test dataset"})
    out["refiners trained on"] = [dataset if t == dataset else str((cross.get(t) or {}).get("attack_from") or "?")
                                  for t in keys["test_dataset"]]
    for cond in conds:
        cells = []
        for d, t in keys.itertuples(index=False):
            if (d, t, cond) in lookup.index:
                rec = lookup.loc[(d, t, cond)]
                cells.append(format_ci(rec["auc"], rec["auc_ci_low"], rec["auc_ci_high"]))
            else:
                cells.append("")
        out[cond] = cells
    return out


def cross_info_table(cross: dict[str, Any]) -> pd.DataFrame:
    """One row per dataset of ``run.json``'s ``cross``: where its refiners were trained, its image size,
    how many test reals and fakes were scored, and the error that left its cells empty."""
    def get(info: dict[str, Any], key: str) -> Any:
        return "" if info.get(key) is None else info[key]

    rows = [{"test dataset": name, "refiners trained on": get(info, "attack_from"),
             "image size": get(info, "image_size"), "real": get(info, "n_real"), "fake": get(info, "n_fake"),
             "error": info.get("error") or ""} for name, info in cross.items() if isinstance(info, dict)]
    return pd.DataFrame(rows, columns=["test dataset", "refiners trained on", "image size", "real", "fake", "error"])


def cross_quality_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """The detector-less metrics (LFD, FID, ... against that dataset's reals) of the cross rows, one row
    per (test dataset, condition), clean images only; formatted for reading."""
    q = cross_rows(metrics)
    q = q[(q["detector"] == "") & (q["perturbation"] == DEFAULT_PERTURBATION)].copy()
    if q.empty:
        return pd.DataFrame()
    q["condition"] = [condition_label(c, r) for c, r in zip(q["condition"], q["refiner"])]
    wide = wide_table(q, ["test_dataset", "condition"], ordered_metrics(q["metric"]))
    return format_quality(wide, ["test_dataset", "condition"], ["test_dataset", "condition"]).rename(
        columns={"test_dataset": "test dataset"})


CROSS_NOTE = ("AUC [95 % bootstrap interval] of each detector (trained on real vs fakes of the run's dataset) on "
              "the test split of each dataset: `fake` = that dataset's test fakes against its test reals, "
              "`refined:<refiner>` = those fakes after the refiner, fitted on the training split of the dataset "
              "under `refiners trained on`. The run's own test split comes first.")


def cross_section(metrics: pd.DataFrame, record: dict[str, Any], dataset: str) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                                           pd.DataFrame]:
    """The cross-dataset tables of a run for reading: AUC per detector × test set, the test sets of
    ``run.json``'s ``cross`` (with errors), and the quality rows; all empty without cross rows or entries."""
    cross = record.get("cross") or {}
    dataset = next(iter(own_rows(metrics)["dataset"]), dataset)  # the name the rows give their own test split
    auc = display_cross(cross_auc_table(metrics), cross, dataset)
    return auc, cross_info_table(cross), cross_quality_table(metrics)


__all__ = [
    "CROSS_NOTE", "auc_rows", "cross_auc_table", "cross_info_table", "cross_quality_table", "cross_section",
    "display_cross"
]
