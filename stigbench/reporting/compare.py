"""Compare run folders: paper-shaped tables (CSV, Markdown, LaTeX) and one HTML page with plots.

``compare_runs(run_dirs, out_dir) -> ComparisonResult`` reads each run's ``metrics.csv`` (the source of
truth), ``config.json`` and ``run.json`` and groups the runs by (dataset, settings). Settings are the
saved configuration without what cannot change a result (``seed``, ``out``, ``progress``, and where
specs or plug-ins were looked up), plus the resolved dataset spec and image size. Within a group the
runs differ only in seed: every metric becomes mean ± sample standard deviation (ddof = 1) over the
seeds, with the number of runs n. The seed also draws the split, so that spread includes the variance
of the split, not only of training. Runs of one dataset with different settings are never averaged together; they
become separate groups labelled ``<dataset> [<settings hash>]`` and a warning names the keys that
differ. A group of one run shows its value with the run's bootstrap interval instead.

Tables, in the shape of the STIG paper's:

* quality: rows = fakes and each refined set, columns = dataset group × metric (LFD, FID, KID ...);
* detection: rows = detectors, columns = dataset group × metric (AUC, accuracy) × condition (the
  unrefined fakes, then each refined set), so "before" and "after" sit side by side.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stigbench.reporting import html as H
from stigbench.evaluation.evidence import AWAY, MOVES, PAST, TOWARD, move_counts
from stigbench.evaluation.evidence import moves as detector_moves
from stigbench.core.io import fresh_dir, read_json, write_text
from stigbench.measures.metrics import METRICS
from stigbench.reporting.run_report import (
    DEFAULT_PERTURBATION,
    DEFAULT_TRAINED_ON,
    _colours,
    _pyplot,
    condition_label,
    format_ci,
    metric_description,
    metric_label,
    ordered_metrics,
    quality_decimals,
    read_metrics,
    to_markdown,
)

#: Config keys that cannot change a result: never a reason to keep runs apart.
IGNORED_SETTINGS = frozenset({"seed", "out", "progress", "spec_dirs", "plugins"})
#: Settings added after runs were first saved, with the value an older run (without the key) had.
LEGACY_DEFAULTS = {"fit_refiners_on": "train"}
#: Dataset-spec fields that only document the data.
DOC_SPEC_KEYS = frozenset({"name", "description", "source", "licence", "spec_path"})
ABSENT = "<absent>"
OVER_MARK = "†"


# -- loading -------------------------------------------------------------------------------------
def is_run_dir(path: Path) -> bool:
    return (path / "metrics.csv").is_file() and (path / "config.json").is_file()


def find_runs(folder: str | Path) -> list[Path]:
    """``folder`` itself if it is a run folder, else every run folder below it (sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    if is_run_dir(folder):
        return [folder]
    return sorted(p.parent for p in folder.rglob("metrics.csv") if is_run_dir(p.parent))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):  # an empty dict adds no key: {} and "not given" are the same setting
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_settings(config_json: dict[str, Any]) -> dict[str, Any]:
    """The flattened settings that define a run's result (``detector_params.durall.c``, ...)."""
    cfg = {**LEGACY_DEFAULTS, **{k: v for k, v in config_json.get("config", {}).items() if k not in IGNORED_SETTINGS}}
    spec = {k: v for k, v in config_json.get("dataset_spec", {}).items() if k not in DOC_SPEC_KEYS}
    out = _flatten(cfg)
    out.update(_flatten(spec, "dataset_spec."))
    if "image_size" in config_json:
        out["image_size"] = config_json["image_size"]
    return out


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha1(_canon(settings).encode("utf-8")).hexdigest()[:8]


@dataclass
class RunInfo:
    """One run folder, read back."""

    path: Path
    dataset: str
    seed: Any
    settings: dict[str, Any]
    settings_hash: str
    metrics: pd.DataFrame
    record: dict[str, Any]


