"""One run's report, derived from the files the run wrote to its folder and nothing else.

``write_run_report(run_dir)`` (called by the runner once ``metrics.csv``, ``scores.csv``, ``run.json``,
``config.json``, ``spectra.npz`` and ``examples/`` exist; rerun it on any run folder to rebuild the
report) reads ``metrics.csv`` (the single source of truth) and writes:

* ``summary.csv`` / ``summary.md`` — the detection table (one row per detector × training set ×
  perturbation × condition, with ΔAUC/ΔAcc against the unrefined fakes and over-correction marked)
  and the quality table (every detector-less metric: LFD, FID, KID ...);
* ``moves.csv`` — per refiner and detector, whether refinement moved the AUC toward, away from or past
  chance (:mod:`stigbench.evaluation.evidence`); their counts head ``summary.md`` and ``report.html``;
* ``roc.csv`` + ``roc.png`` (from ``scores.csv``), ``score_hist.png``, ``examples.png``, ``spectra.png``
  and ``radial_profiles.{png,csv}`` (from ``spectra.npz``), ``attacks.{csv,png}``, ``sweeps.{csv,png}`` and
  ``equal_cost.csv`` where a refiner was swept over its strength (:mod:`stigbench.reporting.sweeps`), and ``selection.png``
  where a refiner logged checkpoint-selection curves (:mod:`stigbench.reporting.selection_plot`);
* ``report.html`` — one self-contained page with all of the above (see :mod:`stigbench.reporting.html`).

The tables come from :mod:`stigbench.reporting.tables`, the figures from :mod:`stigbench.reporting.plots`.
Run folders of stigbench 0.1 also hold ``metrics.json`` (a copy of ``metrics.csv``, no longer written)
and no ``spectra.npz``: their spectra figures are left as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stigbench.core.io import read_json, write_text
from stigbench.evaluation.evidence import counts_line, move_counts, moves
from stigbench.measures.metrics import METRICS
from stigbench.reporting import html as H
from stigbench.reporting.inactive import inactive_lines, mark_summary, run_inactive
from stigbench.reporting.plots import (
    attack_plot,
    examples_plot,
    roc_plot,
    score_hist_plot,
    spectra_plots,
)
from stigbench.reporting.selection_plot import (
    selection_caption,
    selection_curves,
    selection_plot,
    selection_text,
)
from stigbench.reporting.sweeps import sweep_html, sweep_markdown, sweep_table, write_sweeps
from stigbench.reporting.tables import (
    attack_table,
    cross_auc_table,
    cross_info_table,
    cross_quality_table,
    display_cross,
    display_quality,
    display_summary,
    format_value,
    metric_description,
    metric_label,
    metrics_glossary,
    ordered_metrics,
    own_rows,
    quality_table,
    read_metrics,
    roc_data,
    summarize,
    to_markdown,
)

log = logging.getLogger("stigbench")

#: The clean mean log-spectra of a run, one ``(C, H, W)`` array per set (``real``, ``fake``,
#: ``refined:<name>``): written by the runner, read for ``spectra.png`` and ``radial_profiles.*``.
SPECTRA_FILE = "spectra.npz"


def save_spectra(run_dir: Path, spectra: Mapping[str, Any]) -> Path:
    """Write the mean log-spectra (tensors or arrays, by set) to ``run_dir/spectra.npz`` in their own dtype."""
    path = Path(run_dir) / SPECTRA_FILE
    np.savez(path, **{k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for k, v in spectra.items()})
    return path


def load_spectra(run_dir: Path) -> dict[str, np.ndarray] | None:
    """The run's mean log-spectra by set, in the order written; ``None`` without ``spectra.npz`` (0.1 runs)."""
    path = Path(run_dir) / SPECTRA_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}



def own_scores(scores: pd.DataFrame, metrics: pd.DataFrame, record: dict[str, Any]) -> pd.DataFrame:
    """The rows of a ``scores.csv`` frame on the run's own test split (all of them in runs without
    cross-dataset scoring, whose ``scores.csv`` may have no ``test_dataset`` column)."""
    if "test_dataset" not in scores:
        return scores
    own = set(own_rows(metrics)["dataset"]) or {str(record.get("dataset", {}).get("name", ""))}
    test = scores["test_dataset"].astype(str)
    return scores[test.isin(own) | (test == "")]


CROSS_NOTE = ("AUC [95 % bootstrap interval] of each detector (trained on real vs fakes of the run's dataset) on "
              "the test split of each dataset: `fake` = that dataset's test fakes against its test reals, "
              "`refined:<refiner>` = those fakes after the refiner, fitted on the training split of the dataset "
              "under `refiners trained on`. The run's own test split comes first.")


