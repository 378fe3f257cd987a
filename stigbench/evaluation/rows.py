"""Long-form metric rows: the columns of ``metrics.csv`` and the row builders shared by the stages."""

from __future__ import annotations

from typing import Any

METRIC_COLUMNS = ["dataset", "seed", "refiner", "detector", "trained_on", "condition", "perturbation",
                  "metric", "value", "ci_low", "ci_high"]
#: The perturbation name of the unperturbed test sets.
CLEAN = "none"


def base_row(dataset: str, seed: int, **kw: Any) -> dict[str, Any]:
    """The key columns of one row, empty where they do not apply."""
    row = {"dataset": dataset, "seed": seed, "refiner": "", "detector": "", "trained_on": "", "condition": "",
           "perturbation": CLEAN}
    row.update(kw)
    return row
