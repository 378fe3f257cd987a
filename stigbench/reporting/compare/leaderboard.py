"""The robustness leaderboard of a comparison: every detector over every dataset, against every attack.
Pure: run metrics in, frames out; :mod:`stigbench.reporting.compare.plots` draws them.

Only detectors trained on the unrefined fakes, or scoring with their authors' released weights, on
clean test images count (the setting of :func:`stigbench.evaluation.evidence.moves`). The two kinds are
ranked apart (``trained``: ``run`` or ``released``; released ones are named ``NAME (released <sha>)``
and listed after those the runs trained): a published checkpoint and a detector fitted on the very
generator it is scored on answer different questions. Per dataset group, each quantity is first the mean over the
group's seeds; then, per detector and attack, over the datasets where the detector has both a fake and a
refined AUC:

* ``auc_fake`` / ``auc``: mean AUC on the unrefined / refined fakes; ``delta_auc`` = ``auc - auc_fake``;
* ``chance_distance``: mean ``|AUC - 0.5|`` after the attack (0: at chance everywhere; an AUC pushed
  below 0.5 counts as far from chance, since a sign-flipped detector would catch those images);
* ``at_chance_after``: the number of datasets where the refined AUC's 95 % interval contains 0.5
  (:func:`stigbench.evaluation.evidence.at_chance`);
* ``toward``, ``away``, ``past``, ``unchanged``, ``at_chance_before``, ``no_interval``: how many datasets
  fall in each class of :func:`stigbench.evaluation.evidence.classify_move`, ``evidence`` how many carry
  the "attack adds evidence" flag;
* ``inactive``: how many datasets the attack did nothing on (``attack inactive``,
  :func:`stigbench.evaluation.evidence.inactive_reason`; why: ``inactive_reason``, per dataset). Its AUCs
  there are the fakes' and say nothing about robustness: they are left out of every mean, count and
  rank above, so ``datasets`` counts only those where the attack ran.

A dataset with several seeds counts as the fraction of its runs in a class, so counts may be fractional.
A "dataset" is a group of the comparison: a dataset run with two settings counts twice (its groups
carry a settings hash and a warning names what differs).
Means carry a percentile bootstrap interval over datasets (:func:`bootstrap_mean_ci`, resampling the
datasets, ``BOOT`` resamples, seed 0: the same numbers every time). Detectors are ranked by their worst
attack: the lowest mean AUC after any attack (ties: higher ``auc_fake`` first); with no attack, by
``auc_fake``.

The metrics of a deployed detector (:data:`DEPLOYED`: TPR at 1 % and 0.1 % FPR at thresholds fixed on
the validation reals, balanced accuracy, ECE, and the attack success rate) are averaged the same way, on
the fakes (``attack = ""``) and after each attack; a TPR at an FPR the validation reals of a dataset
cannot fix is NaN there and left out of the mean (``not measurable`` where no dataset can fix it).

Per attack, :func:`attack_summary` gives its mean evasion (the run report's ``attack_table``: mean over
detectors of ``|AUC - 0.5|``) against its mean quality cost (LFD, FID, PSNR...), across datasets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from stigbench.evaluation.evidence import AT_CHANCE, INACTIVE, MOVES, NO_INTERVAL, at_chance, moves
from stigbench.reporting.render.metric_labels import metric_label
from stigbench.reporting.render.numbers import format_ci, format_delta, quality_decimals
from stigbench.reporting.run.attack_table import ATTACK_COSTS, attack_table
from stigbench.core.contracts import is_released
from stigbench.reporting.run.metrics_csv import DEFAULT_PERTURBATION, baseline, mark_released, own_rows

#: What a table prints for a TPR at an FPR that too few validation reals cannot fix (never a number).
NOT_MEASURABLE = "not measurable"
#: Bootstrap resamples of the datasets for every interval of the leaderboard.
BOOT = 2000
#: The leaderboard's column for each class of :data:`stigbench.evaluation.evidence.MOVES`.
MOVE_COLUMNS = {m: {AT_CHANCE: "at_chance_before", NO_INTERVAL: "no_interval", INACTIVE: "inactive"}.get(m, m)
                for m in MOVES}
COUNT_COLUMNS = ["at_chance_after", *MOVE_COLUMNS.values(), "evidence"]
MEAN_COLUMNS = ["auc_fake", "auc", "delta_auc", "chance_distance"]
#: The metrics of a deployed detector the leaderboard averages too (``metrics.csv`` names).
DEPLOYED = ["tpr_at_fpr1", "tpr_at_fpr01", "balanced_acc", "ece", "asr"]
#: ``trained`` of a detector fitted by the runs and of one scoring with its authors' released weights.
TRAINED_BY_RUN, TRAINED_RELEASED = "run", "released"
BOARD_COLUMNS = ["rank", "detector", "trained", "attack", "datasets",
                 *[f"{c}{s}" for c in [*MEAN_COLUMNS, *DEPLOYED] for s in ("", "_ci_low", "_ci_high")],
                 *COUNT_COLUMNS, "inactive_reason"]


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = BOOT, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` under resampling them with replacement; NaN with
    fewer than two values (one dataset says nothing about the spread over datasets)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2 or n_boot <= 0:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))
    lo, hi = np.quantile(v[idx].mean(axis=1), [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def run_scores(metrics: pd.DataFrame, inactive: Mapping[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run's fake AUC per detector (``detector, auc_fake``) and, per attack and detector, its
    refined AUC with the indicators of the module docstring (0/1 per column). The attacks of
    ``inactive`` (``{attack: reason}``) get no AUC, only ``inactive`` = 1 and the reason."""
    m = own_rows(metrics)
    fake = m[(m["metric"] == "auc") & (m["detector"] != "") & baseline(m)
             & (m["perturbation"] == DEFAULT_PERTURBATION) & (m["condition"] == "fake") & m["value"].notna()]
    fake = fake.groupby("detector", sort=False)["value"].mean().rename("auc_fake").reset_index()
    deployed = m[m["metric"].isin(DEPLOYED) & (m["detector"] != "") & baseline(m)
                 & (m["perturbation"] == DEFAULT_PERTURBATION)]
    wide = deployed.groupby(["condition", "refiner", "detector", "metric"], sort=False)["value"].mean().unstack()
    wide = wide.reindex(columns=DEPLOYED)
    fake = fake.join(wide.xs("fake", level="condition").droplevel("refiner") if "fake" in wide.index.get_level_values(0)
                     else pd.DataFrame(columns=DEPLOYED), on="detector")
    t = moves(m, inactive=inactive)
    t = t[t["auc"].notna() & t["fake_auc"].notna()]
    off = t["move"] == INACTIVE  # the fakes' AUC again: not a robustness result
    out = pd.DataFrame({"attack": t["refiner"], "detector": t["detector"], "auc_fake": t["fake_auc"].mask(off),
                        "auc": t["auc"].mask(off),
                        "at_chance_after": [float(at_chance(lo, hi) and not o)
                                            for lo, hi, o in zip(t["auc_ci_low"], t["auc_ci_high"], off)]})
    for move, col in MOVE_COLUMNS.items():
        out[col] = (t["move"] == move).astype(float).to_numpy()
    out["evidence"] = t["evidence"].astype(float).to_numpy()
    out["inactive_reason"] = [(inactive or {}).get(a, "") for a in t["refiner"]]
    refined = wide.xs("refined", level="condition") if "refined" in wide.index.get_level_values(0) else None
    for column in DEPLOYED:
        values = (refined[column].reindex(pd.MultiIndex.from_arrays([t["refiner"], t["detector"]])).to_numpy(float)
                  if refined is not None else np.full(len(t), np.nan))
        out[column] = np.where(off.to_numpy(), np.nan, values)
    # Released detectors by their marked name (a checkpoint is one detector across runs, a file changed is
    # another); every name above stays the run's own until here, where targets and moves were matched.
    base = m[(m["detector"] != "") & baseline(m)].drop_duplicates("detector")
    marked = dict(zip(base["detector"], mark_released(base)["detector"]))
    kind = {d: TRAINED_RELEASED if is_released(t) else TRAINED_BY_RUN for d, t in zip(base["detector"], base["trained_on"])}
    for frame in (fake, out):
        frame["trained"] = frame["detector"].map(kind).fillna(TRAINED_BY_RUN)
        frame["detector"] = frame["detector"].map(lambda d: marked.get(d, d))
    return fake, out.reset_index(drop=True)


