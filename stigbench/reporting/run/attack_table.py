"""The attack table of a run: per attack (refiner), how far the detectors' AUC stays from chance,
next to the attack's quality cost."""

from __future__ import annotations

import pandas as pd

from stigbench.reporting.run.metrics_csv import DEFAULT_PERTURBATION, baseline, own_rows


ATTACK_COSTS = (("lfd", "LFD to the reals (lower = closer)"), ("fid", "FID to the reals"),
                ("fd_random", "FD (random features) to the reals"), ("psnr", "PSNR to the original fake (dB)"))


def attack_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per attack (refiner) on clean test images: how far each detector's AUC stays from 0.5,
    next to the attack's quality cost.

    ``evasion`` = mean over detectors of ``|AUC - 0.5|`` on real vs refined (0 = every detector at
    chance; an AUC driven *below* 0.5 counts against the attack as much as one left above it), with
    the unrefined fakes as the reference row. ``over_corrected`` counts detectors pushed below 0.5.
    ``asr``: the mean attack success rate over detectors; for a white-box gradient attack, that of its
    target alone (the detector it was crafted against; the others read as transfer in the detection table).
    """
    m = own_rows(metrics)
    m = m[(m["perturbation"] == DEFAULT_PERTURBATION) & m["condition"].isin(["fake", "refined"])]  # not attacked reals
    trained = m[(m["detector"] != "") & baseline(m)]
    det = trained[trained["metric"] == "auc"]
    asr = trained[trained["metric"] == "asr"]
    rows = []
    for (condition, refiner), g in det.groupby(["condition", "refiner"], sort=False):
        row = {"attack": refiner or "none (unrefined fakes)", "evasion": float((g["value"] - 0.5).abs().mean()),
               "mean_auc": float(g["value"].mean()), "over_corrected": int((g["value"] < 0.5).sum()),
               "detectors": int(len(g))}
        mine = asr[(asr["refiner"] == refiner) & (asr["condition"] == condition)]
        target = str(g["target"].iloc[0]) if "target" in g else ""
        if target:
            mine = mine[mine["detector"] == target]
        row["asr"] = float(mine["value"].mean()) if len(mine) else float("nan")
        q = m[(m["detector"] == "") & (m["condition"] == condition) & (m["refiner"] == refiner)]
        for name, _ in ATTACK_COSTS:
            v = q.loc[q["metric"] == name, "value"]
            row[name] = float(v.iloc[0]) if len(v) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["ATTACK_COSTS", "attack_table"]
