"""Compare run folders: a robustness leaderboard, heat maps and long tables (CSV, Markdown, LaTeX, PNG)
and one HTML page that fits a 1,400-pixel window for 20 datasets.

``compare_runs(run_dirs, out_dir) -> ComparisonResult`` reads each run's ``metrics.csv`` (the source of
truth), ``config.json`` and ``run.json`` (:mod:`stigbench.reporting.collect`: a folder it cannot use
gets a one-line message and the rest is reported) and groups the runs by (dataset, settings)
(:mod:`stigbench.reporting.grouping`: settings are the saved configuration without what cannot change a
result and without the seed, plus the resolved dataset spec and image size). Within a group the runs
differ only in seed: every metric becomes mean ± sample standard deviation (ddof = 1) over the seeds,
with the number of runs n. The seed also draws the split, so that spread includes the variance of the
split, not only of training. Runs of one dataset with different settings are never averaged together:
they become separate groups labelled ``<dataset> [<settings hash>]``, with one warning line naming the
keys that differ. A group of one run shows its value with the run's bootstrap interval instead.

What it writes (all derived from ``aggregate.csv``, the long form of every number, or the runs' rows):

* ``leaderboard.{csv,md,tex,png}``: per detector over all datasets, ranked
  (:mod:`stigbench.reporting.leaderboard`); ``attacks.{csv,png}``: per attack, its evasion against its
  quality cost across datasets; with strength sweeps (``--refiner 'stig:strength=*'``), ``sweeps.{csv,png}``
  and ``equal_cost.csv`` per group, mean over its seeds (:mod:`stigbench.reporting.sweeps`);
* ``heatmap_auc.png``, ``heatmap_delta_auc.png``: detectors × datasets (:mod:`stigbench.reporting.comparison_plots`);
* the long tables (:mod:`stigbench.reporting.comparison_tables`): ``detection.{csv,tex}`` (one row per
  dataset × detector × metric, one column per condition), ``quality.{csv,tex}``, ``moves.csv``;
* ``paper_auc.{md,tex}``: the paper layout, detectors × datasets, each cell ``AUC fake → refined``;
* with cross-dataset rows, the train × test matrix ``cross_auc.*`` (:mod:`stigbench.reporting.cross`);
* ``runs.csv``, ``groups.csv`` (every differing setting in full), ``comparison.md`` and ``comparison.html``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
import pandas as pd

from stigbench.core.io import fresh_dir, write_text
from stigbench.evaluation.evidence import MOVES, move_counts
from stigbench.evaluation.evidence import moves as detector_moves
from stigbench.reporting.collect import RunInfo, collect_runs, find_runs, load_run, run_settings, settings_hash
from stigbench.reporting.comparison_page import comparison_html
from stigbench.reporting.comparison_plots import auc_heatmaps, cross_auc_plot, leaderboard_plot, quality_plot
from stigbench.reporting.comparison_tables import (
    ARROW,
    Tables,
    comparison_move_table,
    detection_long,
    paper_table,
    quality_long,
    refined_conditions,
    standard_rows,
)
from stigbench.reporting.cross import CROSS_NOTE, cross_aggregate, cross_errors, cross_matrix_table, has_cross_rows
from stigbench.reporting.grouping import commit_of, group_runs
from stigbench.reporting.inactive import inactive_lines
from stigbench.reporting.leaderboard import (
    attack_detail_table,
    attack_summary,
    attack_summary_table,
    leaderboard,
    leaderboard_table,
)
from stigbench.reporting.plots import attack_plot
from stigbench.reporting.sweeps import group_sweep_table, sweep_html, sweep_markdown, sweep_table, write_sweeps
from stigbench.reporting.tables import (
    OVER_MARK,
    condition_label,
    flatten_columns,
    latex_table,
    metric_label,
    own_rows,
    to_markdown,
)

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
        counts = move_counts(detector_moves(own_rows(r.metrics), inactive=r.inactive))
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


def inactive_warnings(runs: Sequence[RunInfo], labels: dict[int, str]) -> list[str]:
    """One ``<group> seed <s>: ATTACK INACTIVE: ...`` line per attack that did nothing in a run."""
    return [f"{labels[i]} seed {r.seed}: {line}" for i, r in enumerate(runs) for line in inactive_lines(r.inactive)]


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
    leaderboard: pd.DataFrame = field(default_factory=pd.DataFrame)
    attacks: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: list[str] = field(default_factory=list)


#: The seed of a run draws its split too: what a spread over seeds measures.
SEED_NOTE = ("Each seed also redraws the train/val/test split, so the spread over seeds includes the variance "
             "of the split (which images are trained on and scored), not only that of training.")
CELL_NOTE = ("Cells: mean ± sample standard deviation (ddof = 1) over the seeds of a dataset group (runs: n); "
             "a group of one run shows its value with the 95 % bootstrap interval on the test split in brackets. "
             f"{SEED_NOTE} {OVER_MARK} over-correction: AUC below 0.5 after refinement.")
MOVES_NOTE = ("Per group and refiner, how many detectors (trained on the fakes, clean test images) the refined "
              "fakes moved toward, away from (attack adds evidence) or past chance, or left unchanged, judged on "
              "each run's 95 % AUC intervals, or that the attack did nothing (attack inactive: named under Warnings) "
              "(definitions: stigbench/evaluation/evidence.py); mean ± sample standard "
              f"deviation (ddof = 1) over the group's runs (data: moves.csv). {SEED_NOTE}")
BOARD_NOTE = ("Mean AUC over the datasets (each first averaged over its seeds) of detectors trained on the fakes, "
              "clean test images; brackets: 95 % percentile bootstrap interval over datasets. Ranked by the lowest "
              "mean AUC after any attack (most robust first). A dataset where an attack did nothing (attack "
              "inactive) is left out of its mean and the rank. Data: leaderboard.csv.")
DETAIL_NOTE = ("Per attack: mean AUC after it, ΔAUC (after − fake) and |AUC − 0.5| (0: at chance; pushed below "
               "0.5 counts as far from chance) over datasets, with bootstrap intervals over datasets; counts of "
               "datasets where the refined AUC's 95 % interval contains 0.5 (at chance) and where the attack moved "
               "the detector toward, away from (attack adds evidence) or past chance (stigbench/evaluation/"
               "evidence.py). A dataset with several seeds counts as the fraction of its runs in a class.")
ATTACKS_NOTE = ("Per attack, over datasets: evasion = mean over detectors of |AUC − 0.5| on real vs refined (lower = "
                "a better attack), against its quality cost (LFD/FID to the reals: lower = closer; PSNR to the "
                "original fakes: higher = a smaller change); brackets: 95 % bootstrap interval over datasets. "
                "Data: attacks.csv.")
HEATMAP_NOTE = ("Detectors trained on the fakes, clean test images; mean over seeds; the last column is the mean "
                "over datasets. ΔAUC = AUC after the attack − AUC on the fakes.")
PAPER_NOTE = (f"Cells: AUC on the unrefined fakes {ARROW} after the refiner, mean over seeds (detectors trained on "
              f"the fakes, clean test images); mean: over the datasets with both; {OVER_MARK}: below 0.5 after it.")


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


def _markdown(n_runs: int, groups: pd.DataFrame, warnings: list[str], skipped: list[str], t: Tables,
              files: dict[str, bool]) -> str:
    md = [f"# stigbench comparison: {n_runs} run(s), {len(groups)} dataset group(s)", ""]
    if skipped:
        md += ["## Not compared", ""] + [f"- {w}" for w in skipped] + [""]
    others = [w for w in warnings if w not in skipped]
    if others:
        md += ["## Warnings", ""] + [f"- {w}" for w in others] + [""]
    md += ["## Robustness leaderboard", "", to_markdown(t.board) if len(t.board) else "No detection results.", "",
           BOARD_NOTE, ""]
    if files.get("leaderboard.png"):
        md += ["Chart: `leaderboard.png`.", ""]
    if len(t.detail):
        md += ["### Against each attack", "", to_markdown(t.detail), "", DETAIL_NOTE, ""]
    if len(t.attacks):
        md += ["## Attacks across datasets: evasion against quality cost", "", to_markdown(t.attacks), "",
               ATTACKS_NOTE + (" Chart: `attacks.png`." if files.get("attacks.png") else ""), ""]
    maps = [n for n in ("heatmap_auc.png", "heatmap_delta_auc.png") if files.get(n)]
    if maps:
        md += ["## Heat maps", "", f"{', '.join(f'`{n}`' for n in maps)}: {HEATMAP_NOTE}", ""]
    if files.get("paper_auc.md"):
        md += [f"Paper layout (detectors × datasets, AUC fake {ARROW} refined): `paper_auc.md`, `paper_auc.tex`.", ""]
    for metric, (table, _) in t.detection.items():
        md += [f"## Detection: {metric_label(metric)}", "", to_markdown(table), "", CELL_NOTE, ""]
    if not t.detection:
        md += ["## Detection", "", "No detection metrics.", ""]
    md += ["## Moves against chance (detectors per run)", "",
           to_markdown(t.moves) if len(t.moves) else "No refined AUCs.", "", MOVES_NOTE, ""]
    md += ["## Quality (lower = closer to the reals)", "",
           to_markdown(t.quality) if len(t.quality) else "No quality metrics.", "", CELL_NOTE.split(f" {OVER_MARK}")[0],
           ""]
    md += ["## Groups", "", to_markdown(groups), ""]
    if len(t.cross):  # last, so that the rest reads the same with or without cross-dataset rows
        md += ["## Cross-dataset AUC (train × test)", "", to_markdown(flatten_columns(t.cross)), "", CROSS_NOTE, ""]
        md += [f"- {e}" for e in t.cross_failed] + ([""] if t.cross_failed else [])
        if files.get("cross_auc.png"):
            md += ["Heat map: `cross_auc.png`.", ""]
    return "\n".join(md)


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

    text("\n".join([_markdown(len(runs), groups, warnings, collected.skipped, tables, made), *sweep_markdown(out)]),
         "comparison.md")
    text(comparison_html(out, runs_df, groups, agg, warnings, collected.skipped, tables, made,
                         notes={"cell": CELL_NOTE, "moves": MOVES_NOTE, "board": BOARD_NOTE, "detail": DETAIL_NOTE,
                                "attacks": ATTACKS_NOTE, "heatmap": HEATMAP_NOTE, "seed": SEED_NOTE},
                         sweeps=sweep_html(out)),
         "comparison.html")
    return ComparisonResult(out, runs_df, groups, agg, _detection_frame(detection), tables.quality, warnings, files,
                            moves, cross, board, attacks, collected.skipped)


__all__ = [
    "ComparisonResult", "RunInfo", "aggregate", "compare_runs", "find_runs", "load_run", "move_summary",
    "run_settings", "settings_hash",
]

