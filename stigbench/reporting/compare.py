"""Compare run folders: paper-shaped tables (CSV, Markdown, LaTeX) and one HTML page with plots.

``compare_runs(run_dirs, out_dir) -> ComparisonResult`` reads each run's ``metrics.csv`` (the source of
truth), ``config.json`` and ``run.json`` and groups the runs by (dataset, settings). Settings are the
saved configuration without what cannot change a result and without the seed (both declared in
:mod:`stigbench.core.settings`), plus the resolved dataset spec and image size. Within a group the
runs differ only in seed: every metric becomes mean ± sample standard deviation (ddof = 1) over the
seeds, with the number of runs n. The seed also draws the split, so that spread includes the variance
of the split, not only of training. Runs of one dataset with different settings are never averaged together; they
become separate groups labelled ``<dataset> [<settings hash>]`` and a warning names the keys that
differ. A group of one run shows its value with the run's bootstrap interval instead.

Tables, in the shape of the STIG paper's:

* quality: rows = fakes and each refined set, columns = dataset group × metric (LFD, FID, KID ...);
* detection: rows = detectors, columns = dataset group × metric (AUC, accuracy) × condition (the
  unrefined fakes, then each refined set), so "before" and "after" sit side by side.

They are built in :mod:`stigbench.reporting.tables`, the figures in :mod:`stigbench.reporting.plots`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stigbench.core.io import fresh_dir, read_json, write_text
from stigbench.core.settings import (
    NON_RESULT_SETTINGS,
    REPLICATE_SETTINGS,
    result_settings,
)
from stigbench.evaluation.evidence import MOVES, move_counts
from stigbench.evaluation.evidence import moves as detector_moves
from stigbench.reporting import html as H
from stigbench.reporting.cross import (
    CROSS_NOTE,
    cross_aggregate,
    cross_errors,
    cross_matrix_table,
    has_cross_rows,
)
from stigbench.reporting.plots import cross_auc_plot, detection_plot, quality_plot
from stigbench.reporting.tables import (
    OVER_MARK,
    comparison_detection_table,
    comparison_move_table,
    comparison_quality_table,
    condition_label,
    flatten_columns,
    latex_table,
    metric_description,
    metric_label,
    metrics_glossary,
    ordered_metrics,
    own_rows,
    read_metrics,
    to_markdown,
)

#: Dataset-spec fields that only document the data.
DOC_SPEC_KEYS = frozenset({"name", "description", "source", "licence", "spec_path"})
ABSENT = "<absent>"


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


def unfinished_runs(folders: Sequence[str | Path]) -> list[str]:
    """A warning for each run folder under ``folders`` whose ``run.json`` says it did not complete
    (interrupted, failed or still running): such folders have no ``metrics.csv`` and are left out."""
    out = []
    for folder in folders:
        for record in sorted(Path(folder).rglob("run.json")):
            try:
                status = json.loads(record.read_text(encoding="utf-8")).get("status")
            except (OSError, ValueError):
                continue
            if status not in (None, "complete"):  # None: a 0.1 run folder, which has no status
                out.append(f"{record.parent} is not compared: its run is {status}")
    return out


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
    cfg = result_settings(config_json.get("config", {}), replicates=False)  # seeds are aggregated over
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
        counts = move_counts(detector_moves(own_rows(r.metrics)))
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
    cross: pd.DataFrame = field(default_factory=pd.DataFrame)


#: The seed of a run draws its split too: what a spread over seeds measures.
SEED_NOTE = ("Each seed also redraws the train/val/test split, so the spread over seeds includes the variance "
             "of the split (which images are trained on and scored), not only that of training.")
CELL_NOTE = ("Cells: mean ± sample standard deviation (ddof = 1) over the seeds of a group (n runs in the header); "
             "a group of one run shows its value with the 95 % bootstrap interval on the test split in brackets. "
             f"{SEED_NOTE} {OVER_MARK} over-correction: AUC below 0.5 after refinement.")


MOVES_NOTE = ("Per group and refiner, how many detectors (trained on the fakes, clean test images) the refined "
              "fakes moved toward, away from (attack adds evidence) or past chance, or left unchanged, judged on "
              "each run's 95 % AUC intervals (definitions: stigbench/evaluation/evidence.py); mean ± sample standard "
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
    ``groups.csv``, ``detection.png`` and ``quality.png``; when some run scored other datasets' test
    splits, also the train × test AUC matrix (:mod:`stigbench.reporting.cross`): ``cross_auc.csv`` (long
    form), ``cross_auc.{md,tex}`` and the heat map ``cross_auc.png``.
    """
    paths = expand_run_dirs(run_dirs)
    runs = sorted((load_run(p) for p in paths), key=lambda r: (r.dataset, str(r.seed), str(r.path)))
    labels, groups, warnings = group_runs(runs)
    warnings += unfinished_runs(run_dirs)
    agg = aggregate(runs, labels)
    detection, detection_css = comparison_detection_table(agg, groups, detection_metrics)
    quality = comparison_quality_table(agg, groups)
    moves = move_summary(runs, labels)
    moves_shown = comparison_move_table(moves)
    runs_df = _runs_frame(runs, labels)
    cross = cross_aggregate(runs, labels) if has_cross_rows(runs) else pd.DataFrame()
    cross_table = cross_matrix_table(cross, groups) if len(cross) else pd.DataFrame()
    cross_failed = cross_errors(runs) if len(cross) else []

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
    has_cross_plot = False
    cross_md: list[str] = []
    if len(cross):
        csv(cross, "cross_auc.csv")
        cross_md = [to_markdown(flatten_columns(cross_table)), "", CROSS_NOTE, ""]
        cross_md += [f"- {e}" for e in cross_failed] + ([""] if cross_failed else [])
        text("\n".join(["# AUC, train × test", "", *cross_md]), "cross_auc.md")
        text(latex_table(cross_table, "AUC of detectors trained on one dataset (rows) on the test split of another "
                         "(columns), before (fake) and after refinement.", "tab:stigbench-cross-auc", CROSS_NOTE),
             "cross_auc.tex")
        has_cross_plot = cross_auc_plot(cross, groups, out / "cross_auc.png")
        if has_cross_plot:
            files.append(out / "cross_auc.png")

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
    if cross_md:
        md += ["## Cross-dataset AUC (train × test)", "", *cross_md]
        if has_cross_plot:
            md += ["Heat map: `cross_auc.png`.", ""]
    text("\n".join(md), "comparison.md")

    text(_comparison_html(runs_df, groups, detection, detection_css, quality, warnings, out,
                          has_det_plot, has_q_plot, agg, moves_shown, (cross_table, cross_failed, has_cross_plot)),
         "comparison.html")
    return ComparisonResult(out, runs_df, groups, agg, detection, quality, warnings, files, moves, cross)