def load_run(run_dir: str | Path) -> RunInfo:
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise FileNotFoundError(f"{run_dir} is not a run folder (needs metrics.csv and config.json)")
    config = read_json(run_dir / "config.json")
    record = read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
    metrics = read_metrics(run_dir / "metrics.csv")
    dataset = (config.get("dataset_spec", {}).get("name") or record.get("dataset", {}).get("name")
               or (metrics["dataset"].iloc[0] if len(metrics) else run_dir.name))
    seed = config.get("config", {}).get("seed", metrics["seed"].iloc[0] if len(metrics) else None)
    settings = run_settings(config)
    return RunInfo(run_dir, str(dataset), seed, settings, settings_hash(settings), metrics, record)


def expand_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders from run folders and/or parents of run folders, without duplicates."""
    out: dict[Path, None] = {}
    for p in paths:
        found = find_runs(p)
        if not found:
            raise FileNotFoundError(f"no run folder (metrics.csv + config.json) in or under {p}")
        out.update((f.resolve(), None) for f in found)
    return list(out)


# -- grouping ------------------------------------------------------------------------------------
def _short(value: Any, limit: int = 60) -> str:
    text = ABSENT if value is ABSENT else _canon(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _commit(record: dict[str, Any]) -> str:
    git = record.get("provenance", {}).get("git") or {}
    return (git.get("commit") or "unknown")[:10] + ("+dirty" if git.get("dirty") else "")


def group_runs(runs: Sequence[RunInfo]) -> tuple[dict[int, str], pd.DataFrame, list[str]]:
    """``(run index -> group label, one row per group, warnings)``.

    A dataset run with one settings set keeps its name as label; with several, each group is
    ``<dataset> [<hash>]`` and a warning lists the differing keys with each group's value.
    """
    by_dataset: dict[str, dict[str, list[int]]] = {}
    for i, r in enumerate(runs):
        by_dataset.setdefault(r.dataset, {}).setdefault(r.settings_hash, []).append(i)
    labels: dict[int, str] = {}
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for dataset in sorted(by_dataset):
        groups = by_dataset[dataset]
        differing: list[str] = []
        if len(groups) > 1:
            reps = {h: runs[idx[0]].settings for h, idx in groups.items()}
            keys = sorted(set().union(*reps.values()))
            differing = [k for k in keys if len({_canon(s.get(k, ABSENT)) for s in reps.values()}) > 1]
        for h, idx in groups.items():
            label = dataset if len(groups) == 1 else f"{dataset} [{h}]"
            seeds = [runs[i].seed for i in idx]
            for i in idx:
                labels[i] = label
            s = runs[idx[0]].settings
            rows.append({"group": label, "dataset": dataset, "settings_hash": h, "n_runs": len(idx),
                         "seeds": ", ".join(map(str, sorted(seeds, key=str))),
                         "fit_refiners_on": s.get("fit_refiners_on"),
                         "differing_settings": "; ".join(f"{k}={_short(s.get(k, ABSENT))}" for k in differing)})
            commits = sorted({_commit(runs[i].record) for i in idx})
            if len(commits) > 1:
                warnings.append(f"group {label}: its runs come from different code versions ({', '.join(commits)})")
            repeated = sorted({str(x) for x in seeds if seeds.count(x) > 1})
            if repeated:
                warnings.append(f"group {label}: seed(s) {', '.join(repeated)} occur more than once — those runs "
                                "are repeats, not independent seeds, so the spread understates the variation")
        if "fit_refiners_on" in differing:
            warnings.append(f"dataset {dataset}: some runs fitted their refiners on the TEST fakes they refine "
                            "(transductive, --fit-refiners-on test) and others on the training fakes; their groups "
                            "are not comparable as one attack")
        if differing:
            per_key = []
            for k in differing:
                vals = ", ".join(f"[{h}] {_short(runs[idx[0]].settings.get(k, ABSENT), 40)}" for h, idx in groups.items())
                per_key.append(f"{k} ({vals})")
            warnings.append(f"dataset {dataset}: runs with different settings are kept apart as {len(groups)} groups, "
                            f"not averaged; differing keys: {'; '.join(per_key)}")
    for r in runs:
        for comp, msg in (r.record.get("errors") or {}).items():
            warnings.append(f"run {r.path.name} ({r.dataset}, seed {r.seed}): {comp} failed, its rows are missing: {msg}")
    return labels, pd.DataFrame(rows), warnings


# -- aggregation ---------------------------------------------------------------------------------
AGG_KEYS = ["group", "dataset", "detector", "trained_on", "perturbation", "condition", "refiner", "metric"]


def aggregate(runs: Sequence[RunInfo], labels: dict[int, str]) -> pd.DataFrame:
    """Long form, one row per group × (detector, trained_on, perturbation, condition, refiner, metric):
    ``mean``, ``std`` (sample, ddof = 1; NaN for one run), ``n`` and, for a single run, its
    bootstrap ``ci_low``/``ci_high``; ``seeds`` lists the runs' seeds."""
    frames = []
    for i, r in enumerate(runs):
        m = r.metrics.copy()
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


