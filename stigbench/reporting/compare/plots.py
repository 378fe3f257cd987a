"""The figures of a comparison across runs, sized for many datasets (20 stay legible at 1,400 pixels):

* :func:`auc_heatmaps`: detectors × datasets of the AUC on the fakes and after each attack, and of
  ΔAUC (refined − fake), one panel per condition stacked vertically, a ``mean`` column at the right;
* :func:`leaderboard_plot`: per detector, in rank order, its mean AUC on the fakes and after each
  attack with bootstrap intervals over datasets;
* :func:`quality_plot`: each quality metric per dataset and condition;
* :func:`cross_auc_plot`: the train × test AUC matrices of :mod:`stigbench.reporting.compare.cross`.

The numbers come from the comparison's aggregate (:mod:`stigbench.reporting.compare.aggregate`) and leaderboard
(:mod:`stigbench.reporting.compare.leaderboard`); every function writes one PNG and returns False when there is
nothing to draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stigbench.reporting.compare.tables import condition_order, group_header, standard_rows
from stigbench.reporting.render.figures import condition_colours, pyplot, save
from stigbench.reporting.render.metric_labels import metric_label, ordered_metrics
from stigbench.reporting.run.metrics_csv import DEFAULT_PERTURBATION

#: The column of a heat map that averages its row over the datasets.
MEAN_COLUMN = "mean"
#: Beyond this many datasets the heat-map cells carry no numbers (colour only).
ANNOTATE_UP_TO = 30


def auc_matrices(agg: pd.DataFrame, groups: pd.DataFrame, detectors: list[str] | None = None
                 ) -> dict[str, pd.DataFrame]:
    """Per condition (``fake``, then each ``refined:<r>``), the mean AUC over seeds as a detectors ×
    dataset-groups frame (detectors trained on the fakes, clean images), with a last ``mean`` column
    over the datasets. ``detectors`` fixes the row order (e.g. the leaderboard's)."""
    a = standard_rows(agg, "auc")
    if a.empty:
        return {}
    present = set(a["group"])
    cols = [g for g in groups["group"] if g in present]
    rows = [d for d in (detectors or []) if d in set(a["detector"])]
    rows += [d for d in dict.fromkeys(a["detector"]) if d not in rows]
    out = {}
    for cond in condition_order(a):
        m = a[a["condition_label"] == cond].pivot_table(index="detector", columns="group", values="mean", aggfunc="mean")
        m = m.reindex(index=rows, columns=cols)
        m[MEAN_COLUMN] = m[cols].mean(axis=1)
        out[cond] = m
    return out


def delta_matrices(matrices: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """ΔAUC per refined set: its matrix minus the ``fake`` one (the ``mean`` column over datasets
    where both exist)."""
    if "fake" not in matrices:
        return {}
    fake = matrices["fake"].drop(columns=MEAN_COLUMN)
    out = {}
    for cond, m in matrices.items():
        if cond == "fake":
            continue
        d = m.drop(columns=MEAN_COLUMN) - fake
        d[MEAN_COLUMN] = d.mean(axis=1)
        out[cond] = d
    return out


def heatmap_plot(matrices: dict[str, pd.DataFrame], path: Path, title: str, cbar_label: str, center: float,
                 limits: tuple[float, float], cmap: str = "RdBu_r", signed: bool = False) -> bool:
    """Stacked heat maps, one per entry of ``matrices`` (detectors × datasets + ``mean``): cells
    annotated with two decimals up to :data:`ANNOTATE_UP_TO` datasets, one colour scale, missing cells grey."""
    import seaborn as sns

    if not matrices:
        return False
    plt = pyplot()
    first = next(iter(matrices.values()))
    n_rows, n_cols = first.shape
    label_len = max((len(str(c)) for c in first.columns), default=4)
    cell_w = 0.5 if n_cols > 12 else 0.75
    width = min(16.0, 2.6 + cell_w * n_cols + 1.2)
    panel_h = 0.34 * n_rows + 0.7
    bottom = 0.3 + 0.05 * min(label_len, 28)  # rotated dataset names under the last panel
    fig, axes = plt.subplots(len(matrices), 1, figsize=(width, panel_h * len(matrices) + bottom + 0.8),
                             squeeze=False, gridspec_kw={"hspace": 0.35})
    annotate = n_cols <= ANNOTATE_UP_TO
    fmt = "+.2f" if signed else ".2f"
    for k, (cond, m) in enumerate(matrices.items()):
        ax = axes[k, 0]
        last = k == len(matrices) - 1
        sns.heatmap(m.astype(float), ax=ax, annot=annotate, fmt=fmt, cmap=cmap, center=center, vmin=limits[0],
                    vmax=limits[1], linewidths=0.5, linecolor="white", cbar=True, cbar_kws={"label": cbar_label,
                                                                                             "pad": 0.01},
                    annot_kws={"fontsize": 7.5 if n_cols > 12 else 9}, xticklabels=last, yticklabels=True)
        ax.set_facecolor("0.88")  # missing cells
        ax.axvline(n_cols - 1, color="black", lw=1.5)  # the mean column stands apart
        ax.set_title(cond, fontsize=10, loc="left")
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="y", rotation=0, labelsize=9)
        if last:
            ax.tick_params(axis="x", rotation=40, labelsize=8.5)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=min(0.3, 2.2 / width), right=0.97, top=1 - 0.8 / fig.get_figheight(),
                        bottom=bottom / fig.get_figheight())
    save(fig, path, dpi=100)
    return True


