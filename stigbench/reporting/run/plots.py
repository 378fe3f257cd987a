"""The figures of a run's report (ROC, score histograms, examples, spectra, attacks). Each function
draws from frames or arrays the caller read from a run folder and writes one PNG
(:mod:`stigbench.reporting.run.figures` calls them); what every figure shares is
:mod:`stigbench.reporting.render.figures`, the comparison's figures are
:mod:`stigbench.reporting.compare.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stigbench.measures.spectrum import log_magnitude, radial_profile
from stigbench.reporting.render.figures import condition_colours, pyplot, save
from stigbench.reporting.run.attack_table import ATTACK_COSTS
from stigbench.reporting.run.metrics_csv import condition_label
from stigbench.reporting.run.roc import clean_scores, panel_keys, panel_title


def _grid(n: int, max_cols: int = 3, w: float = 4.2, h: float = 3.8) -> tuple[Any, np.ndarray]:
    plt = pyplot()
    cols = max(1, min(n, max_cols))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()


def roc_plot(roc: pd.DataFrame, path: Path) -> None:
    """One panel per detector; a curve for the unrefined fakes and each refined set."""
    import seaborn as sns

    panel_cols = panel_keys(roc)
    panels = list(roc.groupby(panel_cols, sort=False))
    labels = list(dict.fromkeys(condition_label(c, r) for c, r in zip(roc["condition"], roc["refiner"])))
    colours = condition_colours(labels)
    with sns.axes_style("whitegrid"):
        fig, axes = _grid(len(panels))
        for ax, (key, g) in zip(axes, panels):
            key = key if isinstance(key, tuple) else (key,)
            for (cond, ref), c in g.groupby(["condition", "refiner"], sort=False):
                lab = condition_label(cond, ref)
                f, t = c["fpr"].to_numpy(), c["tpr"].to_numpy()
                area = float(np.sum(np.diff(f) * (t[1:] + t[:-1]) / 2))  # trapezoids = AUC
                ax.plot(c["fpr"], c["tpr"], color=colours[lab], lw=1.8, label=f"{lab} (AUC {area:.3f})")
            ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")
            ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate (reals called fake)",
                   ylabel="true-positive rate", title=panel_title(key, panel_cols))
            ax.set_aspect("equal")
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save(fig, path)


def score_hist_plot(scores: pd.DataFrame, path: Path, thresholds: dict[str, float] | None = None) -> None:
    """Per detector: distribution of P(fake) on the test reals, the fakes and every refined set,
    with the validation-chosen threshold as a dashed line."""
    import seaborn as sns

    s = clean_scores(scores)
    panel_cols = panel_keys(s)
    panels = list(s.groupby(panel_cols, sort=False))
    thresholds = thresholds or {}
    with sns.axes_style("whitegrid"):
        fig, axes = _grid(len(panels), h=3.4)
        for ax, (key, g) in zip(axes, panels):
            key = key if isinstance(key, tuple) else (key,)
            parts = []
            first = True
            for (cond, ref), c in g.groupby(["condition", "refiner"], sort=False):
                if first:  # the same test reals are scored in every condition; show them once
                    parts.append(pd.DataFrame({"score": c.loc[c["label"] == 0, "score"], "set": "real"}))
                    first = False
                parts.append(pd.DataFrame({"score": c.loc[c["label"] == 1, "score"], "set": condition_label(cond, ref)}))
            data = pd.concat(parts, ignore_index=True)
            order = list(dict.fromkeys(data["set"]))
            sns.histplot(data=data, x="score", hue="set", hue_order=order, bins=np.linspace(0, 1, 26),
                         stat="density", common_norm=False, element="step", fill=True, alpha=0.25,
                         palette=condition_colours(order), ax=ax)
            if ax.get_legend() is not None:  # reals pile up near 0 and fakes near 1: the middle is free
                sns.move_legend(ax, "upper center", fontsize=8, title=None)
            thr = thresholds.get(str(key[0]))
            if thr is not None and np.isfinite(thr):
                ax.axvline(thr, color="k", ls="--", lw=1)
                ax.text(thr, ax.get_ylim()[1] * 0.5, " threshold", fontsize=8, va="center")
            ax.set(xlim=(0, 1), xlabel="score = P(fake)", ylabel="density", title=panel_title(key, panel_cols))
    fig.tight_layout()
    save(fig, path)


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def example_sets(examples_dir: Path) -> dict[str, list[Path]]:
    """``{"real": [...], "fake": [...], "refined:<name>": [...]}`` from a run's ``examples/``."""
    sets: dict[str, list[Path]] = {}
    for name in ["real", "fake"] + sorted(p.name for p in examples_dir.glob("refined-*") if p.is_dir()):
        files = sorted((examples_dir / name).glob("*.png"))
        if files:
            label = f"refined:{name[len('refined-'):]}" if name.startswith("refined-") else name
            sets[label] = files
    return sets


