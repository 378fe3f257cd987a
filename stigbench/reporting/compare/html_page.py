"""The HTML page of a comparison (``comparison.html``): one self-contained file (see
:mod:`stigbench.reporting.render.html`) that fits a 1,400-pixel-wide window without sideways scrolling for 20
datasets: its tables are long (they grow down with the datasets), the wide ones (the paper layout, a
large train × test matrix) stay in their Markdown/LaTeX files, and the figures scale to the page.

Order: what was left out and the warnings, the robustness leaderboard (with the train × test matrix
next to it when runs scored other datasets), the attacks across datasets, the heat maps, then the
long detection, moves and quality tables, the groups and the runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from stigbench.core.settings import NON_RESULT_SETTINGS, REPLICATE_SETTINGS
from stigbench.reporting.compare.collect import shorten_paths
from stigbench.reporting.compare.cross import CROSS_NOTE
from stigbench.reporting.compare.tables import Tables
from stigbench.reporting.render import html as H
from stigbench.reporting.render.metric_labels import metric_description, metric_label, metrics_glossary, ordered_metrics

#: A train × test table wider than this many columns is left to cross_auc.md (the heat map shows it).
MAX_CROSS_COLUMNS = 12


def _numeric(df: pd.DataFrame, keys: set[str]) -> list[str]:
    return [c for c in df.columns if c not in keys]


def _table(parts: list[str], table: pd.DataFrame, keys: list[str], note: str, empty: str) -> None:
    """``table`` (``keys`` left-aligned and unwrapped, the rest numeric) with ``note`` under it, or ``empty``."""
    if len(table):
        parts.append(H.table(table, numeric=_numeric(table, set(keys)), nowrap=keys))
        parts.append(f'<p class="note">{H.esc(note)}</p>')
    else:
        parts.append(f'<p class="note">{H.esc(empty)}</p>')


def _figure(parts: list[str], out: Path, made: Mapping[str, bool], name: str, alt: str, caption: str) -> None:
    if made.get(name):
        parts.append(H.figure(out / name, alt, caption))


def runs_for_page(runs_df: pd.DataFrame) -> pd.DataFrame:
    """``runs.csv`` for reading: run folders without the folders they share, dates to the minute."""
    if runs_df.empty:
        return runs_df
    shown = runs_df.drop(columns=["dataset", "settings_hash"]).copy()
    shown["run"] = shorten_paths(list(runs_df["run"]))
    shown["date"] = [str(d)[:16].replace("T", " ") for d in runs_df["date"]]
    if not (shown["recorded_name"] != "").any():
        shown = shown.drop(columns="recorded_name")
    return shown


def _cross_html(parts: list[str], out: Path, made: Mapping[str, bool], t: Tables) -> None:
    """The train × test matrix (left to cross_auc.md when wider than the page), its failures and heat map."""
    cross_fits = len(t.cross.columns) <= MAX_CROSS_COLUMNS
    parts.append('<h2 id="cross">Cross-dataset AUC: trained on (rows) × tested on (columns)</h2>')
    if t.cross_failed:
        parts.append(H.box("error", "Cross-dataset cells that failed:", t.cross_failed))
    if cross_fits:
        keys = [c for c in t.cross.columns if not c[1]]
        parts.append(H.table(t.cross, numeric=[c for c in t.cross.columns if c[1]], nowrap=keys))
    else:
        parts.append(f'<p class="note">The matrix has {len(t.cross.columns) - 2} columns: see cross_auc.md / '
                     ".csv / .tex and the heat map.</p>")
    parts.append(f'<p class="note">{H.esc(CROSS_NOTE)} Data: cross_auc.csv.</p>')
    _figure(parts, out, made, "cross_auc.png", "AUC, train × test",
            "Mean AUC over seeds (± 1 standard deviation); colour centred on 0.5 (chance), red: detected, blue: "
            "below chance; grey: no result. Beyond 6 test datasets only the mean over detectors is drawn.")


def _detection_html(parts: list[str], t: Tables, titles: Mapping[str, str], cell_note: str) -> None:
    """The long detection tables, one per metric, and the note under them."""
    parts.append('<h2 id="detection">Detection before and after refinement</h2>')
    for metric, (table, css) in t.detection.items():
        parts.append(f"<h3>{H.esc(metric_label(metric))}: one row per dataset and detector</h3>")
        keys = {"dataset", "detector", "trained_on", "perturbation"}
        parts.append(H.table(table, cell_classes=css, titles=titles, numeric=_numeric(table, keys),
                             nowrap=[c for c in table.columns if c in keys]))
    if t.detection:
        parts.append(f'<p class="note">{H.esc(cell_note)} "fake": the unrefined fakes; "refined:&lt;name&gt;": '
                     "the same test fakes after that refiner. Detectors are trained on real vs unrefined fakes. "
                     "Data: detection.csv, aggregate.csv.</p>")
    else:
        parts.append('<p class="note">No detection metrics.</p>')


def _groups_and_runs_html(parts: list[str], groups: pd.DataFrame, runs_df: pd.DataFrame) -> None:
    """The groups (and what makes runs one group) and the runs."""
    parts.append('<h2 id="groups">Groups</h2><p class="note">Runs of a dataset with identical settings (all but the '
                 f"seed and paths: ignored keys {', '.join(sorted(NON_RESULT_SETTINGS | REPLICATE_SETTINGS))}) form "
                 "one group; a settings hash is added only where two groups share a dataset name. recorded_name: "
                 "older --real/--fake runs recorded a generic name and are shown under their folders' name.</p>")
    shown = groups if (groups.get("recorded_name", pd.Series(dtype=str)) != "").any() else groups.drop(
        columns="recorded_name", errors="ignore")
    parts.append(H.table(shown, numeric=["n_runs"], nowrap=["group", "settings_hash"]))
    parts.append('<h2 id="runs">Runs</h2>')
    parts.append(H.table(runs_for_page(runs_df), numeric=["seed", "seconds"], nowrap=["group", "date"]))
    parts.append('<p class="note">Full paths: runs.csv.</p>')


def comparison_html(out: Path, runs_df: pd.DataFrame, groups: pd.DataFrame, agg: pd.DataFrame, warnings: list[str],
                    skipped: list[str], t: Tables, made: Mapping[str, bool], notes: Mapping[str, str],
                    sweeps: str = "", transfer: str = "") -> str:
    """The page; ``made`` says which figures exist in ``out``, ``notes`` holds the texts under the tables
    (keys ``cell``, ``moves``, ``board``, ``detail``, ``attacks``, ``heatmap``, ``seed``); ``sweeps`` is the
    strength-sweep section (:func:`stigbench.reporting.run.sweeps.sweep_html`, ``id="sweeps"``), shown after
    the attacks, and ``transfer`` the transfer matrices' (``id="transfer"``), after it."""
    show_cross = len(t.cross) > 0
    nav = [("leaderboard", "Leaderboard"), *([("cross", "Cross-dataset")] if show_cross else []),
           ("attacks", "Attacks"), *([("sweeps", "Sweeps")] if sweeps else []),
           *([("transfer", "Transfer")] if transfer else []), ("heatmaps", "Heat maps"), ("detection", "Detection"), ("moves", "Moves"),
           ("quality", "Quality"), ("groups", "Groups"), ("runs", "Runs")]
    parts = ["<nav>" + "".join(f'<a href="#{a}">{n}</a>' for a, n in nav) + "</nav>"]
    datasets = groups["dataset"].nunique() if len(groups) else 0
    detectors = sorted(set(agg.loc[agg["detector"] != "", "detector"]))
    attacks = sorted(set(agg.loc[agg["refiner"] != "", "refiner"]))
    parts.append(f'<p class="lead">{int(groups["n_runs"].sum()) if len(groups) else 0} runs of {datasets} datasets '
                 f"({len(groups)} groups); {len(detectors)} detectors; attacks: {H.esc(', '.join(attacks) or 'none')}.</p>")
    if skipped:
        parts.append(H.box("error", f"Not compared ({len(skipped)}):", skipped))
    others = [w for w in warnings if w not in skipped]
    if others:
        parts.append(H.box("warning", "Warnings", others))

    parts.append('<h2 id="leaderboard">Robustness leaderboard</h2>')
    _table(parts, t.board, ["detector"], notes["board"], "No detection results.")
    _figure(parts, out, made, "leaderboard.png", "robustness leaderboard",
            "Mean AUC over datasets on the fakes and after each attack; bars: 95 % bootstrap interval over datasets.")
    if len(t.detail):
        parts.append("<h3>Against each attack</h3>")
        _table(parts, t.detail, ["attack", "detector"], notes["detail"], "")

    if show_cross:
        _cross_html(parts, out, made, t)

    parts.append('<h2 id="attacks">Attacks across datasets: evasion against quality cost</h2>')
    _table(parts, t.attacks, ["attack"], notes["attacks"], "No attack with detection results.")
    _figure(parts, out, made, "attacks.png", "attacks: evasion against quality cost",
            "Each attack's mean evasion against its mean quality cost over datasets.")
    if sweeps:
        parts.append(sweeps)
    if transfer:
        parts.append(transfer)

    parts.append('<h2 id="heatmaps">Heat maps: detectors × datasets</h2>')
    _figure(parts, out, made, "heatmap_auc.png", "AUC heat maps", notes["heatmap"])
    _figure(parts, out, made, "heatmap_delta_auc.png", "ΔAUC heat maps", notes["heatmap"])
    if not (made.get("heatmap_auc.png") or made.get("heatmap_delta_auc.png")):
        parts.append('<p class="note">No AUC of detectors trained on the fakes.</p>')
    if made.get("paper_auc.md"):
        parts.append('<p class="note">Paper layout (detectors × datasets, each cell AUC fake → refined): '
                     "paper_auc.md, paper_auc.tex.</p>")

    titles = {metric_label(n): metric_description(n) for n in set(agg["metric"])}
    _detection_html(parts, t, titles, notes["cell"])

    parts.append('<h2 id="moves">Moves against chance (detectors per run)</h2>')
    _table(parts, t.moves, ["group", "refiner"], notes["moves"], "No refined AUCs.")

    parts.append('<h2 id="quality">Distance to the real images (lower = closer)</h2>')
    if len(t.quality):
        keys = {"dataset", "perturbation", "metric"}
        parts.append(H.table(t.quality, titles=titles, numeric=_numeric(t.quality, keys),
                             nowrap=[c for c in t.quality.columns if c in keys]))
        parts.append(f'<p class="note">{H.esc(notes["cell"].split(" †")[0])} Data: quality.csv.</p>')
    else:
        parts.append('<p class="note">No quality metrics.</p>')
    _figure(parts, out, made, "quality.png", "quality metrics", f"Error bars: ± 1 standard deviation over seeds. "
            f"{notes['seed']}")

    _groups_and_runs_html(parts, groups, runs_df)
    parts.append("<h3>Metrics</h3>")
    parts.append(H.table(metrics_glossary(ordered_metrics(agg["metric"]))))
    n_runs = int(groups["n_runs"].sum()) if len(groups) else 0
    return H.page(f"stigbench comparison: {n_runs} run(s), {len(groups)} group(s)", "\n".join(parts),
                  subtitle=f"{out.name} — files: leaderboard.csv, aggregate.csv (all numbers), detection/quality "
                           ".csv/.tex, paper_auc.md/.tex, comparison.md")


__all__ = ["MAX_CROSS_COLUMNS", "comparison_html", "runs_for_page"]