def format_cell(mean: float, std: float, n: int, ci_low: float, ci_high: float, n_group: int,
                quality: bool = False) -> str:
    """``mean ± std`` over seeds (``(n=k)`` added when fewer runs than the group has); a single run:
    ``value [ci_low, ci_high]``. Detection metrics get 3 decimals, quality metrics about 4
    significant digits, the same decimals for the mean, its spread and its interval."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    d = quality_decimals(mean) if quality else 3
    if n > 1:
        text = f"{mean:.{d}f} ± {std:.{d}f}"
    else:
        text = format_ci(mean, ci_low, ci_high, d)
    if n < n_group:
        text += f" (n={n})"
    return text


def move_summary(runs: Sequence[RunInfo], labels: dict[int, str]) -> pd.DataFrame:
    """Long form, one row per group × refiner × class of :data:`stigbench.evaluation.evidence.MOVES` (and
    ``evidence``): the number of detectors per run, as ``mean``, ``std`` (sample, ddof = 1; NaN for
    one run) and ``n`` runs. Runs without intervals count under ``no interval``."""
    frames = []
    for i, r in enumerate(runs):
        counts = move_counts(detector_moves(r.metrics))
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


def move_table(moves: pd.DataFrame) -> pd.DataFrame:
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


def _variant_columns(agg: pd.DataFrame) -> list[str]:
    cols = ["detector"]
    if (agg["trained_on"] != DEFAULT_TRAINED_ON).any():
        cols.append("trained_on")
    if (agg["perturbation"] != DEFAULT_PERTURBATION).any():
        cols.append("perturbation")
    return cols


def _group_header(groups: pd.DataFrame) -> dict[str, str]:
    return {g: f"{g} (n={n})" if n > 1 else g for g, n in zip(groups["group"], groups["n_runs"])}


def _conditions(frame: pd.DataFrame) -> list[str]:
    labels = list(dict.fromkeys(frame["condition_label"]))
    return [c for c in labels if c == "fake"] + [c for c in labels if c != "fake"]


def detection_table(agg: pd.DataFrame, groups: pd.DataFrame,
                    metrics: Sequence[str] = ("auc", "acc")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows = detectors (and training set / perturbation where those vary); columns = (group,
    metric, condition). Returns the formatted table and a same-shape frame of CSS classes
    (``over`` where a refined set's mean AUC is below 0.5)."""
    det = agg[(agg["detector"] != "") & agg["metric"].isin(metrics)]
    if det.empty:
        return pd.DataFrame(), pd.DataFrame()
    keys = _variant_columns(det)
    header = _group_header(groups)
    n_runs = dict(zip(groups["group"], groups["n_runs"]))
    rows = det[keys].drop_duplicates().reset_index(drop=True)
    columns: list[tuple[str, str, str]] = [(k, "", "") for k in keys]
    cells: dict[tuple[str, str, str], list[str]] = {}
    classes: dict[tuple[str, str, str], list[str]] = {}
    lookup = det.set_index([*keys, "group", "metric", "condition_label"])
    for group in groups["group"]:
        gdet = det[det["group"] == group]
        for metric in [m for m in metrics if m in set(gdet["metric"])]:
            for cond in _conditions(gdet[gdet["metric"] == metric]):
                col = (header[group], metric_label(metric), cond)
                columns.append(col)
                cells[col], classes[col] = [], []
                for row in rows.itertuples(index=False):
                    key = (*row, group, metric, cond)
                    if key not in lookup.index:
                        cells[col].append("")
                        classes[col].append("")
                        continue
                    rec = lookup.loc[key]
                    rec = rec.iloc[0] if isinstance(rec, pd.DataFrame) else rec
                    text = format_cell(rec["mean"], rec["std"], int(rec["n"]), rec["ci_low"], rec["ci_high"], n_runs[group])
                    over = metric == "auc" and cond != "fake" and rec["mean"] < 0.5
                    cells[col].append(text + (f" {OVER_MARK}" if over else ""))
                    classes[col].append("over" if over else "")
    table = pd.DataFrame({(k, "", ""): rows[k] for k in keys} | cells)
    table.columns = pd.MultiIndex.from_tuples(columns)
    css = pd.DataFrame({(k, "", ""): [""] * len(rows) for k in keys} | classes)
    css.columns = pd.MultiIndex.from_tuples(columns)
    return table, css