def cross_section(metrics: pd.DataFrame, record: dict[str, Any], dataset: str) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                                           pd.DataFrame]:
    """The cross-dataset tables of a run for reading: AUC per detector × test set, the test sets of
    ``run.json``'s ``cross`` (with errors), and the quality rows; all empty without cross rows or entries."""
    cross = record.get("cross") or {}
    dataset = next(iter(own_rows(metrics)["dataset"]), dataset)  # the name the rows give their own test split
    auc = display_cross(cross_auc_table(metrics), cross, dataset)
    return auc, cross_info_table(cross), cross_quality_table(metrics)


def run_plots(run_dir: Path, record: dict[str, Any], metrics: pd.DataFrame) -> list[str]:
    """``roc.csv``/``roc.png``, ``score_hist.png``, ``attacks.{csv,png}``, ``examples.png``, the spectra
    figures and, for refiners that select a checkpoint, ``selection.png`` from the run folder's files
    (``record``: its ``run.json``; ``metrics``: its ``metrics.csv``).

    A plot that cannot be made (no scores because every detector failed, no examples) is skipped
    with a note, never failing the run: the returned notes go into the report.
    """
    notes: list[str] = []
    scores_path = run_dir / "scores.csv"
    if scores_path.is_file():
        scores = own_scores(pd.read_csv(scores_path, keep_default_na=False), metrics, record)
        try:
            roc = roc_data(scores)
            roc.to_csv(run_dir / "roc.csv", index=False)
            roc_plot(roc, run_dir / "roc.png")
            thresholds = {k: v.get("threshold") for k, v in record.get("detectors", {}).items()}
            score_hist_plot(scores, run_dir / "score_hist.png", thresholds)
        except Exception as exc:  # a broken plot must not cost the run its results
            notes.append(f"ROC/score plots failed: {type(exc).__name__}: {exc}")
            log.warning("report: ROC/score plots failed", exc_info=True)
    else:
        notes.append("no scores.csv (no detector finished): no ROC curves or score histograms")
    try:
        attacks = attack_table(metrics)
        if len(attacks) > 1:
            attacks.to_csv(run_dir / "attacks.csv", index=False)
            attack_plot(attacks, run_dir / "attacks.png")
    except Exception as exc:
        notes.append(f"attack chart failed: {type(exc).__name__}: {exc}")
        log.warning("report: attack chart failed", exc_info=True)
    try:
        spectra = load_spectra(run_dir)
        if spectra is not None:
            spectra_plots(spectra, run_dir)
    except Exception as exc:
        notes.append(f"spectra plots failed: {type(exc).__name__}: {exc}")
        log.warning("report: spectra plots failed", exc_info=True)
    try:
        if not examples_plot(run_dir / "examples", run_dir / "examples.png"):
            notes.append("no example images in examples/")
    except Exception as exc:
        notes.append(f"example grid failed: {type(exc).__name__}: {exc}")
        log.warning("report: example grid failed", exc_info=True)
    try:  # only runs with a strength sweep (--refiner 'stig:strength=*') have these
        write_sweeps(run_dir, sweep_table(metrics))
    except Exception as exc:
        notes.append(f"strength sweep curves failed: {type(exc).__name__}: {exc}")
        log.warning("report: strength sweep curves failed", exc_info=True)
    try:  # only refiners that select a checkpoint (STIG) log the curves; others have no figure
        selection_plot(selection_curves(run_dir), run_dir / "selection.png")
    except Exception as exc:
        notes.append(f"selection curves failed: {type(exc).__name__}: {exc}")
        log.warning("report: selection curves failed", exc_info=True)
    return notes


# -- the report ----------------------------------------------------------------------------------
def _seed(metrics: pd.DataFrame, config: dict[str, Any]) -> Any:
    if "seed" in config.get("config", {}):
        return config["config"]["seed"]
    return metrics["seed"].iloc[0] if len(metrics) else "?"


def _timing(record: dict[str, Any]) -> pd.DataFrame:
    rows = [{"step": "whole run", "seconds": record.get("seconds")}]
    for name, info in record.get("refiners", {}).items():
        rows.append({"step": f"refiner {name}: fit", "seconds": info.get("fit_seconds")})
        rows.append({"step": f"refiner {name}: refine test fakes", "seconds": info.get("refine_seconds")})
    for name, info in record.get("detectors", {}).items():
        rows.append({"step": f"detector {name}: fit + score", "seconds": info.get("seconds")})
    return pd.DataFrame(rows)


