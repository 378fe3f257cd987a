"""``comparison.md``: a comparison's tables and notes as one Markdown page (its HTML page is
:mod:`stigbench.reporting.compare.html_page`)."""

from __future__ import annotations

import pandas as pd

from stigbench.reporting.compare.cross import CROSS_NOTE
from stigbench.reporting.compare.notes import ATTACKS_NOTE, BOARD_NOTE, CELL_NOTE, DETAIL_NOTE, HEATMAP_NOTE, MOVES_NOTE
from stigbench.reporting.compare.tables import ARROW, OVER_MARK, Tables
from stigbench.reporting.render.markdown import flatten_columns, to_markdown
from stigbench.reporting.render.metric_labels import metric_label


def comparison_markdown(n_runs: int, groups: pd.DataFrame, warnings: list[str], skipped: list[str], t: Tables,
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


__all__ = ["comparison_markdown"]
