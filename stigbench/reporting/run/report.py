"""One run's report, derived from the files the run wrote to its folder and nothing else.

``write_run_report(run_dir)`` (called by the runner once ``metrics.csv``, ``scores.csv``, ``run.json``,
``config.json``, ``spectra.npz`` and ``examples/`` exist; rerun it on any run folder to rebuild the
report) reads ``metrics.csv`` (the single source of truth) and writes:

* ``summary.csv`` / ``summary.md`` — the detection table (one row per detector × training set ×
  perturbation × condition, with ΔAUC/ΔAcc against the unrefined fakes and over-correction marked)
  and the quality table (every detector-less metric: LFD, FID, KID ...);
* ``deployed.csv`` — the detector as deployed: TPR at 1 %/0.1 % FPR at thresholds fixed on the validation
  reals, balanced accuracy, ECE, ASR, and the threat model of gradient attacks
  (:mod:`stigbench.reporting.run.deployed_table`);
* ``moves.csv`` — per refiner and detector, whether refinement moved the AUC toward, away from or past
  chance (:mod:`stigbench.evaluation.evidence`); their counts head ``summary.md`` and ``report.html``;
* ``roc.csv`` + ``roc.png`` (from ``scores.csv``), ``score_hist.png``, ``examples.png``, ``spectra.png``
  and ``radial_profiles.{png,csv}`` (from ``spectra.npz``), ``attacks.{csv,png}``, ``sweeps.{csv,png}`` and
  ``equal_cost.csv`` where a refiner was swept over its strength (:mod:`stigbench.reporting.run.sweeps`), and
  ``selection.png`` where a refiner logged checkpoint-selection curves
  (:mod:`stigbench.reporting.run.selection_plot`); ``transfer.{csv,png}`` where gradient attacks were crafted
  on two models or more (:mod:`stigbench.reporting.run.transfer`);
* ``report.html`` — one self-contained page with all of the above (:mod:`stigbench.reporting.run.page`).

The tables come from the modules beside this one (``detection_table``, ``quality_table``,
``cross_tables``, ...), the figure files from :mod:`stigbench.reporting.run.figures`.
Run folders of stigbench 0.1 also hold ``metrics.json`` (a copy of ``metrics.csv``, no longer written)
and no ``spectra.npz``: their spectra figures are left as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from stigbench.core.io import read_json, write_text
from stigbench.evaluation.evidence import counts_line, move_counts, moves
from stigbench.evaluation.rows import on_own_target
from stigbench.reporting.render.markdown import to_markdown
from stigbench.reporting.run.cross_tables import CROSS_NOTE, cross_section
from stigbench.reporting.run.deployed_table import DEPLOYED_NOTE, deployed_table, display_deployed
from stigbench.core.contracts import is_released
from stigbench.reporting.run.descriptions import (DETECTION_NOTE, RELEASED_NOTE, dataset_line, refiner_fit_text,
                                                  split_text)
from stigbench.reporting.run.detection_table import display_summary, summarize
from stigbench.reporting.run.figures import run_plots
from stigbench.reporting.run.inactive import inactive_lines, mark_summary, run_inactive
from stigbench.reporting.run.metrics_csv import own_rows, read_metrics
from stigbench.reporting.run.page import render_run_html
from stigbench.reporting.run.quality_table import display_quality, quality_table
from stigbench.reporting.run.selection_plot import selection_text
from stigbench.reporting.run.sweeps import sweep_markdown


def _seed(metrics: pd.DataFrame, config: dict[str, Any]) -> Any:
    if "seed" in config.get("config", {}):
        return config["config"]["seed"]
    return metrics["seed"].iloc[0] if len(metrics) else "?"


def _lead(metrics: pd.DataFrame, moves_table: pd.DataFrame, inactive: dict[str, str]) -> str:
    """The first line of the report: the refiners' moves against chance, then one sentence on the gradient
    attacks (dozens of attacked sets would bury the refiners' line; each is in moves.csv and the tables)."""
    m = own_rows(metrics)
    gradient = set(m.loc[m["knowledge"] != "", "refiner"])
    refiners = moves_table[~moves_table["refiner"].isin(gradient)]
    lines = [counts_line(move_counts(refiners), inactive)] if len(refiners) or not gradient else []
    if gradient:
        own = m[on_own_target(m) & (m["metric"] == "asr") & (m["condition"] == "refined") & (m["perturbation"] == "none")]
        kinds = ", ".join(sorted(set(m.loc[m["refiner"].isin(gradient), "knowledge"])))
        asr = f"; ASR on their own targets {own['value'].min():.2f}–{own['value'].max():.2f}" if len(own) else ""
        lines.append(f"Gradient attacks: {len(gradient)} attacked set(s) ({kinds}){asr}; their moves are in "
                     "moves.csv, their reading in the detector-as-deployed table and the transfer matrix.")
    return "\n\n".join(lines)


def write_run_report(run_dir: Path) -> pd.DataFrame:
    """Write the report files of the run folder ``run_dir`` (see the module docstring) from its
    ``metrics.csv``, ``run.json``, ``config.json`` and the other files it holds; return the summary table."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir / "metrics.csv")
    record = read_json(run_dir / "run.json")
    inactive = run_inactive(metrics, record, run_dir)
    summary = mark_summary(summarize(metrics), inactive)
    summary.to_csv(run_dir / "summary.csv", index=False)
    quality = quality_table(metrics)
    deployed = deployed_table(metrics)
    if len(deployed):
        deployed.to_csv(run_dir / "deployed.csv", index=False)
    config = read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    seed = _seed(metrics, config)
    notes = run_plots(run_dir, record, metrics)
    table = moves(own_rows(metrics), inactive=inactive)
    table.to_csv(run_dir / "moves.csv", index=False)
    lead = _lead(metrics, table, inactive)
    alerts = inactive_lines(inactive)

    ds = record["dataset"]
    prov = record.get("provenance", {})
    released = bool(metrics["trained_on"].map(is_released).any())
    lines = [
        f"# stigbench run: {ds['name']} (seed {seed})",
        "",
        *[f"**{line}**\n" for line in alerts],
        lead,
        "",
        f"- images: {dataset_line(record)}",
        f"- split (test = scored): {split_text(ds['split'])}",
        f"- refiners fitted on: {refiner_fit_text(config)}",
        *([f"- checkpoint kept: {kept}"] if (kept := selection_text(record)) else []),
        f"- device: {prov.get('device_name', '?')}, precision {prov.get('precision', '?')}",
        f"- time: {record['seconds']} s",
        "",
        "## Detection (test split; detectors trained on real vs original fakes"
        + (", or as released)" if released else ")"),
        "",
        to_markdown(display_summary(summary)[0]) if len(summary) else "No detection results.",
        "",
        DETECTION_NOTE + (" " + RELEASED_NOTE if released else ""),
        "",
        *(["## The detector as deployed (operating points fixed on validation reals, calibration, attack success)",
            "", to_markdown(display_deployed(deployed)), "", DEPLOYED_NOTE, ""] if len(deployed) else []),
        "## Distance to the real test images (lower = closer) and cost of the attack",
        "",
        to_markdown(display_quality(quality)) if len(quality) else "No quality metrics.",
        "",
        "LFD, FID, KID: distance to the real test images (lower = closer). PSNR, SSIM: each refined image "
        "against its original fake (higher = a smaller visible change).",
        "",
    ]
    cross_auc, cross_info, cross_quality = cross_section(metrics, record, str(ds["name"]))
    if len(cross_auc) or len(cross_info):
        lines += ["## Cross-dataset (detectors trained on this dataset, scored on other test splits)", "",
                  to_markdown(cross_auc) if len(cross_auc) else "No cross-dataset AUC.", "", CROSS_NOTE, ""]
        if len(cross_info):
            lines += [to_markdown(cross_info), ""]
        if len(cross_quality):
            lines += ["Distance to each dataset's real test images (lower = closer):", "", to_markdown(cross_quality), ""]
    if record.get("errors"):
        lines += ["## Errors", ""] + [f"- **{k}**: {v}" for k, v in record["errors"].items()] + [""]
    if notes:
        lines += ["## Report notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += sweep_markdown(run_dir)
    plots = [n for n in ("attacks.png", "sweeps.png", "transfer.png", "roc.png", "score_hist.png", "spectra.png", "radial_profiles.png",
                         "examples.png", "selection.png") if (run_dir / n).is_file()]
    lines += ["Full report with plots: `report.html`. Plots: " + ", ".join(f"`{n}`" for n in plots) + ".", ""]
    write_text(run_dir / "summary.md", "\n".join(lines))
    cross = (cross_auc, cross_info, cross_quality)
    write_text(run_dir / "report.html", render_run_html(run_dir, summary, quality, record, config, seed, notes, lead,
                                                        cross, alerts, deployed))
    return summary


__all__ = ["write_run_report"]
