"""The train × test matrix of AUC across runs: runs trained on one dataset that also scored their
detectors on other datasets' test splits (``--test-datasets``; rows with ``test_dataset != dataset`` in
``metrics.csv``, their origin in ``run.json``'s ``cross``).

Rows of the matrix are the training datasets (the comparison's groups: a dataset and its settings),
columns the test datasets; the diagonal comes from each run's own rows, the rest from its cross rows.
One matrix for the unrefined fakes (``fake``) and one per refiner (``refined:<refiner>``); every cell
is the mean ± sample standard deviation (ddof = 1) over the group's seeds, per detector and for the
mean over detectors (taken within each run, then over the seeds). :func:`cross_aggregate` gives the
long form (``cross_auc.csv``), :func:`cross_matrix_table` the table, and
:func:`stigbench.reporting.compare.plots.cross_auc_plot` the heat map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from stigbench.reporting.compare.tables import group_header
from stigbench.reporting.render.numbers import format_cell
from stigbench.reporting.run.cross_tables import auc_rows
from stigbench.reporting.run.metrics_csv import clean_metrics

#: The ``detector`` of the rows that average every detector of a run.
MEAN_DETECTOR = "mean over detectors"
CROSS_KEYS = ["group", "dataset", "detector", "test_dataset", "condition", "refiner", "condition_label"]
CROSS_COLUMNS = [*CROSS_KEYS, "attack_from", "mean", "std", "n", "ci_low", "ci_high", "seeds"]
CROSS_NOTE = ("Rows: the dataset the detectors (and, on the diagonal, the refiners) were trained on; columns: the "
              "dataset whose test split was scored (diagonal: the run's own test split). fake: that test split's "
              "fakes against its reals; refined:<refiner>: those fakes after the refiner (off the diagonal fitted "
              "on the dataset in attack_from of cross_auc.csv). Cells: mean ± sample standard deviation (ddof = 1) "
              "of the AUC over the seeds of a group; a single run shows its 95 % bootstrap interval. "
              f"'{MEAN_DETECTOR}': the mean AUC of a run's detectors, then over its seeds.")


def has_cross_rows(runs: Sequence[Any]) -> bool:
    """Whether any run (anything with a ``metrics`` frame) scored another dataset's test split."""
    for r in runs:
        m = clean_metrics(r.metrics)
        if (m["test_dataset"] != m["dataset"]).any():
            return True
    return False


def _run_cells(r: Any) -> pd.DataFrame:
    """One run's AUCs (detectors trained on the fakes, clean images) on every test split, plus their
    mean over detectors; own rows get the run's dataset as ``test_dataset``."""
    a = auc_rows(clean_metrics(r.metrics))
    a = a[a["value"].notna()].copy()
    own = (a["test_dataset"] == a["dataset"]).to_numpy()
    a.loc[own, "test_dataset"] = r.dataset
    cross = r.record.get("cross") or {}
    a["attack_from"] = [r.dataset if o else str((cross.get(t) or {}).get("attack_from") or "")
                        for o, t in zip(own, a["test_dataset"])]
    cols = ["detector", "test_dataset", "condition", "refiner", "condition_label", "attack_from", "value", "ci_low",
            "ci_high"]
    keys = ["test_dataset", "condition", "refiner", "condition_label"]
    mean = a.groupby(keys, sort=False).agg(attack_from=("attack_from", "first"), value=("value", "mean")).reset_index()
    mean["detector"], mean["ci_low"], mean["ci_high"] = MEAN_DETECTOR, np.nan, np.nan
    return pd.concat([mean[cols], a[cols]], ignore_index=True)


