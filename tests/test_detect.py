"""``bench.py detect``: score images with a detector a run saved, labelled at the run's threshold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from stigbench.cli import main
from stigbench.evaluation.detection import read_scores
from stigbench.pipeline.detect import read_threshold, score_images

FIXTURE = Path(__file__).parent / "fixtures" / "run-v0.1"


@pytest.fixture(scope="module")
def durall_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("detect-runs")
    args = ["run", "--real", str(tiny_dataset / "real"), "--fake", str(tiny_dataset / "fake"), "--refiner", "",
            "--detectors", "durall", "--no-quality", "--n-boot", "0", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in out.glob("*/*") if (p / "run.json").is_file()]
    return run_dir


def _detect(*args: str) -> tuple[int, str, str]:
    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1; 8.2 keeps stderr apart and dropped the keyword
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(main, ["detect", *args, "--quiet"], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_a_run_saves_the_threshold_with_the_detector(durall_run):
    saved = json.loads((durall_run / "detectors" / "durall" / "threshold.json").read_text())
    run_json = json.loads((durall_run / "run.json").read_text())
    assert saved["threshold"] == run_json["detectors"]["durall"]["threshold"]
    assert saved["chosen_on"] == "val" and saved["metric"] and saved["image_size"] == 32


def test_detect_on_the_fake_folder_matches_the_run(durall_run, tiny_dataset, tmp_path):
    out = tmp_path / "scores.csv"
    code, stdout, stderr = _detect("--detector", str(durall_run / "detectors" / "durall"),
                                   "--input", str(tiny_dataset / "fake"), "--out", str(out))
    assert code == 0, stderr
    assert "scored 30 image(s) at 32x32" in stdout
    got = pd.read_csv(out, keep_default_na=False)
    assert list(got.columns) == ["file", "p_fake", "label"] and len(got) == 30
    assert (got.label == "fake").mean() >= 0.8
    assert not (tmp_path / "skipped.csv").exists()
    run = read_scores(durall_run / "scores.csv")
    run = run[(run.condition == "fake") & (run.label == 1)].set_index("path").score
    assert len(run) > 0
    mine = got.set_index("file").p_fake.loc[run.index]
    np.testing.assert_array_equal(mine.to_numpy(), run.to_numpy())


def test_a_single_file_prints_a_table_and_csv(durall_run, tiny_dataset):
    det, image = str(durall_run / "detectors" / "durall"), str(tiny_dataset / "fake" / "img_000.png")
    code, stdout, _ = _detect("--detector", det, "--input", image)
    assert code == 0 and stdout.startswith("| file | p_fake | label |") and "| fake |" in stdout
    code, stdout, _ = _detect("--detector", det, "--input", image, "--format", "csv")
    lines = stdout.strip().splitlines()
    assert code == 0 and lines[0] == "file,p_fake,label" and len(lines) == 2 and lines[1].endswith(",fake")


def test_a_corrupt_file_is_skipped_with_a_reason_and_out_is_never_overwritten(durall_run, tiny_dataset, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("img_000.png", "img_001.png"):
        shutil.copy(tiny_dataset / "fake" / name, folder / name)
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "res" / "scores.csv"
    args = ["--detector", str(durall_run / "detectors" / "durall"), "--input", str(folder), "--out", str(out)]
    code, stdout, stderr = _detect(*args)
    assert code == 0, stderr
    assert "broken.png: cannot decode" in stderr
    assert len(pd.read_csv(out)) == 2
    skipped = pd.read_csv(tmp_path / "res" / "skipped.csv")
    assert list(skipped.columns) == ["path", "reason"] and skipped.path.str.endswith("broken.png").all()
    before = out.read_bytes()
    code, _, stderr = _detect(*args)
    assert code != 0 and "already exists" in stderr
    assert out.read_bytes() == before


def test_a_0_1_run_folder_falls_back_to_run_json(tmp_path, tiny_dataset):
    run = shutil.copytree(FIXTURE, tmp_path / "run")
    det = run / "detectors" / "durall"
    assert not (det / "threshold.json").exists() and not (run / "thresholds.csv").exists()
    expected = json.loads((run / "run.json").read_text())["detectors"]["durall"]["threshold"]
    assert read_threshold(det).value == expected and read_threshold(det).source == "run.json"
    result = score_images(det, tiny_dataset / "fake", progress=False)
    assert result.size == 32 and list(result.scores.columns) == ["file", "p_fake", "label"]
    assert (result.scores.label == "fake").mean() >= 0.8
    # thresholds.csv, when a run wrote one, comes before run.json
    pd.DataFrame([{"detector": "durall", "trained_on": "fake", "refiner": "", "threshold": 0.25}]).to_csv(
        run / "thresholds.csv", index=False)
    assert read_threshold(det).value == 0.25 and read_threshold(det).source == "thresholds.csv"
    # with no threshold anywhere: P(fake) only, and the command says the label is unavailable
    (run / "thresholds.csv").unlink()
    (run / "run.json").unlink()
    code, stdout, stderr = _detect("--detector", str(det), "--input", str(tiny_dataset / "fake" / "img_000.png"))
    assert code == 0 and stdout.startswith("| file | p_fake |\n") and "label unavailable" in stderr