def quality_table(agg: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Rows = the unrefined fakes and each refined set (per perturbation where those vary); columns
    = (group, metric) for every detector-less metric (lower = closer to the reals)."""
    q = agg[agg["detector"] == ""]
    if q.empty:
        return pd.DataFrame()
    keys = ["perturbation", "condition_label"] if (q["perturbation"] != DEFAULT_PERTURBATION).any() else ["condition_label"]
    header = _group_header(groups)
    n_runs = dict(zip(groups["group"], groups["n_runs"]))
    order = _conditions(q)
    rows = q[keys].drop_duplicates()
    rows = rows.iloc[np.argsort([order.index(c) for c in rows["condition_label"]], kind="stable")].reset_index(drop=True)
    names = {"perturbation": "perturbation", "condition_label": "condition"}
    columns: list[tuple[str, str]] = [(names[k], "") for k in keys]
    cells: dict[tuple[str, str], list[str]] = {}
    lookup = q.set_index([*keys, "group", "metric"])
    for group in groups["group"]:
        gq = q[q["group"] == group]
        for metric in ordered_metrics(gq["metric"]):
            col = (header[group], metric_label(metric))
            columns.append(col)
            cells[col] = []
            for row in rows.itertuples(index=False):
                key = (*row, group, metric)
                if key not in lookup.index:
                    cells[col].append("")
                    continue
                rec = lookup.loc[key]
                rec = rec.iloc[0] if isinstance(rec, pd.DataFrame) else rec
                cells[col].append(format_cell(rec["mean"], rec["std"], int(rec["n"]), rec["ci_low"], rec["ci_high"],
                                              n_runs[group], quality=True))
    table = pd.DataFrame({(names[k], ""): rows[k] for k in keys} | cells)
    table.columns = pd.MultiIndex.from_tuples(columns)
    return table


# -- writers -------------------------------------------------------------------------------------
def flatten_columns(df: pd.DataFrame, sep: str = " · ") -> pd.DataFrame:
    """MultiIndex columns -> ``"demo · AUC · fake"`` (for Markdown and CSV)."""
    out = df.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [sep.join(str(p) for p in col if str(p)) for col in out.columns]
    return out


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "†": r"$^\dagger$",
        "Δ": r"$\Delta$", "−": "$-$", "…": r"\ldots{}", "<": r"\textless{}", ">": r"\textgreater{}"}


def tex_escape(text: Any) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def latex_table(df: pd.DataFrame, caption: str = "", label: str = "", note: str = "") -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); upper MultiIndex levels become
    ``\\multicolumn`` headers with ``\\cmidrule``s. No pandas Styler/jinja2 needed."""
    tuples = [c if isinstance(c, tuple) else (c,) for c in df.columns]
    levels = len(tuples[0]) if tuples else 1
    is_key = [all(str(p) == "" for p in t[1:]) and not _numeric_column(df.iloc[:, j]) for j, t in enumerate(tuples)]
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


def _numeric_column(col: pd.Series) -> bool:
    from stigbench.reporting.run_report import looks_numeric

    texts = [str(v) for v in col if str(v)]
    return bool(texts) and all(looks_numeric(t) for t in texts)


# -- plots ---------------------------------------------------------------------------------------
def detection_plot(agg: pd.DataFrame, groups: pd.DataFrame, path: Path, metrics: Sequence[str] = ("auc", "acc")) -> bool:
    """Points per detector and condition, one panel per (metric, group); error bars: the spread
    over seeds (± 1 std) or, for one run, its bootstrap interval. False when nothing to plot."""
    import seaborn as sns

    det = agg[(agg["detector"] != "") & agg["metric"].isin(metrics)]
    if det.empty:
        return False
    plt = _pyplot()
    metrics = [m for m in metrics if m in set(det["metric"])]
    keys = _variant_columns(det)
    glabels = list(groups["group"])
    header = _group_header(groups)
    conds = _conditions(det)
    colours = _colours(conds)
    variants = det[keys].drop_duplicates().apply(lambda r: " / ".join(map(str, r)), axis=1).tolist()
    width = max(3.6, 1.0 + 0.9 * len(variants))
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(len(metrics), len(glabels), figsize=(width * len(glabels), 3.4 * len(metrics)),
                                 squeeze=False, sharey="row")
        det = det.assign(variant=det[keys].astype(str).agg(" / ".join, axis=1))
        for r, metric in enumerate(metrics):
            for c, group in enumerate(glabels):
                ax = axes[r, c]
                sub = det[(det["group"] == group) & (det["metric"] == metric)]
                offs = np.linspace(-0.25, 0.25, len(conds)) if len(conds) > 1 else np.zeros(1)
                for k, cond in enumerate(conds):
                    s = sub[sub["condition_label"] == cond]
                    if s.empty:
                        continue
                    x = np.array([variants.index(v) for v in s["variant"]]) + offs[k]
                    y = s["mean"].to_numpy(float)
                    spread = np.where(s["n"] > 1, s["std"], np.nan)
                    lo = np.where(np.isfinite(spread), spread, y - s["ci_low"].to_numpy(float))
                    hi = np.where(np.isfinite(spread), spread, s["ci_high"].to_numpy(float) - y)
                    yerr = np.nan_to_num(np.vstack([lo, hi]), nan=0.0).clip(min=0)
                    ax.errorbar(x, y, yerr=yerr, fmt="o", ms=6, capsize=4, color=colours[cond],
                                label=cond if (r == 0 and c == 0) else None)
                if metric in ("auc", "acc"):
                    ax.axhline(0.5, color="0.5", ls="--", lw=1)
                ax.set_xticks(range(len(variants)), variants, rotation=20 if len(variants) > 3 else 0, ha="right"
                              if len(variants) > 3 else "center")
                ax.set_xlim(-0.6, len(variants) - 0.4)
                ax.set_ylim(min(0.0, float(sub["mean"].min()) - 0.05) if len(sub) else 0, 1.05)
                ax.set_title(f"{header[group]}: {metric_label(metric)}", fontsize=10)
                if c == 0:
                    ax.set_ylabel(metric_label(metric))
        fig.legend(loc="upper center", ncol=max(1, len(conds)), fontsize=9, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.93 if len(metrics) > 1 else 0.88))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def quality_plot(agg: pd.DataFrame, groups: pd.DataFrame, path: Path) -> bool:
    """Bars per dataset group and condition, one panel per quality metric (its own scale); error
    bars ± 1 std over seeds."""
    import seaborn as sns

    q = agg[agg["detector"] == ""]
    if q.empty:
        return False
    plt = _pyplot()
    names = ordered_metrics(q["metric"])
    conds = _conditions(q)
    colours = _colours(conds)
    glabels = list(groups["group"])
    header = _group_header(groups)
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(names), figsize=(max(4.0, 1.2 + 1.3 * len(glabels)) * len(names), 3.8),
                                 squeeze=False)
        bw = 0.8 / max(1, len(conds))
        for ax, metric in zip(axes[0], names):
            sub = q[(q["metric"] == metric) & (q["perturbation"] == DEFAULT_PERTURBATION)]
            for k, cond in enumerate(conds):
                s = sub[sub["condition_label"] == cond].set_index("group").reindex(glabels)
                x = np.arange(len(glabels)) - 0.4 + bw * (k + 0.5)
                err = np.where(s["n"].fillna(0) > 1, s["std"], 0.0)
                ax.bar(x, s["mean"], width=bw, yerr=np.nan_to_num(err), capsize=3, color=colours[cond],
                       label=cond if metric == names[0] else None)
            ax.set_xticks(range(len(glabels)), [header[g] for g in glabels], rotation=15 if len(glabels) > 2 else 0)
            ax.set_title(f"{metric_label(metric)} (lower = closer to the reals)", fontsize=10)
        fig.legend(loc="upper center", ncol=max(1, len(conds)), fontsize=9, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.88))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# -- the comparison ------------------------------------------------------------------------------