def auc_heatmaps(agg: pd.DataFrame, groups: pd.DataFrame, auc_path: Path, delta_path: Path,
                 detectors: list[str] | None = None) -> tuple[bool, bool]:
    """``auc_path``: AUC heat maps (fake and each refined set; 0.5 = chance, white); ``delta_path``:
    ΔAUC (refined − fake; blue = the attack lowered the AUC). Whether each was written."""
    mats = auc_matrices(agg, groups, detectors)
    n = len(next(iter(mats.values())).columns) - 1 if mats else 0
    has_auc = heatmap_plot(mats, auc_path, f"AUC per detector and dataset (mean over seeds; {n} datasets; "
                           "0.5 = chance)", "AUC", 0.5, (0.0, 1.0))
    deltas = delta_matrices(mats)
    lim = max([0.1, *[float(np.nanmax(np.abs(d.to_numpy(float)))) for d in deltas.values()
                      if np.isfinite(d.to_numpy(float)).any()]])
    lim = float(np.ceil(lim * 10) / 10)
    has_delta = heatmap_plot(deltas, delta_path, "ΔAUC = AUC after the attack − AUC on the fakes (negative: the "
                             "attack lowered it)", "ΔAUC", 0.0, (-lim, lim), cmap="RdBu_r", signed=True)
    return has_auc, has_delta


def leaderboard_plot(board: pd.DataFrame, path: Path) -> bool:
    """One row per detector in rank order (best on top): its mean AUC on the fakes and after each
    attack over the datasets, with 95 % bootstrap intervals over datasets; dashed: chance."""
    base = board[board["attack"] == ""] if len(board) else board
    if base.empty:
        return False
    plt = pyplot()
    base = base.sort_values("rank")
    attacks = [a for a in dict.fromkeys(board["attack"]) if a]
    labels = ["fake", *[f"refined:{a}" for a in attacks]]
    colours = condition_colours(labels)
    y = {d: i for i, d in enumerate(base["detector"])}
    offs = np.linspace(-0.22, 0.22, len(labels)) if len(labels) > 1 else np.zeros(1)
    fig, ax = plt.subplots(figsize=(9.0, 0.48 * len(y) + 1.9))
    for k, (label, attack) in enumerate(zip(labels, ["", *attacks])):
        sub = board[board["attack"] == attack]
        col = "auc_fake" if attack == "" else "auc"
        ys = np.array([y[d] for d in sub["detector"]]) + offs[k]
        x = sub[col].to_numpy(float)
        err = np.nan_to_num(np.vstack([x - sub[f"{col}_ci_low"].to_numpy(float),
                                       sub[f"{col}_ci_high"].to_numpy(float) - x]), nan=0.0).clip(min=0)
        ax.errorbar(x, ys, xerr=err, fmt="o" if attack == "" else "s", ms=6, capsize=3, color=colours[label],
                    label=label, zorder=3)
        if attack:
            fake = base.set_index("detector")["auc_fake"]
            for d, xv, yv in zip(sub["detector"], x, ys):
                if d in fake.index and np.isfinite(fake[d]):
                    ax.plot([fake[d], xv], [y[d] + offs[0], yv], color=colours[label], lw=0.8, alpha=0.5, zorder=2)
    ax.axvline(0.5, color="0.4", ls="--", lw=1)
    ax.set_yticks(range(len(y)), [f"{int(r)}. {d} ({int(n)} datasets)"
                                  for d, r, n in zip(base["detector"], base["rank"], base["datasets"])])
    ax.invert_yaxis()
    lows = [board[c].min() for c in ("auc_fake_ci_low", "auc_ci_low", "auc_fake", "auc") if c in board]
    ax.set_xlim(min(0.4, float(np.nanmin(lows)) - 0.05) if lows else 0.0, 1.01)
    ax.set_xlabel("mean AUC over datasets (95 % bootstrap interval over datasets)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8.5, ncol=min(5, len(labels)), frameon=False)
    fig.suptitle("Robustness leaderboard (ranked by the lowest mean AUC after any attack)", fontsize=10.5)
    fig.tight_layout()
    save(fig, path, dpi=110)
    return True


def quality_plot(agg: pd.DataFrame, groups: pd.DataFrame, path: Path) -> bool:
    """Bars per dataset group and condition, one panel per quality metric (its own scale), stacked
    vertically; error bars ± 1 std over seeds."""
    import seaborn as sns

    q = agg[agg["detector"] == ""]
    if q.empty:
        return False
    plt = pyplot()
    names = ordered_metrics(q["metric"])
    conds = condition_order(q)
    colours = condition_colours(conds)
    glabels = [g for g in groups["group"] if g in set(q["group"])]
    header = group_header(groups)
    width = min(15.0, max(6.0, 1.6 + 0.22 * len(conds) * len(glabels) + 0.3 * len(glabels)))
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(len(names), 1, figsize=(width, 2.6 * len(names) + 1.4), squeeze=False)
        bw = 0.8 / max(1, len(conds))
        for r, metric in enumerate(names):
            ax = axes[r, 0]
            sub = q[(q["metric"] == metric) & (q["perturbation"] == DEFAULT_PERTURBATION)]
            for k, cond in enumerate(conds):
                s = sub[sub["condition_label"] == cond].set_index("group").reindex(glabels)
                x = np.arange(len(glabels)) - 0.4 + bw * (k + 0.5)
                err = np.where(s["n"].fillna(0) > 1, s["std"], 0.0)
                ax.bar(x, s["mean"], width=bw, yerr=np.nan_to_num(err), capsize=2, color=colours[cond],
                       label=cond if r == 0 else None)
            last = r == len(names) - 1
            ax.set_xticks(range(len(glabels)), [header[g] for g in glabels] if last else [""] * len(glabels),
                          rotation=40 if last and len(glabels) > 3 else 0, ha="right" if len(glabels) > 3 else "center")
            ax.set_xlim(-0.6, len(glabels) - 0.4)
            ax.set_ylabel(metric_label(metric))
        axes[0, 0].set_title("Distance to the real images (lower = closer)", fontsize=10)
        fig.legend(loc="upper right", ncol=max(1, len(conds)), fontsize=9, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.97))
    save(fig, path)
    return True


