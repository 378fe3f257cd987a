"""Per-run outputs derived from ``metrics.csv`` (the single source of truth) and the run's other files.

``write_run_report`` (called by the runner once ``metrics.csv``, ``scores.csv``, ``run.json``, the
spectrum plots and ``examples/`` exist) writes:

* ``summary.csv`` / ``summary.md`` / ``metrics.json`` — the detection table (one row per detector ×
  training set × perturbation × condition, with ΔAUC/ΔAcc against the unrefined fakes and
  over-correction marked) and the quality table (every detector-less metric: LFD, FID, KID ...);
* ``moves.csv`` — per refiner and detector, whether refinement moved the AUC toward, away from or past
  chance (:mod:`stigbench.evaluation.evidence`); their counts head ``summary.md`` and ``report.html``;
* ``roc.csv`` + ``roc.png`` (from ``scores.csv``), ``score_hist.png``, ``examples.png``, and
  ``selection.png`` where a refiner logged checkpoint-selection curves (:mod:`stigbench.reporting.selection_plot`);
* ``report.html`` — one self-contained page with all of the above (see :mod:`stigbench.reporting.html`).

Table logic is pure (frames in, frames out); plotting and files wrap it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stigbench.reporting import html as H
from stigbench.evaluation.evidence import DETECTOR_AT_CHANCE, EVIDENCE, counts_line, move_columns, move_counts, moves
from stigbench.core.io import read_json, write_json, write_text
from stigbench.measures.metrics import METRICS, roc_curve
from stigbench.reporting.selection_plot import selection_caption, selection_curves, selection_plot
from stigbench.measures.spectrum import log_magnitude, radial_profile

log = logging.getLogger("stigbench")

OVER_CORRECTION = "over-correction"
#: Values of the grouping columns that mean "the standard setting" (not shown when nothing else occurs).
DEFAULT_TRAINED_ON = "fake"
DEFAULT_PERTURBATION = "none"
STRING_COLUMNS = ("dataset", "refiner", "detector", "trained_on", "condition", "perturbation", "metric")

LABELS = {
    "auc": "AUC", "ap": "AP", "acc": "Acc", "acc_real": "Acc real", "acc_fake": "Acc fake", "eer": "EER",
    "tpr_at_fpr05": "TPR@5%FPR", "lfd": "LFD", "fid": "FID", "kid": "KID", "fid_spectrum": "FID spectrum",
    "kid_spectrum": "KID spectrum", "fd_random": "FD random", "kid_random": "KID random",
    "fd_random_spectrum": "FD random spectrum", "kid_random_spectrum": "KID random spectrum",
    "delta_auc": "ΔAUC", "delta_acc": "ΔAcc", "psnr": "PSNR vs fake (dB)", "ssim": "SSIM vs fake",
}


def metric_label(name: str) -> str:
    """Display name of a metric (``tpr_at_fpr05`` -> ``TPR@5%FPR``); unknown names pass through."""
    return LABELS.get(name, name)


def metric_description(name: str) -> str:
    if name in METRICS:
        return METRICS[name].description
    if name.startswith("delta_"):
        return f"{metric_label(name[6:])} minus its value on the unrefined fakes"
    return "quality metric: distance of this set to the real images (lower = closer)"


def condition_label(condition: str, refiner: str) -> str:
    return condition if not refiner else f"{condition}:{refiner}"


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def format_value(value: Any, digits: int = 3) -> str:
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
    if _is_missing(value):
        return ""
    v = float(value)
    if abs(v) < 0.5 * 10 ** -digits:
        v = 0.0  # no "-0.000"
    return f"{v:+.{digits}f}".replace("-", "−")


def clean_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """A copy with the text columns as plain strings (missing -> ``""``; a missing perturbation or
    training set -> the default), as it comes back from ``pd.read_csv`` or straight from the runner."""
    m = metrics.copy()
    for col in STRING_COLUMNS:
        if col not in m:
            m[col] = ""
        m[col] = m[col].astype(object).where(m[col].notna(), "").astype(str)
    m.loc[m["perturbation"] == "", "perturbation"] = DEFAULT_PERTURBATION
    has_det = m["detector"] != ""
    m.loc[has_det & (m["trained_on"] == ""), "trained_on"] = DEFAULT_TRAINED_ON
    for col in ("value", "ci_low", "ci_high"):
        if col not in m:
            m[col] = np.nan
        m[col] = pd.to_numeric(m[col], errors="coerce").astype(float)
    return m


def ordered_metrics(names: Iterable[str], family: str | None = None) -> list[str]:
    """Known metrics in :data:`METRICS` order, then the others in order of appearance."""
    names = list(dict.fromkeys(names))
    known = [n for n in METRICS if n in names and (family is None or METRICS[n].family == family)]
    return known + [n for n in names if n not in METRICS]


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
    m = clean_metrics(metrics)
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
    m = clean_metrics(metrics)
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
    shown = ["detector"]
    if (summary["trained_on"] != DEFAULT_TRAINED_ON).any():
        shown.append("trained_on")
    if (summary["perturbation"] != DEFAULT_PERTURBATION).any():
        shown.append("perturbation")
    shown.append("condition")
    out = summary[shown].copy()
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
    shown = ["perturbation", "condition"] if (quality["perturbation"] != DEFAULT_PERTURBATION).any() else ["condition"]
    out = quality[shown].copy()
    for name in _value_columns(quality, ["perturbation", "condition"]):
        lo = quality.get(f"{name}_ci_low", pd.Series(np.nan, index=quality.index))
        hi = quality.get(f"{name}_ci_high", pd.Series(np.nan, index=quality.index))
        out[metric_label(name)] = [format_ci(v, a, b, quality_decimals(v)) for v, a, b in zip(quality[name], lo, hi)]
    return out.reset_index(drop=True)


_NUMBER = re.compile(r"^[+−-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?( .*)?$")


def looks_numeric(text: str) -> bool:
    """A number, optionally followed by an interval or note (``0.93 [0.88, 0.97]``, ``1.2 ± 0.1``)."""
    return bool(_NUMBER.match(text))


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured Markdown table (no optional ``tabulate`` dependency)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    def numeric(col: pd.Series) -> bool:
        if pd.api.types.is_numeric_dtype(col):
            return True
        # Formatted numbers ("0.93 [0.88, 0.97]", "+0.01") are right-aligned too.
        texts = [str(v) for v in col if str(v)]
        return bool(texts) and all(looks_numeric(t) for t in texts)

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "| " + " | ".join("---:" if numeric(df.iloc[:, j]) else "---" for j in range(df.shape[1])) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


# -- ROC data ------------------------------------------------------------------------------------
def _panel_keys(frame: pd.DataFrame) -> list[str]:
    """The columns that split a detector's results into separate panels (present ones only)."""
    return ["detector"] + [c for c in ("trained_on", "perturbation") if c in frame]


