"""The checkpoint-selection curves of a run's refiners (``selection.png``), read from their folders.

A refiner that selects its checkpoint (STIG, :mod:`stigbench.attacks.stig.selection`) logs its
criteria on a held-out *selection set* every ``every`` iterations, as the columns ``select_sd`` (the
criterion), ``select_lfd`` and ``select_profile`` of ``training/train_log.csv`` (empty on the other
rows; runs before stigbench 0.3 logged only the last two, ``select_lfd`` then being the criterion), and
records in ``fit_info.json`` under ``"selection"`` which checkpoint it kept (``kept``: ``best`` at
``best_iteration``, or ``last``) and the criterion's noise floor (``noise_floor``, its 90th percentile
over draws of reals against reals, and ``noise_floor_median``), drawn beside the curve: a curve that
stays within the floor cannot tell one checkpoint from another. Folders without those columns (other
refiners) have no curve. Reading is separate from plotting; nothing here fails a report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stigbench.attacks.stig.selection import COLUMNS as SELECT_COLUMNS
from stigbench.reporting.render.figures import pyplot, save

LABELS = {"select_sd": "standardised spectral distance to the reals",
          "select_lfd": "LFD of refined selection fakes to the reals",
          "select_profile": "radial-profile RMS difference to the reals"}


@dataclass
class SelectionCurve:
    """One refiner's selection criteria against the iteration, and what it kept."""

    refiner: str
    curve: pd.DataFrame  # iteration + the selection columns it logged, evaluated rows only
    last_iteration: int
    info: dict[str, Any] = field(default_factory=dict)  # fit_info.json's "selection" ({} when absent)

    @property
    def kept_iteration(self) -> int | None:
        """The iteration of the refiner kept: the best one, or the last where ``kept`` is ``last``."""
        kept = self.info.get("kept")
        if kept == "best" and self.info.get("best_iteration") is not None:
            return int(self.info["best_iteration"])
        return self.last_iteration if kept == "last" else None


def _selection_info(folder: Path) -> dict[str, Any]:
    """``fit_info.json``'s ``selection`` (or the same inside the runner's ``info.json``); ``{}`` if none."""
    for name, path in (("fit_info.json", ()), ("info.json", ("fit_info",))):
        file = folder / name
        if file.is_file():
            data = json.loads(file.read_text(encoding="utf-8"))
            for key in path:
                data = data.get(key) or {}
            if isinstance(data.get("selection"), dict):
                return data["selection"]
    return {}


def read_selection(folder: str | Path, name: str | None = None) -> SelectionCurve | None:
    """The selection curve of the refiner saved in ``folder``; ``None`` when its training log has no
    selection columns or no evaluated row."""
    folder = Path(folder)
    log = folder / "training" / "train_log.csv"
    if not log.is_file():
        return None
    frame = pd.read_csv(log)
    columns = [c for c in SELECT_COLUMNS if c in frame.columns]
    if "iteration" not in frame or not columns:
        return None
    frame = frame[["iteration", *columns]].apply(pd.to_numeric, errors="coerce")
    curve = frame.dropna(subset=columns, how="all").dropna(subset=["iteration"])
    if curve.empty:
        return None
    # A resumed run may log an iteration twice; the later row is the one that counts.
    curve = curve.drop_duplicates("iteration", keep="last").sort_values("iteration").reset_index(drop=True)
    return SelectionCurve(name or folder.name, curve, int(frame["iteration"].max()), _selection_info(folder))


def selection_curves(run_dir: str | Path) -> list[SelectionCurve]:
    """Every refiner of the run folder that logged selection criteria (``refiners/<name>/``)."""
    root = Path(run_dir) / "refiners"
    if not root.is_dir():
        return []
    curves = (read_selection(p) for p in sorted(root.iterdir()) if p.is_dir())
    return [c for c in curves if c is not None]


def selection_text(record: dict[str, Any]) -> str:
    """What each refiner that selects a checkpoint kept, and why (``run.json``'s refiners' ``fit_info``):
    ``stig: kept the last refiner: the selection set cannot see ...``; empty when none selects."""
    parts = []
    for name, info in (record.get("refiners") or {}).items():
        selection = ((info or {}).get("fit_info") or {}).get("selection") if isinstance(info, dict) else None
        if isinstance(selection, dict) and selection.get("reason"):
            kept = selection.get("kept")
            at = f" (iteration {selection['best_iteration']})" if kept == "best" and selection.get("best_iteration") is not None else ""
            parts.append(f"{name}: kept the {kept} refiner{at}: {selection['reason']}")
    return "; ".join(parts)


def selection_caption(fit_refiners_on: str = "train") -> str:
    """The one-line caption of ``selection.png``: where the selection set comes from."""
    source = ("the test fakes this run fitted its refiners on (--fit-refiners-on test) and the training reals"
              if fit_refiners_on == "test" else "the training split")
    return (f"Checkpoint selection: criteria on selection fakes carved from {source} and held out of training, "
            "against the reals, never a reported detector; the marked point is the checkpoint kept; the grey band "
            "is the criterion's noise floor (reals against reals: median to 90th percentile).")


def selection_plot(curves: list[SelectionCurve], path: str | Path) -> bool:
    """One row per refiner, one panel per criterion against the iteration, the kept checkpoint marked.
    False when there is nothing to plot."""
    if not curves:
        return False
    width = max(len(c.curve.columns) - 1 for c in curves)
    fig, axes = pyplot().subplots(len(curves), width, figsize=(5.2 * width, 3.2 * len(curves)), squeeze=False)
    for row, c in zip(axes, curves):
        kept = c.kept_iteration
        columns = [col for col in SELECT_COLUMNS if col in c.curve.columns]
        for ax in row[len(columns):]:
            ax.set_visible(False)
        for ax, col in zip(row, columns):
            data = c.curve.dropna(subset=[col])
            floor, median = c.info.get("noise_floor"), c.info.get("noise_floor_median")
            if c.info.get("criterion") == col and floor is not None and median is not None:
                ax.axhspan(min(median, floor), floor, color="0.85", label="noise floor")
            ax.plot(data["iteration"], data[col], "o-", ms=3, lw=1.4, color="tab:blue")
            if kept is not None:
                ax.axvline(kept, color="tab:red", ls="--", lw=1)
                at = data[data["iteration"] == kept]
                if len(at):
                    ax.plot(at["iteration"], at[col], "*", ms=13, color="tab:red", label=f"kept: {c.info.get('kept')}")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            criterion = " (criterion)" if c.info.get("criterion") == col else ""
            ax.set(xlabel="iteration", ylabel=col, title=f"{c.refiner}: {LABELS[col]}{criterion}")
            ax.title.set_fontsize(9)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, Path(path))
    return True


__all__ = ["SELECT_COLUMNS", "SelectionCurve", "read_selection", "selection_caption", "selection_curves",
           "selection_plot", "selection_text"]
