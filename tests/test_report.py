"""Reports: per-run tables and the self-contained report.html, the cross-run comparison, and both pages
rendered in a real headless browser (Debian's ``chromium``; those tests skip only where none is
installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from stigbench.measures import metrics as M
from stigbench.cli import main
from stigbench.reporting.compare.collect import find_runs, run_settings
from stigbench.reporting.compare.comparison import compare_runs
from stigbench.reporting.render.latex import latex_table
from stigbench.reporting.render.numbers import format_ci
from stigbench.reporting.run.attack_table import attack_table
from stigbench.reporting.run.detection_table import OVER_CORRECTION, summarize
from stigbench.reporting.run.figures import SPECTRA_FILE, load_spectra
from stigbench.reporting.run.metrics_csv import read_metrics
from stigbench.reporting.run.quality_table import quality_table
from stigbench.reporting.run.report import write_run_report
from stigbench.reporting.run.roc import roc_data
from stigbench.evaluation.rows import METRIC_COLUMNS
from stigbench.core.config import RunConfig
from stigbench.pipeline.runner import run_benchmark


# -- hand-made metrics and run folders -----------------------------------------------------------
def row(metric, value, detector="", condition="fake", refiner="", trained_on=None, perturbation="none",
        lo=np.nan, hi=np.nan, dataset="toy", seed=0):
    return {"dataset": dataset, "seed": seed, "refiner": refiner, "detector": detector,
            "trained_on": trained_on if trained_on is not None else ("fake" if detector else ""),
            "condition": condition, "perturbation": perturbation, "metric": metric, "value": value,
            "ci_low": lo, "ci_high": hi}


def toy_metrics(auc_a_refined: float = 0.45, auc_b_refined: float = 0.7, lfd_fake: float = 0.9,
                seed: int = 0, dataset: str = "toy") -> pd.DataFrame:
    r = lambda *a, **k: row(*a, dataset=dataset, seed=seed, **k)  # noqa: E731
    rows = [
        r("auc", 0.95, "a", lo=0.90, hi=0.99), r("acc", 0.90, "a"),
        r("auc", auc_a_refined, "a", "refined", "stig", lo=0.35, hi=0.55), r("acc", 0.40, "a", "refined", "stig"),
        r("auc", 0.80, "b"), r("acc", 0.75, "b"),
        r("auc", auc_b_refined, "b", "refined", "stig"), r("acc", 0.60, "b", "refined", "stig"),
        r("lfd", lfd_fake), r("lfd", 0.3, condition="refined", refiner="stig"),
    ]
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def write_run(folder: Path, seed: int, dataset: str = "toy", n_boot: int = 500, metrics: pd.DataFrame | None = None,
              spec: dict | None = None, errors: dict | None = None, **metric_kw) -> Path:
    """A minimal run folder as the runner leaves it: metrics.csv (``metrics``, default :func:`toy_metrics`),
    config.json (``spec`` adds dataset-spec fields), run.json (``errors``: failed components)."""
    folder.mkdir(parents=True)
    if metrics is None:
        metrics = toy_metrics(seed=seed, dataset=dataset, **metric_kw)
    metrics.to_csv(folder / "metrics.csv", index=False)
    config = {**RunConfig().to_dict(), "dataset": dataset, "seed": seed, "n_boot": n_boot, "out": str(folder.parent)}
    (folder / "config.json").write_text(json.dumps({"config": config, "non_defaults": [], "dataset_spec": {
        "name": dataset, "size": 32, "spec_path": f"/somewhere/{seed}.toml", **(spec or {})}, "image_size": 32}))
    (folder / "run.json").write_text(json.dumps({"provenance": {"date": "2026-01-01T00:00:00+00:00", "device": "cpu",
                                                                "git": {"commit": "abc", "dirty": False}},
                                                 "dataset": {"name": dataset}, "errors": errors or {}, "seconds": 1.0,
                                                 "status": "complete"}))
    return folder


# -- per-run tables ------------------------------------------------------------------------------
def test_summarize_delta_and_over_correction():
    s = summarize(toy_metrics()).set_index(["detector", "condition"])
    assert s.loc[("a", "fake"), "delta_auc"] == pytest.approx(0.0)
    assert s.loc[("a", "refined:stig"), "delta_auc"] == pytest.approx(0.45 - 0.95)
    assert s.loc[("b", "refined:stig"), "delta_auc"] == pytest.approx(0.7 - 0.8)
    assert s.loc[("a", "refined:stig"), "delta_acc"] == pytest.approx(0.40 - 0.90)
    assert s.loc[("a", "refined:stig"), "note"] == OVER_CORRECTION  # AUC 0.45 < 0.5
    assert s.loc[("b", "refined:stig"), "note"] == "" and s.loc[("a", "fake"), "note"] == ""
    assert s.loc[("a", "fake"), "auc_ci_low"] == pytest.approx(0.90)
    assert set(s.index.get_level_values("detector")) == {"a", "b"}  # no quality rows among detectors


def test_variants_are_kept_apart_and_quality_is_generic():
    m = toy_metrics()
    extra = [row("auc", 0.6, "a", perturbation="jpeg75"), row("auc", 0.52, "a", "refined", "stig", perturbation="jpeg75"),
             row("auc", 0.9, "a", trained_on="refined"), row("auc", 0.85, "a", "refined", "stig", trained_on="refined"),
             row("tpr_at_fpr05", 0.5, "a"), row("fid", 12.5), row("fid", 4.0, condition="refined", refiner="stig")]
    m = pd.concat([pd.DataFrame(extra), m], ignore_index=True)  # variants first in the file
    s = summarize(m)
    assert len(s) == 8  # 2 detectors x 2 conditions + 2 variants of a x 2 conditions
    # a detector's rows stay together, the standard variant and the unrefined fakes first
    assert list(zip(s.detector, s.perturbation, s.trained_on, s.condition))[:3] == [
        ("a", "none", "fake", "fake"), ("a", "none", "fake", "refined:stig"), ("a", "jpeg75", "fake", "fake")]
    assert list(s.detector) == ["a"] * 6 + ["b"] * 2
    jpeg = s[(s.perturbation == "jpeg75") & (s.condition == "refined:stig")].iloc[0]
    assert jpeg["delta_auc"] == pytest.approx(0.52 - 0.6)  # against the fakes of the same perturbation
    retrained = s[(s.trained_on == "refined") & (s.condition == "refined:stig")].iloc[0]
    assert retrained["delta_auc"] == pytest.approx(0.85 - 0.9)
    q = quality_table(m).set_index("condition")
    assert list(q.columns[:3]) == ["perturbation", "lfd", "fid"]
    assert q.loc["refined:stig", "fid"] == 4.0 and q.loc["fake", "lfd"] == 0.9


def test_format_ci():
    assert format_ci(0.9312, 0.8811, 0.9723) == "0.931 [0.881, 0.972]"
    assert format_ci(0.5, np.nan, np.nan) == "0.500"


def test_roc_data_matches_metrics_roc_curve():
    rng = np.random.default_rng(0)
    frames = []
    for cond, refiner, shift in (("fake", "", 2.0), ("refined", "stig", 0.3)):
        labels = np.r_[np.zeros(40, int), np.ones(30, int)]
        scores = 1 / (1 + np.exp(-(rng.normal(size=70) + shift * labels)))
        frames.append(pd.DataFrame({"detector": "d", "condition": cond, "refiner": refiner, "path": "x",
                                    "label": labels, "score": scores.round(2)}))  # rounding makes ties
    scores = pd.concat(frames, ignore_index=True)
    roc = roc_data(scores)
    assert list(roc.columns) == ["detector", "condition", "refiner", "fpr", "tpr", "threshold"]
    for (cond, refiner), g in scores.groupby(["condition", "refiner"]):
        fpr, tpr, thr = M.roc_curve(g.label.to_numpy(), g.score.to_numpy())
        r = roc[(roc.condition == cond) & (roc.refiner == refiner)]
        np.testing.assert_allclose(r.fpr, fpr)
        np.testing.assert_allclose(r.tpr, tpr)
        np.testing.assert_allclose(r.threshold, thr)
        area = np.sum(np.diff(r.fpr) * (r.tpr.to_numpy()[1:] + r.tpr.to_numpy()[:-1]) / 2)
        assert area == pytest.approx(M.auc(g.label, g.score))


# -- a real run ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_run(tiny_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report_runs")
    result = run_benchmark(RunConfig(real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"),
                                     refiners="spectral-match", detectors="durall", n_boot=20, out=str(out),
                                     progress=False, seed=0))
    assert {"detector", "condition", "auc", "delta_auc", "note"} <= set(result.summary.columns)
    return result.run_dir


def assert_self_contained(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I), "external reference"
    assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import|<link\b|<script\b", page, re.I)
    srcs = re.findall(r"""<img\b[^>]*\bsrc="([^"]*)""", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)


@pytest.mark.heavy
def test_run_report_files(real_run):
    for name in ("summary.md", "summary.csv", "report.html", "roc.csv", "roc.png", "score_hist.png", "examples.png"):
        assert (real_run / name).is_file(), name
    roc = pd.read_csv(real_run / "roc.csv", keep_default_na=False)
    assert list(roc.columns) == ["detector", "trained_on", "perturbation", "condition", "refiner", "fpr", "tpr", "threshold"]
    assert set(roc.condition) == {"fake", "refined"}
    page = (real_run / "report.html").read_text(encoding="utf-8")
    assert_self_contained(page)
    assert page.count("<img ") == 6  # attacks, roc, scores, spectra, radial profiles, examples
    assert (real_run / "attacks.csv").is_file()
    assert re.search(r"\d\.\d{3}<span class=\"ci\">\[\d\.\d{3}, \d\.\d{3}\]", page)  # value [low, high]
    for text in ("Provenance", "git commit", "precision", "Timing", "ΔAUC", "LFD", "refined:spectral-match"):
        assert text in page, text
    md = (real_run / "summary.md").read_text(encoding="utf-8")
    assert "| durall | refined:spectral-match |" in md and "report.html" in md
    # the moves against chance head both reports; the per-detector classes are in moves.csv and the table
    assert md.splitlines()[2].startswith("Moves against chance") and "spectral-match: " in md.splitlines()[2]
    assert '<p class="lead">Moves against chance' in page
    moves = pd.read_csv(real_run / "moves.csv", keep_default_na=False)
    assert list(moves[["refiner", "detector"]].itertuples(index=False, name=None)) == [("spectral-match", "durall")]
    assert "| move | note |" in md
    assert not (real_run / "metrics.json").exists()  # metrics.csv is the one copy of the numbers
    spectra = load_spectra(real_run)  # what the spectra figures are drawn from
    assert list(spectra) == ["real", "fake", "refined:spectral-match"]
    assert all(s.shape == (3, 32, 32) and s.dtype == np.float64 for s in spectra.values())


@pytest.mark.heavy
def test_run_report_is_a_function_of_the_run_folder(real_run, tmp_path):
    run = shutil.copytree(real_run, tmp_path / real_run.name)
    derived = ["summary.csv", "summary.md", "moves.csv", "roc.csv", "attacks.csv", "radial_profiles.csv",
               "roc.png", "score_hist.png", "examples.png", "spectra.png", "radial_profiles.png", "attacks.png"]
    for name in derived:
        (run / name).unlink()
    write_run_report(run)
    for name in derived:  # the same bytes as the runner's report
        assert (run / name).read_bytes() == (real_run / name).read_bytes(), name
    page = (run / "report.html").read_text(encoding="utf-8")
    assert page.count("<img ") == 6


def test_run_report_of_a_0_1_run_folder(tmp_path):
    run = shutil.copytree(Path(__file__).parent / "fixtures" / "run-v0.1", tmp_path / "old")
    assert (run / "metrics.json").is_file() and not (run / SPECTRA_FILE).exists()
    summary = write_run_report(run)
    assert set(summary.detector) == {"durall", "spectrum-cnn"}
    assert (run / "report.html").is_file() and (run / "metrics.json").is_file()  # left as it was
    assert not (run / "spectra.png").exists()  # no spectra.npz in 0.1: nothing to draw from


@pytest.mark.heavy
def test_errors_are_shown_and_a_run_without_detections_still_reports(real_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    (run / "scores.csv").unlink()  # as when every detector failed
    m = read_metrics(run / "metrics.csv")
    m[m.detector == ""].to_csv(run / "metrics.csv", index=False)
    record = json.loads((run / "run.json").read_text())
    record["errors"] = {"detector:durall": "RuntimeError: boom"}
    (run / "run.json").write_text(json.dumps(record))
    assert write_run_report(run).empty
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "detector:durall: RuntimeError: boom" in page and 'class="box error"' in page
    assert "No detection results" in page and "no scores.csv" in page and "LFD" in page
    assert "- **detector:durall**: RuntimeError: boom" in (run / "summary.md").read_text(encoding="utf-8")


# -- comparisons ---------------------------------------------------------------------------------
@pytest.fixture()
def runs_parent(tmp_path) -> Path:
    parent = tmp_path / "runs"
    write_run(parent / "toy" / "s0", seed=0, auc_a_refined=0.45, lfd_fake=0.9)
    write_run(parent / "toy" / "s1", seed=1, auc_a_refined=0.55, lfd_fake=0.8)
    write_run(parent / "other" / "s0", seed=0, dataset="other")
    return parent


def test_find_runs(runs_parent):
    assert [p.name for p in find_runs(runs_parent / "toy")] == ["s0", "s1"]
    assert len(find_runs(runs_parent)) == 3
    assert find_runs(runs_parent / "toy" / "s0") == [runs_parent / "toy" / "s0"]


def test_settings_ignore_seed_paths_and_cache():
    a = {"config": {"seed": 0, "out": "x", "progress": True, "spec_dirs": ["a"], "n_boot": 5, "cache": True,
                    "cache_dir": "/c", "detector_params": {"durall": {"c": 1}}},
         "dataset_spec": {"spec_path": "/a", "size": 32}}
    b = {"config": {"seed": 1, "out": "y", "progress": False, "spec_dirs": ["b"], "n_boot": 5, "cache": False,
                    "detector_params": {"durall": {"c": 1}}}, "dataset_spec": {"spec_path": "/b", "size": 32}}
    from stigbench.core.settings import LEGACY_DEFAULTS

    # older runs get today's default for every setting added since (LEGACY_DEFAULTS)
    assert run_settings(a) == run_settings(b) == {"n_boot": 5, "detector_params.durall.c": 1, "dataset_spec.size": 32,
                                                  **LEGACY_DEFAULTS}


@pytest.mark.heavy
def test_compare_mean_std_across_seeds(runs_parent, tmp_path):
    result = compare_runs([runs_parent], tmp_path / "cmp")
    assert result.warnings == []
    groups = result.groups.set_index("group")
    assert groups.loc["toy", "n_runs"] == 2 and groups.loc["other", "n_runs"] == 1
    agg = result.aggregate
    a = agg[(agg.group == "toy") & (agg.detector == "a") & (agg.condition == "refined") & (agg.metric == "auc")].iloc[0]
    assert a["mean"] == pytest.approx(0.5) and a["std"] == pytest.approx(np.std([0.45, 0.55], ddof=1)) and a["n"] == 2
    lfd = agg[(agg.group == "toy") & (agg.metric == "lfd") & (agg.condition == "fake")].iloc[0]
    assert lfd["mean"] == pytest.approx(0.85) and lfd["std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    # long detection table: one row per dataset x detector x metric, before and after side by side
    det = result.detection.set_index(["dataset", "detector", "metric"])
    assert det.loc[("toy", "a", "AUC"), "refined:stig"] == "0.500 ± 0.071"
    assert det.loc[("toy", "a", "AUC"), "fake"] == "0.950 ± 0.000" and det.loc[("toy", "a", "AUC"), "runs"] == 2
    assert det.loc[("other", "a", "AUC"), "fake"] == "0.950 [0.900, 0.990]"  # one run: its interval
    assert det.loc[("other", "a", "AUC"), "refined:stig"].endswith("†")  # 0.45: over-correction
    q = result.quality.set_index(["dataset", "metric"])
    assert q.loc[("toy", "LFD"), "fake"] == "0.8500 ± 0.0707"
    assert q.loc[("other", "LFD"), "refined:stig"] == "0.3000"
    out = result.out_dir
    for name in ("comparison.md", "comparison.html", "detection.csv", "detection.tex", "quality.csv", "quality.tex",
                 "aggregate.csv", "runs.csv", "groups.csv", "quality.png", "leaderboard.csv", "leaderboard.md",
                 "leaderboard.tex", "leaderboard.png", "attacks.csv", "attacks.png", "heatmap_auc.png",
                 "heatmap_delta_auc.png", "paper_auc.md", "paper_auc.tex"):
        assert (out / name).is_file(), name
    md = (out / "comparison.md").read_text(encoding="utf-8")
    assert "| other | 1 | a | 0.950 [0.900, 0.990] | 0.450 [0.350, 0.550] † |" in md
    assert "| toy | 2 | a | 0.950 ± 0.000 | 0.500 ± 0.071 |" in md
    tex = (out / "detection.tex").read_text(encoding="utf-8")
    assert r"\toprule" in tex and r"0.500 $\pm$ 0.071" in tex
    assert tex.count(r"\\") >= 9 and "±" not in tex and "_" not in tex.replace(r"\_", "")
    assert pd.read_csv(out / "detection.csv").shape == (8, 6)  # 2 datasets x 2 detectors x 2 metrics
    assert_self_contained((out / "comparison.html").read_text(encoding="utf-8"))
    # the spread over seeds says that the seed redraws the split too, next to the ± std in both pages
    assert "ddof = 1" in md and "redraws the train/val/test split" in md
    assert "redraws the train/val/test split" in (out / "comparison.html").read_text(encoding="utf-8")
    # never overwritten: the same --out again gives a new folder and leaves the first alone
    before = (out / "comparison.md").stat().st_mtime_ns
    again = compare_runs([runs_parent / "toy"], tmp_path / "cmp")
    assert again.out_dir == tmp_path / "cmp-2" and (out / "comparison.md").stat().st_mtime_ns == before


def test_compare_flags_different_settings(runs_parent, tmp_path):
    write_run(runs_parent / "toy" / "s2-fewer-boots", seed=2, n_boot=50)
    result = compare_runs([runs_parent / "toy"], tmp_path / "cmp")
    assert sorted(result.groups["n_runs"]) == [1, 2]
    assert all(g.startswith("toy [") for g in result.groups["group"])  # labelled, not silently mixed
    assert len(result.warnings) == 1 and "n_boot" in result.warnings[0]
    assert "seed" not in result.warnings[0] and "spec_path" not in result.warnings[0]
    assert set(result.aggregate.groupby("group")["n"].max()) == {1, 2}
    page = (result.out_dir / "comparison.html").read_text(encoding="utf-8")
    assert 'class="box warning"' in page and "n_boot" in page


def test_latex_escaping():
    df = pd.DataFrame({("name", ""): ["a_b & c%"], ("g", "x"): ["1 ± 2 †"], ("g", "y"): ["3"]})
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    tex = latex_table(df, caption="Δ 50%")
    assert r"a\_b \& c\%" in tex and r"1 $\pm$ 2 $^\dagger$" in tex and r"\multicolumn{2}{c}{g}" in tex
    assert r"\caption{$\Delta$ 50\%}" in tex and r"\begin{tabular}{lrr}" in tex


def test_cli_report(runs_parent, tmp_path):
    result = CliRunner().invoke(main, ["report", str(runs_parent), "--out", str(tmp_path / "c")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "## Detection" in result.output and "Comparison folder:" in result.output
    assert (tmp_path / "c" / "comparison.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["report", str(empty)])
    assert result.exit_code == 2 and "no run folder" in result.output


# -- in a real browser ---------------------------------------------------------------------------
def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


needs_chromium = pytest.mark.skipif(chromium_binary() is None,
                                    reason="no chromium binary on PATH (Debian: apt-get install -y chromium)")

# Chromium writes page console messages to stderr as "...:INFO:CONSOLE(12)] "msg", source: ..." (older)
# or "...:INFO:CONSOLE:12] ..." (newer), at INFO level whatever the console method, so any console
# line counts: the pages have no scripts of their own.
CONSOLE = re.compile(r":CONSOLE(?:\(\d+\)|:\d+)?\]\s*(.*)")
IMAGE_CHECK = ("<script>window.addEventListener('load', () => { const all = [...document.images]; "
               "const bad = all.filter(i => !(i.complete && i.naturalWidth > 0)); "
               "console.log(`stigbench-check: ${all.length} images, ${bad.length} broken`); });</script>")


@dataclass
class Rendered:
    screenshot: Path
    dom: str
    console: list[str]


# Tall enough that the first screen reaches the spectra figures below the tables and the attack chart.
SCREEN_HEIGHT = 3000


def render(page: Path, tmp: Path, height: int = SCREEN_HEIGHT, width: int = 1280) -> Rendered:
    shot = tmp / f"{page.stem}.png"
    cmd = [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", "--enable-logging=stderr", "--v=0", "--dump-dom",
           f"--screenshot={shot}", f"--window-size={width},{height}", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [m.group(1) for line in proc.stderr.splitlines() if (m := CONSOLE.search(line))]
    return Rendered(shot, proc.stdout, console)


def assert_renders(page: Path, tmp: Path, n_images: int, n_tables: int) -> Rendered:
    from PIL import Image

    checked = tmp / f"checked-{page.name}"  # the page plus a probe that every embedded image decodes
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    out = render(checked, tmp)
    assert len(out.console) == 1 and f"stigbench-check: {n_images} images, 0 broken" in out.console[0], out.console
    assert out.dom.count("<table") >= n_tables
    assert out.dom.count('<img src="data:image/png;base64,') == n_images
    assert out.screenshot.stat().st_size > 20_000
    with Image.open(out.screenshot) as im:
        assert im.size == (1280, SCREEN_HEIGHT)
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
        hsv = np.asarray(im.convert("HSV"))
    assert rgb.std() > 20  # not blank
    colourful = ((hsv[..., 1] > 80) & (hsv[..., 2] > 60)).mean()
    assert colourful > 0.005, colourful  # the plots are on screen, not only black-on-white text
    clean = render(page, tmp)  # and the page as shipped logs nothing at all
    assert clean.console == [], clean.console
    return out


@pytest.mark.heavy
@needs_chromium
def test_console_errors_are_detected(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><table><tr><td>1</td></tr></table>"
                      "<script>undefinedFn()</script></body></html>")
    out = render(broken, tmp_path)
    assert any("Uncaught" in c and "undefinedFn" in c for c in out.console), out.console
    missing = tmp_path / "missing.html"
    missing.write_text(f"<html><body><img src='nothere.png'>{IMAGE_CHECK}</body></html>")
    assert any("1 images, 1 broken" in c for c in render(missing, tmp_path).console)


@pytest.mark.heavy
@needs_chromium
def test_run_report_in_browser(real_run, tmp_path):
    out = assert_renders(real_run / "report.html", tmp_path, n_images=6, n_tables=4)
    assert "Detection before and after refinement" in out.dom and "durall" in out.dom


@pytest.mark.heavy
@needs_chromium
def test_comparison_in_browser(runs_parent, real_run, tmp_path):
    shutil.copytree(real_run, runs_parent / "tiny" / real_run.name)
    result = compare_runs([runs_parent], tmp_path / "cmp")
    # leaderboard, attacks, AUC and ΔAUC heat maps, quality
    out = assert_renders(result.out_dir / "comparison.html", tmp_path, n_images=5, n_tables=4)
    assert "Robustness leaderboard" in out.dom and "durall" in out.dom


def test_attack_table_by_hand():
    rows = []
    for refiner, cond, aucs, lfd in (("", "fake", (1.0, 0.9), 0.9), ("a", "refined", (0.6, 0.3), 0.4),
                                     ("b", "refined", (0.5, 0.55), 0.7)):
        for det, auc in zip(("d1", "d2"), aucs):
            rows.append({"dataset": "x", "seed": 0, "refiner": refiner, "detector": det, "trained_on": "fake",
                         "condition": cond, "perturbation": "none", "metric": "auc", "value": auc,
                         "ci_low": np.nan, "ci_high": np.nan})
        rows.append({"dataset": "x", "seed": 0, "refiner": refiner, "detector": "", "trained_on": "",
                     "condition": cond, "perturbation": "none", "metric": "lfd", "value": lfd,
                     "ci_low": np.nan, "ci_high": np.nan})
    t = attack_table(pd.DataFrame(rows)).set_index("attack")
    assert t.loc["a", "evasion"] == pytest.approx((0.1 + 0.2) / 2)  # over-correction counts against it
    assert t.loc["b", "evasion"] == pytest.approx(0.025)
    assert t.loc["a", "over_corrected"] == 1 and t.loc["b", "over_corrected"] == 0
    assert t.loc["none (unrefined fakes)", "evasion"] == pytest.approx(0.45)
    assert t.loc["b", "lfd"] == 0.7 and np.isnan(t.loc["b", "psnr"])


# -- checkpoint-selection curves -----------------------------------------------------------------
LOG_COLUMNS = ["iteration", "lr", "seconds", "D", "D_s", "G", "gan", "psd", "nce_fake", "nce_real", "ssim_identity",
               "ssim_content", "lf_fake", "lf_real"]


def write_refiner_folder(folder: Path, selection: bool = True, kept: str = "best") -> None:
    """A STIG-like refiner folder: ``training/train_log.csv`` (selection every 4 iterations when
    ``selection``) and ``fit_info.json``."""
    (folder / "training").mkdir(parents=True)
    log = pd.DataFrame({c: np.linspace(0, 1, 13) for c in LOG_COLUMNS}).assign(iteration=np.arange(13))
    if selection:
        every = log.iteration % 4 == 0
        log["select_lfd"] = np.where(every, [0.9, 0, 0, 0, 0.5, 0, 0, 0, 0.3, 0, 0, 0, 0.4], np.nan)
        log["select_profile"] = np.where(every, 0.1 * np.sqrt(13 - log.iteration), np.nan)
    log.to_csv(folder / "training" / "train_log.csv", index=False)  # NaN -> empty cells, as the trainer writes
    info = {"image_size": 32}
    if selection:
        info["selection"] = {"criterion": "select_lfd", "every": 4, "best_iteration": 8 if kept == "best" else None,
                             "best_value": 0.3 if kept == "best" else None, "n_fake": 8, "n_real": 8, "kept": kept,
                             "reason": "test"}
    (folder / "fit_info.json").write_text(json.dumps(info))


def test_read_selection(tmp_path):
    from stigbench.reporting.run.selection_plot import read_selection

    write_refiner_folder(tmp_path / "stig")
    c = read_selection(tmp_path / "stig")
    assert c.curve.iteration.tolist() == [0, 4, 8, 12] and c.curve.select_lfd.tolist() == [0.9, 0.5, 0.3, 0.4]
    assert c.kept_iteration == 8
    write_refiner_folder(tmp_path / "last", kept="last")
    assert read_selection(tmp_path / "last").kept_iteration == 12  # the last iteration logged
    write_refiner_folder(tmp_path / "old", selection=False)
    assert read_selection(tmp_path / "old") is None and read_selection(tmp_path / "none") is None


@pytest.mark.heavy
def test_selection_figure_only_for_refiners_that_log_it(real_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(real_run, old)
    write_refiner_folder(old / "refiners" / "stig-old", selection=False)  # an older STIG run: no columns
    write_run_report(old)
    assert not (old / "selection.png").exists()
    page = (old / "report.html").read_text(encoding="utf-8")
    assert page.count("<img ") == 6 and 'id="selection"' not in page and "Checkpoint selection" not in page

    new = tmp_path / "new"
    shutil.copytree(real_run, new)
    write_refiner_folder(new / "refiners" / "stig")
    write_run_report(new)
    assert (new / "selection.png").is_file()
    page = (new / "report.html").read_text(encoding="utf-8")
    assert page.count("<img ") == 7 and '<h2 id="selection">' in page
    assert "carved from the training split" in page and "never a reported detector" in page
    assert "`selection.png`" in (new / "summary.md").read_text(encoding="utf-8")


@pytest.mark.heavy
def test_the_comparison_names_run_folders_that_did_not_finish(tmp_path):
    from stigbench.reporting.compare.comparison import compare_runs

    fixture = Path(__file__).parent / "fixtures" / "run-v0.1"
    shutil.copytree(fixture, tmp_path / "runs" / "d" / "a-seed0")
    killed = tmp_path / "runs" / "d" / "b-seed0"
    killed.mkdir(parents=True)
    (killed / "run.json").write_text(json.dumps({"status": "interrupted"}))
    result = compare_runs([tmp_path / "runs"], tmp_path / "cmp")
    assert any("b-seed0" in w and "interrupted" in w for w in result.warnings)
    assert not any("a-seed0" in w and "not compared" in w for w in result.warnings)
