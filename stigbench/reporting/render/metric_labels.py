"""Metric names for reading: display labels, one-sentence descriptions (the tooltips of table
columns), the glossary table and the order in which metrics are shown."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from stigbench.measures.metrics import METRICS


LABELS = {
    "auc": "AUC", "ap": "AP", "acc": "Acc", "acc_real": "Acc real", "acc_fake": "Acc fake", "eer": "EER",
    "tpr_at_fpr05": "TPR@5%FPR", "asr": "ASR", "lfd": "LFD", "fid": "FID", "kid": "KID", "fid_spectrum": "FID spectrum",
    "kid_spectrum": "KID spectrum", "fd_random": "FD random", "kid_random": "KID random",
    "fd_random_spectrum": "FD random spectrum", "kid_random_spectrum": "KID random spectrum",
    "delta_auc": "ΔAUC", "delta_acc": "ΔAcc", "psnr": "PSNR vs fake (dB)", "ssim": "SSIM vs fake",
    "tpr_at_fpr1": "TPR@1%FPR(val)", "fpr_at_fpr1": "test FPR@1%", "tpr_at_fpr01": "TPR@0.1%FPR(val)",
    "fpr_at_fpr01": "test FPR@0.1%", "balanced_acc": "Bal. acc", "ece": "ECE", "ece_balanced": "ECE balanced",
    "val_reals": "val reals", "false_alarm": "False alarms", "acc_authors": "Acc (authors' 0.5)",
    "acc_real_authors": "Acc real (authors' 0.5)", "acc_fake_authors": "Acc fake (authors' 0.5)",
}


def metric_label(name: str) -> str:
    """Display name of a metric (``tpr_at_fpr05`` -> ``TPR@5%FPR``); unknown names pass through."""
    return LABELS.get(name, name)


def metric_description(name: str) -> str:
    """One sentence on what a metric measures (the tooltip of its column)."""
    if name in METRICS:
        return METRICS[name].description
    if name.startswith("delta_"):
        return f"{metric_label(name[6:])} minus its value on the unrefined fakes"
    return "quality metric: distance of this set to the real images (lower = closer)"


def metrics_glossary(names: Iterable[str]) -> pd.DataFrame:
    """``metric``, ``better`` (higher/lower) and ``meaning`` of each metric in ``names``, in order."""
    names = list(names)
    return pd.DataFrame({"metric": [metric_label(n) for n in names],
                         "better": ["higher" if METRICS.get(n) and METRICS[n].higher_is_better else "lower"
                                    for n in names],
                         "meaning": [metric_description(n) for n in names]})


def ordered_metrics(names: Iterable[str], family: str | None = None) -> list[str]:
    """Known metrics in :data:`METRICS` order, then the others in order of appearance."""
    names = list(dict.fromkeys(names))
    known = [n for n in METRICS if n in names and (family is None or METRICS[n].family == family)]
    return known + [n for n in names if n not in METRICS]


__all__ = ["LABELS", "metric_description", "metric_label", "metrics_glossary", "ordered_metrics"]