def cross_aggregate(runs: Sequence[Any], labels: dict[int, str]) -> pd.DataFrame:
    """Long form, one row per group × detector (and :data:`MEAN_DETECTOR`) × test dataset × condition:
    ``mean``, ``std`` (ddof = 1; NaN for one run), ``n`` runs, a single run's ``ci_low``/``ci_high``,
    ``attack_from`` (where the refiners of that cell were fitted) and the ``seeds``."""
    frames = []
    for i, r in enumerate(runs):
        cells = _run_cells(r)
        cells.insert(0, "group", labels[i])
        cells.insert(1, "dataset", r.dataset)
        cells["seed"] = str(r.seed)
        frames.append(cells)
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=CROSS_COLUMNS)
    allm = pd.concat(frames, ignore_index=True)
    g = allm.groupby(CROSS_KEYS, sort=False)
    out = g["value"].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    out["ci_low"], out["ci_high"] = g["ci_low"].mean(), g["ci_high"].mean()
    out.loc[out["n"] > 1, ["ci_low", "ci_high"]] = np.nan  # the spread over seeds replaces a run's interval
    out["attack_from"] = g["attack_from"].agg(lambda s: ", ".join(dict.fromkeys(s)))
    out["seeds"] = g["seed"].agg(lambda s: ", ".join(s))
    return out.reset_index()[CROSS_COLUMNS]


def matrix_axes(cagg: pd.DataFrame, groups: pd.DataFrame) -> tuple[list[str], list[str], list[str], list[str]]:
    """The detectors (the mean first), the training groups (in the comparison's order), the test
    datasets (the training datasets first) and the conditions (``fake`` first) of the matrix."""
    detectors = [MEAN_DETECTOR] + [d for d in dict.fromkeys(cagg["detector"]) if d != MEAN_DETECTOR]
    present = set(cagg["group"])
    trains = [g for g in groups["group"] if g in present]
    datasets = [d for d in dict.fromkeys(groups["dataset"]) if d in set(cagg["test_dataset"])]
    tests = datasets + [t for t in dict.fromkeys(cagg["test_dataset"]) if t not in datasets]
    conds = list(dict.fromkeys(cagg["condition_label"]))
    conds = [c for c in conds if c == "fake"] + [c for c in conds if c != "fake"]
    return detectors, trains, tests, conds


def cross_matrix_table(cagg: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Rows = detector (the mean over detectors first) × training group; columns = (condition, test
    dataset): the formatted cells of :func:`cross_aggregate`."""
    if cagg.empty:
        return pd.DataFrame()
    detectors, trains, tests, conds = matrix_axes(cagg, groups)
    header = group_header(groups)
    n_runs = dict(zip(groups["group"], groups["n_runs"]))
    lookup = cagg.set_index(["detector", "group", "condition_label", "test_dataset"])
    rows = [(d, t) for d in detectors for t in trains]
    data: dict[tuple[str, str], list[str]] = {("detector", ""): [d for d, _ in rows],
                                              ("trained on", ""): [header[t] for _, t in rows]}
    for cond in conds:
        for test in tests:
            cells = []
            for d, t in rows:
                key = (d, t, cond, test)
                if key in lookup.index:
                    rec = lookup.loc[key]
                    rec = rec.iloc[0] if isinstance(rec, pd.DataFrame) else rec
                    cells.append(format_cell(rec["mean"], rec["std"], int(rec["n"]), rec["ci_low"], rec["ci_high"],
                                             n_runs[t]))
                else:
                    cells.append("")
            data[(cond, test)] = cells
    table = pd.DataFrame(data)
    table.columns = pd.MultiIndex.from_tuples(list(data))
    return table


def cross_errors(runs: Sequence[Any]) -> list[str]:
    """``run <folder> (<dataset>, seed <s>): scoring on <B> failed: <message>`` for each failed cross cell."""
    out = []
    for r in runs:
        for name, info in (r.record.get("cross") or {}).items():
            if isinstance(info, dict) and info.get("error"):
                out.append(f"run {r.path.name} ({r.dataset}, seed {r.seed}): scoring on {name} failed, "
                           f"its cells are missing: {info['error']}")
    return out


__all__ = ["CROSS_COLUMNS", "CROSS_NOTE", "MEAN_DETECTOR", "cross_aggregate", "cross_errors", "cross_matrix_table",
           "has_cross_rows", "matrix_axes"]