def dataset_scores(runs: Sequence[Any], labels: dict[int, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`run_scores` of every run (anything with ``metrics``), averaged over the seeds of each
    group: ``(group, detector, auc_fake)`` and ``(group, attack, detector, auc_fake, auc, <counts>)``."""
    fakes, attacks = [], []
    for i, r in enumerate(runs):
        fake, att = run_scores(r.metrics, getattr(r, "inactive", None))
        fakes.append(fake.assign(group=labels[i]))
        attacks.append(att.assign(group=labels[i]))
    fake = pd.concat(fakes, ignore_index=True) if fakes else pd.DataFrame(
        columns=["group", "detector", "trained", "auc_fake", *DEPLOYED])
    att = pd.concat(attacks, ignore_index=True) if attacks else pd.DataFrame(
        columns=["group", "attack", "detector", "trained", "auc_fake", "auc", *COUNT_COLUMNS, "inactive_reason",
                 *DEPLOYED])
    fake = fake.groupby(["group", "detector", "trained"], sort=False)[["auc_fake", *DEPLOYED]].mean().reset_index()
    by = att.groupby(["group", "attack", "detector", "trained"], sort=False)
    reasons = by["inactive_reason"].agg(lambda s: "; ".join(dict.fromkeys(x for x in s if x)))
    att = by[["auc_fake", "auc", *COUNT_COLUMNS, *DEPLOYED]].mean().join(reasons).reset_index()
    return fake, att


def _mean_ci(values: pd.Series, name: str) -> dict[str, float]:
    lo, hi = bootstrap_mean_ci(values.to_numpy(float))
    return {name: float(values.mean()), f"{name}_ci_low": lo, f"{name}_ci_high": hi}


def leaderboard(runs: Sequence[Any], labels: dict[int, str]) -> pd.DataFrame:
    """The leaderboard, long form (:data:`BOARD_COLUMNS`): one row per detector with ``attack = ""``
    (its fakes over every dataset where it has a fake AUC) and one per detector × attack; ``rank`` is
    the detector's (1 = most robust, see the module docstring)."""
    fake, att = dataset_scores(runs, labels)
    rows: list[dict[str, Any]] = []
    for (detector, trained), g in fake.groupby(["detector", "trained"], sort=False):
        row = {"detector": detector, "trained": trained, "attack": "", "datasets": len(g),
               **_mean_ci(g["auc_fake"], "auc_fake")}
        for column in DEPLOYED:
            row |= _mean_ci(g[column].astype(float), column)
        rows.append(row)
    for (attack, detector, trained), g in att.groupby(["attack", "detector", "trained"], sort=False):
        # datasets where the attack ran (an inactive attack's AUC is NaN: out of every mean and the rank)
        row: dict[str, Any] = {"detector": detector, "trained": trained, "attack": attack,
                               "datasets": int(g["auc"].notna().sum())}
        row |= _mean_ci(g["auc_fake"], "auc_fake") | _mean_ci(g["auc"], "auc")
        row |= _mean_ci(g["auc"] - g["auc_fake"], "delta_auc") | _mean_ci((g["auc"] - 0.5).abs(), "chance_distance")
        for column in DEPLOYED:
            row |= _mean_ci(g[column].astype(float), column)
        row |= {c: float(g[c].sum()) for c in COUNT_COLUMNS}
        row["inactive_reason"] = "; ".join(f"{grp}: {r}" for grp, r in zip(g["group"], g["inactive_reason"]) if r)
        rows.append(row)
    board = pd.DataFrame(rows).reindex(columns=BOARD_COLUMNS)
    if board.empty:
        return board
    base = board[board["attack"] == ""].set_index("detector")["auc_fake"]
    worst = board[board["attack"] != ""].groupby("detector")["auc"].min()
    released = board.drop_duplicates("detector").set_index("detector")["trained"] == TRAINED_RELEASED
    key = pd.DataFrame({"worst": worst.reindex(base.index).fillna(base), "fake": base,
                        "released": released.reindex(base.index).fillna(False).astype(bool)})
    order = key.sort_values(["worst", "fake"], ascending=False, kind="stable")
    rank: dict[str, int] = {}
    for _, part in order.groupby("released", sort=True):  # ranked apart: the run's detectors, then the released
        rank |= {d: i + 1 for i, d in enumerate(part.index)}
    board["rank"] = board["detector"].map(rank)
    attacks = {a: i for i, a in enumerate(dict.fromkeys(board["attack"]))}
    board = board.iloc[np.lexsort((board["attack"].map(attacks), board["rank"],
                                   board["trained"] == TRAINED_RELEASED))].reset_index(drop=True)
    return board


def attack_summary(runs: Sequence[Any], labels: dict[int, str]) -> pd.DataFrame:
    """Per attack (and the unrefined fakes as reference), over datasets: ``datasets``, mean ``evasion``
    (mean over detectors of ``|AUC - 0.5|``), ``mean_auc``, ``over_corrected`` (detectors below 0.5)
    and each quality cost of :data:`stigbench.reporting.run.attack_table.ATTACK_COSTS`, each with its bootstrap
    interval over datasets (``<name>_ci_low/_ci_high``)."""
    frames = [attack_table(r.metrics).assign(group=labels[i]) for i, r in enumerate(runs)]
    frames = [f for f in frames if len(f)]
    values = ["evasion", "mean_auc", "over_corrected", *[c for c, _ in ATTACK_COSTS]]
    if not frames:
        return pd.DataFrame(columns=["attack", "datasets", *values])
    per = pd.concat(frames, ignore_index=True).groupby(["attack", "group"], sort=False)[values].mean().reset_index()
    rows = []
    for attack, g in per.groupby("attack", sort=False):
        row: dict[str, Any] = {"attack": attack, "datasets": len(g)}
        for v in values:
            row |= _mean_ci(g[v].dropna(), v) if g[v].notna().any() else {v: np.nan, f"{v}_ci_low": np.nan,
                                                                          f"{v}_ci_high": np.nan}
        rows.append(row)
    return pd.DataFrame(rows)


# -- for reading ---------------------------------------------------------------------------------
def count_text(value: float, digits: int = 1) -> str:
    """A count: ``3``, or ``2.5`` where seeds split a dataset between classes (a mean over runs)."""
    return "" if not np.isfinite(value) else f"{value:.0f}" if float(value).is_integer() else f"{value:.{digits}f}"


def _ci(rec: pd.Series, name: str, digits: int = 3) -> str:
    return format_ci(rec[name], rec[f"{name}_ci_low"], rec[f"{name}_ci_high"], digits)


def _signed_ci(rec: pd.Series, name: str) -> str:
    """A difference with its interval, signed with true minus signs (``−0.412 [−0.480, −0.350]``)."""
    text = format_delta(rec[name])
    lo, hi = rec[f"{name}_ci_low"], rec[f"{name}_ci_high"]
    return f"{text} [{format_delta(lo)}, {format_delta(hi)}]" if text and np.isfinite(lo) and np.isfinite(hi) else text


def _after(rec: pd.Series) -> str:
    """The mean AUC after an attack, or ``attack inactive (why)`` where it did nothing on every dataset;
    datasets where it did nothing are named beside the mean of the others."""
    if rec["inactive"] > 0 and rec["datasets"] == 0:
        return f"{INACTIVE} ({rec['inactive_reason']})"
    text = _ci(rec, "auc")
    return text + (f" ({INACTIVE} on {count_text(rec['inactive'])} more dataset(s))" if rec["inactive"] > 0 else "")


def leaderboard_table(board: pd.DataFrame) -> pd.DataFrame:
    """One row per detector, ranked: ``rank``, ``detector``, ``datasets``, then the mean AUC
    [bootstrap interval over datasets] on ``fake`` and after each attack (``refined:<attack>``)."""
    if board.empty:
        return pd.DataFrame()
    base = board[board["attack"] == ""].set_index("detector")
    rows = []
    for detector, g in board.groupby("detector", sort=False):
        row = {"rank": int(g["rank"].iloc[0]), "detector": detector, "trained": g["trained"].iloc[0],
               "datasets": int(base.loc[detector, "datasets"]) if detector in base.index else 0,
               "fake": _ci(base.loc[detector], "auc_fake") if detector in base.index else ""}
        for _, rec in g[g["attack"] != ""].iterrows():
            row[f"refined:{rec['attack']}"] = _after(rec)
        rows.append(row)
    return _trained_when_released(pd.DataFrame(rows).fillna(""))


def _trained_when_released(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` without its ``trained`` column when every detector was trained by the runs."""
    return table if (table["trained"] == TRAINED_RELEASED).any() else table.drop(columns="trained")


def attack_detail_table(board: pd.DataFrame) -> pd.DataFrame:
    """One row per attack × detector (detectors in rank order): the mean AUC after the attack, ΔAUC
    and ``|AUC − 0.5|`` with their intervals, and the dataset counts (at chance after the attack,
    toward / away from / past chance; ``unchanged``, ``at chance before``, ``evidence``, ``no
    interval`` and ``attack inactive`` where any occurs)."""
    att = board[board["attack"] != ""]
    if att.empty:
        return pd.DataFrame()
    att = att.iloc[np.argsort(att["attack"].map({a: i for i, a in enumerate(dict.fromkeys(att["attack"]))}),
                              kind="stable")]
    out = pd.DataFrame({"attack": att["attack"], "rank": att["rank"].astype(int), "detector": att["detector"],
                        "trained": att["trained"],
                        "datasets": att["datasets"].astype(int),
                        "AUC after": [_after(r) for _, r in att.iterrows()],
                        "ΔAUC": [_signed_ci(r, "delta_auc") for _, r in att.iterrows()],
                        "|AUC − 0.5|": [_ci(r, "chance_distance") for _, r in att.iterrows()],
                        "at chance": [count_text(v) for v in att["at_chance_after"]]})
    for col in ("toward", "away", "past", "unchanged", "at_chance_before", "evidence", "no_interval", "inactive"):
        if col in ("toward", "away", "past") or (att[col] > 0).any():
            out[INACTIVE if col == "inactive" else col.replace("_", " ")] = [count_text(v) for v in att[col]]
    for col in DEPLOYED:
        if f"{col}_ci_low" in att and att[col].notna().any():
            out[metric_label(col)] = [_ci(r, col) for _, r in att.iterrows()]
        elif col.startswith("tpr_at_fpr") and col in att and len(att):
            out[metric_label(col)] = NOT_MEASURABLE
    return _trained_when_released(out.reset_index(drop=True))


def attack_summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`attack_summary` for reading: evasion and each present quality cost as ``mean [interval]``."""
    if summary.empty:
        return pd.DataFrame()
    out = pd.DataFrame({"attack": summary["attack"], "datasets": summary["datasets"].astype(int),
                        "evasion |AUC − 0.5|": [_ci(r, "evasion") for _, r in summary.iterrows()],
                        "mean AUC": [_ci(r, "mean_auc") for _, r in summary.iterrows()],
                        "over-corrected": [count_text(v, 2) for v in summary["over_corrected"]]})
    for cost, _ in ATTACK_COSTS:
        if cost in summary and summary[cost].notna().any():
            out[metric_label(cost)] = [_ci(r, cost, quality_decimals(r[cost])) if np.isfinite(r[cost]) else ""
                                       for _, r in summary.iterrows()]
    return out


__all__ = ["BOARD_COLUMNS", "BOOT", "COUNT_COLUMNS", "DEPLOYED", "NOT_MEASURABLE", "MOVE_COLUMNS", "attack_detail_table", "attack_summary",
           "attack_summary_table", "bootstrap_mean_ci", "count_text", "dataset_scores", "leaderboard",
           "leaderboard_table", "run_scores"]
