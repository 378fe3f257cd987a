"""Did an attack move a detector toward chance, away from it, or past it? Judged on AUC intervals.

An attack succeeds by bringing a detector's AUC to 0.5; one that moves the AUC further from 0.5 has
*added* evidence a detector (or its sign-flipped twin) can use: a bug in the attack to look into, not a
result.
A point estimate moves with every resample, so each call here compares the 95 % bootstrap intervals
of the AUC on real vs fake (``fake``) and on real vs refined (``refined``) of one detector, trained
and perturbed alike. Pure functions of numbers and frames; the reports only display what they return.

Definitions (``d = AUC - 0.5`` oriented so that the fake AUC is positive, i.e. multiplied by the
sign of ``AUC_fake - 0.5``; ``[Lf, Hf]`` and ``[Lr, Hr]`` the oriented intervals of fake and refined):

* ``at chance``: the fake interval contains 0.5 (``lo <= 0.5 <= hi``): the detector does not detect
  the unrefined fakes, so nothing the attack does to it is flagged (neither evidence nor
  over-correction);
* ``past``: the refined interval lies wholly on the other side of 0.5 (``Hr < 0``);
* ``away``: the refined interval lies wholly beyond the fake one on the same side (``Lr > Hf``);
* ``toward``: the refined interval lies wholly between 0.5 and the fake one without crossing 0.5
  (``0 <= Hr < Lf``; an interval that reaches 0.5 counts: the attack brought the detector to chance);
* ``unchanged``: the two intervals overlap (touching counts as overlap);
* ``no interval``: an AUC or a bound is missing (``--n-boot 0``, an older run): not classified.

The *evidence* flag (``attack adds evidence``) compares distances from chance, ``|AUC - 0.5|``:
the refined distance interval lies wholly above the fake one. That is every ``away`` detector, and a
``past`` one that lands further from 0.5 on the other side than the fake AUC's whole interval
(``-Hr > Hf``); such a detector carries both flags, evidence and over-correction.

An attack that did nothing is not a result about the detectors: its refined images are the fakes, so
every detector stays ``unchanged``, which would read as robustness. Such a refiner is flagged
``attack inactive`` (:func:`inactive_reason`) and its detectors get that class instead of a move
(``evidence`` is still computed). It is inactive, at strength 1 only (a refine-time ``strength=`` in
its display name other than 1 is never flagged), when

* it kept its starting point: ``fit_info["selection"]`` has ``kept == "best"`` at
  ``best_iteration == 0`` (STIG's checkpoint selection, :mod:`stigbench.attacks.stig.selection`);
* the mean PSNR of its refined test images to their fakes is above :data:`INACTIVE_PSNR_DB` dB
  (fixed: moving it to make a run pass would hide the failure it is there to show);
* its ``fit_info`` says so itself under :data:`INACTIVE_KEY` (for plug-ins; the value is the reason,
  read after the refiner's name).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from stigbench.evaluation.rows import is_baseline, on_own_target

CHANCE = 0.5
TOWARD, AWAY, PAST, UNCHANGED, AT_CHANCE, NO_INTERVAL = "toward", "away", "past", "unchanged", "at chance", "no interval"
INACTIVE = "attack inactive"
#: Every class, in the order the reports count them (``attack inactive``: of the refiner, not a move).
MOVES = (TOWARD, AWAY, PAST, UNCHANGED, AT_CHANCE, NO_INTERVAL, INACTIVE)
EVIDENCE = "attack adds evidence"
DETECTOR_AT_CHANCE = "detector at chance"
#: A detector "works" on the fakes from this AUC on (the fake AUC, not its interval): the benchmarks
#: average the attack's effect over such detectors only, since one at 0.55 has little to lose.
WORKING_AUC = 0.65
#: Refined images closer than this to their fakes (mean PSNR, dB) are the fakes: the attack did nothing.
#: (Rounding a float image to 8 bits alone costs about 59 dB: a uniform error of one level.)
INACTIVE_PSNR_DB = 50.0
#: PSNR of images identical to their fakes (``stigbench.measures.fidelity.psnr`` gives ~120 dB); one 8-bit
#: step in a million pixels is still below this. The only "inactive" reading of a gradient attack.
IDENTICAL_PSNR_DB = 115.0
#: The ``fit_info`` key under which a refiner may give its own reason for being inactive.
INACTIVE_KEY = "inactive"


def _known(*values: float) -> bool:
    return all(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values)


def at_chance(low: float, high: float) -> bool:
    """True when the interval ``[low, high]`` contains 0.5 (False when a bound is missing)."""
    return _known(low, high) and low <= CHANCE <= high


def classify_move(fake: tuple[float, float, float], refined: tuple[float, float, float]) -> str:
    """One of :data:`MOVES` for ``(auc, ci_low, ci_high)`` of the fakes and of the refined fakes."""
    if not _known(*fake, *refined):
        return NO_INTERVAL
    if at_chance(fake[1], fake[2]):
        return AT_CHANCE
    sign = 1.0 if fake[0] > CHANCE else -1.0
    lf, hf = sorted(sign * (b - CHANCE) for b in fake[1:])
    lr, hr = sorted(sign * (b - CHANCE) for b in refined[1:])
    if hr < 0:
        return PAST
    if lr > hf:
        return AWAY
    if hr < lf:
        return TOWARD
    return UNCHANGED


def adds_evidence(fake: tuple[float, float, float], refined: tuple[float, float, float]) -> bool:
    """The evidence flag: the refined AUC's distance from 0.5 is wholly above the fake AUC's."""
    move = classify_move(fake, refined)
    if move == AWAY:
        return True
    if move != PAST:
        return False
    sign = 1.0 if fake[0] > CHANCE else -1.0
    hf = max(sign * (b - CHANCE) for b in fake[1:])
    hr = max(sign * (b - CHANCE) for b in refined[1:])
    return -hr > hf


def display_strength(display: str) -> float | None:
    """The refine-time strength a refiner's display name carries (``stig:strength=0.5`` -> 0.5): 1.0
    without ``strength=``, ``None`` when its value is not a number (then it is not strength 1)."""
    found = re.search(r"(?:^|[:,])strength=([^,:\s]+)", display)
    if found is None:
        return 1.0
    try:
        return float(found.group(1))
    except ValueError:
        return None


def inactive_reason(psnr: float | None, fit_info: Mapping[str, Any] | None, strength: float | None = 1.0) -> str | None:
    """Why a refiner's attack did nothing (module docstring), read after its name (``stig kept its
    starting point ...``); ``None`` when it is active or not at strength 1. ``psnr``: mean PSNR (dB) of
    its refined test images to their fakes; ``fit_info``: what it recorded when fitted."""
    if strength != 1.0:
        return None
    info = fit_info or {}
    reasons = []
    if info.get(INACTIVE_KEY):
        reasons.append(str(info[INACTIVE_KEY]))
    selection = info.get("selection")
    if isinstance(selection, Mapping) and selection.get("kept") == "best" and selection.get("best_iteration") == 0:
        total = info.get("iterations")
        reasons.append(f"kept its starting point (iteration 0{f' of {total}' if total else ''} on the selection set)")
    if _known(psnr) and psnr > INACTIVE_PSNR_DB:
        reasons.append(f"returned the fakes unchanged (mean PSNR {psnr:.2f} dB to them, over {INACTIVE_PSNR_DB:g} dB)")
    return " and ".join(reasons) or None


def refined_psnr(metrics: pd.DataFrame) -> dict[str, float]:
    """Mean PSNR of each refiner's refined images to their fakes, from a cleaned ``metrics.csv`` frame."""
    m = metrics[(metrics["metric"] == "psnr") & (metrics["condition"] == "refined")]
    return {str(k): float(v) for k, v in m.groupby("refiner", sort=False)["value"].mean().items()}