def _panel_title(key: tuple[Any, ...], cols: list[str]) -> str:
    parts = dict(zip(cols, key))
    title = str(parts["detector"])
    if parts.get("trained_on", DEFAULT_TRAINED_ON) not in ("", DEFAULT_TRAINED_ON):
        title += f" (trained on {parts['trained_on']})"
    if parts.get("perturbation", DEFAULT_PERTURBATION) not in ("", DEFAULT_PERTURBATION):
        title += f", {parts['perturbation']}"
    return title


def _clean_scores(scores: pd.DataFrame) -> pd.DataFrame:
    s = scores.copy()
    for col in ("detector", "condition", "refiner", "trained_on", "perturbation"):
        if col in s:
            s[col] = s[col].astype(object).where(s[col].notna(), "").astype(str)
    return s


def roc_data(scores: pd.DataFrame) -> pd.DataFrame:
    """ROC points of every (detector[, trained_on, perturbation], condition, refiner) in ``scores.csv``
    form, from :func:`stigbench.measures.metrics.roc_curve`: columns ``detector, [trained_on, perturbation,]
    condition, refiner, fpr, tpr, threshold`` (the first point has threshold ``inf``)."""
    s = _clean_scores(scores)
    keys = _panel_keys(s) + ["condition", "refiner"]
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


# -- plots ---------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, max_cols: int = 3, w: float = 4.2, h: float = 3.8) -> tuple[Any, np.ndarray]:
    plt = _pyplot()
    cols = max(1, min(n, max_cols))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()


