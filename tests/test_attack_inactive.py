"""An attack that did nothing says so (issue #22): the rule, the moves it replaces, and where a run shows it
(``run.json``, ``summary.md``, ``report.html``, ``bench.py report`` and its leaderboard)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from stigbench.attacks.registry import REFINERS, register_refiner
from stigbench.attacks.spectral_match import SpectralMatch
from stigbench.cli import main
from stigbench.evaluation.evidence import (
    INACTIVE, INACTIVE_KEY, INACTIVE_PSNR_DB, UNCHANGED, counts_line, display_strength, inactive_attacks,
    inactive_reason, move_counts, moves,
)
from stigbench.evaluation.rows import METRIC_COLUMNS
from stigbench.core.config import RunConfig
from stigbench.pipeline.runner import run_benchmark
from stigbench.reporting.compare.collect import load_run
from stigbench.reporting.compare.leaderboard import attack_detail_table, leaderboard, leaderboard_table
from stigbench.reporting.run.metrics_csv import clean_metrics
from stigbench.reporting.run.report import write_run_report

STARTING_POINT = {"iterations": 247, "selection": {"criterion": "select_lfd", "best_iteration": 0, "kept": "best",
                                                   "reason": "kept the refiner with the lowest select_lfd"}}


# -- the rule ------------------------------------------------------------------------------------
def test_psnr_threshold_is_fixed_at_50_db():
    assert INACTIVE_PSNR_DB == 50.0
    assert "50.01 dB" in inactive_reason(50.01, None)
    assert inactive_reason(49.99, None) is None
    assert inactive_reason(50.0, None) is None  # over 50 dB, not at it
    assert inactive_reason(None, None) is None and inactive_reason(math.nan, {}) is None  # no PSNR row: unflagged


def test_kept_starting_point_is_inactive_whatever_its_psnr():
    reason = inactive_reason(31.0, STARTING_POINT)
    assert reason == "kept its starting point (iteration 0 of 247 on the selection set)"
    both = inactive_reason(120.0, STARTING_POINT)
    assert both.startswith(reason) and "returned the fakes unchanged (mean PSNR 120.00 dB" in both
    later = {**STARTING_POINT, "selection": {**STARTING_POINT["selection"], "best_iteration": 8}}
    assert inactive_reason(31.0, later) is None
    last = {"selection": {"kept": "last", "best_iteration": None}}  # selection off: the last refiner ran
    assert inactive_reason(31.0, last) is None


def test_a_plug_in_says_so_itself():
    assert inactive_reason(31.0, {INACTIVE_KEY: "found nothing to change"}) == "found nothing to change"
    assert inactive_reason(31.0, {INACTIVE_KEY: ""}) is None


@pytest.mark.parametrize("display, strength", [
    ("stig", 1.0), ("stig:strength=1", 1.0), ("stig:strength=1.0", 1.0), ("stig:strength=0.5", 0.5),
    ("blur:2", 1.0), ("stig:strength=high", None),
])
def test_display_strength(display, strength):
    assert display_strength(display) == strength


def test_only_strength_1_is_ever_flagged():
    assert inactive_reason(120.0, STARTING_POINT, strength=0.5) is None
    assert inactive_reason(120.0, STARTING_POINT, strength=None) is None
    psnr = lambda refiner, value: {**dict.fromkeys(METRIC_COLUMNS, ""), "dataset": "toy", "seed": 0,  # noqa: E731
                                   "refiner": refiner, "condition": "refined", "perturbation": "none",
                                   "metric": "psnr", "value": value}
    m = clean_metrics(pd.DataFrame([psnr("stig", 120.0), psnr("stig:strength=0.5", 120.0),
                                    psnr("stig:strength=1", 50.01), psnr("spectral-match", 26.6)]))
    found = inactive_attacks(m, {"stig:strength=0.5": STARTING_POINT, "other": STARTING_POINT})
    assert sorted(found) == ["other", "stig", "stig:strength=1"]


# -- what it replaces ----------------------------------------------------------------------------
def auc_rows(detector: str, fake: tuple, refined: dict[str, tuple], dataset: str = "toy") -> list[dict]:
    base = {"dataset": dataset, "seed": 0, "detector": detector, "trained_on": "fake", "perturbation": "none",
            "metric": "auc", "test_dataset": ""}
    out = [{**base, "refiner": "", "condition": "fake", "value": fake[0], "ci_low": fake[1], "ci_high": fake[2]}]
    out += [{**base, "refiner": r, "condition": "refined", "value": v[0], "ci_low": v[1], "ci_high": v[2]}
            for r, v in refined.items()]
    return out


def toy_metrics(dataset: str = "toy") -> pd.DataFrame:
    """``noop`` leaves both detectors where they were (its rows read as ``unchanged``); ``sm`` moves them."""
    rows = auc_rows("a", (0.95, 0.90, 0.99), {"noop": (0.95, 0.90, 0.99), "sm": (0.60, 0.50, 0.70)}, dataset)
    rows += auc_rows("b", (0.80, 0.70, 0.90), {"noop": (0.80, 0.70, 0.90), "sm": (0.75, 0.65, 0.85)}, dataset)
    rows += [{"dataset": dataset, "seed": 0, "refiner": r, "detector": "", "condition": "refined",
              "perturbation": "none", "metric": "psnr", "value": v} for r, v in (("noop", 120.0), ("sm", 28.0))]
    return clean_metrics(pd.DataFrame(rows))


def test_moves_of_an_inactive_attack_are_not_unchanged():
    m = toy_metrics()
    plain = move_counts(moves(m)).set_index("refiner")
    assert plain.loc["noop", UNCHANGED] == 2  # what the report used to say: robust
    inactive = inactive_attacks(m, {})
    assert list(inactive) == ["noop"]
    counts = move_counts(moves(m, inactive=inactive)).set_index("refiner")
    assert counts.loc["noop", UNCHANGED] == 0 and counts.loc["noop", INACTIVE] == 2
    assert counts.loc["sm"].equals(plain.loc["sm"])
    line = counts_line(move_counts(moves(m, inactive=inactive)), inactive)
    assert f"noop: attack inactive ({inactive['noop']}): its 2 detectors are not counted;" in line
    assert "noop: 0 toward" not in line and "sm: 1 toward" in line


def test_leaderboard_does_not_count_an_inactive_attack_as_robust():
    class Run:  # what the leaderboard reads of a run
        def __init__(self, dataset: str) -> None:
            self.metrics = toy_metrics(dataset)
            self.inactive = inactive_attacks(self.metrics, {}) if dataset != "d2" else {}

    runs = [Run("d1"), Run("d2")]  # noop did nothing on d1; on d2 it counts (no PSNR known there)
    runs[1].metrics = runs[1].metrics[runs[1].metrics.metric != "psnr"]
    board = leaderboard(runs, {0: "d1", 1: "d2"}).set_index(["detector", "attack"])
    rec = board.loc[("a", "noop")]
    assert rec["datasets"] == 1 and rec["inactive"] == 1 and rec["unchanged"] == 1  # d2's alone
    assert rec["inactive_reason"].startswith("d1: returned the fakes unchanged")
    one = leaderboard(runs[:1], {0: "d1"}).set_index(["detector", "attack"])
    rec = one.loc[("a", "noop")]
    assert rec["datasets"] == 0 and rec["unchanged"] == 0 and rec["inactive"] == 1 and np.isnan(rec["auc"])
    table = leaderboard_table(one.reset_index()).set_index("detector")
    assert table.loc["a", "refined:noop"].startswith("attack inactive (d1: returned the fakes unchanged")
    detail = attack_detail_table(one.reset_index())
    assert (detail.loc[detail.attack == "noop", "attack inactive"] == "1").all()
    assert detail.loc[detail.attack == "sm", "AUC after"].str.match(r"0\.\d{3}").all()


# -- a run ---------------------------------------------------------------------------------------
class DoNothing(SpectralMatch):
    """Fits like spectral-match, records that it kept its starting point, and returns the fakes as they were."""

    def fit(self, fake_set, real_set):  # type: ignore[override]
        super().fit(fake_set, real_set)
        self.fit_info_ = {"iterations": 4, "selection": {"kept": "best", "best_iteration": 0}}
        return self

    def refine_batch(self, images: torch.Tensor) -> torch.Tensor:
        return images


@pytest.fixture(scope="module")
def inactive_run(tiny_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inactive_runs")
    register_refiner("do-nothing-test", paper="none (test)", kind="training-free")(DoNothing)
    try:
        result = run_benchmark(RunConfig(real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"),
                                         refiners="do-nothing-test,spectral-match", detectors="durall", n_boot=20,
                                         quality=False, out=str(out), cache=False, progress=False, seed=0))
    finally:
        REFINERS.remove("do-nothing-test")
    return result.run_dir


@pytest.mark.heavy
def test_a_run_records_and_reports_its_inactive_attack(inactive_run):
    record = json.loads((inactive_run / "run.json").read_text(encoding="utf-8"))
    assert list(record["attack_inactive"]) == ["do-nothing-test"]  # spectral-match ran
    reason = record["attack_inactive"]["do-nothing-test"]
    assert reason.startswith("kept its starting point (iteration 0 of 4 on the selection set) and returned the "
                             "fakes unchanged (mean PSNR 1")
    headline = f"ATTACK INACTIVE: do-nothing-test {reason}: its rows say nothing about robustness."
    md = (inactive_run / "summary.md").read_text(encoding="utf-8").splitlines()
    assert md[2] == f"**{headline}**"
    assert md[4].startswith("Moves against chance") and f"do-nothing-test: {INACTIVE} ({reason})" in md[4]
    assert "| durall | refined:do-nothing-test |" in "\n".join(md)
    assert any(line.startswith("| durall | refined:do-nothing-test |") and f"| {INACTIVE} |" in line for line in md)
    page = (inactive_run / "report.html").read_text(encoding="utf-8")
    assert headline in page and page.index(headline) < page.index('<p class="lead">')
    table = pd.read_csv(inactive_run / "moves.csv", keep_default_na=False).set_index("refiner")
    assert table.loc["do-nothing-test", "move"] == INACTIVE and table.loc["spectral-match", "move"] != INACTIVE
    metrics = pd.read_csv(inactive_run / "metrics.csv", keep_default_na=False)
    assert set(metrics.columns) == set(METRIC_COLUMNS)  # the source of truth keeps its rows and columns
    assert (metrics.refiner == "do-nothing-test").sum() == (metrics.refiner == "spectral-match").sum()


@pytest.mark.heavy
def test_an_older_run_folder_is_judged_from_what_it_holds(inactive_run, tmp_path):
    old = shutil.copytree(inactive_run, tmp_path / "old")
    record = json.loads((old / "run.json").read_text(encoding="utf-8"))
    del record["attack_inactive"]
    (old / "run.json").write_text(json.dumps(record), encoding="utf-8")
    write_run_report(old)
    for name in ("summary.md", "moves.csv", "summary.csv"):  # derived: the same as recorded
        assert (old / name).read_bytes() == (inactive_run / name).read_bytes(), name

    # no fit_info in run.json, a refiner folder's fit_info.json instead, and a PSNR that alone says active
    record["refiners"]["do-nothing-test"]["fit_info"] = {}
    (old / "run.json").write_text(json.dumps(record), encoding="utf-8")
    metrics = pd.read_csv(old / "metrics.csv", keep_default_na=False, dtype={"value": object})
    metrics.loc[(metrics.refiner == "do-nothing-test") & (metrics.metric == "psnr"), "value"] = 30.0
    metrics.to_csv(old / "metrics.csv", index=False)
    assert load_run(old).inactive == {}  # nothing left to tell: unflagged
    (old / "refiners" / "do-nothing-test" / "fit_info.json").write_text(json.dumps(STARTING_POINT), encoding="utf-8")
    assert load_run(old).inactive == {"do-nothing-test": "kept its starting point (iteration 0 of 247 on the "
                                                         "selection set)"}


@pytest.mark.heavy
def test_bench_report_names_it_and_keeps_it_off_the_leaderboard(inactive_run, tmp_path):
    result = CliRunner().invoke(main, ["report", str(inactive_run), "--out", str(tmp_path / "c")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "ATTACK INACTIVE: do-nothing-test kept its starting point" in result.output
    md = (tmp_path / "c" / "comparison.md").read_text(encoding="utf-8")
    assert md.index("ATTACK INACTIVE: do-nothing-test") < md.index("## Robustness leaderboard")
    assert "attack inactive (" in md.split("## Robustness leaderboard")[1].split("\n\n")[1]  # the board's cell
    board = pd.read_csv(tmp_path / "c" / "leaderboard.csv")
    rec = board[board.attack == "do-nothing-test"].iloc[0]
    assert rec["datasets"] == 0 and rec["unchanged"] == 0 and rec["inactive"] == 1 and np.isnan(rec["auc"])
    active = board[board.attack == "spectral-match"].iloc[0]
    assert active["datasets"] == 1 and active["inactive"] == 0
    moves_csv = pd.read_csv(tmp_path / "c" / "moves.csv")
    noop = moves_csv[moves_csv.refiner == "do-nothing-test"].set_index("move")["mean"]
    assert noop[INACTIVE] == 1 and noop[UNCHANGED] == 0
    assert "ATTACK INACTIVE: do-nothing-test" in (tmp_path / "c" / "comparison.html").read_text(encoding="utf-8")