@dataclass
class ComparisonResult:
    """What :func:`compare_runs` wrote, and the frames behind it."""

    out_dir: Path
    runs: pd.DataFrame
    groups: pd.DataFrame
    aggregate: pd.DataFrame
    detection: pd.DataFrame
    quality: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    moves: pd.DataFrame = field(default_factory=pd.DataFrame)


#: The seed of a run draws its split too: what a spread over seeds measures.
SEED_NOTE = ("Each seed also redraws the train/val/test split, so the spread over seeds includes the variance "
             "of the split (which images are trained on and scored), not only that of training.")
CELL_NOTE = ("Cells: mean ± sample standard deviation (ddof = 1) over the seeds of a group (n runs in the header); "
             "a group of one run shows its value with the 95 % bootstrap interval on the test split in brackets. "
             f"{SEED_NOTE} {OVER_MARK} over-correction: AUC below 0.5 after refinement.")


MOVES_NOTE = ("Per group and refiner, how many detectors (trained on the fakes, clean test images) the refined "
              "fakes moved toward, away from (attack adds evidence) or past chance, or left unchanged, judged on "
              "each run's 95 % AUC intervals (definitions: stigbench/evidence.py); mean ± sample standard "
              f"deviation (ddof = 1) over the group's runs (data: moves.csv). {SEED_NOTE}")


