"""The quality table of a run: every metric without a detector (LFD, FID, KID, PSNR, SSIM, ...) per
perturbation and condition, and the same formatted for reading."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stigbench.reporting.render.metric_labels import metric_label, ordered_metrics
from stigbench.reporting.render.numbers import format_ci, quality_decimals
from stigbench.reporting.run.metrics_csv import condition_label, own_rows, perturbed, value_columns, wide_table


def quality_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Every metric without a detector (LFD, FID, KID, ...): one row per (perturbation, condition),
    one column per metric (lower = closer to the reals), bounds as ``<metric>_ci_low/high``."""
    m = own_rows(metrics)
    q = m[m["detector"] == ""].copy()
    if q.empty:
        return pd.DataFrame(columns=["perturbation", "condition"])
    q["condition"] = [condition_label(c, r) for c, r in zip(q["condition"], q["refiner"])]
    names = ordered_metrics(q["metric"])
    return wide_table(q, ["perturbation", "condition"], names)


def display_quality(quality: pd.DataFrame) -> pd.DataFrame:
    """The quality table for reading: values as ``v [lo, hi]`` with about four significant digits,
    the perturbation column only where one occurs."""
    shown = ["perturbation", "condition"] if perturbed(quality) else ["condition"]
    return format_quality(quality, shown, ["perturbation", "condition"])


def format_quality(quality: pd.DataFrame, shown: list[str], keys: list[str]) -> pd.DataFrame:
    """The ``shown`` key columns, then each metric as ``v [lo, hi]`` with about four significant digits."""
    out = quality[shown].copy()
    for name in value_columns(quality, keys):
        lo = quality.get(f"{name}_ci_low", pd.Series(np.nan, index=quality.index))
        hi = quality.get(f"{name}_ci_high", pd.Series(np.nan, index=quality.index))
        out[metric_label(name)] = [format_ci(v, a, b, quality_decimals(v)) for v, a, b in zip(quality[name], lo, hi)]
    return out.reset_index(drop=True)


__all__ = ["display_quality", "format_quality", "quality_table"]