def examples_plot(examples_dir: Path, path: Path, max_images: int = 6) -> bool:
    """Rows of example images, each followed by its log-magnitude spectrum (channel mean, one colour
    scale for all); refined rows show the same fakes as the fake row. False when there are none."""
    plt = pyplot()
    sets = {k: v[:max_images] for k, v in example_sets(examples_dir).items()}
    if not sets:
        return False
    images = {k: [_load_rgb(p) for p in v] for k, v in sets.items()}
    spectra = {k: [log_magnitude(torch.from_numpy(im.transpose(2, 0, 1))).mean(0).numpy() for im in v]
               for k, v in images.items()}
    allspec = np.concatenate([s.ravel() for v in spectra.values() for s in v])
    lo, hi = np.percentile(allspec, [1, 99.5])
    cols = max(len(v) for v in images.values())
    fig, axes = plt.subplots(2 * len(images), cols, figsize=(1.55 * cols + 0.6, 1.55 * 2 * len(images)), squeeze=False)
    for r, (label, ims) in enumerate(images.items()):
        for j in range(cols):
            a_img, a_spec = axes[2 * r, j], axes[2 * r + 1, j]
            for ax in (a_img, a_spec):
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
            if j < len(ims):
                a_img.imshow(np.clip(ims[j], 0, 1), interpolation="nearest")
                a_spec.imshow(spectra[label][j], cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
        axes[2 * r, 0].set_ylabel(label, fontsize=8)
        axes[2 * r + 1, 0].set_ylabel("log|F|", fontsize=8)
    fig.suptitle("Examples (test split) and their log-magnitude spectra", fontsize=10)
    fig.tight_layout()
    save(fig, path)
    return True


def spectra_plots(spectra: Mapping[str, np.ndarray], out_dir: Path) -> None:
    """``spectra.png`` (mean log-magnitude spectra ``(C, H, W)`` per set, channel mean, and their
    differences to ``"real"``) and ``radial_profiles.png`` in ``out_dir``; the profile data also go
    to ``radial_profiles.csv``."""
    plt = pyplot()
    # The same torch reductions as on the runner's tensors, so the numbers match to the last bit.
    spectra = {k: torch.from_numpy(np.asarray(v)) for k, v in spectra.items()}
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
    save(fig, out_dir / "spectra.png", dpi=110)

    profiles = {k: radial_profile(v.mean(dim=0)).numpy() for k, v in spectra.items()}
    frame = pd.DataFrame(profiles)
    frame.insert(0, "frequency", np.arange(len(frame)) / (2 * (len(frame) - 1)))  # cycles/pixel
    frame.to_csv(out_dir / "radial_profiles.csv", index=False)
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
    save(fig, out_dir / "radial_profiles.png", dpi=110)


def attack_plot(table: pd.DataFrame, path: Path, title: str | None = None) -> bool:
    """Evasion (distance of the detectors' AUC from 0.5) against each available quality cost; with
    ``<column>_ci_low/_ci_high`` in ``table`` (an attack summary across datasets) as error bars."""
    costs = [(c, label) for c, label in ATTACK_COSTS if c in table and table[c].notna().any()]
    if table.empty or not costs:
        return False
    plt = pyplot()

    def err(t: pd.DataFrame, col: str) -> np.ndarray | None:
        if f"{col}_ci_low" not in t:
            return None
        lo, hi = t[col] - t[f"{col}_ci_low"], t[f"{col}_ci_high"] - t[col]
        return np.nan_to_num(np.vstack([lo.to_numpy(float), hi.to_numpy(float)]), nan=0.0).clip(min=0)

    fig, axes = plt.subplots(1, len(costs), figsize=(4.6 * len(costs), 4.0), squeeze=False)
    for ax, (cost, label) in zip(axes[0], costs):
        t = table[table[cost].notna()]
        if err(t, "evasion") is None:
            ax.scatter(t[cost], t["evasion"], s=40, color="tab:blue", zorder=3)
        else:
            ax.errorbar(t[cost], t["evasion"], xerr=err(t, cost), yerr=err(t, "evasion"), fmt="o", ms=6, capsize=3,
                        color="tab:blue", ecolor="0.55", zorder=3)
        for _, r in t.iterrows():
            ax.annotate(r["attack"], (r[cost], r["evasion"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set(xlabel=label, ylabel="mean |AUC − 0.5| (lower = better attack)", ylim=(-0.02, 0.52))
        ax.grid(alpha=0.3)
    fig.suptitle(title or "Attacks: evasion against quality cost (best: bottom; left for LFD/FID, right for PSNR)",
                 fontsize=10)
    fig.tight_layout()
    save(fig, path, dpi=110)
    return True