def _colours(labels: Sequence[str]) -> dict[str, Any]:
    """Stable colours: real grey, fake red, refined sets from a qualitative palette."""
    import seaborn as sns

    refined = [lab for lab in labels if lab not in ("real", "fake")]
    palette = sns.color_palette("tab10", max(3, len(refined) + 2))[2:] if refined else []
    out: dict[str, Any] = {"real": "0.45", "fake": "#d62728"}
    out.update(dict(zip(refined, palette)))
    return out


def roc_plot(roc: pd.DataFrame, path: Path) -> None:
    """One panel per detector; a curve for the unrefined fakes and each refined set."""
    import seaborn as sns

    plt = _pyplot()
    panel_cols = _panel_keys(roc)
    panels = list(roc.groupby(panel_cols, sort=False))
    labels = list(dict.fromkeys(condition_label(c, r) for c, r in zip(roc["condition"], roc["refiner"])))
    colours = _colours(labels)
    with sns.axes_style("whitegrid"):
        fig, axes = _grid(len(panels))
        for ax, (key, g) in zip(axes, panels):
            key = key if isinstance(key, tuple) else (key,)
            for (cond, ref), c in g.groupby(["condition", "refiner"], sort=False):
                lab = condition_label(cond, ref)
                f, t = c["fpr"].to_numpy(), c["tpr"].to_numpy()
                area = float(np.sum(np.diff(f) * (t[1:] + t[:-1]) / 2))  # trapezoids = AUC
                ax.plot(c["fpr"], c["tpr"], color=colours[lab], lw=1.8, label=f"{lab} (AUC {area:.3f})")
            ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")
            ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate (reals called fake)",
                   ylabel="true-positive rate", title=_panel_title(key, panel_cols))
            ax.set_aspect("equal")
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def score_hist_plot(scores: pd.DataFrame, path: Path, thresholds: dict[str, float] | None = None) -> None:
    """Per detector: distribution of P(fake) on the test reals, the fakes and every refined set,
    with the validation-chosen threshold as a dashed line."""
    import seaborn as sns

    plt = _pyplot()
    s = _clean_scores(scores)
    panel_cols = _panel_keys(s)
    panels = list(s.groupby(panel_cols, sort=False))
    thresholds = thresholds or {}
    with sns.axes_style("whitegrid"):
        fig, axes = _grid(len(panels), h=3.4)
        for ax, (key, g) in zip(axes, panels):
            key = key if isinstance(key, tuple) else (key,)
            parts = []
            first = True
            for (cond, ref), c in g.groupby(["condition", "refiner"], sort=False):
                if first:  # the same test reals are scored in every condition; show them once
                    parts.append(pd.DataFrame({"score": c.loc[c["label"] == 0, "score"], "set": "real"}))
                    first = False
                parts.append(pd.DataFrame({"score": c.loc[c["label"] == 1, "score"], "set": condition_label(cond, ref)}))
            data = pd.concat(parts, ignore_index=True)
            order = list(dict.fromkeys(data["set"]))
            sns.histplot(data=data, x="score", hue="set", hue_order=order, bins=np.linspace(0, 1, 26),
                         stat="density", common_norm=False, element="step", fill=True, alpha=0.25,
                         palette=_colours(order), ax=ax)
            if ax.get_legend() is not None:  # reals pile up near 0 and fakes near 1: the middle is free
                sns.move_legend(ax, "upper center", fontsize=8, title=None)
            thr = thresholds.get(str(key[0]))
            if thr is not None and np.isfinite(thr):
                ax.axvline(thr, color="k", ls="--", lw=1)
                ax.text(thr, ax.get_ylim()[1] * 0.5, " threshold", fontsize=8, va="center")
            ax.set(xlim=(0, 1), xlabel="score = P(fake)", ylabel="density", title=_panel_title(key, panel_cols))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def example_sets(examples_dir: Path) -> dict[str, list[Path]]:
    """``{"real": [...], "fake": [...], "refined:<name>": [...]}`` from a run's ``examples/``."""
    sets: dict[str, list[Path]] = {}
    for name in ["real", "fake"] + sorted(p.name for p in examples_dir.glob("refined-*") if p.is_dir()):
        files = sorted((examples_dir / name).glob("*.png"))
        if files:
            label = f"refined:{name[len('refined-'):]}" if name.startswith("refined-") else name
            sets[label] = files
    return sets