def _runs_frame(runs: Sequence[RunInfo], labels: dict[int, str]) -> pd.DataFrame:
    rows = []
    for i, r in enumerate(runs):
        prov = r.record.get("provenance", {})
        rows.append({"group": labels[i], "dataset": r.dataset, "seed": r.seed, "settings_hash": r.settings_hash,
                     "run": str(r.path), "date": prov.get("date", ""), "commit": _commit(r.record),
                     "device": prov.get("device", ""), "seconds": r.record.get("seconds", ""),
                     "errors": "; ".join(r.record.get("errors") or {})})
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values(["group", "seed", "run"], key=lambda c: c.astype(str), kind="stable")
    return frame.reset_index(drop=True)


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None,
                 detection_metrics: Sequence[str] = ("auc", "acc")) -> ComparisonResult:
    """Compare run folders (a path may also be a parent: every run under it) into a new folder.

    ``out_dir`` is never overwritten: when it exists, ``out_dir-2``, ``-3``... is used (see
    :func:`stigbench.core.io.fresh_dir`). Default: ``reports/comparisons/<date>-<time>``. Writes
    ``comparison.md``, ``comparison.html``, ``detection.{csv,tex}``, ``quality.{csv,tex}``,
    ``aggregate.csv`` (long-form means/stds, the numbers behind every table), ``runs.csv``,
    ``groups.csv``, ``detection.png`` and ``quality.png``.
    """
    paths = expand_run_dirs(run_dirs)
    runs = sorted((load_run(p) for p in paths), key=lambda r: (r.dataset, str(r.seed), str(r.path)))
    labels, groups, warnings = group_runs(runs)
    agg = aggregate(runs, labels)
    detection, detection_css = detection_table(agg, groups, detection_metrics)
    quality = quality_table(agg, groups)
    moves = move_summary(runs, labels)
    moves_shown = move_table(moves)
    runs_df = _runs_frame(runs, labels)

    if out_dir is None:
        out_dir = Path("reports") / "comparisons" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out_dir)
    out = fresh_dir(out_dir.parent, out_dir.name)
    files: list[Path] = []

    def csv(df: pd.DataFrame, name: str) -> None:
        df.to_csv(out / name, index=False)
        files.append(out / name)

    def text(content: str, name: str) -> None:
        files.append(write_text(out / name, content))

    csv(agg, "aggregate.csv")
    csv(runs_df, "runs.csv")
    csv(groups, "groups.csv")
    csv(moves, "moves.csv")
    det_caption = "Detection before (fake) and after refinement (refined:<refiner>), per dataset."
    q_caption = "Distance of the fakes and the refined fakes to the real images (lower is closer), per dataset."
    if len(detection):
        csv(flatten_columns(detection), "detection.csv")
        text(latex_table(detection, det_caption, "tab:stigbench-detection", CELL_NOTE), "detection.tex")
    if len(quality):
        csv(flatten_columns(quality), "quality.csv")
        text(latex_table(quality, q_caption, "tab:stigbench-quality", CELL_NOTE.split(f" {OVER_MARK}")[0]), "quality.tex")
    has_det_plot = detection_plot(agg, groups, out / "detection.png", detection_metrics)
    has_q_plot = quality_plot(agg, groups, out / "quality.png")
    files += [p for p, ok in ((out / "detection.png", has_det_plot), (out / "quality.png", has_q_plot)) if ok]

    md = [f"# stigbench comparison: {len(runs)} run(s), {len(groups)} group(s)", ""]
    if warnings:
        md += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    md += ["## Groups", "", to_markdown(groups), ""]
    md += ["## Detection", "", to_markdown(flatten_columns(detection)) if len(detection) else "No detection metrics.", "",
           CELL_NOTE, ""]
    md += ["## Moves against chance (detectors per run)", "",
           to_markdown(moves_shown) if len(moves_shown) else "No refined AUCs.", "", MOVES_NOTE, ""]
    md += ["## Quality (lower = closer to the reals)", "",
           to_markdown(flatten_columns(quality)) if len(quality) else "No quality metrics.", "", CELL_NOTE, ""]
    text("\n".join(md), "comparison.md")

    text(_comparison_html(runs_df, groups, detection, detection_css, quality, warnings, out,
                          has_det_plot, has_q_plot, agg, moves_shown), "comparison.html")
    return ComparisonResult(out, runs_df, groups, agg, detection, quality, warnings, files, moves)