def cross_auc_plot(cagg: pd.DataFrame, groups: pd.DataFrame, path: Path) -> bool:
    """The train × test AUC matrices of :func:`stigbench.reporting.compare.cross.cross_aggregate` as heat maps:
    one row of panels per detector (the mean over detectors first), the unrefined fakes and each
    refined set side by side; cells annotated with mean (± std over seeds), one colour scale for all,
    centred on 0.5 (chance). Beyond 6 test datasets only the mean over detectors is drawn, its panels
    stacked, so that the figure stays legible. False when there is nothing to draw."""
    import seaborn as sns

    from stigbench.reporting.compare.cross import matrix_axes

    if cagg.empty:
        return False
    plt = pyplot()
    detectors, trains, tests, conds = matrix_axes(cagg, groups)
    many = len(tests) > 6
    header = group_header(groups)
    w, h = (0.55 if many else 1.1) * len(tests) + 1.6 + 0.06 * max(len(header[t]) for t in trains), \
        (0.34 if many else 0.75) * len(trains) + 1.3
    panels = [(d, c) for d in detectors[:1] for c in conds] if many else [(d, c) for d in detectors for c in conds]
    n_rows, n_cols = (len(panels), 1) if many else (len(detectors), len(conds))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(w * n_cols + 0.8, h * n_rows), squeeze=False)
    for k, (detector, cond) in enumerate(panels):
        r, c = (k, 0) if many else divmod(k, len(conds))
        sub = cagg[(cagg["detector"] == detector) & (cagg["condition_label"] == cond)]
        mean = np.full((len(trains), len(tests)), np.nan)
        text = np.full(mean.shape, "", dtype=object)
        for (group, test), rec in sub.set_index(["group", "test_dataset"]).iterrows():
            i, j = trains.index(group), tests.index(test)
            mean[i, j] = rec["mean"]
            text[i, j] = f"{rec['mean']:.2f}" + (f"\n±{rec['std']:.2f}" if rec["n"] > 1 and not many else "")
        ax = axes[r, c]
        sns.heatmap(pd.DataFrame(mean, index=[header[t] for t in trains], columns=tests), ax=ax, annot=text,
                    fmt="", cmap="RdBu_r", center=0.5, vmin=0.0, vmax=1.0, linewidths=0.5, linecolor="white",
                    cbar=many or c == len(conds) - 1, cbar_kws={"label": "AUC"},
                    annot_kws={"fontsize": 7 if many else 8})
        ax.set_facecolor("0.9")  # missing cells
        ax.set_title(f"{detector}: {cond}", fontsize=9)
        ax.set_xlabel("test dataset" if r == n_rows - 1 else "")
        ax.set_ylabel("trained on" if c == 0 else "")
        ax.tick_params(axis="y", rotation=0)
    fig.suptitle("AUC, train × test (0.5 = chance; diagonal: own test split)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save(fig, path, dpi=110)
    return True


__all__ = ["ANNOTATE_UP_TO", "MEAN_COLUMN", "auc_heatmaps", "auc_matrices", "cross_auc_plot", "delta_matrices",
           "heatmap_plot", "leaderboard_plot", "quality_plot"]
