"""The detection table of a run: one row per detector variant and condition with ΔAUC/ΔAcc against
the unrefined fakes, the move against chance and the notes (:func:`summarize`), and the same table
formatted for reading (:func:`display_summary`)."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
import pandas as pd

from stigbench.evaluation.evidence import DETECTOR_AT_CHANCE, EVIDENCE, move_columns
from stigbench.evaluation.rows import on_own_target
from stigbench.reporting.render.metric_labels import metric_label, ordered_metrics
from stigbench.reporting.render.numbers import format_ci, format_delta
from stigbench.reporting.run.deployed_table import DEPLOYED_ONLY
from stigbench.reporting.run.metrics_csv import (
    DEFAULT_PERTURBATION,
    DEFAULT_TRAINED_ON,
    condition_label,
    own_rows,
    value_columns,
    variant_columns,
    wide_table,
)


OVER_CORRECTION = "over-correction"
#: The note of an attack's row on the detector it was crafted against (success there is read from ASR).
OWN_TARGET = "own target"


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (detector, trained_on, perturbation, condition): the detection metrics side by side,
    ΔAUC and ΔAcc against the unrefined fakes of the same detector/training/perturbation, and a note
    where refinement drove the AUC below 0.5. Confidence bounds follow as ``<metric>_ci_low/high``.

    An attack succeeds by bringing AUC to 0.5 (chance); below 0.5 a detector with its sign flipped
    would catch the refined images, so that is flagged as over-correction, not counted as success.
    ``move`` says, from the AUC intervals, whether refinement moved the detector toward, away from or
    past chance; ``note`` adds ``attack adds evidence`` and ``detector at chance`` (a detector whose
    fake-AUC interval contains 0.5 gets no over-correction or evidence flag); see
    :mod:`stigbench.evaluation.evidence`.
    """
    m = own_rows(metrics)
    det = m[m["detector"] != ""].copy()
    keys = ["detector", "trained_on", "perturbation", "condition"]
    if det.empty:
        return pd.DataFrame(columns=[*keys, "auc", "delta_auc", "delta_acc", "move", "note"])
    targets = own_targets(det)
    det["condition"] = [condition_label(c, r) for c, r in zip(det["condition"], det["refiner"])]
    det = det[~det["metric"].isin(DEPLOYED_ONLY)]  # the deployed-detector table shows those
    names = ordered_metrics(det["metric"])
    table = wide_table(det, keys, names)
    group = ["detector", "trained_on", "perturbation"]
    for name in ("auc", "acc"):
        if name not in table:
            table[name] = np.nan
        base = table[table["condition"] == "fake"].set_index(group)[name]
        ref = pd.MultiIndex.from_frame(table[group])
        table[f"delta_{name}"] = table[name].to_numpy() - base.reindex(ref).to_numpy()
    table["move"], table["note"] = _flags(table, group, targets)
    # Keep each detector's rows together (variants may be appended later in metrics.csv), the
    # standard training set and no perturbation first, the unrefined fakes first within each.
    def first(values: list[Any]) -> np.ndarray:  # rank by first appearance
        rank = {v: i for i, v in enumerate(dict.fromkeys(values))}
        return np.array([rank[v] for v in values])

    variant = list(zip(table["trained_on"], table["perturbation"]))
    v_rank = np.where([v == (DEFAULT_TRAINED_ON, DEFAULT_PERTURBATION) for v in variant], -1, first(variant))
    c_rank = (table["condition"] != "fake").to_numpy(int)
    table = table.iloc[np.lexsort((c_rank, v_rank, first(list(table["detector"]))))].reset_index(drop=True)
    ci_cols = [c for c in table.columns if c.endswith(("_ci_low", "_ci_high"))]
    names = [n for n in names if n in table] + (["auc"] if "auc" not in names else [])
    return table[[*keys, *names, "delta_auc", "delta_acc", "move", "note", *ci_cols]]


