"""The comparison at benchmark scale: 12 synthetic run folders (6 datasets × 2 seeds, 4 detectors, 2
attacks) whose moves against chance are known by construction. Oracle tests recompute the leaderboard,
the attack summary, the heat-map matrices and the paper table from the metric rows themselves; contract
tests check the long tables, the concise warnings and the messages for folders that cannot be compared;
a 20-dataset comparison must fit a 1,400-pixel browser window (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from stigbench.cli import main
from stigbench.evaluation.rows import METRIC_COLUMNS
from stigbench.reporting.compare.comparison import compare_runs
from stigbench.reporting.compare.plots import MEAN_COLUMN, auc_matrices, delta_matrices
from stigbench.reporting.compare.tables import paper_table
from stigbench.reporting.compare.leaderboard import bootstrap_mean_ci
from test_report import needs_chromium, render, row, write_run

DATASETS = [f"gen{i:02d}" for i in range(6)]
SEEDS = (0, 1)
ATTACKS = ("stig", "blur")
#: AUC on the fakes, and after each attack; with ±0.03 intervals the move of each pair is fixed:
#: steady unchanged by both, fooled toward chance (at chance after stig), flipped past chance by stig,
#: boosted pushed away from chance by blur (the attack adds evidence).
FAKE = {"steady": 0.90, "fooled": 0.92, "flipped": 0.88, "boosted": 0.80}
REFINED = {("steady", "stig"): 0.89, ("steady", "blur"): 0.90, ("fooled", "stig"): 0.50, ("fooled", "blur"): 0.85,
           ("flipped", "stig"): 0.20, ("flipped", "blur"): 0.85, ("boosted", "stig"): 0.79, ("boosted", "blur"): 0.98}
MOVE = {("steady", "stig"): "unchanged", ("steady", "blur"): "unchanged", ("fooled", "stig"): "toward",
        ("fooled", "blur"): "toward", ("flipped", "stig"): "past", ("flipped", "blur"): "unchanged",
        ("boosted", "stig"): "unchanged", ("boosted", "blur"): "away"}
HALF = 0.03
#: gen05, seed 1: stig leaves "fooled" at 0.70, toward chance but not at it (half a dataset at chance).
EXCEPTION = ("gen05", 1, "fooled", "stig", 0.70)
#: gen03, seed 1: detector "boosted" failed; its rows are missing from that run.
FAILED = ("gen03", 1, "boosted")


def jitter(dataset: str, seed: int) -> float:
    """A per-run offset, the same for every condition of the run: it moves values, never classes."""
    return (int(dataset[-2:]) * 7 + seed * 3) % 5 * 0.004 - 0.008


def synthetic_metrics(dataset: str, seed: int, detectors: dict[str, float] = FAKE,
                      refined: dict[tuple[str, str], float] = REFINED, attacks: tuple[str, ...] = ATTACKS) -> pd.DataFrame:
    d = jitter(dataset, seed)
    rows = []
    for det, fake in detectors.items():
        if (dataset, seed, det) == FAILED:
            continue
        rows.append(row("auc", fake + d, det, lo=fake + d - HALF, hi=fake + d + HALF, dataset=dataset, seed=seed))
        rows.append(row("acc", fake + d - 0.05, det, dataset=dataset, seed=seed))
        for att in attacks:
            v = refined[(det, att)] + d
            if (dataset, seed, det, att) == EXCEPTION[:4]:
                v = EXCEPTION[4]
            rows.append(row("auc", v, det, "refined", att, lo=v - HALF, hi=min(1.0, v + HALF), dataset=dataset, seed=seed))
            rows.append(row("acc", v - 0.05, det, "refined", att, dataset=dataset, seed=seed))
    base = 0.5 + 0.1 * int(dataset[-2:])
    rows.append(row("lfd", base + d, dataset=dataset, seed=seed))
    for k, att in enumerate(attacks):
        rows.append(row("lfd", base * (0.3 + 0.3 * k) + d, condition="refined", refiner=att, dataset=dataset, seed=seed))
        rows.append(row("psnr", 30.0 + 5 * k + 10 * d, condition="refined", refiner=att, dataset=dataset, seed=seed))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def write_twelve(parent: Path) -> Path:
    for dataset in DATASETS:
        for seed in SEEDS:
            errors = {f"detector:{FAILED[2]}": "RuntimeError: out of memory\nTraceback ..."} \
                if (dataset, seed) == FAILED[:2] else None
            write_run(parent / dataset / f"s{seed}", seed=seed, dataset=dataset, errors=errors,
                      metrics=synthetic_metrics(dataset, seed))
    return parent


@pytest.fixture(scope="module")
def twelve(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("twelve")
    runs = write_twelve(tmp / "runs")
    return runs, compare_runs([runs], tmp / "cmp")


def all_rows(runs: Path) -> pd.DataFrame:
    frames = [pd.read_csv(p, keep_default_na=False) for p in sorted(runs.rglob("metrics.csv"))]
    m = pd.concat(frames, ignore_index=True)
    m["value"] = m["value"].astype(float)
    return m


# -- oracles ---------------------------------------------------------------------------------------
def test_bootstrap_interval_matches_scipy():
    from scipy.stats import bootstrap

    values = np.array([0.91, 0.62, 0.75, 0.88, 0.54, 0.97, 0.70, 0.81])
    lo, hi = bootstrap_mean_ci(values, n_boot=20000)
    ref = bootstrap((values,), np.mean, n_resamples=20000, method="percentile", confidence_level=0.95,
                    random_state=np.random.default_rng(1)).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.01) and hi == pytest.approx(ref.high, abs=0.01)
    assert lo < values.mean() < hi and bootstrap_mean_ci(values) == bootstrap_mean_ci(values)  # seeded
    assert bootstrap_mean_ci([0.7, 0.7, 0.7]) == (pytest.approx(0.7), pytest.approx(0.7))
    assert all(np.isnan(bootstrap_mean_ci([0.7])))  # one dataset: no spread over datasets


@pytest.mark.heavy
def test_leaderboard_means_and_counts_by_hand(twelve):
    runs, result = twelve
    m = all_rows(runs)
    auc = m[(m.metric == "auc") & (m.detector != "")]
    per_dataset = auc.groupby(["detector", "condition", "refiner", "dataset"])["value"].mean()
    board = result.leaderboard.set_index(["detector", "attack"])
    for det in FAKE:
        fake = per_dataset.loc[(det, "fake", "")]
        assert board.loc[(det, ""), "auc_fake"] == pytest.approx(fake.mean())
        assert board.loc[(det, ""), "datasets"] == len(DATASETS)
        for att in ATTACKS:
            after = per_dataset.loc[(det, "refined", att)]
            rec = board.loc[(det, att)]
            assert rec["auc"] == pytest.approx(after.mean())
            assert rec["delta_auc"] == pytest.approx((after - fake).mean())
            assert rec["chance_distance"] == pytest.approx((after - 0.5).abs().mean())
            assert rec["auc_ci_low"] <= rec["auc"] <= rec["auc_ci_high"]
            # counts: every dataset moves the way it was built to, except the one run of EXCEPTION
            expected = {mv: float(len(DATASETS)) if MOVE[(det, att)] == mv else 0.0 for mv in ("toward", "away", "past",
                                                                                          "unchanged")}
            for mv, n in expected.items():
                assert rec[mv] == n, (det, att, mv)
            runs_at_chance = auc[(auc.detector == det) & (auc.refiner == att)].assign(
                hit=lambda t: ((t.ci_low.astype(float) <= 0.5) & (t.ci_high.astype(float) >= 0.5)).astype(float))
            assert rec["at_chance_after"] == pytest.approx(runs_at_chance.groupby("dataset")["hit"].mean().sum())
            assert rec["evidence"] == (len(DATASETS) if MOVE[(det, att)] == "away" else 0)
    assert board.loc[("fooled", "stig"), "at_chance_after"] == 5.5  # gen05: one of its two seeds
    # ranked by the worst attack: steady (0.89) > boosted (0.79) > fooled (0.50) > flipped (0.20)
    ranks = result.leaderboard.drop_duplicates("detector").set_index("detector")["rank"]
    assert list(ranks.sort_values().index) == ["steady", "boosted", "fooled", "flipped"]
    shown = pd.read_csv(result.out_dir / "leaderboard.csv", keep_default_na=False)
    assert list(shown["detector"].drop_duplicates()) == ["steady", "boosted", "fooled", "flipped"]


def test_attack_summary_by_hand(twelve):
    runs, result = twelve
    m = all_rows(runs)
    auc = m[(m.metric == "auc") & (m.detector != "")]
    attacks = result.attacks.set_index("attack")
    for att in ATTACKS:
        a = auc[auc.refiner == att].assign(dist=lambda t: (t.value - 0.5).abs())
        per_run = a.groupby(["dataset", "seed"])["dist"].mean()  # the run report's evasion
        evasion = per_run.groupby("dataset").mean().mean()
        assert attacks.loc[att, "evasion"] == pytest.approx(evasion)
        lfd = m[(m.metric == "lfd") & (m.refiner == att)].groupby("dataset")["value"].mean().mean()
        assert attacks.loc[att, "lfd"] == pytest.approx(lfd) and attacks.loc[att, "datasets"] == len(DATASETS)
    assert attacks.loc["none (unrefined fakes)", "evasion"] == pytest.approx(
        auc[auc.condition == "fake"].assign(d=lambda t: (t.value - 0.5).abs()).groupby(["dataset", "seed"])["d"]
        .mean().groupby("dataset").mean().mean())
    assert (result.out_dir / "attacks.png").is_file()


def test_heatmap_matrices_and_paper_table(twelve):
    runs, result = twelve
    m = all_rows(runs)
    auc = m[(m.metric == "auc") & (m.detector != "")]
    mats = auc_matrices(result.aggregate, result.groups)
    assert list(mats) == ["fake", "refined:stig", "refined:blur"]
    per = auc.groupby(["detector", "refiner", "dataset"])["value"].mean()
    for cond, refiner in (("fake", ""), ("refined:blur", "blur")):
        mat = mats[cond]
        assert list(mat.columns) == [*DATASETS, MEAN_COLUMN] and set(mat.index) == set(FAKE)
        assert mat.loc["boosted", "gen03"] == pytest.approx(per.loc[("boosted", refiner, "gen03")])
        assert mat.loc["fooled", MEAN_COLUMN] == pytest.approx(per.loc[("fooled", refiner)].mean())
    delta = delta_matrices(mats)["refined:stig"]
    assert delta.loc["flipped", "gen01"] == pytest.approx(per.loc[("flipped", "stig", "gen01")]
                                                          - per.loc[("flipped", "", "gen01")])
    paper = paper_table(result.aggregate, result.groups, "refined:stig").set_index("detector")
    f, r = per.loc[("flipped", "", "gen02")], per.loc[("flipped", "stig", "gen02")]
    assert paper.loc["flipped", "gen02"] == f"{f:.2f} → {r:.2f} †"  # below 0.5 after the attack
    assert list(paper.columns) == [*DATASETS, "mean"]
    tex = (result.out_dir / "paper_auc.tex").read_text(encoding="utf-8")
    assert tex.count(r"\begin{tabular}") == 2 and r"$\rightarrow$" in tex and "→" not in tex


# -- what the reader sees -------------------------------------------------------------------------
def test_long_tables_and_files(twelve):
    runs, result = twelve
    out = result.out_dir
    for name in ("leaderboard.csv", "leaderboard.md", "leaderboard.tex", "leaderboard.png", "heatmap_auc.png",
                 "heatmap_delta_auc.png", "attacks.csv", "attacks.png", "detection.csv", "quality.csv", "paper_auc.md"):
        assert (out / name).is_file(), name
    det = pd.read_csv(out / "detection.csv", keep_default_na=False)
    # one row per dataset x detector x metric, a column per condition: it grows down with the datasets
    assert list(det.columns) == ["dataset", "runs", "detector", "metric", "fake", "refined:stig", "refined:blur"]
    assert len(det) == len(DATASETS) * len(FAKE) * 2
    row = det[(det.dataset == "gen03") & (det.detector == "boosted") & (det.metric == "AUC")].iloc[0]
    assert row["runs"] == 2 and "(n=1)" in row["fake"]  # the failed run: fewer runs than the group has
    q = pd.read_csv(out / "quality.csv", keep_default_na=False)
    assert list(q.columns) == ["dataset", "runs", "metric", "fake", "refined:stig", "refined:blur"]
    assert set(q.metric) == {"LFD", "PSNR vs fake (dB)"} and len(q) == 2 * len(DATASETS)
    md = (out / "comparison.md").read_text(encoding="utf-8")
    assert md.index("## Robustness leaderboard") < md.index("## Heat maps") < md.index("## Detection: AUC")
    assert "| 1 | steady | 6 |" in md
    page = (out / "comparison.html").read_text(encoding="utf-8")
    assert page.count("<img ") == 5  # leaderboard, attacks, two heat maps, quality
    assert "gen03: detector:boosted failed in 1 of 2 run(s) (seed 1), its rows are missing: RuntimeError: out of " \
           "memory" in result.warnings
    assert "Traceback" not in " ".join(result.warnings)  # the first line of the error only


def test_warnings_one_line_per_difference_with_short_paths(tmp_path):
    runs = tmp_path / "runs"
    deep = "/mnt/storage/benchmarks/forensynths/test"
    for k, gen in enumerate(("progan", "stylegan")):
        for seed in SEEDS:
            write_run(runs / gen / f"s{seed}", seed=seed, dataset="real-vs-fake", n_boot=500 + 100 * k,
                      spec={"real": [f"{deep}/{gen}/0_real"], "fake": [f"{deep}/{gen}/1_fake"]})
    result = compare_runs([runs], tmp_path / "cmp")
    assert len(result.warnings) == 1
    line = result.warnings[0]
    hashes = list(result.groups["settings_hash"])
    assert line.startswith("real-vs-fake: 2 groups with different settings, kept apart")
    assert "dataset_spec.fake: progan/1_fake [" in line and "| stylegan/1_fake [" in line
    assert "also n_boot" in line and "groups.csv" in line and deep not in line  # shared prefix removed
    assert all(h in line for h in hashes) and "\n" not in line
    groups = pd.read_csv(result.out_dir / "groups.csv", keep_default_na=False)
    assert groups["differing_settings"].str.contains(f"dataset_spec.real={deep}/progan/0_real").any()  # full paths
    assert sorted(groups["group"]) == sorted(f"real-vs-fake [{h}]" for h in hashes)


@pytest.mark.heavy
def test_folders_that_cannot_be_compared_get_a_message_each(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "good" / "s0", seed=0, dataset="good", metrics=synthetic_metrics("gen00", 0).assign(dataset="good"))
    (runs / "copied").mkdir()
    synthetic_metrics("gen01", 0).to_csv(runs / "copied" / "metrics.csv", index=False)  # no config.json
    ancient = shutil.copytree(Path(__file__).parent / "fixtures" / "run-v0.1", runs / "ancient")
    (ancient / "metrics.csv").unlink()  # only metrics.json: before metrics.csv
    (ancient / "config.json").unlink()
    foreign = write_run(runs / "foreign" / "s0", seed=0, dataset="foreign")
    pd.DataFrame({"x": [1]}).to_csv(foreign / "metrics.csv", index=False)
    broken = write_run(runs / "broken" / "s0", seed=0, dataset="broken")
    (broken / "run.json").write_text("{not json")
    killed = runs / "killed" / "s0"
    killed.mkdir(parents=True)
    (killed / "run.json").write_text(json.dumps({"status": "failed"}))
    empty = tmp_path / "empty"
    empty.mkdir()
    result = compare_runs([runs, empty], tmp_path / "cmp")
    assert set(result.groups["group"]) == {"good"}
    msgs = result.skipped
    assert len(msgs) == 6 and msgs == result.warnings[:6]

    def said(folder: str, reason: str) -> bool:
        return any(m.startswith(folder) and reason in m for m in msgs)

    assert said("runs/copied", "metrics.csv without config.json")
    assert said("runs/ancient", "older than stigbench 0.1")
    assert said("runs/foreign/s0", "no metric, value, condition, detector column(s)")
    assert said("runs/broken/s0", "run.json is unreadable")
    assert said("runs/killed/s0", "its run is failed")
    assert said("empty", "no run folder")
    page = (result.out_dir / "comparison.html").read_text(encoding="utf-8")
    assert "Not compared (6):" in page and "## Not compared" in (result.out_dir / "comparison.md").read_text("utf-8")
    cli = CliRunner().invoke(main, ["report", str(empty), str(runs / "killed"), "--out", str(tmp_path / "c2")])
    assert cli.exit_code == 2 and "no run folder to compare" in cli.output and "its run is failed" in cli.output
    cli = CliRunner().invoke(main, ["report", str(runs / "good"), str(runs / "killed"), "--out", str(tmp_path / "c3")])
    assert cli.exit_code == 0 and "NOT COMPARED killed/s0: not compared, its run is failed" in cli.output
    assert "## Robustness leaderboard" in cli.output


# -- 20 datasets in a 1,400-pixel window ------------------------------------------------------------
WIDTH_CHECK = ("<script>window.addEventListener('load', () => { const de = document.documentElement; "
               "const over = [...document.querySelectorAll('div.scroll')].filter(d => d.scrollWidth > d.clientWidth + 1)"
               ".map(d => d.previousElementSibling ? d.previousElementSibling.textContent.slice(0, 40) : '?'); "
               "const imgs = [...document.images].filter(i => i.getBoundingClientRect().right > de.clientWidth + 1); "
               "console.log(`stigbench-width: page ${de.scrollWidth}/${window.innerWidth}, tables ${document"
               ".querySelectorAll('div.scroll').length}, overflowing ${over.length} [${over.join(' | ')}], "
               "wide images ${imgs.length}`); });</script>")


def write_twenty(parent: Path) -> Path:
    rng = np.random.default_rng(0)
    names = [f"{g}-{k}" for k in ("cnnspot", "genimage") for g in
             ("progan", "stylegan", "stylegan2", "biggan", "cyclegan", "stargan", "gaugan", "deepfake", "whichfaceisreal",
              "san")]
    detectors = {d: float(rng.uniform(0.7, 0.99)) for d in ("durall", "dzanic", "spectrum-cnn", "npr", "freqnet",
                                                              "cnndetection")}
    for name in names:
        refined = {(d, a): float(np.clip(f - rng.uniform(0.0, 0.45), 0.05, 1)) for d, f in detectors.items()
                   for a in ATTACKS}
        write_run(parent / name / "s0", seed=0, dataset=name,
                  metrics=synthetic_metrics("gen00", 0, detectors, refined).assign(dataset=name))
    return parent


@pytest.mark.heavy
@needs_chromium
def test_twenty_datasets_fit_1400_pixels(tmp_path):
    result = compare_runs([write_twenty(tmp_path / "runs")], tmp_path / "cmp")
    assert len(result.groups) == 20
    page = result.out_dir / "comparison.html"
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", WIDTH_CHECK + "</body>"), encoding="utf-8")
    out = render(probe, tmp_path, width=1400, height=2000)
    assert len(out.console) == 1, out.console
    found = re.search(r"stigbench-width: page (\d+)/(\d+), tables (\d+), overflowing (\d+) \[(.*)\], wide images (\d+)",
                      out.console[0])
    assert found, out.console
    page_w, window_w, tables, overflowing, which, wide = found.groups()
    assert int(window_w) == 1400 and int(page_w) <= 1400  # no sideways scrolling of the page
    assert int(tables) >= 8 and int(overflowing) == 0, which  # nor of any table
    assert int(wide) == 0
    assert render(page, tmp_path, width=1400, height=2000).console == []  # the page as shipped logs nothing
    assert "progan-cnnspot" in out.dom and "Robustness leaderboard" in out.dom
