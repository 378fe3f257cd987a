"""Which attacks of a run did nothing, read from its folder (the rule:
:func:`stigbench.evaluation.evidence.inactive_reason`).

The runner records ``{refiner: reason}`` in ``run.json`` under :data:`RECORD_KEY` (``{}`` when every
attack ran). A run folder written before that is judged the same way from what it holds: the PSNR
rows of ``metrics.csv`` and each refiner's ``fit_info`` (``run.json``'s ``refiners``, else
``refiners/<name>/fit_info.json``); a refiner with neither is left unflagged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from stigbench.evaluation.evidence import INACTIVE, inactive_attacks, inactive_line
from stigbench.reporting.run.metrics_csv import condition_label, own_rows

#: ``run.json``'s entry: ``{refiner display name: reason}`` of the inactive attacks.
RECORD_KEY = "attack_inactive"


def fit_infos(refiners: Mapping[str, Any], run_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Each refiner's ``fit_info`` from ``run.json``'s ``refiners`` (``{display: {"fit_info": ...}}``);
    where that has none, the ``fit_info.json`` of ``run_dir/refiners/<display>`` if there is one."""
    out: dict[str, dict[str, Any]] = {}
    for display, info in refiners.items():
        fit_info = (info or {}).get("fit_info") if isinstance(info, Mapping) else None
        file = Path(run_dir) / "refiners" / display / "fit_info.json" if run_dir is not None else None
        if not fit_info and file is not None and file.is_file():
            try:
                fit_info = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                fit_info = None
        out[display] = dict(fit_info) if isinstance(fit_info, Mapping) else {}
    return out


def run_inactive(metrics: pd.DataFrame, record: Mapping[str, Any], run_dir: str | Path | None = None) -> dict[str, str]:
    """``{refiner: reason}`` of a run's inactive attacks: ``run.json``'s record (``record``) if it has
    one, else derived from its ``metrics.csv`` rows (``metrics``) and the refiners' ``fit_info``."""
    if isinstance(record.get(RECORD_KEY), Mapping):
        return {str(k): str(v) for k, v in record[RECORD_KEY].items()}
    return inactive_attacks(own_rows(metrics), fit_infos(record.get("refiners") or {}, run_dir))


def inactive_lines(inactive: Mapping[str, str]) -> list[str]:
    """One ``ATTACK INACTIVE: ...`` line per inactive attack, for the top of a report."""
    return [inactive_line(refiner, reason) for refiner, reason in inactive.items()]


def mark_summary(summary: pd.DataFrame, inactive: Mapping[str, str]) -> pd.DataFrame:
    """The run report's detection table with ``move`` = ``attack inactive`` on the refined rows of an
    inactive attack (their interval comparison would say ``unchanged``)."""
    if not inactive or "move" not in summary:
        return summary
    rows = summary["condition"].isin([condition_label("refined", r) for r in inactive])
    return summary.assign(move=summary["move"].where(~rows, INACTIVE))


__all__ = ["RECORD_KEY", "fit_infos", "inactive_lines", "mark_summary", "run_inactive"]
