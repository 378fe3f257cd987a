"""The sentences that describe a run in both its ``summary.md`` and its ``report.html``: its images and
split, what its refiners were fitted on, and the note under the detection table."""

from __future__ import annotations

from typing import Any


def dataset_line(record: dict[str, Any]) -> str:
    ds = record.get("dataset", {})
    return (f"{ds.get('real', '?')} real, {ds.get('fake', '?')} fake at {ds.get('size', '?')}x{ds.get('size', '?')}"
            f" ({ds.get('skipped', 0)} skipped, see skipped.csv)" + (" — synthetic dataset" if ds.get("synthetic") else ""))


def refiner_fit_text(config: dict[str, Any]) -> str:
    """What the run's refiners were fitted on, from its ``config.json`` (older runs: the training split)."""
    if config.get("config", {}).get("fit_refiners_on", "train") == "test":
        return ("TEST fakes + training reals (transductive, as in the STIG paper: the refined fakes scored here "
                "are the ones the refiners were fitted on)")
    return "training fakes + training reals (the refined test fakes were never seen by a refiner)"


def split_text(split: Any) -> str:
    """``{'real': {'train': 288, ...}, ...}`` -> ``real: train 288, val 96, test 96; fake: ...``."""
    if not isinstance(split, dict):
        return str(split)
    return "; ".join(f"{label}: " + ", ".join(f"{k} {v}" for k, v in parts.items()) if isinstance(parts, dict)
                     else f"{label}: {parts}" for label, parts in split.items())


DETECTION_NOTE = ("ΔAUC and ΔAcc are against the unrefined fakes of the same detector. An attack succeeds by "
                  "bringing AUC to 0.5; `over-correction` marks AUC below 0.5 (a sign-flipped detector would "
                  "catch those images). `move` compares the AUC intervals of refined and unrefined fakes: "
                  "`toward` / `past` chance, `away` from it (`attack adds evidence`, also given to a detector "
                  "pushed past 0.5 further than it stood before), `unchanged` (the intervals overlap); a detector "
                  "whose fake-AUC interval contains 0.5 is `at chance` and gets no other flag; `attack inactive`: "
                  "the refiner did nothing (named at the top), so its rows are no result. "
                  "Brackets: 95 % bootstrap confidence interval on the test split.")


__all__ = ["DETECTION_NOTE", "dataset_line", "refiner_fit_text", "split_text"]

#: Added to the detection note of a run with score-only detectors.
RELEASED_NOTE = ("`released <sha256[:12]>` (trained_on): scored with its authors' released checkpoint (that file's "
                 "SHA-256), never trained by this run; its threshold (Acc) is still chosen on the validation split, "
                 "`Acc (authors' 0.5)` reads it at the authors' own (P(fake) > 0.5). Images reach it cropped (or "
                 "resized) to this run's size, which may be far from what it was trained on (docs/detectors.md).")
