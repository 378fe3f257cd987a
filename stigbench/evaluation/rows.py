"""Long-form metric rows: the columns of ``metrics.csv`` and the row builders shared by the stages."""

from __future__ import annotations

from typing import Any

import pandas as pd

from stigbench.core.contracts import is_released

#: The threat model of a gradient attack's rows (empty for refiners): what the attacker knows
#: (``white-box``), the detector it crafted against, its budget (norm and ε) and its direction (``fake→real``).
THREAT_COLUMNS = ["knowledge", "target", "budget", "direction"]
#: The ``knowledge`` of an attack: the target's gradients, its scores only, or the attacker's own surrogates.
WHITE_BOX, QUERY, TRANSFER = "white-box", "query", "transfer"
#: The condition of real test images attacked toward "fake" (scored against the clean test fakes).
REAL_ATTACKED = "real-attacked"
#: The ``direction`` of an attack on the fakes, and of one on the reals.
FAKE_TO_REAL, REAL_TO_FAKE = "fake→real", "real→fake"
#: ``dataset`` is what the detectors (and refiners) were trained on; ``test_dataset`` what the row's
#: images come from: the same dataset, or another one's test split in a cross-dataset run.
METRIC_COLUMNS = ["dataset", "test_dataset", "seed", "refiner", "detector", "trained_on", "condition", "perturbation",
                  "metric", "value", "ci_low", "ci_high", *THREAT_COLUMNS]
#: The perturbation name of the unperturbed test sets.
CLEAN = "none"


#: ``trained_on`` of a detector trained by the run on the original fakes; ``refined`` is the adaptive
#: defender, ``released <sha256[:12]>`` a score-only detector (:func:`stigbench.core.contracts.released_label`).
TRAINED_ON_FAKE, TRAINED_ON_REFINED = "fake", "refined"


def is_baseline(trained_on: str) -> bool:
    """True for the detectors every condition is read against: trained by the run on the original
    fakes, or scoring with their authors' released weights; False for the adaptive defender."""
    return trained_on in (TRAINED_ON_FAKE, "") or is_released(trained_on)


def base_row(dataset: str, seed: int, test_dataset: str | None = None, **kw: Any) -> dict[str, Any]:
    """The key columns of one row, empty where they do not apply."""
    row = {"dataset": dataset, "test_dataset": test_dataset or dataset, "seed": seed, "refiner": "", "detector": "",
           "trained_on": "", "condition": "", "perturbation": CLEAN}
    row.update(kw)
    return row


def on_own_target(rows: pd.DataFrame) -> pd.Series:
    """Per row: an attack crafted against one detector of the run (white-box or query) scored by that very
    detector. Such an attack is *meant* to drive its target past chance: success there is read from ASR,
    never as over-correction or evidence; a transfer attack's ``target`` names its surrogates, never the
    defender's detector. False everywhere for rows without the threat-model columns (older runs)."""
    if "knowledge" not in rows or "target" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["knowledge"].isin([WHITE_BOX, QUERY]) & (rows["target"] == rows["detector"])


def with_threat_model(metrics: pd.DataFrame, attacks: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` with the :data:`THREAT_COLUMNS` of each row whose ``refiner`` is an attacked set of
    ``attacks`` (``gradient_attacks.csv``: ``refiner`` plus those columns) filled in, and ``""`` elsewhere;
    rows of attacked reals (:data:`REAL_ATTACKED`) read ``real→fake``."""
    out = metrics.copy()
    for column in THREAT_COLUMNS:
        values = dict(zip(attacks["refiner"], attacks[column])) if column in attacks else {}
        out[column] = out["refiner"].map(values).fillna("") if values else ""
    if "condition" in out:
        out.loc[(out["condition"] == REAL_ATTACKED) & (out["direction"] != ""), "direction"] = REAL_TO_FAKE
    return out