def provenance_pairs(record: dict[str, Any], config: dict[str, Any], seed: Any) -> dict[str, Any]:
    prov = record.get("provenance", {})
    git = prov.get("git") or {}
    commit = git.get("commit") or "unknown (not a git checkout)"
    if git.get("dirty"):
        commit += " (uncommitted changes)"
    versions = prov.get("versions") or {}
    return {
        "date": prov.get("date", ""),
        "seed": seed,
        "git commit": commit,
        "device": f"{prov.get('device_name', '')} [{prov.get('device', '')}]",
        "precision": prov.get("precision", ""),
        "CUDA": prov.get("cuda") or "—",
        "python": prov.get("python", ""),
        "platform": prov.get("platform", ""),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        "command": " ".join(map(str, prov.get("command", []))),
        "non-default settings": ", ".join(f"{k}={config.get('config', {}).get(k)!r}"
                                          for k in config.get("non_defaults", [])) or "none",
        "run time": f"{record.get('seconds', '?')} s",
    }


def _dataset_line(record: dict[str, Any]) -> str:
    ds = record.get("dataset", {})
    return (f"{ds.get('real', '?')} real, {ds.get('fake', '?')} fake at {ds.get('size', '?')}x{ds.get('size', '?')}"
            f" ({ds.get('skipped', 0)} skipped, see skipped.csv)" + (" — synthetic dataset" if ds.get("synthetic") else ""))


def refiner_fit_text(config: dict[str, Any]) -> str:
    """What the run's refiners were fitted on, from its ``config.json`` (older runs: the training split)."""
    if config.get("config", {}).get("fit_refiners_on", "train") == "test":
        return ("TEST fakes + training reals (transductive, as in the STIG paper: the refined fakes scored here "
                "are the ones the refiners were fitted on)")
    return "training fakes + training reals (the refined test fakes were never seen by a refiner)"


def _split_text(split: Any) -> str:
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


