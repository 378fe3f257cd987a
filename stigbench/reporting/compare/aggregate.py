"""The long form of a comparison: every metric of every group of runs as mean ± std over its seeds
(``aggregate.csv``), the moves against chance per group (``moves.csv``), and a warning per attack
that did nothing in a run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from stigbench.evaluation.evidence import MOVES, move_counts
from stigbench.evaluation.evidence import moves as detector_moves
from stigbench.reporting.compare.collect import RunInfo
from stigbench.reporting.run.inactive import inactive_lines
from stigbench.reporting.run.metrics_csv import condition_label, own_rows


AGG_KEYS = ["group", "dataset", "detector", "trained_on", "perturbation", "condition", "refiner", "metric"]


def aggregate(runs: Sequence[RunInfo], labels: dict[int, str]) -> pd.DataFrame:
    """Long form, one row per group × (detector, trained_on, perturbation, condition, refiner, metric):
    ``mean``, ``std`` (sample, ddof = 1; NaN for one run), ``n`` and, for a single run, its
    bootstrap ``ci_low``/``ci_high``; ``seeds`` lists the runs' seeds."""
    frames = []
    for i, r in enumerate(runs):
        m = own_rows(r.metrics)  # cross-dataset rows: cross_auc.* only
        m["group"] = labels[i]
        m["dataset"] = r.dataset
        m["seed"] = str(r.seed)
        frames.append(m)
    cols = [*AGG_KEYS, "condition_label", "mean", "std", "n", "ci_low", "ci_high", "seeds"]
    if not frames:
        return pd.DataFrame(columns=cols)
    allm = pd.concat(frames, ignore_index=True)
    allm = allm[allm["value"].notna()]
    g = allm.groupby(AGG_KEYS, sort=False)
    out = g["value"].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    out["ci_low"] = g["ci_low"].mean()
    out["ci_high"] = g["ci_high"].mean()
    out.loc[out["n"] > 1, ["ci_low", "ci_high"]] = np.nan  # a spread over seeds replaces the per-run interval
    out["seeds"] = g["seed"].agg(lambda s: ", ".join(s))
    out = out.reset_index()
    out["condition_label"] = [condition_label(c, r) for c, r in zip(out["condition"], out["refiner"])]
    return out[cols]


def move_summary(runs: Sequence[RunInfo], labels: dict[int, str]) -> pd.DataFrame:
    """Long form, one row per group × refiner × class of :data:`stigbench.evaluation.evidence.MOVES` (and
    ``evidence``): the number of detectors per run, as ``mean``, ``std`` (sample, ddof = 1; NaN for
    one run) and ``n`` runs. Runs without intervals count under ``no interval``."""
    frames = []
    for i, r in enumerate(runs):
        counts = move_counts(detector_moves(own_rows(r.metrics), inactive=r.inactive))
        counts.insert(0, "group", labels[i])
        frames.append(counts)
    cols = ["group", "refiner", "move", "mean", "std", "n"]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=cols)
    long = pd.concat(frames, ignore_index=True).melt(id_vars=["group", "refiner"], value_vars=[*MOVES, "evidence"],
                                                     var_name="move", value_name="count")
    out = long.groupby(["group", "refiner", "move"], sort=False)["count"].agg(["mean", "std", "count"])
    return out.rename(columns={"count": "n"}).reset_index()[cols]


def inactive_warnings(runs: Sequence[RunInfo], labels: dict[int, str]) -> list[str]:
    """One ``<group> seed <s>: ATTACK INACTIVE: ...`` line per attack that did nothing in a run."""
    return [f"{labels[i]} seed {r.seed}: {line}" for i, r in enumerate(runs) for line in inactive_lines(r.inactive)]


__all__ = ["AGG_KEYS", "aggregate", "inactive_warnings", "move_summary"]
