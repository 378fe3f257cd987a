"""Long-form metric rows: the columns of ``metrics.csv`` and the row builders shared by the stages."""

from __future__ import annotations

from typing import Any

#: ``dataset`` is what the detectors (and refiners) were trained on; ``test_dataset`` what the row's
#: images come from: the same dataset, or another one's test split in a cross-dataset run.
METRIC_COLUMNS = ["dataset", "test_dataset", "seed", "refiner", "detector", "trained_on", "condition", "perturbation",
                  "metric", "value", "ci_low", "ci_high"]
#: The perturbation name of the unperturbed test sets.
CLEAN = "none"


def base_row(dataset: str, seed: int, test_dataset: str | None = None, **kw: Any) -> dict[str, Any]:
    """The key columns of one row, empty where they do not apply."""
    row = {"dataset": dataset, "test_dataset": test_dataset or dataset, "seed": seed, "refiner": "", "detector": "",
           "trained_on": "", "condition": "", "perturbation": CLEAN}
    row.update(kw)
    return row
