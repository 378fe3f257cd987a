"""Per-run outputs derived from ``metrics.csv`` (the single source of truth): summary tables in CSV,
Markdown and JSON, and the spectrum plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stigbench.io import write_json, write_text
from stigbench.spectrum import radial_profile

OVER_CORRECTION = "over-correction"


def condition_label(condition: str, refiner: str) -> str:
    return condition if not refiner else f"{condition}:{refiner}"


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (detector, condition): the detection metrics side by side, ΔAUC against the
    unrefined fakes and a note where refinement drove the AUC below 0.5.

    An attack succeeds by bringing AUC to 0.5 (chance); below 0.5 a detector with its sign flipped
    would catch the refined images, so that is flagged as over-correction, not counted as success.
    """
    det = metrics[metrics["detector"].fillna("") != ""].copy()
    if det.empty:
        return pd.DataFrame(columns=["detector", "condition", "auc", "ap", "acc", "eer", "delta_auc", "note"])
    det["refiner"] = det["refiner"].fillna("")
    det["condition"] = [condition_label(c, r) for c, r in zip(det["condition"], det["refiner"])]
    table = det.pivot_table(index=["detector", "condition"], columns="metric", values="value", sort=False).reset_index()
    table.columns.name = None
    base = table[table["condition"] == "fake"].set_index("detector")["auc"]
    table["delta_auc"] = table["auc"] - table["detector"].map(base)
    table["note"] = np.where((table["condition"] != "fake") & (table["auc"] < 0.5), OVER_CORRECTION, "")
    cols = ["detector", "condition"] + [m for m in ("auc", "ap", "acc", "eer") if m in table] + ["delta_auc", "note"]
    return table[cols]


def lfd_table(metrics: pd.DataFrame) -> pd.DataFrame:
    rows = metrics[metrics["metric"] == "lfd"].copy()
    rows["refiner"] = rows["refiner"].fillna("")
    rows["condition"] = [condition_label(c, r) for c, r in zip(rows["condition"], rows["refiner"])]
    return rows[["condition", "value"]].rename(columns={"value": "lfd"}).reset_index(drop=True)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured Markdown table (no optional ``tabulate`` dependency)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else format(v, floatfmt)
        return str(v)

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "| " + " | ".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def write_run_report(run_dir: Path, metrics: pd.DataFrame, record: dict[str, Any]) -> pd.DataFrame:
    """Write ``summary.csv``, ``summary.md`` and ``metrics.json``; return the summary table."""
    summary = summarize(metrics)
    summary.to_csv(run_dir / "summary.csv", index=False)
    lfds = lfd_table(metrics)
    write_json(run_dir / "metrics.json", {"metrics": metrics.replace({np.nan: None}).to_dict(orient="records")})
    ds = record["dataset"]
    lines = [
        f"# stigbench run: {ds['name']} (seed {metrics['seed'].iloc[0] if len(metrics) else '?'})",
        "",
        f"- images: {ds['real']} real, {ds['fake']} fake at {ds['size']}x{ds['size']}"
        f" ({ds['skipped']} skipped, see skipped.csv)" + (" — synthetic dataset" if ds.get("synthetic") else ""),
        f"- split (real/fake per part): {ds['split']}",
        f"- device: {record['provenance']['device_name']}, precision {record['provenance']['precision']}",
        f"- time: {record['seconds']} s",
        "",
        "## Detection (test split; detectors trained on real vs original fakes)",
        "",
        to_markdown(summary),
        "",
        "ΔAUC is against the unrefined fakes. An attack succeeds by bringing AUC to 0.5; "
        f"`{OVER_CORRECTION}` marks AUC below 0.5 (a sign-flipped detector would catch those images).",
        "",
        "## Log frequency distance to the real test images (lower = closer spectra)",
        "",
        to_markdown(lfds, ".4f"),
        "",
    ]
    if record.get("errors"):
        lines += ["## Errors", ""] + [f"- **{k}**: {v}" for k, v in record["errors"].items()] + [""]
    lines += ["Plots: `spectra.png` (mean log-spectra and differences to the reals), `radial_profiles.png`.", ""]
    write_text(run_dir / "summary.md", "\n".join(lines))
    return summary


def spectra_plots(spectra: dict[str, torch.Tensor], run_dir: Path) -> None:
    """Mean log-magnitude spectra (channel mean), their differences to the reals, and radial
    profiles; the profile data also go to ``radial_profiles.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = {k: v.mean(dim=0).numpy() for k, v in spectra.items()}
    keys = list(means)
    fig, axes = plt.subplots(2, len(keys), figsize=(3.2 * len(keys), 6.4), squeeze=False)
    lo = min(float(m.min()) for m in means.values())
    hi = max(float(m.max()) for m in means.values())
    diffs = {k: means[k] - means["real"] for k in keys if k != "real"}
    lim = max((float(np.abs(d).max()) for d in diffs.values()), default=1.0) or 1.0
    for j, k in enumerate(keys):
        ax = axes[0, j]
        im = ax.imshow(means[k], cmap="viridis", vmin=lo, vmax=hi)
        ax.set_title(f"{k}\nmean log(1+|F|)", fontsize=9)
        ax.axis("off")
        ax = axes[1, j]
        if k == "real":
            ax.axis("off")
            fig.colorbar(im, ax=axes[0, :].tolist(), shrink=0.8)
            continue
        im_d = ax.imshow(diffs[k], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{k} − real", fontsize=9)
        ax.axis("off")
    if diffs:
        fig.colorbar(im_d, ax=axes[1, :].tolist(), shrink=0.8)
    fig.savefig(run_dir / "spectra.png", dpi=110)
    plt.close(fig)

    profiles = {k: radial_profile(v.mean(dim=0)).numpy() for k, v in spectra.items()}
    frame = pd.DataFrame(profiles)
    frame.insert(0, "frequency", np.arange(len(frame)) / (2 * (len(frame) - 1)))  # cycles/pixel
    frame.to_csv(run_dir / "radial_profiles.csv", index=False)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for k in keys:
        ax1.plot(frame["frequency"], frame[k], label=k)
        if k != "real":
            ax2.plot(frame["frequency"], frame[k] - frame["real"], label=f"{k} − real")
    ax1.set(xlabel="frequency (cycles/pixel)", ylabel="mean log(1+|F|)", title="Radial profile")
    ax2.axhline(0, color="grey", lw=0.8)
    ax2.set(xlabel="frequency (cycles/pixel)", ylabel="difference", title="Difference to the reals")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "radial_profiles.png", dpi=110)
    plt.close(fig)
