"""Cross-dataset scoring in the reports: a run trained on one dataset that also scored other datasets'
test splits (rows with ``test_dataset != dataset``). The run report gets a cross-dataset section, the
comparison a train × test AUC matrix; every other table stays a function of the own rows alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stigbench.evaluation.rows import METRIC_COLUMNS
from stigbench.reporting.compare.comparison import compare_runs
from stigbench.reporting.compare.cross import MEAN_DETECTOR
from stigbench.reporting.run.cross_tables import cross_auc_table
from stigbench.reporting.run.detection_table import summarize
from stigbench.reporting.run.figures import own_scores
from stigbench.reporting.run.metrics_csv import clean_metrics, own_rows, read_metrics
from stigbench.reporting.run.report import write_run_report
from test_report import row, write_run

FIXTURE = Path(__file__).parent / "fixtures" / "run-v0.1"
#: AUC of detector a / b on the other dataset's test split: (fake, refined), by training dataset and seed.
CROSS = {("A", 0): {"a": (0.70, 0.55), "b": (0.60, 0.40)}, ("A", 1): {"a": (0.80, 0.45), "b": (0.64, 0.50)},
         ("B", 0): {"a": (0.66, 0.52), "b": (0.58, 0.51)}, ("B", 1): {"a": (0.74, 0.48), "b": (0.62, 0.47)}}
OWN_REFINED = {("A", 0): 0.45, ("A", 1): 0.55, ("B", 0): 0.60, ("B", 1): 0.50}  # detector a, refined:stig


def cross_rows_of(dataset: str, seed: int, test: str) -> pd.DataFrame:
    rows = []
    for det, (fake, refined) in CROSS[(dataset, seed)].items():
        rows += [row("auc", fake, det, lo=fake - 0.05, hi=fake + 0.05), row("acc", 0.5, det),
                 row("auc", refined, det, "refined", "stig", lo=refined - 0.05, hi=refined + 0.05)]
    rows += [row("lfd", 1.5), row("lfd", 0.7, condition="refined", refiner="stig")]
    frame = pd.DataFrame(rows).assign(dataset=dataset, seed=seed, test_dataset=test)
    return frame.reindex(columns=METRIC_COLUMNS)  # the threat-model columns stay empty


def add_cross(run: Path, dataset: str, seed: int, test: str, error: str | None = None) -> Path:
    """Append the cross rows on ``test`` to a run folder written by ``write_run`` and record them in run.json."""
    metrics = pd.read_csv(run / "metrics.csv", keep_default_na=False)
    assert set(metrics["test_dataset"]) == {""}  # as written by older runs: read as the run's own dataset
    if error is None:
        metrics = pd.concat([metrics, cross_rows_of(dataset, seed, test)], ignore_index=True)
    metrics.to_csv(run / "metrics.csv", index=False)
    record = json.loads((run / "run.json").read_text())
    record["dataset"].update(real=10, fake=10, size=32, split={})  # what the run report reads
    record["cross"] = {test: {"attack_from": test, "image_size": 32, "n_real": 10, "n_fake": 12, "error": error}}
    (run / "run.json").write_text(json.dumps(record))
    return run


def write_pair(parent: Path, cross: bool) -> Path:
    for dataset, other in (("A", "B"), ("B", "A")):
        for seed in (0, 1):
            run = write_run(parent / dataset / f"s{seed}", seed=seed, dataset=dataset,
                            auc_a_refined=OWN_REFINED[(dataset, seed)])
            if cross:
                add_cross(run, dataset, seed, other)
    return parent


@pytest.fixture()
def cross_cmp(tmp_path):
    return compare_runs([write_pair(tmp_path / "runs", cross=True)], tmp_path / "cmp")


def cell(cross: pd.DataFrame, train: str, test: str, detector: str, cond: str) -> pd.Series:
    hit = cross[(cross.group == train) & (cross.test_dataset == test) & (cross.detector == detector)
                & (cross.condition_label == cond)]
    assert len(hit) == 1, (train, test, detector, cond)
    return hit.iloc[0]


@pytest.mark.heavy
def test_matrix_is_the_mean_over_seeds(cross_cmp):
    cross = cross_cmp.cross
    for train, test in (("A", "B"), ("B", "A")):
        for det in ("a", "b"):
            for k, cond in enumerate(("fake", "refined:stig")):
                values = [CROSS[(train, s)][det][k] for s in (0, 1)]
                c = cell(cross, train, test, det, cond)
                assert c["mean"] == pytest.approx(np.mean(values)) and c["n"] == 2
                assert c["std"] == pytest.approx(np.std(values, ddof=1))
                assert c["attack_from"] == test
        mean = cell(cross, train, test, MEAN_DETECTOR, "refined:stig")
        per_run = [np.mean([CROSS[(train, s)][d][1] for d in ("a", "b")]) for s in (0, 1)]
        assert mean["mean"] == pytest.approx(np.mean(per_run)) and mean["std"] == pytest.approx(np.std(per_run, ddof=1))
    # the diagonal is the runs' own rows (toy_metrics: a 0.95 / b 0.80 on the fakes, b 0.7 refined)
    for train in ("A", "B"):
        assert cell(cross, train, train, "a", "fake")["mean"] == pytest.approx(0.95)
        assert cell(cross, train, train, "a", "refined:stig")["mean"] == pytest.approx(
            np.mean([OWN_REFINED[(train, s)] for s in (0, 1)]))
        assert cell(cross, train, train, MEAN_DETECTOR, "fake")["mean"] == pytest.approx((0.95 + 0.80) / 2)
        assert cell(cross, train, train, "b", "fake")["attack_from"] == train
    assert set(cross.detector) == {MEAN_DETECTOR, "a", "b"} and len(cross) == 3 * 2 * 2 * 2


@pytest.mark.heavy
def test_matrix_files_and_sections(cross_cmp):
    out = cross_cmp.out_dir
    for name in ("cross_auc.csv", "cross_auc.md", "cross_auc.tex", "cross_auc.png"):
        assert (out / name).is_file(), name
    long = pd.read_csv(out / "cross_auc.csv", keep_default_na=False)
    assert list(long.columns) == ["group", "dataset", "detector", "test_dataset", "condition", "refiner",
                                  "condition_label", "attack_from", "mean", "std", "n", "ci_low", "ci_high", "seeds"]
    md = (out / "cross_auc.md").read_text(encoding="utf-8")
    header = md.splitlines()[2]
    assert header == ("| detector | trained on | fake · A | fake · B | refined:stig · A | refined:stig · B |")
    a_to_b = f"{np.mean([0.70, 0.80]):.3f} ± {np.std([0.70, 0.80], ddof=1):.3f}"
    assert f"| a | A (n=2) | 0.950 ± 0.000 | {a_to_b} |" in md
    assert md.splitlines()[4].startswith(f"| {MEAN_DETECTOR} | A (n=2) |")
    tex = (out / "cross_auc.tex").read_text(encoding="utf-8")
    assert r"\multicolumn{2}{c}{fake}" in tex and r"\multicolumn{2}{c}{refined:stig}" in tex
    comparison = (out / "comparison.md").read_text(encoding="utf-8")
    assert "## Cross-dataset AUC (train × test)" in comparison and a_to_b in comparison
    page = (out / "comparison.html").read_text(encoding="utf-8")
    # the leaderboard, attacks, two heat maps, quality and the train x test matrix
    assert 'id="cross"' in page and page.count("<img ") == 6 and 'alt="AUC, train × test"' in page


@pytest.mark.heavy
def test_cross_rows_change_no_other_table(tmp_path):
    plain = compare_runs([write_pair(tmp_path / "plain", cross=False)], tmp_path / "cmp-plain")
    cross = compare_runs([write_pair(tmp_path / "cross", cross=True)], tmp_path / "cmp-cross")
    for name in ("aggregate.csv", "detection.csv", "quality.csv", "moves.csv", "detection.tex", "quality.tex",
                 "groups.csv"):
        assert (plain.out_dir / name).read_bytes() == (cross.out_dir / name).read_bytes(), name
    assert not list(plain.out_dir.glob("cross_auc*")) and plain.cross.empty
    md = (plain.out_dir / "comparison.md").read_text(encoding="utf-8")
    assert "Cross-dataset" not in md and "Cross-dataset" not in (plain.out_dir / "comparison.html").read_text("utf-8")
    assert (cross.out_dir / "comparison.md").read_text(encoding="utf-8").startswith(md.rstrip("\n"))
    # the run report: the same summary and moves with or without the cross rows
    a_plain, a_cross = tmp_path / "plain" / "A" / "s0", tmp_path / "cross" / "A" / "s0"
    record = json.loads((a_plain / "run.json").read_text())
    record["dataset"].update(real=10, fake=10, size=32, split={})
    (a_plain / "run.json").write_text(json.dumps(record))
    for run in (a_plain, a_cross):
        write_run_report(run)
    for name in ("summary.csv", "moves.csv", "attacks.csv"):
        assert (a_plain / name).read_bytes() == (a_cross / name).read_bytes(), name
    assert "Cross-dataset" not in (a_plain / "summary.md").read_text(encoding="utf-8")


def test_run_report_cross_section(tmp_path):
    run = add_cross(write_run(tmp_path / "A" / "s1", seed=1, dataset="A"), "A", 1, "B")
    record = json.loads((run / "run.json").read_text())
    record["cross"]["C"] = {"attack_from": "A", "image_size": 64, "n_real": 0, "n_fake": 0, "error": "no images"}
    record["cross"]["D"] = {"attack_from": None, "error": "KeyError: 'D'"}  # as the runner records a failed spec
    (run / "run.json").write_text(json.dumps(record))
    summary = write_run_report(run)
    assert set(summary.condition) == {"fake", "refined:stig"} and len(summary) == 4  # own rows only
    table = cross_auc_table(read_metrics(run / "metrics.csv"))
    assert list(table.test_dataset.unique()) == ["A", "B"]
    b = table[(table.detector == "b") & (table.test_dataset == "B")].set_index("condition")
    assert b.loc["fake", "auc"] == 0.64 and b.loc["refined:stig", "auc_ci_low"] == pytest.approx(0.45)
    md = (run / "summary.md").read_text(encoding="utf-8")
    assert "## Cross-dataset" in md
    assert "| detector | test dataset | refiners trained on | fake | refined:stig |" in md
    assert "| a | B | B | 0.800 [0.750, 0.850] | 0.450 [0.400, 0.500] |" in md
    assert "| a | A | A | 0.950 [0.900, 0.990] |" in md
    assert "| C | A | 64 | 0 | 0 | no images |" in md  # the failed cells and their errors
    assert "| D |  |  |  |  | KeyError: 'D' |" in md and "None" not in md
    assert "| B | refined:stig | 0.7000 |" in md  # LFD to B's reals
    page = (run / "report.html").read_text(encoding="utf-8")
    assert 'href="#cross"' in page and 'id="cross"' in page and "C: no images" in page


def test_own_scores_drop_other_test_splits():
    metrics = clean_metrics(pd.DataFrame([row("auc", 0.9, "a", dataset="A"),
                                          {**row("auc", 0.6, "a", dataset="A"), "test_dataset": "B"}]))
    scores = pd.DataFrame({"test_dataset": ["A", "B", "A"], "detector": "a", "score": [0.1, 0.2, 0.3]})
    assert list(own_scores(scores, metrics, {})["score"]) == [0.1, 0.3]
    assert len(own_scores(scores.drop(columns="test_dataset"), metrics, {})) == 3  # older runs: all rows
    assert len(own_rows(metrics)) == 1 and len(summarize(metrics)) == 1


@pytest.mark.heavy
def test_a_0_1_run_folder_still_reports_beside_cross_runs(tmp_path):
    runs = write_pair(tmp_path / "runs", cross=True)
    old = shutil.copytree(FIXTURE, runs / "real-vs-fake" / "old")
    summary = write_run_report(old)
    assert set(summary.detector) == {"durall", "spectrum-cnn"}
    assert "Cross-dataset" not in (old / "summary.md").read_text(encoding="utf-8")
    result = compare_runs([runs], tmp_path / "cmp")
    assert "fx" in set(result.groups.group)  # recorded as real-vs-fake, shown under its folders' name
    old_cells = result.cross[result.cross.group == "fx"]  # no cross rows: its own diagonal cell only
    assert set(old_cells.test_dataset) == {"fx"} and not (result.cross.test_dataset == "fx").all()
    assert set(old_cells.detector) == {MEAN_DETECTOR, "durall", "spectrum-cnn"}
