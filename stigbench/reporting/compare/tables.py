"""The tables of a comparison across runs, from its aggregate (one row per group × ... × metric, see
:func:`stigbench.reporting.compare.aggregate.aggregate`). Pure: frames in, formatted frames out.

* long, tidy tables, the primary ones (they grow down, not sideways, with the number of datasets):
  :func:`detection_long` (one row per dataset × detector, one column per condition: the unrefined
  fakes, then each refined set) and :func:`quality_long` (one row per dataset × metric, the same
  condition columns);
* the paper layout, a wide pivot written only to ``paper_auc.md/.tex``: :func:`paper_table`
  (detectors × datasets, each cell ``AUC fake → refined``);
* :func:`comparison_move_table`: the moves against chance per group and refiner.

Cells are ``mean ± std`` over a group's seeds, or a single run's value with its bootstrap interval
(:func:`stigbench.reporting.render.numbers.format_cell`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stigbench.evaluation.evidence import AWAY, MOVES, PAST, TOWARD
from stigbench.reporting.render.metric_labels import metric_label, ordered_metrics
from stigbench.reporting.render.numbers import format_cell
from stigbench.reporting.run.metrics_csv import DEFAULT_PERTURBATION, baseline, mark_released, perturbed, variant_columns

#: Marks an over-corrected cell in the comparison tables.
OVER_MARK = "†"


@dataclass
class Tables:
    """A comparison's tables for reading (formatted cells), shared by its Markdown and HTML pages:
    the leaderboard, its per-attack detail, the attacks across datasets, the long detection tables
    (metric -> (table, CSS classes)), quality, moves, the train × test matrix and its failed cells."""

    board: pd.DataFrame
    detail: pd.DataFrame
    attacks: pd.DataFrame
    detection: dict[str, tuple[pd.DataFrame, pd.DataFrame]]
    quality: pd.DataFrame
    moves: pd.DataFrame
    cross: pd.DataFrame
    cross_failed: list[str]


#: The arrow between the AUC on the fakes and on the refined fakes in a paper cell.
ARROW = "→"


def group_header(groups: pd.DataFrame) -> dict[str, str]:
    """Group label -> column header (``toy (n=2)`` for a group of several runs)."""
    return {g: f"{g} (n={n})" if n > 1 else g for g, n in zip(groups["group"], groups["n_runs"])}


def condition_order(frame: pd.DataFrame) -> list[str]:
    """The ``condition_label`` values of ``frame``: the unrefined fakes first, then in order of appearance."""
    labels = list(dict.fromkeys(frame["condition_label"]))
    return [c for c in labels if c == "fake"] + [c for c in labels if c != "fake"]


def standard_rows(agg: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """The rows of ``metric`` for detectors trained on the fakes and scored on clean images: the
    setting of the leaderboard, the heat maps and the paper table."""
    return mark_released(agg[(agg["detector"] != "") & (agg["metric"] == metric) & baseline(agg)
                             & (agg["perturbation"] == DEFAULT_PERTURBATION)])


def _n_runs(groups: pd.DataFrame) -> dict[str, int]:
    return dict(zip(groups["group"], groups["n_runs"].astype(int)))


def _ordered_keys(frame: pd.DataFrame, keys: list[str], groups: pd.DataFrame) -> pd.DataFrame:
    """The distinct ``group`` + ``keys`` of ``frame``, groups in the comparison's order, the rest in
    order of first appearance."""
    rows = frame[["group", *keys]].drop_duplicates().reset_index(drop=True)
    rank = {g: i for i, g in enumerate(groups["group"])}
    return rows.iloc[np.argsort([rank.get(g, len(rank)) for g in rows["group"]], kind="stable")].reset_index(drop=True)


def _cell(lookup: pd.DataFrame, key: tuple[Any, ...], n_group: int, quality: bool = False) -> tuple[str, float]:
    """The formatted cell of ``key`` in the indexed aggregate and its mean; ``("", nan)`` when absent."""
    if key not in lookup.index:
        return "", float("nan")
    rec = lookup.loc[key]
    rec = rec.iloc[0] if isinstance(rec, pd.DataFrame) else rec
    return format_cell(rec["mean"], rec["std"], int(rec["n"]), rec["ci_low"], rec["ci_high"], n_group, quality), rec["mean"]


def detection_long(agg: pd.DataFrame, groups: pd.DataFrame, metric: str = "auc") -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per dataset group × detector (× training set / perturbation where those vary), columns
    ``dataset``, ``runs``, the detector keys, then one per condition (``fake``, ``refined:<r>``...).
    Returns the table and a same-shape frame of CSS classes (``over`` where a refined set's mean AUC
    is below 0.5, also marked †). Empty frames when ``metric`` has no rows."""
    det = agg[(agg["detector"] != "") & (agg["metric"] == metric)]
    if det.empty:
        return pd.DataFrame(), pd.DataFrame()
    keys = variant_columns(det)
    conds = condition_order(det)
    n_runs = _n_runs(groups)
    rows = _ordered_keys(det, keys, groups)
    lookup = det.set_index(["group", *keys, "condition_label"])
    table = pd.DataFrame({"dataset": rows["group"], "runs": [n_runs.get(g, 0) for g in rows["group"]]})
    css = pd.DataFrame({"dataset": [""] * len(rows), "runs": [""] * len(rows)})
    for k in keys:
        table[k], css[k] = rows[k], ""
    for cond in conds:
        cells, classes = [], []
        for row in rows.itertuples(index=False):
            text, mean = _cell(lookup, (*row, cond), n_runs.get(row[0], 0))
            over = metric == "auc" and cond != "fake" and mean < 0.5
            cells.append(text + (f" {OVER_MARK}" if over else ""))
            classes.append("over" if over else "")
        table[cond], css[cond] = cells, classes
    return table, css