def inactive_attacks(metrics: pd.DataFrame, fit_infos: Mapping[str, Mapping[str, Any] | None]) -> dict[str, str]:
    """``{refiner: reason}`` for every inactive refiner of a run: its PSNR rows in ``metrics`` (cleaned,
    the run's own test split) and its ``fit_info`` by display name (``{}`` where none is known)."""
    psnr = refined_psnr(metrics)
    # A gradient attack's budget bounds its change (at 1/255 every image is within 48 dB): a high PSNR is its
    # design, not inactivity. Its rows are judged by ASR; only images left exactly as they were count.
    gradient = set(metrics.loc[metrics["knowledge"] != "", "refiner"]) if "knowledge" in metrics else set()
    out = {}
    for refiner in dict.fromkeys([*psnr, *fit_infos]):
        value = psnr.get(refiner)
        if refiner in gradient and _known(value) and value < IDENTICAL_PSNR_DB:
            value = None
        reason = inactive_reason(value, fit_infos.get(refiner), display_strength(refiner))
        if reason:
            out[refiner] = reason
    return out


def inactive_line(refiner: str, reason: str) -> str:
    """The warning that heads a report: ``ATTACK INACTIVE: stig kept its starting point (...): ...``."""
    return f"ATTACK INACTIVE: {refiner} {reason}: its rows say nothing about robustness."


def move_columns(auc: pd.DataFrame) -> pd.DataFrame:
    """``move``, ``evidence`` and ``fake_at_chance`` for rows of ``auc``, a frame with columns
    ``auc, auc_ci_low, auc_ci_high`` (the refined set) and ``fake_auc, fake_ci_low, fake_ci_high``
    (the same detector on the unrefined fakes; NaN where there is none)."""
    fake = list(zip(auc["fake_auc"], auc["fake_ci_low"], auc["fake_ci_high"]))
    refined = list(zip(auc["auc"], auc["auc_ci_low"], auc["auc_ci_high"]))
    return pd.DataFrame({
        "move": [classify_move(f, r) for f, r in zip(fake, refined)],
        "evidence": [adds_evidence(f, r) for f, r in zip(fake, refined)],
        "fake_at_chance": [at_chance(lo, hi) for _, lo, hi in fake],
    }, index=auc.index)


