"""End-to-end: the CLI on a tiny dataset, and the run folder it leaves."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from stigbench.cli import main
from stigbench.evaluation.rows import METRIC_COLUMNS


@pytest.fixture(scope="module")
def cli_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    args = ["run", "--real", str(tiny_dataset / "real"), "--fake", str(tiny_dataset / "fake"),
            "--refiner", "spectral-match", "--detectors", "durall", "--out", str(out), "--n-boot", "20",
            "--quiet", "--save-refined"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = next(out.glob("*/*"))
    return result, run_dir, out, args


@pytest.mark.heavy
def test_run_folder_contents(cli_run):
    result, run_dir, _, _ = cli_run
    for name in ("config.json", "run.json", "split.csv", "metrics.csv", "thresholds.csv", "spectra.npz", "summary.csv",
                 "summary.md", "scores.csv", "spectra.png", "radial_profiles.png", "radial_profiles.csv", "run.log"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "detectors" / "durall" / "params.json").is_file()
    assert (run_dir / "refiners" / "spectral-match" / "log_gain.npy").is_file()
    assert (run_dir / "refiners" / "spectral-match" / "info.json").is_file()
    assert len(list((run_dir / "refined" / "spectral-match").glob("*.png"))) == 6
    assert "Run folder:" in result.output and "durall" in result.output


def test_metrics_table_is_the_contract(cli_run):
    _, run_dir, _, _ = cli_run
    m = pd.read_csv(run_dir / "metrics.csv", keep_default_na=False)
    assert list(m.columns) == METRIC_COLUMNS
    # empty cells: no interval (--n-boot 0), or a value that cannot be measured (TPR at 0.1 % FPR on 6 reals)
    m["value"] = pd.to_numeric(m["value"])
    det = m[m.detector == "durall"]
    assert det[det.metric.isin(["tpr_at_fpr1", "tpr_at_fpr01"])].value.isna().all()
    assert set(det.metric) == {"auc", "ap", "acc", "acc_real", "acc_fake", "eer", "tpr_at_fpr05", "asr",
                               "balanced_acc", "ece", "ece_balanced", "tpr_at_fpr1", "fpr_at_fpr1", "tpr_at_fpr01",
                               "fpr_at_fpr01", "val_reals"}
    assert set(det[det.metric == "asr"].condition) == {"refined"}  # the attack success rate of each attack
    assert set(det.condition) == {"fake", "refined"}
    assert set(det[det.condition == "fake"].refiner) == {""}
    assert set(det[det.condition == "refined"].refiner) == {"spectral-match"}
    assert set(m.trained_on[m.detector != ""]) == {"fake"} and set(m.perturbation) == {"none"}
    auc_fake = float(det[(det.condition == "fake") & (det.metric == "auc")].value.iloc[0])
    assert auc_fake > 0.9  # the tiny fakes are easy
    lfd = m[m.metric == "lfd"]
    assert set(lfd.condition) == {"fake", "refined"} and set(lfd.detector) == {""}
    lfd_fake = float(lfd[lfd.condition == "fake"].value.iloc[0])
    lfd_ref = float(lfd[lfd.condition == "refined"].value.iloc[0])
    assert lfd_ref < lfd_fake
    ci = det[det.metric == "auc"]
    assert ((ci.ci_low.astype(float) <= ci.value) & (ci.value <= ci.ci_high.astype(float))).all()


def test_config_and_provenance_recorded(cli_run):
    _, run_dir, _, _ = cli_run
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["config"]["detectors"] == "durall" and cfg["config"]["seed"] == 0
    assert "real" in cfg["non_defaults"] and cfg["image_size"] == 32
    run = json.loads((run_dir / "run.json").read_text())
    assert run["provenance"]["versions"]["torch"]
    assert run["dataset"]["split"]["real"]["test"] == 6
    assert run["detectors"]["durall"]["threshold"] is not None


@pytest.mark.heavy
def test_same_seed_same_numbers_and_never_overwrites(cli_run):
    _, run_dir, out, args = cli_run
    result = CliRunner().invoke(main, [a for a in args if a != "--save-refined"], catch_exceptions=False)
    assert result.exit_code == 0
    runs = sorted(out.glob("*/*"))
    assert len(runs) == 2
    a = pd.read_csv(runs[0] / "metrics.csv")
    b = pd.read_csv(runs[1] / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.heavy
def test_rerun_from_saved_config(cli_run, tmp_path):
    _, run_dir, _, _ = cli_run
    result = CliRunner().invoke(main, ["run", "--config", str(run_dir / "config.json"), "--out", str(tmp_path),
                                       "--no-save-refined"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    new = next(tmp_path.glob("*/*"))
    pd.testing.assert_frame_equal(pd.read_csv(new / "metrics.csv"), pd.read_csv(run_dir / "metrics.csv"))
    assert not (new / "refined").exists()


def test_list_commands():
    runner = CliRunner()
    out = runner.invoke(main, ["list", "detectors"]).output
    assert "durall" in out and "frequency" in out and "Durall" in out
    assert "spectral-match" in runner.invoke(main, ["list", "refiners"]).output
    assert "demo" in runner.invoke(main, ["list", "datasets"]).output
    assert "durall-svm" not in runner.invoke(main, ["list", "detectors", "durall"]).output


def test_clear_errors(tiny_dataset, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["run", "--dataset", "dmeo", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "did you mean 'demo'" in r.output
    base = ["run", "--real", str(tiny_dataset / "real"), "--fake", str(tiny_dataset / "fake"), "--out", str(tmp_path)]
    r = runner.invoke(main, base + ["--detectors", "durral"])
    assert r.exit_code == 2 and "did you mean 'durall'" in r.output
    r = runner.invoke(main, base + ["--set", "durall.nope=1", "--refiner", ""])
    assert r.exit_code == 2 and "no parameter" in r.output
    r = runner.invoke(main, base + ["--set", "whatever.x=1"])
    assert r.exit_code == 2 and "neither a refiner nor a detector" in r.output
    for command in (base, ["grid", "--datasets", "demo", "--out", str(tmp_path / "g")]):
        r = runner.invoke(main, command + ["--fit-refiners-on", "val"])
        assert r.exit_code == 2 and "'val' is not one of 'train', 'test'" in r.output
    assert not list(tmp_path.glob("*/*/metrics.csv"))


def test_refine_command(cli_run, tiny_dataset, tmp_path):
    _, run_dir, _, _ = cli_run
    out = tmp_path / "refined"
    args = ["refine", "--checkpoint", str(run_dir / "refiners" / "spectral-match"),
            "--input", str(tiny_dataset / "fake"), "--output", str(out), "--quiet"]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "refined 30 image(s) at 32x32" in r.output
    assert len(list(out.glob("*.png"))) == 30
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "already exist" in again.output
    bad = CliRunner().invoke(main, ["refine", "--checkpoint", str(tmp_path), "--input", str(tiny_dataset / "fake"),
                                    "--output", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "not a saved refiner" in bad.output


def test_the_list_command_offers_every_kind_of_the_table():
    from stigbench.pipeline.components import KINDS, list_components

    choices = next(p for p in main.commands["list"].params if p.name == "kind").type.choices
    assert sorted(choices) == sorted(KINDS)
    for kind in KINDS:
        result = CliRunner().invoke(main, ["list", kind], catch_exceptions=False)
        assert result.exit_code == 0 and all(r["name"] in result.output for r in list_components(kind))
    assert {r["name"] for r in list_components("refiners", "s*")} == {"spectral-match", "stig"}


@pytest.mark.heavy
def test_a_bad_component_value_fails_before_any_image_is_read(tmp_path):
    """``--set stig.norm=foo`` on the built-in demo dataset: exit non-zero, naming stig and norm, before
    the dataset (built on first use) is touched, so a fresh cache stays empty."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "STIGBENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(root / "bench.py"), "run", "--dataset", "demo", "--set",
                             "stig.norm=foo", "--out", str(tmp_path / "runs"), "--quiet"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "refiner 'stig'" in result.stderr and "norm" in result.stderr
    assert not (tmp_path / "runs").exists()
    assert not list((tmp_path / "cache").rglob("*.png"))  # no demo image was built or read
