"""The tables of the reports, built from what a run wrote: one layer shared by the run report
(:mod:`stigbench.reporting.run_report`) and the comparison across runs (:mod:`stigbench.reporting.compare`).

* per run, from a ``metrics.csv`` frame: the detection table (:func:`summarize`), the quality table
  (:func:`quality_table`), the attack table and the ROC points; :func:`display_summary` /
  :func:`display_quality` format them for reading;
* across runs, shared with :mod:`stigbench.reporting.comparison_tables`: cell formats
  (:func:`format_cell`), condition order, group headers;
* metric names, order and number formats, and the Markdown and LaTeX renderers.

Everything here is pure: frames in, frames or text out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stigbench.evaluation.evidence import DETECTOR_AT_CHANCE, EVIDENCE, move_columns
from stigbench.measures.metrics import METRICS, roc_curve

OVER_CORRECTION = "over-correction"
#: Marks an over-corrected cell in the comparison tables.
OVER_MARK = "†"
#: Values of the grouping columns that mean "the standard setting" (not shown when nothing else occurs).
DEFAULT_TRAINED_ON = "fake"
DEFAULT_PERTURBATION = "none"
STRING_COLUMNS = ("dataset", "test_dataset", "refiner", "detector", "trained_on", "condition", "perturbation", "metric")

LABELS = {
    "auc": "AUC", "ap": "AP", "acc": "Acc", "acc_real": "Acc real", "acc_fake": "Acc fake", "eer": "EER",
    "tpr_at_fpr05": "TPR@5%FPR", "asr": "ASR", "lfd": "LFD", "fid": "FID", "kid": "KID", "fid_spectrum": "FID spectrum",
    "kid_spectrum": "KID spectrum", "fd_random": "FD random", "kid_random": "KID random",
    "fd_random_spectrum": "FD random spectrum", "kid_random_spectrum": "KID random spectrum",
    "delta_auc": "ΔAUC", "delta_acc": "ΔAcc", "psnr": "PSNR vs fake (dB)", "ssim": "SSIM vs fake",
}


def metric_label(name: str) -> str:
    """Display name of a metric (``tpr_at_fpr05`` -> ``TPR@5%FPR``); unknown names pass through."""
    return LABELS.get(name, name)


def metric_description(name: str) -> str:
    """One sentence on what a metric measures (the tooltip of its column)."""
    if name in METRICS:
        return METRICS[name].description
    if name.startswith("delta_"):
        return f"{metric_label(name[6:])} minus its value on the unrefined fakes"
    return "quality metric: distance of this set to the real images (lower = closer)"


def metrics_glossary(names: Iterable[str]) -> pd.DataFrame:
    """``metric``, ``better`` (higher/lower) and ``meaning`` of each metric in ``names``, in order."""
    names = list(names)
    return pd.DataFrame({"metric": [metric_label(n) for n in names],
                         "better": ["higher" if METRICS.get(n) and METRICS[n].higher_is_better else "lower"
                                    for n in names],
                         "meaning": [metric_description(n) for n in names]})


def condition_label(condition: str, refiner: str) -> str:
    """``fake`` or ``refined:<refiner>``: one label per scored set."""
    return condition if not refiner else f"{condition}:{refiner}"


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def format_value(value: Any, digits: int = 3) -> str:
    """A float with ``digits`` decimals, anything else as text; missing -> ``""``."""
    if _is_missing(value):
        return ""
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f"{v:.{digits}f}"
    return str(value)


def quality_decimals(value: float) -> int:
    """Decimals for about four significant digits (LFD near 1, FID in the tens, KID in the thousandths)."""
    if value is None or not np.isfinite(value) or value == 0:
        return 4
    return int(np.clip(3 - math.floor(math.log10(abs(value))), 0, 6))


def format_ci(value: Any, low: Any = None, high: Any = None, digits: int = 3) -> str:
    """``0.934 [0.881, 0.972]``; just the value when the interval is missing."""
    text = format_value(value, digits)
    if text and not _is_missing(low) and not _is_missing(high):
        text += f" [{format_value(low, digits)}, {format_value(high, digits)}]"
    return text


def format_delta(value: Any, digits: int = 3) -> str:
    """A signed difference with a true minus sign (``+0.012``, ``−0.300``); missing -> ``""``."""
    if _is_missing(value):
        return ""
    v = float(value)
    if abs(v) < 0.5 * 10 ** -digits:
        v = 0.0  # no "-0.000"
    return f"{v:+.{digits}f}".replace("-", "−")


def format_cell(mean: float, std: float, n: int, ci_low: float, ci_high: float, n_group: int,
                quality: bool = False) -> str:
    """``mean ± std`` over seeds (``(n=k)`` added when fewer runs than the group has); a single run:
    ``value [ci_low, ci_high]``. Detection metrics get 3 decimals, quality metrics about 4
    significant digits, the same decimals for the mean, its spread and its interval."""
    if _is_missing(mean):
        return ""
    d = quality_decimals(mean) if quality else 3
    if n > 1:
        text = f"{mean:.{d}f} ± {std:.{d}f}"
    else:
        text = format_ci(mean, ci_low, ci_high, d)
    if n < n_group:
        text += f" (n={n})"
    return text


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


def ordered_metrics(names: Iterable[str], family: str | None = None) -> list[str]:
    """Known metrics in :data:`METRICS` order, then the others in order of appearance."""
    names = list(dict.fromkeys(names))
    known = [n for n in METRICS if n in names and (family is None or METRICS[n].family == family)]
    return known + [n for n in names if n not in METRICS]


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


def group_header(groups: pd.DataFrame) -> dict[str, str]:
    """Group label -> column header (``toy (n=2)`` for a group of several runs)."""
    return {g: f"{g} (n={n})" if n > 1 else g for g, n in zip(groups["group"], groups["n_runs"])}


def condition_order(frame: pd.DataFrame) -> list[str]:
    """The ``condition_label`` values of ``frame``: the unrefined fakes first, then in order of appearance."""
    labels = list(dict.fromkeys(frame["condition_label"]))
    return [c for c in labels if c == "fake"] + [c for c in labels if c != "fake"]


def _wide(rows: pd.DataFrame, keys: list[str], metric_names: list[str]) -> pd.DataFrame:
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
    det["condition"] = [condition_label(c, r) for c, r in zip(det["condition"], det["refiner"])]
    names = ordered_metrics(det["metric"])
    table = _wide(det, keys, names)
    group = ["detector", "trained_on", "perturbation"]
    for name in ("auc", "acc"):
        if name not in table:
            table[name] = np.nan
        base = table[table["condition"] == "fake"].set_index(group)[name]
        ref = pd.MultiIndex.from_frame(table[group])
        table[f"delta_{name}"] = table[name].to_numpy() - base.reindex(ref).to_numpy()
    table["move"], table["note"] = _flags(table, group)
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


def _flags(table: pd.DataFrame, group: list[str]) -> tuple[list[str], list[str]]:
    """Per row of the wide table: the move against chance (refined rows with a fake baseline) and the
    notes (``; ``-joined): evidence, over-correction, detector at chance (see :mod:`stigbench.evaluation.evidence`)."""
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
        note = [EVIDENCE] if refined and flags["evidence"].iat[i] else []
        if refined and not chance and frame["auc"].iat[i] < 0.5:
            note.append(OVER_CORRECTION)
        if chance:
            note.append(DETECTOR_AT_CHANCE)
        notes.append("; ".join(note))
        move.append(flags["move"].iat[i] if refined and np.isfinite(frame["fake_auc"].iat[i]) else "")
    return move, notes


def quality_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Every metric without a detector (LFD, FID, KID, ...): one row per (perturbation, condition),
    one column per metric (lower = closer to the reals), bounds as ``<metric>_ci_low/high``."""
    m = own_rows(metrics)
    q = m[m["detector"] == ""].copy()
    if q.empty:
        return pd.DataFrame(columns=["perturbation", "condition"])
    q["condition"] = [condition_label(c, r) for c, r in zip(q["condition"], q["refiner"])]
    names = ordered_metrics(q["metric"])
    return _wide(q, ["perturbation", "condition"], names)


