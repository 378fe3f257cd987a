"""The detector as deployed: one row per detector and condition with the operating points a platform
would run it at (TPR at 1 % and 0.1 % FPR, thresholds fixed on the clean validation reals), balanced
accuracy, calibration (ECE) and the attack success rate, plus the threat model of gradient attacks.

A TPR at an FPR that the validation reals cannot fix (fewer than 1/FPR of them) is never printed as a
number: the cell says ``not measurable`` and how many reals there were."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from stigbench.measures.metrics import FPR_TARGETS, min_reals
from stigbench.reporting.render.metric_labels import metric_label
from stigbench.reporting.render.numbers import format_ci
from stigbench.reporting.run.metrics_csv import (
    DEFAULT_PERTURBATION,
    baseline,
    mark_released,
    condition_label,
    own_rows,
)

#: The metrics of this table, in column order (``metrics.csv`` names).
DEPLOYED_METRICS = ["tpr_at_fpr1", "fpr_at_fpr1", "tpr_at_fpr01", "fpr_at_fpr01", "balanced_acc", "ece",
                    "ece_balanced", "asr", "false_alarm"]
#: Metrics that only this table shows (the main detection table keeps its columns).
DEPLOYED_ONLY = frozenset({*DEPLOYED_METRICS, "val_reals"} - {"asr", "false_alarm"})
THREAT = ["knowledge", "target", "budget"]
DEPLOYED_NOTE = ("Operating points of a deployed detector: the threshold for each target false-positive rate is "
                 "fixed on the clean validation reals (`val reals`) and applied unchanged to the test images; "
                 "TPR = share of test fakes (or attacked fakes) flagged there, FPR = share of test reals flagged "
                 "(whether the validation threshold held). Fewer than 1/FPR validation reals cannot fix such a "
                 "threshold: `not measurable`. Balanced accuracy, ASR and the false-alarm rate of attacked reals at the "
                 "validation-accuracy threshold; "
                 "ECE: expected calibration error of P(fake), 15 bins (balanced: reals and fakes weigh one half "
                 "each). Gradient attacks name their threat model; on a white-box attack's own target, success is "
                 "its ASR.")


def deployed_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per detector (trained on the fakes, clean test images) and condition: ``detector,
    condition, knowledge, target, budget, val_reals`` and each of :data:`DEPLOYED_METRICS` with its
    ``_ci_low``/``_ci_high``. Empty for a run written before these metrics existed."""
    m = own_rows(metrics)
    m = mark_released(m[(m["detector"] != "") & baseline(m) & (m["perturbation"] == DEFAULT_PERTURBATION)])
    m = m[m["metric"].isin([*DEPLOYED_METRICS, "val_reals"])]
    columns = ["detector", "condition", *THREAT, "val_reals",
               *[f"{n}{s}" for n in DEPLOYED_METRICS for s in ("", "_ci_low", "_ci_high")]]
    if m.empty or "val_reals" not in set(m["metric"]):
        return pd.DataFrame(columns=columns)
    rows = []
    for (detector, condition, refiner), g in m.groupby(["detector", "condition", "refiner"], sort=False):
        row = {"detector": detector, "condition": condition_label(condition, refiner),
               **{c: str(g[c].iloc[0]) for c in THREAT}}
        by = g.set_index("metric")
        for name in ["val_reals", *DEPLOYED_METRICS]:
            row[name] = float(by.loc[name, "value"]) if name in by.index else math.nan
            if name != "val_reals":
                row[f"{name}_ci_low"] = float(by.loc[name, "ci_low"]) if name in by.index else math.nan
                row[f"{name}_ci_high"] = float(by.loc[name, "ci_high"]) if name in by.index else math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    # every detector's validation reals count for its attacked rows too (only its fake-condition rows hold them)
    reals = table[table["condition"] == "fake"].set_index("detector")["val_reals"]
    table["val_reals"] = table["val_reals"].fillna(table["detector"].map(reals))
    return table.reindex(columns=columns)


def _not_measurable(val_reals: float, suffix: str) -> str:
    need = min_reals(FPR_TARGETS[suffix])
    count = "?" if not np.isfinite(val_reals) else f"{int(val_reals)}"
    return f"not measurable ({count} val reals < {need})"


def display_deployed(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """:func:`deployed_table` for reading: values as ``v [lo, hi]``; the threat-model columns only when a
    gradient attack occurs; an unmeasurable TPR/FPR says so."""
    threat = [c for c in THREAT if (table[c] != "").any()]
    out = table[["detector", "condition", *threat]].copy()
    out["val reals"] = [f"{int(v)}" if np.isfinite(v) else "" for v in table["val_reals"]]
    for name in (n for n in DEPLOYED_METRICS if n in table):  # a deployed.csv written before a metric existed lacks it
        suffix = name.rpartition("fpr")[2] if name.startswith(("tpr_at_fpr", "fpr_at_fpr")) else None
        cells = []
        for _, r in table.iterrows():
            if suffix and not np.isfinite(r[name]):
                cells.append(_not_measurable(r["val_reals"], suffix))
            else:
                cells.append(format_ci(r[name], r[f"{name}_ci_low"], r[f"{name}_ci_high"], digits))
        measured = table[name].notna().any()
        # An FPR column that no row can measure repeats its TPR column's reason: left out.
        if any(cells) and (measured or not name.startswith("fpr_at")):
            out[metric_label(name)] = cells
    return out.reset_index(drop=True)


__all__ = ["DEPLOYED_METRICS", "DEPLOYED_NOTE", "DEPLOYED_ONLY", "deployed_table", "display_deployed"]
