"""``report.html`` of a run: one self-contained page (:mod:`stigbench.reporting.render.html`) around
the run's tables and the figures found in its folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from stigbench.measures.metrics import METRICS
from stigbench.reporting.render import html as H
from stigbench.reporting.render.metric_labels import metric_description, metric_label, metrics_glossary, ordered_metrics
from stigbench.reporting.render.numbers import format_value
from stigbench.reporting.run.cross_tables import CROSS_NOTE
from stigbench.reporting.run.deployed_table import DEPLOYED_METRICS, DEPLOYED_NOTE, display_deployed
from stigbench.core.contracts import is_released
from stigbench.reporting.run.descriptions import (DETECTION_NOTE, RELEASED_NOTE, dataset_line, refiner_fit_text,
                                                  split_text)
from stigbench.reporting.run.detection_table import display_summary
from stigbench.reporting.run.quality_table import display_quality
from stigbench.reporting.run.selection_plot import selection_caption, selection_text
from stigbench.reporting.run.sweeps import sweep_html
from stigbench.reporting.run.transfer import TRANSFER_NOTE


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


def render_run_html(run_dir: Path, summary: pd.DataFrame, quality: pd.DataFrame, record: dict[str, Any],
                    config: dict[str, Any], seed: Any, notes: Sequence[str] = (), lead: str = "",
                    cross: Sequence[pd.DataFrame] = (), alerts: Sequence[str] = (),
                    deployed: pd.DataFrame | None = None) -> str:
    """The body of ``report.html`` around the tables and the plots found in ``run_dir``; ``lead`` is
    the line shown first (the moves against chance); ``cross``: the tables of :func:`cross_section`;
    ``alerts``: lines shown above everything (the attacks that did nothing)."""
    cross_auc, cross_info, cross_quality = (*cross, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())[:3]
    has_cross = bool(len(cross_auc) or len(cross_info))
    parts = [*_head(run_dir, record, config, seed, notes, lead, alerts, has_cross), *_detection_html(summary),
             *(_deployed_html(deployed) if deployed is not None and len(deployed) else []), *_quality_html(quality), *(_cross_html(cross_auc, cross_info, cross_quality) if has_cross else []),
             *_figures_html(run_dir, config), *_provenance_html(record, config, seed, summary, quality)]
    return H.page(f"stigbench run: {record.get('dataset', {}).get('name', '?')} (seed {seed})", "\n".join(parts),
                  subtitle=f"{run_dir.name} — {record.get('provenance', {}).get('date', '')}")


def _head(run_dir: Path, record: dict[str, Any], config: dict[str, Any], seed: Any, notes: Sequence[str], lead: str,
          alerts: Sequence[str], has_cross: bool) -> list[str]:
    """The navigation, what needs attention first (inactive attacks, the moves, errors, notes) and the run's facts."""
    ds = record.get("dataset", {})
    parts: list[str] = []
    nav = [("detection", "Detection"), ("quality", "Quality"), ("roc", "ROC"), ("scores", "Scores"),
           ("spectra", "Spectra"), ("examples", "Examples"), ("provenance", "Provenance")]
    if (run_dir / "selection.png").is_file():
        nav.insert(-1, ("selection", "Selection"))
    if (run_dir / "sweeps.csv").is_file():
        nav.insert(2, ("sweeps", "Sweeps"))
    if has_cross:
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
        "dataset": ds.get("name", ""), "images": dataset_line(record),
        "split (test = scored)": split_text(ds.get("split", {})), "seed": seed,
        "refiners": ", ".join(record.get("refiners", {})) or "none",
        "refiners fitted on": refiner_fit_text(config),
        **({"checkpoint kept": kept} if (kept := selection_text(record)) else {}),
        "detectors": ", ".join(record.get("detectors", {})) or "none",
    }))
    return parts


def _detection_html(summary: pd.DataFrame) -> list[str]:
    parts = ['<h2 id="detection">Detection before and after refinement</h2>']
    if len(summary):
        shown, classes = display_summary(summary)
        titles = {metric_label(n): metric_description(n) for n in [*summary.columns]}
        numeric = [c for c in shown.columns if c not in ("detector", "trained_on", "perturbation", "condition", "note")]
        parts.append(H.table(shown, row_classes=classes, titles=titles, numeric=numeric,
                             nowrap=["detector", "trained_on", "perturbation", "condition"]))
        parts.append(f'<p class="note">{H.esc(DETECTION_NOTE.replace("`", ""))} Detectors are trained on real vs '
                     "original (unrefined) fakes unless a training set is named; shaded rows are the unrefined "
                     "baseline, red rows over-correction, yellow rows an attack that added evidence.</p>")
        if "trained_on" in summary and summary["trained_on"].astype(str).map(is_released).any():
            parts.append(f'<p class="note">{H.esc(RELEASED_NOTE.replace("`", ""))}</p>')
    else:
        parts.append('<p class="note">No detection results (every detector failed).</p>')
    return parts


def _deployed_html(deployed: pd.DataFrame) -> list[str]:
    shown = display_deployed(deployed)
    titles = {metric_label(n): metric_description(n) for n in DEPLOYED_METRICS}
    keys = ["detector", "condition", "knowledge", "target", "budget"]
    return ['<h2 id="deployed">The detector as deployed</h2>',
            H.table(shown, titles=titles, numeric=[c for c in shown.columns if c not in keys], nowrap=keys),
            f'<p class="note">{H.esc(DEPLOYED_NOTE.replace("`", ""))}</p>']


def _quality_html(quality: pd.DataFrame) -> list[str]:
    parts = ['<h2 id="quality">Distance to the real images (lower = closer) and cost of the attack</h2>']
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
    return parts


def _cross_html(cross_auc: pd.DataFrame, cross_info: pd.DataFrame, cross_quality: pd.DataFrame) -> list[str]:
    parts = ['<h2 id="cross">Cross-dataset: detectors trained on this dataset, scored on other test splits</h2>']
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
    return parts


def _figures_html(run_dir: Path, config: dict[str, Any]) -> list[str]:
    """The sections of the figures the run folder holds (a missing one says so)."""
    parts: list[str] = []

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
    if (run_dir / "transfer.png").is_file():
        fig("transfer.png", "transfer", "Transfer matrix of the gradient attacks", TRANSFER_NOTE + " (data: transfer.csv)")
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
    return parts


def _provenance_html(record: dict[str, Any], config: dict[str, Any], seed: Any, summary: pd.DataFrame,
                     quality: pd.DataFrame) -> list[str]:
    """Provenance, timing and the glossary of the metrics the tables show."""
    parts = ['<h2 id="provenance">Provenance</h2>', H.key_values(provenance_pairs(record, config, seed)),
             "<h3>Timing</h3>"]
    timing = _timing(record)
    timing["seconds"] = [format_value(float(v), 2) if v is not None else "" for v in timing["seconds"]]
    parts.append(H.table(timing, numeric=["seconds"]))
    used = ordered_metrics([*[c for c in summary.columns if c in METRICS],
                            *[c for c in quality.columns if not c.endswith(("_ci_low", "_ci_high"))
                              and c not in ("perturbation", "condition")]])
    parts.append("<h3>Metrics</h3>")
    parts.append(H.table(metrics_glossary(used)))
    return parts


__all__ = ["provenance_pairs", "render_run_html"]