def _value_columns(table: pd.DataFrame, skip: Sequence[str]) -> list[str]:
    return [c for c in table.columns if c not in skip and not c.endswith(("_ci_low", "_ci_high"))]


def display_summary(summary: pd.DataFrame, digits: int = 3) -> tuple[pd.DataFrame, list[str]]:
    """The detection table for reading: values as ``v [lo, hi]``, Δs signed, the training-set and
    perturbation columns only where something other than the default occurs; plus a CSS class per
    row (``base`` for the unrefined fakes, ``over`` for over-correction, ``evidence`` where the attack
    added evidence)."""
    keys = ["detector", "trained_on", "perturbation", "condition"]
    out = summary[[*variant_columns(summary), "condition"]].copy()
    for name in _value_columns(summary, [*keys, "move", "note"]):
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


def display_quality(quality: pd.DataFrame) -> pd.DataFrame:
    """The quality table for reading: values as ``v [lo, hi]`` with about four significant digits,
    the perturbation column only where one occurs."""
    shown = ["perturbation", "condition"] if perturbed(quality) else ["condition"]
    return _format_quality(quality, shown, ["perturbation", "condition"])


def _format_quality(quality: pd.DataFrame, shown: list[str], keys: list[str]) -> pd.DataFrame:
    """The ``shown`` key columns, then each metric as ``v [lo, hi]`` with about four significant digits."""
    out = quality[shown].copy()
    for name in _value_columns(quality, keys):
        lo = quality.get(f"{name}_ci_low", pd.Series(np.nan, index=quality.index))
        hi = quality.get(f"{name}_ci_high", pd.Series(np.nan, index=quality.index))
        out[metric_label(name)] = [format_ci(v, a, b, quality_decimals(v)) for v, a, b in zip(quality[name], lo, hi)]
    return out.reset_index(drop=True)


