"""The transfer matrix of a run's gradient attacks: an attack crafted on A (rows: each white-box target, each
query target and each surrogate ensemble) against each detector scoring it, B (columns), as ASR and AUC.

The diagonal of a white-box family is the attack on its own target; off the diagonal, the same images
read by another detector (transfer from A to B). A transfer attack's row is crafted on the attacker's own
fits (``surrogate …``), so every cell of it is transfer — including the column of a detector that shares
its surrogate's name, which the attacker never saw. One matrix per attack and its settings
(``pgd:eps=4/255``: transfer and white-box rows of the same settings together);
pure functions of ``metrics.csv`` (clean test images, detectors trained on the fakes, attacks on fakes).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from stigbench.reporting.render.figures import pyplot, save
from stigbench.reporting.run.metrics_csv import DEFAULT_PERTURBATION, baseline, mark_released, own_rows

TRANSFER_COLUMNS = ["family", "budget", "knowledge", "crafted_on", "refiner", "detector", "asr", "auc"]
TRANSFER_NOTE = ("Rows: the model an attack was crafted on (a white-box or query target, or the attacker's own "
                 "surrogates); columns: the detector scoring the attacked fakes. ASR = share of the fakes that "
                 "detector flags at its validation threshold that it no longer flags; the diagonal of a white-box "
                 "matrix is the attack on its own target, the rest is transfer.")


def transfer_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per attacked set of fakes × scoring detector: :data:`TRANSFER_COLUMNS` (empty without
    gradient attacks)."""
    m = own_rows(metrics)
    if "knowledge" not in m:
        return pd.DataFrame(columns=TRANSFER_COLUMNS)
    m = m[(m["knowledge"] != "") & (m["condition"] == "refined") & (m["detector"] != "")
          & baseline(m) & (m["perturbation"] == DEFAULT_PERTURBATION)
          & m["metric"].isin(["asr", "auc"])]
    if m.empty:
        return pd.DataFrame(columns=TRANSFER_COLUMNS)
    m = mark_released(m)
    wide = m.pivot_table(index=["refiner", "detector"], columns="metric", values="value", aggfunc="mean", sort=False)
    wide = wide.reindex(columns=["asr", "auc"]).reset_index()
    meta = m.drop_duplicates("refiner").set_index("refiner")
    # The attack with its settings but without what it was crafted on: one matrix per family.
    family = [re.sub(r":(target|surrogate)=[^:]+", "", r) for r in wide["refiner"]]
    crafted = [f"surrogate {meta.loc[r, 'target']}" if meta.loc[r, "knowledge"] == "transfer" else meta.loc[r, "target"]
               for r in wide["refiner"]]
    return pd.DataFrame({"family": family, "budget": [meta.loc[r, "budget"] for r in wide["refiner"]],
                         "knowledge": [meta.loc[r, "knowledge"] for r in wide["refiner"]], "crafted_on": crafted,
                         "refiner": wide["refiner"], "detector": wide["detector"], "asr": wide["asr"],
                         "auc": wide["auc"]}, columns=TRANSFER_COLUMNS)


def group_transfer_table(tables: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """The transfer tables of several runs (``(group label, transfer_table)``), ASR and AUC averaged over each
    group's seeds, each family named after its group (``demo-gan: pgd:eps=4/255``): what a comparison
    draws, one matrix per group and attack."""
    parts = [t.assign(family=label + ": " + t["family"]) for label, t in tables if len(t)]
    if not parts:
        return pd.DataFrame(columns=[c for c in TRANSFER_COLUMNS if c != "refiner"])
    keys = ["family", "budget", "knowledge", "crafted_on", "detector"]
    return pd.concat(parts, ignore_index=True).groupby(keys, sort=False)[["asr", "auc"]].mean().reset_index()


def transfer_matrices(table: pd.DataFrame, value: str = "asr") -> dict[str, pd.DataFrame]:
    """``{"<family> (<budget>)": crafted_on × detector}`` of ``value`` (``asr`` or ``auc``), one per attack with
    its settings (``family``: the display name without target or surrogate), rows and columns in order of
    appearance; only families crafted on two models or more (a matrix, not a line)."""
    out: dict[str, pd.DataFrame] = {}
    for (family, budget), g in table.groupby(["family", "budget"], sort=False):
        if g["crafted_on"].nunique() < 2:
            continue
        rows = list(dict.fromkeys(g["crafted_on"]))
        cols = list(dict.fromkeys(g["detector"]))
        matrix = g.pivot_table(index="crafted_on", columns="detector", values=value, aggfunc="mean")
        out[f"{family} ({budget})"] = matrix.reindex(index=rows, columns=cols)
    return out


def transfer_plot(table: pd.DataFrame, path: Path, title: str | None = None) -> bool:
    """ASR heat maps, one per attack and budget, each cell annotated ``ASR`` over ``AUC``; False when no
    attack has a matrix."""
    import seaborn as sns

    asr, auc = transfer_matrices(table, "asr"), transfer_matrices(table, "auc")
    if not asr:
        return False
    plt = pyplot()
    n_cols = max(m.shape[1] for m in asr.values())
    fig, axes = plt.subplots(len(asr), 1, squeeze=False,
                             figsize=(2.8 + 1.0 * n_cols, sum(0.42 * m.shape[0] + 1.3 for m in asr.values())))
    for ax, (name, matrix) in zip(axes[:, 0], asr.items()):
        labels = np.vectorize(lambda a, b: "" if np.isnan(a) else f"{a:.2f}\n{b:.2f}")(
            matrix.to_numpy(float), auc[name].reindex_like(matrix).to_numpy(float))
        sns.heatmap(matrix.astype(float), ax=ax, annot=labels, fmt="", cmap="magma_r", vmin=0, vmax=1,
                    linewidths=0.5, linecolor="white", cbar_kws={"label": "ASR", "pad": 0.01}, annot_kws={"fontsize": 7})
        ax.set_facecolor("0.88")
        ax.set_title(f"{name} (cells: ASR over AUC)", fontsize=9, loc="left")
        ax.set_xlabel("detector scoring the attacked fakes")
        ax.set_ylabel("crafted on")
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        ax.tick_params(axis="y", rotation=0, labelsize=8)
    fig.suptitle(title or "Transfer matrix: attack crafted on A (rows), scored by detector B (columns)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))  # room for the title above the first panel
    save(fig, path, dpi=110)
    return True


__all__ = ["TRANSFER_COLUMNS", "TRANSFER_NOTE", "group_transfer_table", "transfer_matrices", "transfer_plot",
           "transfer_table"]
