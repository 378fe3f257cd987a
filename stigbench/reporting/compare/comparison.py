"""Compare run folders: a robustness leaderboard, heat maps and long tables (CSV, Markdown, LaTeX, PNG)
and one HTML page that fits a 1,400-pixel window for 20 datasets.

``compare_runs(run_dirs, out_dir) -> ComparisonResult`` reads each run's ``metrics.csv`` (the source of
truth), ``config.json`` and ``run.json`` (:mod:`stigbench.reporting.compare.collect`: a folder it cannot use
gets a one-line message and the rest is reported) and groups the runs by (dataset, settings)
(:mod:`stigbench.reporting.compare.grouping`: settings are the saved configuration without what cannot change a
result and without the seed, plus the resolved dataset spec and image size). Within a group the runs
differ only in seed: every metric becomes mean ± sample standard deviation (ddof = 1) over the seeds,
with the number of runs n. The seed also draws the split, so that spread includes the variance of the
split, not only of training. Runs of one dataset with different settings are never averaged together:
they become separate groups labelled ``<dataset> [<settings hash>]``, with one warning line naming the
keys that differ. A group of one run shows its value with the run's bootstrap interval instead.

What it writes (all derived from ``aggregate.csv``, the long form of every number, or the runs' rows):

* ``leaderboard.{csv,md,tex,png}``: per detector over all datasets, ranked
  (:mod:`stigbench.reporting.compare.leaderboard`); ``attacks.{csv,png}``: per attack, its evasion against its
  quality cost across datasets; with strength sweeps (``--refiner 'stig:strength=*'``), ``sweeps.{csv,png}``
  and ``equal_cost.csv`` per group, mean over its seeds (:mod:`stigbench.reporting.run.sweeps`); with
  gradient attacks crafted on two models or more, ``transfer.{csv,png}``: the transfer matrix per group
  (:mod:`stigbench.reporting.run.transfer`);
* ``heatmap_auc.png``, ``heatmap_delta_auc.png``: detectors × datasets (:mod:`stigbench.reporting.compare.plots`);
* the long tables (:mod:`stigbench.reporting.compare.tables`): ``detection.{csv,tex}`` (one row per
  dataset × detector × metric, one column per condition), ``quality.{csv,tex}``, ``moves.csv``;
* ``paper_auc.{md,tex}``: the paper layout, detectors × datasets, each cell ``AUC fake → refined``;
* with cross-dataset rows, the train × test matrix ``cross_auc.*`` (:mod:`stigbench.reporting.compare.cross`);
* ``runs.csv``, ``groups.csv`` (every differing setting in full), ``comparison.md`` and ``comparison.html``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from stigbench.core.io import fresh_dir, write_text
from stigbench.reporting.compare.aggregate import aggregate, inactive_warnings, move_summary
from stigbench.reporting.compare.collect import RunInfo, collect_runs
from stigbench.reporting.compare.cross import (
    CROSS_NOTE,
    cross_aggregate,
    cross_errors,
    cross_matrix_table,
    has_cross_rows,
)
from stigbench.reporting.compare.grouping import commit_of, group_runs
from stigbench.reporting.compare.html_page import comparison_html
from stigbench.reporting.compare.leaderboard import (
    attack_detail_table,
    attack_summary,
    attack_summary_table,
    leaderboard,
    leaderboard_table,
)
from stigbench.reporting.compare.markdown_page import comparison_markdown
from stigbench.reporting.compare.notes import (
    ATTACKS_NOTE,
    BOARD_NOTE,
    CELL_NOTE,
    DETAIL_NOTE,
    HEATMAP_NOTE,
    MOVES_NOTE,
    PAPER_NOTE,
    SEED_NOTE,
)
from stigbench.reporting.compare.plots import auc_heatmaps, cross_auc_plot, leaderboard_plot, quality_plot
from stigbench.reporting.compare.tables import (
    ARROW,
    OVER_MARK,
    Tables,
    comparison_move_table,
    detection_long,
    paper_table,
    quality_long,
    refined_conditions,
    standard_rows,
)
from stigbench.reporting.render.latex import latex_table
from stigbench.reporting.render.markdown import flatten_columns, to_markdown
from stigbench.reporting.render.metric_labels import metric_label
from stigbench.reporting.run.plots import attack_plot
from stigbench.reporting.run.sweeps import group_sweep_table, sweep_html, sweep_markdown, sweep_table, write_sweeps
from stigbench.reporting.run.transfer import TRANSFER_NOTE, group_transfer_table, transfer_plot, transfer_table


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
    leaderboard: pd.DataFrame = field(default_factory=pd.DataFrame)
    attacks: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: list[str] = field(default_factory=list)


def _runs_frame(runs: Sequence[RunInfo], labels: dict[int, str]) -> pd.DataFrame:
    rows = []
    for i, r in enumerate(runs):
        prov = r.record.get("provenance", {})
        rows.append({"group": labels[i], "dataset": r.dataset, "seed": r.seed, "settings_hash": r.settings_hash,
                     "run": str(r.path), "recorded_name": r.recorded_name if r.recorded_name != r.dataset else "",
                     "date": prov.get("date", ""), "commit": commit_of(r.record), "device": prov.get("device", ""),
                     "seconds": r.record.get("seconds", ""), "errors": "; ".join(r.record.get("errors") or {})})
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values(["group", "seed", "run"], key=lambda c: c.astype(str), kind="stable")
    return frame.reset_index(drop=True)


def _detection_frame(detection: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """The long detection tables of every metric in one frame, a ``metric`` column after the detector keys."""
    frames = []
    for metric, (table, _) in detection.items():
        t = table.copy()
        t.insert(list(t.columns).index("detector") + 1 + sum(c in t for c in ("trained_on", "perturbation")),
                 "metric", metric_label(metric))
        frames.append(t)
    return pd.concat(frames, ignore_index=True).fillna("") if frames else pd.DataFrame()


def _transfer_html(out: Path, made: dict[str, bool]) -> str:
    """The comparison page's transfer-matrix section (after the sweeps), when the figure was made."""
    from stigbench.reporting.render import html as H

    if not made.get("transfer.png"):
        return ""
    return ('<h2 id="transfer">Transfer matrices of the gradient attacks</h2>'
            + H.figure(out / "transfer.png", "transfer matrices", TRANSFER_NOTE + " Data: transfer.csv."))


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None,
                 detection_metrics: Sequence[str] = ("auc", "acc")) -> ComparisonResult:
    """Compare run folders (a path may also be a parent: every run under it) into a new folder.

    ``out_dir`` is never overwritten: when it exists, ``out_dir-2``, ``-3``... is used (see
    :func:`stigbench.core.io.fresh_dir`). Default: ``reports/comparisons/<date>-<time>``. The files are
    listed in the module docstring. A folder without runs, an unfinished run or one of a format that
    cannot be read is left out with a message (``skipped``, also first among ``warnings``);
    ``FileNotFoundError`` when no run at all can be read.
    """
    collected = collect_runs(run_dirs)
    runs = collected.runs
    labels, groups, warnings = group_runs(runs)
    warnings = [*collected.skipped, *inactive_warnings(runs, labels), *warnings]
    agg = aggregate(runs, labels)
    board = leaderboard(runs, labels)
    attacks = attack_summary(runs, labels)
    sweeps = group_sweep_table([(labels[i], sweep_table(r.metrics)) for i, r in enumerate(runs)])
    moves = move_summary(runs, labels)
    detection = {m: detection_long(agg, groups, m) for m in detection_metrics}
    detection = {m: v for m, v in detection.items() if len(v[0])}
    cross = cross_aggregate(runs, labels) if has_cross_rows(runs) else pd.DataFrame()
    tables = Tables(leaderboard_table(board), attack_detail_table(board), attack_summary_table(attacks), detection,
                    quality_long(agg, groups), comparison_move_table(moves),
                    cross_matrix_table(cross, groups) if len(cross) else pd.DataFrame(),
                    cross_errors(runs) if len(cross) else [])
    runs_df = _runs_frame(runs, labels)

    if out_dir is None:
        out_dir = Path("reports") / "comparisons" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out_dir)
    out = fresh_dir(out_dir.parent, out_dir.name)
    files: list[Path] = []
    made: dict[str, bool] = {}

    def csv(df: pd.DataFrame, name: str) -> None:
        df.to_csv(out / name, index=False)
        files.append(out / name)

    def text(content: str, name: str) -> None:
        files.append(write_text(out / name, content))
        made[name] = True

    def png(ok: bool, name: str) -> None:
        made[name] = ok
        if ok:
            files.append(out / name)

    csv(agg, "aggregate.csv")
    csv(runs_df, "runs.csv")
    csv(groups, "groups.csv")
    csv(moves, "moves.csv")
    if len(board):
        csv(board, "leaderboard.csv")
        text(to_markdown(tables.board) + "\n\n" + BOARD_NOTE + "\n", "leaderboard.md")
        text(latex_table(tables.board, "Robustness leaderboard: mean AUC over datasets before (fake) and after each "
                         "refiner.", "tab:stigbench-leaderboard", BOARD_NOTE), "leaderboard.tex")
        png(leaderboard_plot(board, out / "leaderboard.png"), "leaderboard.png")
    if len(attacks):
        csv(attacks, "attacks.csv")
        png(attack_plot(attacks, out / "attacks.png", "Attacks across datasets: mean evasion against mean quality "
                        "cost (bars: 95 % bootstrap interval over datasets)"), "attacks.png")
    for name in write_sweeps(out, sweeps, "Attacks at equal image cost: strength sweeps, mean over each group's seeds"):
        files.append(out / name)
        made[name] = True
    transfer = group_transfer_table([(labels[i], transfer_table(r.metrics)) for i, r in enumerate(runs)])
    if len(transfer):
        csv(transfer, "transfer.csv")
        png(transfer_plot(transfer, out / "transfer.png", "Transfer matrices of the gradient attacks, per dataset "
                          "group (mean over its seeds): crafted on A (rows), scored by B (columns)"), "transfer.png")
    order = list(board.loc[board["attack"] == "", "detector"]) if len(board) else None
    has_auc, has_delta = auc_heatmaps(agg, groups, out / "heatmap_auc.png", out / "heatmap_delta_auc.png", order)
    png(has_auc, "heatmap_auc.png")
    png(has_delta, "heatmap_delta_auc.png")
    if detection:
        flat = _detection_frame(detection)
        csv(flat, "detection.csv")
        text(latex_table(flat, "Detection before (fake) and after refinement (refined:<refiner>), one row per "
                         "dataset and detector.", "tab:stigbench-detection", CELL_NOTE), "detection.tex")
    if len(tables.quality):
        csv(tables.quality, "quality.csv")
        text(latex_table(tables.quality, "Distance of the fakes and the refined fakes to the real images (lower is "
                         "closer), per dataset.", "tab:stigbench-quality", CELL_NOTE.split(f" {OVER_MARK}")[0]),
             "quality.tex")
    png(quality_plot(agg, groups, out / "quality.png"), "quality.png")
    papers = {c: paper_table(agg, groups, c) for c in refined_conditions(standard_rows(agg))}
    papers = {c: p for c, p in papers.items() if len(p)}
    if papers:
        text("\n".join(f"## AUC: fake {ARROW} {c}\n\n{to_markdown(p)}\n" for c, p in papers.items())
             + f"\n{PAPER_NOTE}\n", "paper_auc.md")
        text("\n".join(latex_table(p, f"AUC of each detector on the fakes {ARROW} after {c}, per dataset.",
                                   f"tab:stigbench-paper-{c.split(':', 1)[-1]}", PAPER_NOTE) for c, p in papers.items()),
             "paper_auc.tex")
    if len(cross):
        csv(cross, "cross_auc.csv")
        cross_md = [to_markdown(flatten_columns(tables.cross)), "", CROSS_NOTE, ""]
        cross_md += [f"- {e}" for e in tables.cross_failed] + ([""] if tables.cross_failed else [])
        text("\n".join(["# AUC, train × test", "", *cross_md]), "cross_auc.md")
        text(latex_table(tables.cross, "AUC of detectors trained on one dataset (rows) on the test split of another "
                         "(columns), before (fake) and after refinement.", "tab:stigbench-cross-auc", CROSS_NOTE),
             "cross_auc.tex")
        png(cross_auc_plot(cross, groups, out / "cross_auc.png"), "cross_auc.png")

    text("\n".join([comparison_markdown(len(runs), groups, warnings, collected.skipped, tables, made),
                    *sweep_markdown(out)]),
         "comparison.md")
    text(comparison_html(out, runs_df, groups, agg, warnings, collected.skipped, tables, made,
                         notes={"cell": CELL_NOTE, "moves": MOVES_NOTE, "board": BOARD_NOTE, "detail": DETAIL_NOTE,
                                "attacks": ATTACKS_NOTE, "heatmap": HEATMAP_NOTE, "seed": SEED_NOTE},
                         sweeps=sweep_html(out), transfer=_transfer_html(out, made)),
         "comparison.html")
    return ComparisonResult(out, runs_df, groups, agg, _detection_frame(detection), tables.quality, warnings, files,
                            moves, cross, board, attacks, collected.skipped)


__all__ = ["ComparisonResult", "compare_runs"]