ATTACK_COSTS = (("lfd", "LFD to the reals (lower = closer)"), ("fid", "FID to the reals"),
                ("fd_random", "FD (random features) to the reals"), ("psnr", "PSNR to the original fake (dB)"))


def attack_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per attack (refiner) on clean test images: how far each detector's AUC stays from 0.5,
    next to the attack's quality cost.

    ``evasion`` = mean over detectors of ``|AUC - 0.5|`` on real vs refined (0 = every detector at
    chance; an AUC driven *below* 0.5 counts against the attack as much as one left above it), with
    the unrefined fakes as the reference row. ``over_corrected`` counts detectors pushed below 0.5.
    """
    m = own_rows(metrics)
    m = m[(m["perturbation"] == DEFAULT_PERTURBATION)]
    det = m[(m["detector"] != "") & (m["trained_on"] == DEFAULT_TRAINED_ON) & (m["metric"] == "auc")]
    rows = []
    for (condition, refiner), g in det.groupby(["condition", "refiner"], sort=False):
        row = {"attack": refiner or "none (unrefined fakes)", "evasion": float((g["value"] - 0.5).abs().mean()),
               "mean_auc": float(g["value"].mean()), "over_corrected": int((g["value"] < 0.5).sum()),
               "detectors": int(len(g))}
        q = m[(m["detector"] == "") & (m["condition"] == condition) & (m["refiner"] == refiner)]
        for name, _ in ATTACK_COSTS:
            v = q.loc[q["metric"] == name, "value"]
            row[name] = float(v.iloc[0]) if len(v) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


# -- cross-dataset scoring (one run) -------------------------------------------------------------
def auc_rows(m: pd.DataFrame) -> pd.DataFrame:
    """The AUC rows of detectors trained on the fakes, scored on clean images, with ``condition_label``."""
    a = m[(m["metric"] == "auc") & (m["detector"] != "") & (m["trained_on"] == DEFAULT_TRAINED_ON)
          & (m["perturbation"] == DEFAULT_PERTURBATION) & m["condition"].isin(["fake", "refined"])].copy()
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
    table = _wide(a, ["detector", "test_dataset", "condition"], ["auc"])
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
    wide = _wide(q, ["test_dataset", "condition"], ordered_metrics(q["metric"]))
    return _format_quality(wide, ["test_dataset", "condition"], ["test_dataset", "condition"]).rename(
        columns={"test_dataset": "test dataset"})


# -- ROC data ------------------------------------------------------------------------------------
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


# -- renderers --------------------------------------------------------------------------------
_NUMBER = re.compile(r"^[+−-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?( .*)?$")


def looks_numeric(text: str) -> bool:
    """A number, optionally followed by an interval or note (``0.93 [0.88, 0.97]``, ``1.2 ± 0.1``)."""
    return bool(_NUMBER.match(text))


def numeric_text(col: pd.Series) -> bool:
    """Whether every non-empty cell of ``col`` reads as a number (such columns are right-aligned)."""
    texts = [str(v) for v in col if str(v)]
    return bool(texts) and all(looks_numeric(t) for t in texts)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured Markdown table (no optional ``tabulate`` dependency)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    # Numbers and formatted numbers ("0.93 [0.88, 0.97]", "+0.01") are right-aligned.
    rule = "| " + " | ".join("---:" if pd.api.types.is_numeric_dtype(df.iloc[:, j]) or numeric_text(df.iloc[:, j])
                             else "---" for j in range(df.shape[1])) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def flatten_columns(df: pd.DataFrame, sep: str = " · ") -> pd.DataFrame:
    """MultiIndex columns -> ``"demo · AUC · fake"`` (for Markdown and CSV)."""
    out = df.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [sep.join(str(p) for p in col if str(p)) for col in out.columns]
    return out


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "†": r"$^\dagger$",
        "Δ": r"$\Delta$", "−": "$-$", "…": r"\ldots{}", "→": r"$\rightarrow$", "<": r"\textless{}", ">": r"\textgreater{}"}


def tex_escape(text: Any) -> str:
    """``text`` with LaTeX's special characters (and ±, †, Δ, −, …, →) escaped."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def latex_table(df: pd.DataFrame, caption: str = "", label: str = "", note: str = "") -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); upper MultiIndex levels become
    ``\\multicolumn`` headers with ``\\cmidrule``s. No pandas Styler/jinja2 needed."""
    tuples = [c if isinstance(c, tuple) else (c,) for c in df.columns]
    levels = len(tuples[0]) if tuples else 1
    is_key = [all(str(p) == "" for p in t[1:]) and not numeric_text(df.iloc[:, j]) for j, t in enumerate(tuples)]
    align = "".join("l" if k else "r" for k in is_key)
    lines = ["% generated by stigbench; needs \\usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
             r"\small", rf"\begin{{tabular}}{{{align}}}", r"\toprule"]
    for level in range(levels):
        cells, rules, j = [], [], 0
        while j < len(tuples):
            if is_key[j]:
                cells.append(tex_escape(tuples[j][0]) if level == levels - 1 else "")
                j += 1
                continue
            k = j
            while (k + 1 < len(tuples) and not is_key[k + 1]
                   and tuples[k + 1][: level + 1] == tuples[j][: level + 1]):
                k += 1
            text = tex_escape(tuples[j][level])
            if k > j:
                cells.append(rf"\multicolumn{{{k - j + 1}}}{{c}}{{{text}}}")
                if level < levels - 1:
                    rules.append(rf"\cmidrule(lr){{{j + 1}-{k + 1}}}")
            else:
                cells.append(text)
            j = k + 1
        lines.append(" & ".join(cells) + r" \\")
        if rules:
            lines.append(" ".join(rules))
    lines.append(r"\midrule")
    for row in df.itertuples(index=False):
        lines.append(" & ".join(tex_escape("" if pd.isna(v) else v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{tex_escape(caption)}{(' ' + tex_escape(note)) if note else ''}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