def examples_plot(examples_dir: Path, path: Path, max_images: int = 6) -> bool:
    """Rows of example images, each followed by its log-magnitude spectrum (channel mean, one colour
    scale for all); refined rows show the same fakes as the fake row. False when there are none."""
    plt = _pyplot()
    sets = {k: v[:max_images] for k, v in example_sets(examples_dir).items()}
    if not sets:
        return False
    images = {k: [_load_rgb(p) for p in v] for k, v in sets.items()}
    spectra = {k: [log_magnitude(torch.from_numpy(im.transpose(2, 0, 1))).mean(0).numpy() for im in v]
               for k, v in images.items()}
    allspec = np.concatenate([s.ravel() for v in spectra.values() for s in v])
    lo, hi = np.percentile(allspec, [1, 99.5])
    cols = max(len(v) for v in images.values())
    fig, axes = plt.subplots(2 * len(images), cols, figsize=(1.55 * cols + 0.6, 1.55 * 2 * len(images)), squeeze=False)
    for r, (label, ims) in enumerate(images.items()):
        for j in range(cols):
            a_img, a_spec = axes[2 * r, j], axes[2 * r + 1, j]
            for ax in (a_img, a_spec):
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
            if j < len(ims):
                a_img.imshow(np.clip(ims[j], 0, 1), interpolation="nearest")
                a_spec.imshow(spectra[label][j], cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
        axes[2 * r, 0].set_ylabel(label, fontsize=8)
        axes[2 * r + 1, 0].set_ylabel("log|F|", fontsize=8)
    fig.suptitle("Examples (test split) and their log-magnitude spectra", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def spectra_plots(spectra: dict[str, torch.Tensor], run_dir: Path) -> None:
    """Mean log-magnitude spectra (channel mean), their differences to the reals, and radial
    profiles; the profile data also go to ``radial_profiles.csv``."""
    plt = _pyplot()

    means = {k: v.mean(dim=0).numpy() for k, v in spectra.items()}
    keys = list(means)
    fig, axes = plt.subplots(2, len(keys), figsize=(3.2 * len(keys), 6.4), squeeze=False)
    lo = min(float(m.min()) for m in means.values())
    hi = max(float(m.max()) for m in means.values())
    diffs = {k: means[k] - means["real"] for k in keys if k != "real"}
    lim = max((float(np.abs(d).max()) for d in diffs.values()), default=1.0) or 1.0
    for j, k in enumerate(keys):
        ax = axes[0, j]
        im = ax.imshow(means[k], cmap="viridis", vmin=lo, vmax=hi)
        ax.set_title(f"{k}\nmean log(1+|F|)", fontsize=9)
        ax.axis("off")
        ax = axes[1, j]
        if k == "real":
            ax.axis("off")
            fig.colorbar(im, ax=axes[0, :].tolist(), shrink=0.8)
            continue
        im_d = ax.imshow(diffs[k], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{k} − real", fontsize=9)
        ax.axis("off")
    if diffs:
        fig.colorbar(im_d, ax=axes[1, :].tolist(), shrink=0.8)
    fig.savefig(run_dir / "spectra.png", dpi=110)
    plt.close(fig)

    profiles = {k: radial_profile(v.mean(dim=0)).numpy() for k, v in spectra.items()}
    frame = pd.DataFrame(profiles)
    frame.insert(0, "frequency", np.arange(len(frame)) / (2 * (len(frame) - 1)))  # cycles/pixel
    frame.to_csv(run_dir / "radial_profiles.csv", index=False)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for k in keys:
        ax1.plot(frame["frequency"], frame[k], label=k)
        if k != "real":
            ax2.plot(frame["frequency"], frame[k] - frame["real"], label=f"{k} − real")
    ax1.set(xlabel="frequency (cycles/pixel)", ylabel="mean log(1+|F|)", title="Radial profile")
    ax2.axhline(0, color="grey", lw=0.8)
    ax2.set(xlabel="frequency (cycles/pixel)", ylabel="difference", title="Difference to the reals")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "radial_profiles.png", dpi=110)
    plt.close(fig)


def run_plots(run_dir: Path, record: dict[str, Any]) -> list[str]:
    """``roc.csv``/``roc.png``, ``score_hist.png``, ``examples.png`` and, for refiners that select a
    checkpoint, ``selection.png`` from the run folder's files.

    A plot that cannot be made (no scores because every detector failed, no examples) is skipped
    with a note, never failing the run: the returned notes go into the report.
    """
    notes: list[str] = []
    scores_path = run_dir / "scores.csv"
    if scores_path.is_file():
        scores = pd.read_csv(scores_path, keep_default_na=False)
        try:
            roc = roc_data(scores)
            roc.to_csv(run_dir / "roc.csv", index=False)
            roc_plot(roc, run_dir / "roc.png")
            thresholds = {k: v.get("threshold") for k, v in record.get("detectors", {}).items()}
            score_hist_plot(scores, run_dir / "score_hist.png", thresholds)
        except Exception as exc:  # a broken plot must not cost the run its results
            notes.append(f"ROC/score plots failed: {type(exc).__name__}: {exc}")
            log.warning("report: ROC/score plots failed", exc_info=True)
    else:
        notes.append("no scores.csv (no detector finished): no ROC curves or score histograms")
    try:
        attacks = attack_table(read_metrics(run_dir / "metrics.csv"))
        if len(attacks) > 1:
            attacks.to_csv(run_dir / "attacks.csv", index=False)
            attack_plot(attacks, run_dir / "attacks.png")
    except Exception as exc:
        notes.append(f"attack chart failed: {type(exc).__name__}: {exc}")
        log.warning("report: attack chart failed", exc_info=True)
    try:
        if not examples_plot(run_dir / "examples", run_dir / "examples.png"):
            notes.append("no example images in examples/")
    except Exception as exc:
        notes.append(f"example grid failed: {type(exc).__name__}: {exc}")
        log.warning("report: example grid failed", exc_info=True)
    try:  # only refiners that select a checkpoint (STIG) log the curves; others have no figure
        selection_plot(selection_curves(run_dir), run_dir / "selection.png")
    except Exception as exc:
        notes.append(f"selection curves failed: {type(exc).__name__}: {exc}")
        log.warning("report: selection curves failed", exc_info=True)
    return notes


ATTACK_COSTS = (("lfd", "LFD to the reals (lower = closer)"), ("fid", "FID to the reals"),
                ("fd_random", "FD (random features) to the reals"), ("psnr", "PSNR to the original fake (dB)"))


def attack_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per attack (refiner) on clean test images: how far each detector's AUC stays from 0.5,
    next to the attack's quality cost.

    ``evasion`` = mean over detectors of ``|AUC - 0.5|`` on real vs refined (0 = every detector at
    chance; an AUC driven *below* 0.5 counts against the attack as much as one left above it), with
    the unrefined fakes as the reference row. ``over_corrected`` counts detectors pushed below 0.5.
    """
    m = clean_metrics(metrics)
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


def attack_plot(table: pd.DataFrame, path: Path) -> bool:
    """Evasion (distance of the detectors' AUC from 0.5) against each available quality cost."""
    costs = [(c, label) for c, label in ATTACK_COSTS if c in table and table[c].notna().any()]
    if table.empty or not costs:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(costs), figsize=(4.6 * len(costs), 4.0), squeeze=False)
    for ax, (cost, label) in zip(axes[0], costs):
        t = table[table[cost].notna()]
        ax.scatter(t[cost], t["evasion"], s=40, color="tab:blue", zorder=3)
        for _, r in t.iterrows():
            ax.annotate(r["attack"], (r[cost], r["evasion"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set(xlabel=label, ylabel="mean |AUC − 0.5| (lower = better attack)", ylim=(-0.02, 0.52))
        ax.grid(alpha=0.3)
    fig.suptitle("Attacks: evasion against quality cost (best: bottom; left for LFD/FID, right for PSNR)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- the report ----------------------------------------------------------------------------------
def _seed(metrics: pd.DataFrame, config: dict[str, Any]) -> Any:
    if "seed" in config.get("config", {}):
        return config["config"]["seed"]
    return metrics["seed"].iloc[0] if len(metrics) else "?"


def _timing(record: dict[str, Any]) -> pd.DataFrame:
    rows = [{"step": "whole run", "seconds": record.get("seconds")}]
    for name, info in record.get("refiners", {}).items():
        rows.append({"step": f"refiner {name}: fit", "seconds": info.get("fit_seconds")})
        rows.append({"step": f"refiner {name}: refine test fakes", "seconds": info.get("refine_seconds")})
    for name, info in record.get("detectors", {}).items():
        rows.append({"step": f"detector {name}: fit + score", "seconds": info.get("seconds")})
    return pd.DataFrame(rows)


def provenance_pairs(record: dict[str, Any], config: dict[str, Any], seed: Any) -> dict[str, Any]:
    prov = record.get("provenance", {})
    git = prov.get("git") or {}
    commit = git.get("commit") or "unknown (not a git checkout)"
    if git.get("dirty"):
        commit += " (uncommitted changes)"
    versions = prov.get("versions") or {}
    return {
        "date": prov.get("date", ""),
        "seed": seed,
        "git commit": commit,
        "device": f"{prov.get('device_name', '')} [{prov.get('device', '')}]",
        "precision": prov.get("precision", ""),
        "CUDA": prov.get("cuda") or "—",
        "python": prov.get("python", ""),
        "platform": prov.get("platform", ""),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        "command": " ".join(map(str, prov.get("command", []))),
        "non-default settings": ", ".join(f"{k}={config.get('config', {}).get(k)!r}"
                                          for k in config.get("non_defaults", [])) or "none",
        "run time": f"{record.get('seconds', '?')} s",
    }


def _dataset_line(record: dict[str, Any]) -> str:
    ds = record.get("dataset", {})
    return (f"{ds.get('real', '?')} real, {ds.get('fake', '?')} fake at {ds.get('size', '?')}x{ds.get('size', '?')}"
            f" ({ds.get('skipped', 0)} skipped, see skipped.csv)" + (" — synthetic dataset" if ds.get("synthetic") else ""))


def refiner_fit_text(config: dict[str, Any]) -> str:
    """What the run's refiners were fitted on, from its ``config.json`` (older runs: the training split)."""
    if config.get("config", {}).get("fit_refiners_on", "train") == "test":
        return ("TEST fakes + training reals (transductive, as in the STIG paper: the refined fakes scored here "
                "are the ones the refiners were fitted on)")
    return "training fakes + training reals (the refined test fakes were never seen by a refiner)"


def _split_text(split: Any) -> str:
    """``{'real': {'train': 288, ...}, ...}`` -> ``real: train 288, val 96, test 96; fake: ...``."""
    if not isinstance(split, dict):
        return str(split)
    return "; ".join(f"{label}: " + ", ".join(f"{k} {v}" for k, v in parts.items()) if isinstance(parts, dict)
                     else f"{label}: {parts}" for label, parts in split.items())


DETECTION_NOTE = ("ΔAUC and ΔAcc are against the unrefined fakes of the same detector. An attack succeeds by "
                  "bringing AUC to 0.5; `over-correction` marks AUC below 0.5 (a sign-flipped detector would "
                  "catch those images). `move` compares the AUC intervals of refined and unrefined fakes: "
                  "`toward` / `past` chance, `away` from it (`attack adds evidence`, also given to a detector "
                  "pushed past 0.5 further than it stood before), `unchanged` (the intervals overlap); a detector "
                  "whose fake-AUC interval contains 0.5 is `at chance` and gets no other flag. "
                  "Brackets: 95 % bootstrap confidence interval on the test split.")


def render_run_html(run_dir: Path, summary: pd.DataFrame, quality: pd.DataFrame, record: dict[str, Any],
                    config: dict[str, Any], seed: Any, notes: Sequence[str] = (), lead: str = "") -> str:
    """The body of ``report.html`` around the tables and the plots found in ``run_dir``; ``lead`` is
    the line shown first (the moves against chance)."""
    ds = record.get("dataset", {})
    parts: list[str] = []
    nav = [("detection", "Detection"), ("quality", "Quality"), ("roc", "ROC"), ("scores", "Scores"),
           ("spectra", "Spectra"), ("examples", "Examples"), ("provenance", "Provenance")]
    if (run_dir / "selection.png").is_file():
        nav.insert(-1, ("selection", "Selection"))
    parts.append("<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in nav) + "</nav>")
    if lead:
        parts.append(f'<p class="lead">{H.esc(lead)}</p>')
    errors = record.get("errors") or {}
    if errors:
        parts.append(H.box("error", f"{len(errors)} component(s) failed (details in run.log); their rows are missing:",
                           [f"{k}: {v}" for k, v in errors.items()]))
    if notes:
        parts.append(H.box("warning", "Report notes", notes))
    parts.append(H.key_values({
        "dataset": ds.get("name", ""), "images": _dataset_line(record),
        "split (test = scored)": _split_text(ds.get("split", {})), "seed": seed,
        "refiners": ", ".join(record.get("refiners", {})) or "none",
        "refiners fitted on": refiner_fit_text(config),
        "detectors": ", ".join(record.get("detectors", {})) or "none",
    }))

    parts.append('<h2 id="detection">Detection before and after refinement</h2>')
    if len(summary):
        shown, classes = display_summary(summary)
        titles = {metric_label(n): metric_description(n) for n in [*summary.columns]}
        numeric = [c for c in shown.columns if c not in ("detector", "trained_on", "perturbation", "condition", "note")]
        parts.append(H.table(shown, row_classes=classes, titles=titles, numeric=numeric,
                             nowrap=["detector", "trained_on", "perturbation", "condition"]))
        parts.append(f'<p class="note">{H.esc(DETECTION_NOTE.replace("`", ""))} Detectors are trained on real vs '
                     "original (unrefined) fakes unless a training set is named; shaded rows are the unrefined "
                     "baseline, red rows over-correction, yellow rows an attack that added evidence.</p>")
    else:
        parts.append('<p class="note">No detection results (every detector failed).</p>')

    parts.append('<h2 id="quality">Distance to the real images (lower = closer) and cost of the attack</h2>')
    if len(quality):
        shown = display_quality(quality)
        titles = {metric_label(n): metric_description(n) for n in quality.columns}
        keys = ["perturbation", "condition"]
        parts.append(H.table(shown, titles=titles, numeric=[c for c in shown.columns if c not in keys], nowrap=keys))
        parts.append('<p class="note">LFD: log frequency distance of the mean log-spectra to those of the real test '
                     "images; FID/KID (where present): feature-distribution distances to the reals (lower = closer). "
                     "PSNR/SSIM: each refined image against its original fake (higher = a smaller visible change).</p>")
    else:
        parts.append('<p class="note">No quality metrics.</p>')

    def fig(name: str, anchor: str, title: str, caption: str) -> None:
        parts.append(f'<h2 id="{anchor}">{H.esc(title)}</h2>')
        if (run_dir / name).is_file():
            parts.append(H.figure(run_dir / name, title, caption))
        else:
            parts.append(f'<p class="note">{H.esc(name)} not available.</p>')

    if (run_dir / "attacks.png").is_file():
        fig("attacks.png", "attacks", "Attacks against their quality cost",
            "Mean distance of the detectors' AUC from 0.5 (chance) on real vs refined, against each attack's "
            "distance to the reals and its PSNR to the original fakes (data: attacks.csv).")
    fig("roc.png", "roc", "ROC curves", "Test reals against the unrefined fakes and each refined set (data: roc.csv).")
    fig("score_hist.png", "scores", "Score distributions",
        "P(fake) on the test reals, fakes and refined fakes; dashed: the threshold chosen on the validation split.")
    parts.append('<h2 id="spectra">Spectra</h2>')
    for name, caption in (("spectra.png", "Mean log-magnitude spectra and their differences to the reals."),
                          ("radial_profiles.png", "Azimuthally averaged spectra (data: radial_profiles.csv).")):
        if (run_dir / name).is_file():
            parts.append(H.figure(run_dir / name, name, caption))
    fig("examples.png", "examples", "Examples",
        "Test images and their log-magnitude spectra; the refined rows show the same fakes after refinement.")
    if (run_dir / "selection.png").is_file():
        fig("selection.png", "selection", "Refiner checkpoint selection",
            selection_caption(config.get("config", {}).get("fit_refiners_on", "train")))

    parts.append('<h2 id="provenance">Provenance</h2>')
    parts.append(H.key_values(provenance_pairs(record, config, seed)))
    parts.append("<h3>Timing</h3>")
    timing = _timing(record)
    timing["seconds"] = [format_value(float(v), 2) if v is not None else "" for v in timing["seconds"]]
    parts.append(H.table(timing, numeric=["seconds"]))
    used = ordered_metrics([*[c for c in summary.columns if c in METRICS],
                            *[c for c in quality.columns if not c.endswith(("_ci_low", "_ci_high"))
                              and c not in ("perturbation", "condition")]])
    parts.append("<h3>Metrics</h3>")
    parts.append(H.table(pd.DataFrame({"metric": [metric_label(n) for n in used],
                                       "better": ["higher" if METRICS.get(n) and METRICS[n].higher_is_better
                                                  else "lower" for n in used],
                                       "meaning": [metric_description(n) for n in used]})))
    return H.page(f"stigbench run: {ds.get('name', '?')} (seed {seed})", "\n".join(parts),
                  subtitle=f"{run_dir.name} — {record.get('provenance', {}).get('date', '')}")


def write_run_report(run_dir: Path, metrics: pd.DataFrame, record: dict[str, Any]) -> pd.DataFrame:
    """Write ``summary.csv``, ``summary.md``, ``metrics.json``, ``roc.csv``, ``roc.png``,
    ``score_hist.png``, ``examples.png`` and ``report.html``; return the summary table."""
    run_dir = Path(run_dir)
    summary = summarize(metrics)
    summary.to_csv(run_dir / "summary.csv", index=False)
    quality = quality_table(metrics)
    write_json(run_dir / "metrics.json", {"metrics": metrics.replace({np.nan: None}).to_dict(orient="records")})
    config = read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    seed = _seed(metrics, config)
    notes = run_plots(run_dir, record)
    table = moves(clean_metrics(metrics))
    table.to_csv(run_dir / "moves.csv", index=False)
    lead = counts_line(move_counts(table))

    ds = record["dataset"]
    prov = record.get("provenance", {})
    lines = [
        f"# stigbench run: {ds['name']} (seed {seed})",
        "",
        lead,
        "",
        f"- images: {_dataset_line(record)}",
        f"- split (test = scored): {_split_text(ds['split'])}",
        f"- refiners fitted on: {refiner_fit_text(config)}",
        f"- device: {prov.get('device_name', '?')}, precision {prov.get('precision', '?')}",
        f"- time: {record['seconds']} s",
        "",
        "## Detection (test split; detectors trained on real vs original fakes)",
        "",
        to_markdown(display_summary(summary)[0]) if len(summary) else "No detection results.",
        "",
        DETECTION_NOTE,
        "",
        "## Distance to the real test images (lower = closer) and cost of the attack",
        "",
        to_markdown(display_quality(quality)) if len(quality) else "No quality metrics.",
        "",
        "LFD, FID, KID: distance to the real test images (lower = closer). PSNR, SSIM: each refined image "
        "against its original fake (higher = a smaller visible change).",
        "",
    ]
    if record.get("errors"):
        lines += ["## Errors", ""] + [f"- **{k}**: {v}" for k, v in record["errors"].items()] + [""]
    if notes:
        lines += ["## Report notes", ""] + [f"- {n}" for n in notes] + [""]
    plots = [n for n in ("attacks.png", "roc.png", "score_hist.png", "spectra.png", "radial_profiles.png", "examples.png",
                         "selection.png") if (run_dir / n).is_file()]
    lines += ["Full report with plots: `report.html`. Plots: " + ", ".join(f"`{n}`" for n in plots) + ".", ""]
    write_text(run_dir / "summary.md", "\n".join(lines))
    write_text(run_dir / "report.html", render_run_html(run_dir, summary, quality, record, config, seed, notes, lead))
    return summary


def read_metrics(path: Path) -> pd.DataFrame:
    """A ``metrics.csv`` with empty text cells as ``""`` and numbers as floats."""
    return clean_metrics(pd.read_csv(path, keep_default_na=False))  # numbers are coerced there


def rebuild_run_report(run_dir: Path) -> pd.DataFrame:
    """Re-derive every report file of an existing run folder from its ``metrics.csv`` and ``run.json``
    (e.g. after rows were appended, or for a run made by an older version)."""
    run_dir = Path(run_dir)
    return write_run_report(run_dir, read_metrics(run_dir / "metrics.csv"), read_json(run_dir / "run.json"))


__all__ = [
    "OVER_CORRECTION", "clean_metrics", "condition_label", "display_quality", "display_summary", "examples_plot",
    "format_ci", "metric_label", "quality_table", "read_metrics", "rebuild_run_report", "roc_data", "roc_plot",
    "run_plots", "score_hist_plot", "spectra_plots", "summarize", "to_markdown", "write_run_report",
]