def _comparison_html(runs_df: pd.DataFrame, groups: pd.DataFrame, detection: pd.DataFrame,
                     detection_css: pd.DataFrame, quality: pd.DataFrame, warnings: list[str], out: Path,
                     has_det_plot: bool, has_q_plot: bool, agg: pd.DataFrame, moves: pd.DataFrame,
                     cross: tuple[pd.DataFrame, list[str], bool] = (pd.DataFrame(), [], False)) -> str:
    cross_table, cross_failed, has_cross_plot = cross
    parts = ['<nav><a href="#detection">Detection</a><a href="#moves">Moves</a><a href="#quality">Quality</a>'
             + ('<a href="#cross">Cross-dataset</a>' if len(cross_table) else "") + '<a href="#groups">Groups</a>'
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
    if len(cross_table):
        parts.append('<h2 id="cross">Cross-dataset AUC: trained on (rows) × tested on (columns)</h2>')
        if cross_failed:
            parts.append(H.box("error", "Cross-dataset cells that failed:", cross_failed))
        keys = [c for c in cross_table.columns if not c[1]]
        parts.append(H.table(cross_table, numeric=[c for c in cross_table.columns if c[1]], nowrap=keys))
        parts.append(f'<p class="note">{H.esc(CROSS_NOTE)} Data: cross_auc.csv.</p>')
        if has_cross_plot:
            parts.append(H.figure(out / "cross_auc.png", "AUC, train × test",
                                  "Mean AUC over seeds (± 1 standard deviation); colour centred on 0.5 (chance), red: "
                                  "detected, blue: below chance; grey: no result."))
    parts.append('<h2 id="groups">Groups</h2><p class="note">Runs of a dataset with identical settings (all but the '
                 f"seed and paths: ignored keys {', '.join(sorted(NON_RESULT_SETTINGS | REPLICATE_SETTINGS))}) form one group.</p>")
    parts.append(H.table(groups, numeric=["n_runs"], nowrap=["group", "settings_hash"]))
    parts.append('<h2 id="runs">Runs</h2>')
    parts.append(H.table(runs_df, numeric=["seed", "seconds"], nowrap=["group", "date"]))
    used = ordered_metrics(agg["metric"])
    parts.append("<h3>Metrics</h3>")
    parts.append(H.table(metrics_glossary(used)))
    n_runs = int(groups["n_runs"].sum()) if len(groups) else 0
    return H.page(f"stigbench comparison: {n_runs} run(s), {len(groups)} group(s)", "\n".join(parts),
                  subtitle=f"{out.name} — files: aggregate.csv (all numbers), detection/quality .csv/.tex, comparison.md")


__all__ = [
    "ComparisonResult", "RunInfo", "aggregate", "compare_runs", "expand_run_dirs", "find_runs", "group_runs",
    "load_run", "move_summary", "run_settings", "settings_hash",
]