def quality_long(agg: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset group × detector-less metric (LFD, FID, ...; per perturbation where those
    vary), columns ``dataset``, ``runs``, ``metric``, then one per condition (lower = closer to the reals)."""
    q = agg[agg["detector"] == ""]
    if q.empty:
        return pd.DataFrame()
    keys = ["perturbation"] if perturbed(q) else []
    conds = condition_order(q)
    n_runs = _n_runs(groups)
    rows = _ordered_keys(q, [*keys, "metric"], groups)
    first = {p: i for i, p in enumerate(dict.fromkeys(q["perturbation"]))}
    metric_rank = {m: i for i, m in enumerate(ordered_metrics(q["metric"]))}
    group_rank = {g: i for i, g in enumerate(dict.fromkeys(rows["group"]))}
    order = np.lexsort(([metric_rank[m] for m in rows["metric"]],
                        [first[p] for p in rows["perturbation"]] if keys else np.zeros(len(rows)),
                        [group_rank[g] for g in rows["group"]]))
    rows = rows.iloc[order].reset_index(drop=True)
    lookup = q.set_index(["group", *keys, "metric", "condition_label"])
    table = pd.DataFrame({"dataset": rows["group"], "runs": [n_runs.get(g, 0) for g in rows["group"]]})
    for k in keys:
        table[k] = rows[k]
    table["metric"] = [metric_label(m) for m in rows["metric"]]
    for cond in conds:
        table[cond] = [_cell(lookup, (*row, cond), n_runs.get(row[0], 0), quality=True)[0]
                       for row in rows.itertuples(index=False)]
    return table


def refined_conditions(frame: pd.DataFrame) -> list[str]:
    """The ``refined:<refiner>`` labels of ``frame``, in order of appearance."""
    return [c for c in condition_order(frame) if c != "fake"]


def paper_table(agg: pd.DataFrame, groups: pd.DataFrame, condition: str, metric: str = "auc",
                digits: int = 2) -> pd.DataFrame:
    """The paper layout for one refined set: rows = detectors, columns = dataset groups and their
    ``mean``, each cell ``<fake> → <refined>`` (means over seeds, ``digits`` decimals; † below 0.5
    after refinement). Detectors trained on the fakes, clean images."""
    a = standard_rows(agg, metric)
    if a.empty or condition not in set(a["condition_label"]):
        return pd.DataFrame()
    mean = a.set_index(["detector", "group", "condition_label"])["mean"]
    present = set(a["group"])
    cols = [g for g in groups["group"] if g in present]
    detectors = list(dict.fromkeys(a["detector"]))

    def text(fake: float, refined: float) -> str:
        if not np.isfinite(fake) and not np.isfinite(refined):
            return ""
        f = f"{fake:.{digits}f}" if np.isfinite(fake) else "–"
        r = f"{refined:.{digits}f}" if np.isfinite(refined) else "–"
        over = f" {OVER_MARK}" if np.isfinite(refined) and refined < 0.5 and metric == "auc" else ""
        return f"{f} {ARROW} {r}{over}"

    out: dict[str, list[str]] = {"detector": detectors}
    means: dict[str, tuple[list[float], list[float]]] = {d: ([], []) for d in detectors}
    for g in cols:
        cells = []
        for d in detectors:
            f = float(mean.get((d, g, "fake"), np.nan))
            r = float(mean.get((d, g, condition), np.nan))
            cells.append(text(f, r))
            if np.isfinite(f) and np.isfinite(r):  # the mean column pairs the same datasets
                means[d][0].append(f)
                means[d][1].append(r)
        out[g] = cells
    out["mean"] = [text(float(np.mean(f)) if f else np.nan, float(np.mean(r)) if r else np.nan)
                   for f, r in means.values()]
    return pd.DataFrame(out)


def comparison_move_table(moves: pd.DataFrame) -> pd.DataFrame:
    """One row per group × refiner, one column per class: ``mean ± std`` detectors over the group's
    runs (a single run: its count); classes that never occur are left out (``toward``, ``away``,
    ``past`` always shown)."""
    if moves.empty:
        return pd.DataFrame()
    shown = [m for m in [*MOVES, "evidence"] if m in (TOWARD, AWAY, PAST) or (moves.loc[moves["move"] == m, "mean"] > 0).any()]
    rows = []
    for (group, refiner), g in moves.groupby(["group", "refiner"], sort=False):
        g = g.set_index("move")
        row = {"group": group, "refiner": refiner, "runs": int(g["n"].max())}
        for m in shown:
            mean, std, n = g.loc[m, "mean"], g.loc[m, "std"], int(g.loc[m, "n"])
            row[m] = f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.0f}"
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["ARROW", "OVER_MARK", "Tables", "comparison_move_table", "condition_order", "detection_long", "group_header",
           "paper_table", "quality_long", "refined_conditions", "standard_rows"]