def render_run_html(run_dir: Path, summary: pd.DataFrame, quality: pd.DataFrame, record: dict[str, Any],
                    config: dict[str, Any], seed: Any, notes: Sequence[str] = (), lead: str = "",
                    cross: Sequence[pd.DataFrame] = (), alerts: Sequence[str] = ()) -> str:
    """The body of ``report.html`` around the tables and the plots found in ``run_dir``; ``lead`` is
    the line shown first (the moves against chance); ``cross``: the tables of :func:`cross_section`;
    ``alerts``: lines shown above everything (the attacks that did nothing)."""
    ds = record.get("dataset", {})
    parts: list[str] = []
    nav = [("detection", "Detection"), ("quality", "Quality"), ("roc", "ROC"), ("scores", "Scores"),
           ("spectra", "Spectra"), ("examples", "Examples"), ("provenance", "Provenance")]
    if (run_dir / "selection.png").is_file():
        nav.insert(-1, ("selection", "Selection"))
    if (run_dir / "sweeps.csv").is_file():
        nav.insert(2, ("sweeps", "Sweeps"))
    cross_auc, cross_info, cross_quality = (*cross, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())[:3]
    if len(cross_auc) or len(cross_info):
        nav.insert(2, ("cross", "Cross-dataset"))
    parts.append("<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in nav) + "</nav>")
    if alerts:
        parts.append(H.box("error", "Attack inactive: these refiners did nothing", alerts))
    if lead:
        parts.append(f'<p class="lead">{H.esc(lead)}</p>')
    errors = record.get("errors") or {}
    if errors:
        parts.append(H.box("error", f"{len(errors)} component(s) failed (details in run.log); their rows are missing:",
                           [f"{k}: {v}" for k, v in errors.items()]))
    if notes:
        parts.append(H.box("warning", "Report notes", notes))
    parts.append(H.key_values({
        "dataset": ds.get("name", ""), "images": _dataset_line(record),
        "split (test = scored)": _split_text(ds.get("split", {})), "seed": seed,
        "refiners": ", ".join(record.get("refiners", {})) or "none",
        "refiners fitted on": refiner_fit_text(config),
        **({"checkpoint kept": kept} if (kept := selection_text(record)) else {}),
        "detectors": ", ".join(record.get("detectors", {})) or "none",
    }))

    parts.append('<h2 id="detection">Detection before and after refinement</h2>')
    if len(summary):
        shown, classes = display_summary(summary)
        titles = {metric_label(n): metric_description(n) for n in [*summary.columns]}
        numeric = [c for c in shown.columns if c not in ("detector", "trained_on", "perturbation", "condition", "note")]
        parts.append(H.table(shown, row_classes=classes, titles=titles, numeric=numeric,
                             nowrap=["detector", "trained_on", "perturbation", "condition"]))
        parts.append(f'<p class="note">{H.esc(DETECTION_NOTE.replace("`", ""))} Detectors are trained on real vs '
                     "original (unrefined) fakes unless a training set is named; shaded rows are the unrefined "
                     "baseline, red rows over-correction, yellow rows an attack that added evidence.</p>")
    else:
        parts.append('<p class="note">No detection results (every detector failed).</p>')

    parts.append('<h2 id="quality">Distance to the real images (lower = closer) and cost of the attack</h2>')
    if len(quality):
        shown = display_quality(quality)
        titles = {metric_label(n): metric_description(n) for n in quality.columns}
        keys = ["perturbation", "condition"]
        parts.append(H.table(shown, titles=titles, numeric=[c for c in shown.columns if c not in keys], nowrap=keys))
        parts.append('<p class="note">LFD: log frequency distance of the mean log-spectra to those of the real test '
                     "images; FID/KID (where present): feature-distribution distances to the reals (lower = closer). "
                     "PSNR/SSIM: each refined image against its original fake (higher = a smaller visible change).</p>")
    else:
        parts.append('<p class="note">No quality metrics.</p>')

    if len(cross_auc) or len(cross_info):
        parts.append('<h2 id="cross">Cross-dataset: detectors trained on this dataset, scored on other test splits</h2>')
        if len(cross_auc):
            keys = ["detector", "test dataset", "refiners trained on"]
            parts.append(H.table(cross_auc, numeric=[c for c in cross_auc.columns if c not in keys], nowrap=keys))
        else:
            parts.append('<p class="note">No cross-dataset AUC.</p>')
        parts.append(f'<p class="note">{H.esc(CROSS_NOTE.replace("`", ""))}</p>')
        failed = [f"{r['test dataset']}: {r['error']}" for _, r in cross_info.iterrows() if r["error"]]
        if failed:
            parts.append(H.box("error", "Cross-dataset cells that failed (their rows are missing):", failed))
        if len(cross_info):
            parts.append(H.table(cross_info, numeric=["image size", "real", "fake"], nowrap=["test dataset"]))
        if len(cross_quality):
            parts.append("<h3>Distance to each dataset's real test images (lower = closer)</h3>")
            keys = ["test dataset", "condition"]
            parts.append(H.table(cross_quality, numeric=[c for c in cross_quality.columns if c not in keys], nowrap=keys))

    def fig(name: str, anchor: str, title: str, caption: str) -> None:
        parts.append(f'<h2 id="{anchor}">{H.esc(title)}</h2>')
        if (run_dir / name).is_file():
            parts.append(H.figure(run_dir / name, title, caption))
        else:
            parts.append(f'<p class="note">{H.esc(name)} not available.</p>')

    if (run_dir / "attacks.png").is_file():
        fig("attacks.png", "attacks", "Attacks against their quality cost",
            "Mean distance of the detectors' AUC from 0.5 (chance) on real vs refined, against each attack's "
            "distance to the reals and its PSNR to the original fakes (data: attacks.csv).")
    parts.append(sweep_html(run_dir))
    fig("roc.png", "roc", "ROC curves", "Test reals against the unrefined fakes and each refined set (data: roc.csv).")
    fig("score_hist.png", "scores", "Score distributions",
        "P(fake) on the test reals, fakes and refined fakes; dashed: the threshold chosen on the validation split.")
    parts.append('<h2 id="spectra">Spectra</h2>')
    for name, caption in (("spectra.png", "Mean log-magnitude spectra and their differences to the reals."),
                          ("radial_profiles.png", "Azimuthally averaged spectra (data: radial_profiles.csv).")):
        if (run_dir / name).is_file():
            parts.append(H.figure(run_dir / name, name, caption))
    fig("examples.png", "examples", "Examples",
        "Test images and their log-magnitude spectra; the refined rows show the same fakes after refinement.")
    if (run_dir / "selection.png").is_file():
        fig("selection.png", "selection", "Refiner checkpoint selection",
            selection_caption(config.get("config", {}).get("fit_refiners_on", "train")))

    parts.append('<h2 id="provenance">Provenance</h2>')
    parts.append(H.key_values(provenance_pairs(record, config, seed)))
    parts.append("<h3>Timing</h3>")
    timing = _timing(record)
    timing["seconds"] = [format_value(float(v), 2) if v is not None else "" for v in timing["seconds"]]
    parts.append(H.table(timing, numeric=["seconds"]))
    used = ordered_metrics([*[c for c in summary.columns if c in METRICS],
                            *[c for c in quality.columns if not c.endswith(("_ci_low", "_ci_high"))
                              and c not in ("perturbation", "condition")]])
    parts.append("<h3>Metrics</h3>")
    parts.append(H.table(metrics_glossary(used)))
    return H.page(f"stigbench run: {ds.get('name', '?')} (seed {seed})", "\n".join(parts),
                  subtitle=f"{run_dir.name} — {record.get('provenance', {}).get('date', '')}")


def write_run_report(run_dir: Path) -> pd.DataFrame:
    """Write the report files of the run folder ``run_dir`` (see the module docstring) from its
    ``metrics.csv``, ``run.json``, ``config.json`` and the other files it holds; return the summary table."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir / "metrics.csv")
    record = read_json(run_dir / "run.json")
    inactive = run_inactive(metrics, record, run_dir)
    summary = mark_summary(summarize(metrics), inactive)
    summary.to_csv(run_dir / "summary.csv", index=False)
    quality = quality_table(metrics)
    config = read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    seed = _seed(metrics, config)
    notes = run_plots(run_dir, record, metrics)
    table = moves(own_rows(metrics), inactive=inactive)
    table.to_csv(run_dir / "moves.csv", index=False)
    lead = counts_line(move_counts(table), inactive)
    alerts = inactive_lines(inactive)

    ds = record["dataset"]
    prov = record.get("provenance", {})
    lines = [
        f"# stigbench run: {ds['name']} (seed {seed})",
        "",
        *[f"**{line}**\n" for line in alerts],
        lead,
        "",
        f"- images: {_dataset_line(record)}",
        f"- split (test = scored): {_split_text(ds['split'])}",
        f"- refiners fitted on: {refiner_fit_text(config)}",
        *([f"- checkpoint kept: {kept}"] if (kept := selection_text(record)) else []),
        f"- device: {prov.get('device_name', '?')}, precision {prov.get('precision', '?')}",
        f"- time: {record['seconds']} s",
        "",
        "## Detection (test split; detectors trained on real vs original fakes)",
        "",
        to_markdown(display_summary(summary)[0]) if len(summary) else "No detection results.",
        "",
        DETECTION_NOTE,
        "",
        "## Distance to the real test images (lower = closer) and cost of the attack",
        "",
        to_markdown(display_quality(quality)) if len(quality) else "No quality metrics.",
        "",
        "LFD, FID, KID: distance to the real test images (lower = closer). PSNR, SSIM: each refined image "
        "against its original fake (higher = a smaller visible change).",
        "",
    ]
    cross_auc, cross_info, cross_quality = cross_section(metrics, record, str(ds["name"]))
    if len(cross_auc) or len(cross_info):
        lines += ["## Cross-dataset (detectors trained on this dataset, scored on other test splits)", "",
                  to_markdown(cross_auc) if len(cross_auc) else "No cross-dataset AUC.", "", CROSS_NOTE, ""]
        if len(cross_info):
            lines += [to_markdown(cross_info), ""]
        if len(cross_quality):
            lines += ["Distance to each dataset's real test images (lower = closer):", "", to_markdown(cross_quality), ""]
    if record.get("errors"):
        lines += ["## Errors", ""] + [f"- **{k}**: {v}" for k, v in record["errors"].items()] + [""]
    if notes:
        lines += ["## Report notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += sweep_markdown(run_dir)
    plots = [n for n in ("attacks.png", "sweeps.png", "roc.png", "score_hist.png", "spectra.png", "radial_profiles.png",
                         "examples.png", "selection.png") if (run_dir / n).is_file()]
    lines += ["Full report with plots: `report.html`. Plots: " + ", ".join(f"`{n}`" for n in plots) + ".", ""]
    write_text(run_dir / "summary.md", "\n".join(lines))
    cross = (cross_auc, cross_info, cross_quality)
    write_text(run_dir / "report.html", render_run_html(run_dir, summary, quality, record, config, seed, notes, lead,
                                                        cross, alerts))
    return summary



__all__ = [
    "SPECTRA_FILE", "cross_section", "load_spectra", "own_scores", "provenance_pairs", "refiner_fit_text", "render_run_html", "run_plots",
    "save_spectra", "write_run_report",
]