def moves(metrics: pd.DataFrame, trained_on: str | None = None, perturbation: str = "none",
          inactive: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per (refiner, detector) of a cleaned ``metrics.csv`` frame (see
    :func:`stigbench.reporting.run.metrics_csv.clean_metrics`), for detectors trained on ``trained_on``
    (``None``: those trained on the original fakes and the released ones, :func:`is_baseline`) and scored under ``perturbation``: the fake and refined AUCs with their intervals, ``move`` and
    ``evidence``. The refiners of ``inactive`` (``{refiner: reason}``, :func:`inactive_attacks`) get
    ``attack inactive`` as their move."""
    same = metrics["trained_on"].map(is_baseline) if trained_on is None else metrics["trained_on"] == trained_on
    m = metrics[(metrics["metric"] == "auc") & (metrics["detector"] != "") & same.astype(bool)
                & (metrics["perturbation"] == perturbation)]
    cols = ["value", "ci_low", "ci_high"]
    fake = m[m["condition"] == "fake"].groupby("detector")[cols].mean()
    fake.columns = ["fake_auc", "fake_ci_low", "fake_ci_high"]
    ref = m[m["condition"] == "refined"].groupby(["refiner", "detector"], sort=False)[cols].mean().reset_index()
    ref = ref.rename(columns={"value": "auc", "ci_low": "auc_ci_low", "ci_high": "auc_ci_high"})
    ref = ref.join(fake, on="detector")
    out = pd.concat([ref, move_columns(ref)], axis=1)
    # An attack crafted against a detector is meant to drive it past chance: success there, not evidence.
    own = m[(m["condition"] == "refined") & on_own_target(m)]
    pairs = set(zip(own["refiner"], own["detector"]))
    out.loc[[(r, d) in pairs for r, d in zip(out["refiner"], out["detector"])], "evidence"] = False
    out.loc[out["refiner"].isin(list(inactive or {})), "move"] = INACTIVE
    return out


def move_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per refiner of a :func:`moves` table, how many detectors fall in each of :data:`MOVES`, plus
    ``evidence`` (the flag; ``away`` and some ``past``)."""
    rows = []
    for refiner, g in table.groupby("refiner", sort=False):
        counts = {name: int((g["move"] == name).sum()) for name in MOVES}
        rows.append({"refiner": refiner, **counts, "evidence": int(g["evidence"].sum()), "detectors": len(g)})
    return pd.DataFrame(rows, columns=["refiner", *MOVES, "evidence", "detectors"])


def counts_text(row: pd.Series | dict) -> str:
    """``2 toward, 0 away (attack adds evidence), 1 past, 1 unchanged, 0 at chance`` (detectors without
    an interval only when there are some)."""
    parts = [f"{row[TOWARD]} toward", f"{row[AWAY]} away (attack adds evidence)", f"{row[PAST]} past",
             f"{row[UNCHANGED]} unchanged", f"{row[AT_CHANCE]} at chance"]
    if row.get(NO_INTERVAL, 0):
        parts.append(f"{row[NO_INTERVAL]} without an interval")
    return ", ".join(parts)


def inactive_text(row: pd.Series | dict, reason: str) -> str:
    """``attack inactive (reason): its 4 detectors are not counted`` (and any evidence it added)."""
    text = f"{INACTIVE} ({reason}): its {row['detectors']} detectors are not counted"
    return text + (f", though {row['evidence']} moved away (attack adds evidence)" if row.get("evidence", 0) else "")


def counts_line(counts: pd.DataFrame, inactive: Mapping[str, str] | None = None) -> str:
    """The one line at the top of a run report: per refiner, where the detectors moved; for a refiner
    of ``inactive`` (``{refiner: reason}``), that its attack did nothing instead."""
    if counts.empty:
        return "Moves against chance: no refined AUC to compare."
    inactive = inactive or {}
    per = "; ".join(f"{r['refiner']}: " + (inactive_text(r, inactive[r['refiner']]) if r["refiner"] in inactive
                                           else counts_text(r)) for _, r in counts.iterrows())
    return (f"Moves against chance (AUC 95 % intervals, detectors trained on the fakes, clean test images): {per}. "
            "Definitions: stigbench/evaluation/evidence.py.")


__all__ = [
    "AT_CHANCE", "AWAY", "DETECTOR_AT_CHANCE", "EVIDENCE", "INACTIVE", "INACTIVE_KEY", "INACTIVE_PSNR_DB", "MOVES",
    "NO_INTERVAL", "PAST", "TOWARD", "UNCHANGED", "WORKING_AUC",
    "adds_evidence", "at_chance", "classify_move", "counts_line", "counts_text", "display_strength", "inactive_attacks",
    "inactive_line", "inactive_reason", "inactive_text", "move_columns", "move_counts", "moves", "refined_psnr",
]