def own_targets(rows: pd.DataFrame) -> set[tuple[str, str]]:
    """``(condition label, detector)`` of the rows (``metrics.csv`` form, condition and refiner apart) where a
    white-box or query attack is scored by the very detector it was crafted against
    (:func:`stigbench.evaluation.rows.on_own_target`)."""
    hit = rows[on_own_target(rows)]
    return {(condition_label(c, r), d) for c, r, d in zip(hit["condition"], hit["refiner"], hit["detector"])}


def _flags(table: pd.DataFrame, group: list[str],
           targets: AbstractSet[tuple[str, str]] = frozenset()) -> tuple[list[str], list[str]]:
    """Per row of the wide table: the move against chance (refined rows with a fake baseline) and the
    notes (``; ``-joined): evidence, over-correction, detector at chance (see :mod:`stigbench.evaluation.evidence`).

    An attack crafted against a detector is *meant* to drive it below 0.5: on the rows in ``targets`` that
    reads as success (``own target``, judged by ASR), never as evidence or over-correction, which stay the
    rule for refiners and for the detectors an attack did not target."""
    def col(name: str) -> np.ndarray:
        return table[name].to_numpy(float) if name in table else np.full(len(table), np.nan)

    base = table[table["condition"] == "fake"].set_index(group)
    ref = pd.MultiIndex.from_frame(table[group])
    frame = pd.DataFrame({"auc": col("auc"), "auc_ci_low": col("auc_ci_low"), "auc_ci_high": col("auc_ci_high")})
    for name, source in (("fake_auc", "auc"), ("fake_ci_low", "auc_ci_low"), ("fake_ci_high", "auc_ci_high")):
        frame[name] = base[source].reindex(ref).to_numpy(float) if source in base else np.nan
    flags = move_columns(frame)
    move, notes = [], []
    for i, condition in enumerate(table["condition"]):
        refined, chance = condition != "fake", bool(flags["fake_at_chance"].iat[i])
        targeted = (condition, table["detector"].iat[i]) in targets
        note = [OWN_TARGET] if targeted else []
        if refined and not targeted and flags["evidence"].iat[i]:
            note.append(EVIDENCE)
        if refined and not targeted and not chance and frame["auc"].iat[i] < 0.5:
            note.append(OVER_CORRECTION)
        if chance:
            note.append(DETECTOR_AT_CHANCE)
        notes.append("; ".join(note))
        move.append(flags["move"].iat[i] if refined and np.isfinite(frame["fake_auc"].iat[i]) else "")
    return move, notes


def display_summary(summary: pd.DataFrame, digits: int = 3) -> tuple[pd.DataFrame, list[str]]:
    """The detection table for reading: values as ``v [lo, hi]``, Δs signed, the training-set and
    perturbation columns only where something other than the default occurs; plus a CSS class per
    row (``base`` for the unrefined fakes, ``over`` for over-correction, ``evidence`` where the attack
    added evidence)."""
    keys = ["detector", "trained_on", "perturbation", "condition"]
    out = summary[[*variant_columns(summary), "condition"]].copy()
    for name in value_columns(summary, [*keys, "move", "note"]):
        if name.startswith("delta_"):
            out[metric_label(name)] = [format_delta(v, digits) for v in summary[name]]
        else:
            lo = summary.get(f"{name}_ci_low", pd.Series(np.nan, index=summary.index))
            hi = summary.get(f"{name}_ci_high", pd.Series(np.nan, index=summary.index))
            out[metric_label(name)] = [format_ci(v, a, b, digits) for v, a, b in zip(summary[name], lo, hi)]
    if "move" in summary:
        out["move"] = summary["move"].to_numpy()
    out["note"] = summary["note"].to_numpy()
    classes = ["over" if OVER_CORRECTION in n else "evidence" if EVIDENCE in n else ("base" if c == "fake" else "")
               for n, c in zip(summary["note"], summary["condition"])]
    return out.reset_index(drop=True), classes


__all__ = ["OVER_CORRECTION", "OWN_TARGET", "display_summary", "own_targets", "summarize"]