def _comparison_html(runs_df: pd.DataFrame, groups: pd.DataFrame, detection: pd.DataFrame,
                     detection_css: pd.DataFrame, quality: pd.DataFrame, warnings: list[str], out: Path,
                     has_det_plot: bool, has_q_plot: bool, agg: pd.DataFrame, moves: pd.DataFrame) -> str:
    parts = ['<nav><a href="#detection">Detection</a><a href="#moves">Moves</a><a href="#quality">Quality</a>'
             '<a href="#groups">Groups</a>'
             '<a href="#runs">Runs</a></nav>']
    if warnings:
        parts.append(H.box("warning", "Warnings", warnings))
    titles = {metric_label(n): metric_description(n) for n in set(agg["metric"])}
    parts.append('<h2 id="detection">Detection before and after refinement</h2>')
    if len(detection):
        numeric = [c for c in detection.columns if c[1]]
        parts.append(H.table(detection, cell_classes=detection_css, titles=titles, numeric=numeric,
                             nowrap=[c for c in detection.columns if not c[1]]))
        parts.append(f'<p class="note">{H.esc(CELL_NOTE)} "fake": the unrefined fakes; "refined:&lt;name&gt;": the '
                     "same test fakes after that refiner. Detectors are trained on real vs unrefined fakes.</p>")
    else:
        parts.append('<p class="note">No detection metrics.</p>')
    if has_det_plot:
        parts.append(H.figure(out / "detection.png", "detection metrics before and after refinement",
                              "Error bars: ± 1 standard deviation over seeds; for a single run, its 95 % bootstrap "
                              f"interval. Dashed: chance (0.5). {SEED_NOTE}"))
    parts.append('<h2 id="moves">Moves against chance (detectors per run)</h2>')
    if len(moves):
        parts.append(H.table(moves, numeric=[c for c in moves.columns if c not in ("group", "refiner")],
                             nowrap=["group", "refiner"]))
        parts.append(f'<p class="note">{H.esc(MOVES_NOTE)}</p>')
    else:
        parts.append('<p class="note">No refined AUCs.</p>')
    parts.append('<h2 id="quality">Distance to the real images (lower = closer)</h2>')
    if len(quality):
        parts.append(H.table(quality, titles=titles, numeric=[c for c in quality.columns if c[1]],
                             nowrap=[c for c in quality.columns if not c[1]]))
    else:
        parts.append('<p class="note">No quality metrics.</p>')
    if has_q_plot:
        parts.append(H.figure(out / "quality.png", "quality metrics",
                              f"Error bars: ± 1 standard deviation over seeds. {SEED_NOTE}"))
    parts.append('<h2 id="groups">Groups</h2><p class="note">Runs of a dataset with identical settings (all but the '
                 f"seed and paths: ignored keys {', '.join(sorted(IGNORED_SETTINGS))}) form one group.</p>")
    parts.append(H.table(groups, numeric=["n_runs"], nowrap=["group", "settings_hash"]))
    parts.append('<h2 id="runs">Runs</h2>')
    parts.append(H.table(runs_df, numeric=["seed", "seconds"], nowrap=["group", "date"]))
    used = ordered_metrics(agg["metric"])
    parts.append("<h3>Metrics</h3>")
    parts.append(H.table(pd.DataFrame({"metric": [metric_label(n) for n in used],
                                       "better": ["higher" if METRICS.get(n) and METRICS[n].higher_is_better
                                                  else "lower" for n in used],
                                       "meaning": [metric_description(n) for n in used]})))
    n_runs = int(groups["n_runs"].sum()) if len(groups) else 0
    return H.page(f"stigbench comparison: {n_runs} run(s), {len(groups)} group(s)", "\n".join(parts),
                  subtitle=f"{out.name} — files: aggregate.csv (all numbers), detection/quality .csv/.tex, comparison.md")


__all__ = [
    "ComparisonResult", "RunInfo", "aggregate", "compare_runs", "detection_table", "expand_run_dirs", "find_runs",
    "format_cell", "group_runs", "latex_table", "load_run", "quality_table", "run_settings", "settings_hash",
]
