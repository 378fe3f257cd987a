"""The figure files of a run's report, drawn from what its folder holds (:func:`run_plots`), and the
``spectra.npz`` of mean log-spectra that the runner writes and the spectra figures read."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stigbench.reporting.run.attack_table import attack_table
from stigbench.reporting.run.transfer import transfer_plot, transfer_table
from stigbench.reporting.run.metrics_csv import own_rows
from stigbench.reporting.run.plots import attack_plot, examples_plot, roc_plot, score_hist_plot, spectra_plots
from stigbench.reporting.run.roc import roc_data
from stigbench.reporting.run.selection_plot import selection_curves, selection_plot
from stigbench.reporting.run.sweeps import sweep_table, write_sweeps

log = logging.getLogger("stigbench")


#: The clean mean log-spectra of a run, one ``(C, H, W)`` array per set (``real``, ``fake``,
#: ``refined:<name>``): written by the runner, read for ``spectra.png`` and ``radial_profiles.*``.
SPECTRA_FILE = "spectra.npz"


def save_spectra(run_dir: Path, spectra: Mapping[str, Any]) -> Path:
    """Write the mean log-spectra (tensors or arrays, by set) to ``run_dir/spectra.npz`` in their own dtype."""
    path = Path(run_dir) / SPECTRA_FILE
    np.savez(path, **{k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for k, v in spectra.items()})
    return path


def load_spectra(run_dir: Path) -> dict[str, np.ndarray] | None:
    """The run's mean log-spectra by set, in the order written; ``None`` without ``spectra.npz`` (0.1 runs)."""
    path = Path(run_dir) / SPECTRA_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def own_scores(scores: pd.DataFrame, metrics: pd.DataFrame, record: dict[str, Any]) -> pd.DataFrame:
    """The rows of a ``scores.csv`` frame on the run's own test split (all of them in runs without
    cross-dataset scoring, whose ``scores.csv`` may have no ``test_dataset`` column)."""
    if "test_dataset" not in scores:
        return scores
    own = set(own_rows(metrics)["dataset"]) or {str(record.get("dataset", {}).get("name", ""))}
    test = scores["test_dataset"].astype(str)
    return scores[test.isin(own) | (test == "")]


def run_plots(run_dir: Path, record: dict[str, Any], metrics: pd.DataFrame) -> list[str]:
    """``roc.csv``/``roc.png``, ``score_hist.png``, ``attacks.{csv,png}``, ``examples.png``, the spectra
    figures and, for refiners that select a checkpoint, ``selection.png`` from the run folder's files
    (``record``: its ``run.json``; ``metrics``: its ``metrics.csv``).

    A plot that cannot be made (no scores because every detector failed, no examples) is skipped
    with a note, never failing the run: the returned notes go into the report.
    """
    notes: list[str] = []
    scores_path = run_dir / "scores.csv"
    if scores_path.is_file():
        scores = own_scores(pd.read_csv(scores_path, keep_default_na=False), metrics, record)
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
        attacks = attack_table(metrics)
        if len(attacks) > 1:
            attacks.to_csv(run_dir / "attacks.csv", index=False)
            attack_plot(attacks, run_dir / "attacks.png")
    except Exception as exc:
        notes.append(f"attack chart failed: {type(exc).__name__}: {exc}")
        log.warning("report: attack chart failed", exc_info=True)
    try:
        spectra = load_spectra(run_dir)
        if spectra is not None:
            spectra_plots(spectra, run_dir)
    except Exception as exc:
        notes.append(f"spectra plots failed: {type(exc).__name__}: {exc}")
        log.warning("report: spectra plots failed", exc_info=True)
    try:
        if not examples_plot(run_dir / "examples", run_dir / "examples.png"):
            notes.append("no example images in examples/")
    except Exception as exc:
        notes.append(f"example grid failed: {type(exc).__name__}: {exc}")
        log.warning("report: example grid failed", exc_info=True)
    try:  # only runs with a strength sweep (--refiner 'stig:strength=*') have these
        write_sweeps(run_dir, sweep_table(metrics))
    except Exception as exc:
        notes.append(f"strength sweep curves failed: {type(exc).__name__}: {exc}")
        log.warning("report: strength sweep curves failed", exc_info=True)
    try:  # only runs with gradient attacks crafted on two models or more have a matrix
        transfer = transfer_table(metrics)
        if len(transfer):
            transfer.to_csv(run_dir / "transfer.csv", index=False)
            transfer_plot(transfer, run_dir / "transfer.png")
    except Exception as exc:
        notes.append(f"transfer matrix failed: {type(exc).__name__}: {exc}")
        log.warning("report: transfer matrix failed", exc_info=True)
    try:  # only refiners that select a checkpoint (STIG) log the curves; others have no figure
        selection_plot(selection_curves(run_dir), run_dir / "selection.png")
    except Exception as exc:
        notes.append(f"selection curves failed: {type(exc).__name__}: {exc}")
        log.warning("report: selection curves failed", exc_info=True)
    return notes


__all__ = ["SPECTRA_FILE", "load_spectra", "own_scores", "run_plots", "save_spectra"]
