"""Released checkpoints as detectors: score-only fits that reproduce the authors' forward, the plan's
checks, a run that holds a trained and a released variant side by side, and ``bench.py detect`` from a
run and from a checkpoint. Files in the released formats are written with random weights
(:mod:`released_refs`); no real released file is needed or fetched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from released_refs import (RefNPR, cnndetection_reference, randomise, reference_p_fake, write_cnndetection,
                           write_npr)

from stigbench.cli import main
from stigbench.core.config import RunConfig
from stigbench.core.contracts import released_label
from stigbench.core.imageset import ArrayImageSet
from stigbench.detection.registry import detectors
from stigbench.detection.released import file_fingerprint
from stigbench.pipeline.executors import worker_config
from stigbench.pipeline.plan import PlanError, resolve


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("released")
    cnn, npr = cnndetection_reference(seed=1), randomise(RefNPR(), seed=2)
    return {"cnn": write_cnndetection(root / "blur_jpg_prob0.5.pth", cnn), "npr": write_npr(root / "NPR.pth", npr),
            "cnn_model": cnn, "npr_model": npr, "root": root}


def image_set(n: int = 6, size: int = 32, seed: int = 0) -> ArrayImageSet:
    return ArrayImageSet(np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8))


LABELS = np.array([0, 0, 0, 1, 1, 1])
RELEASED = {"wang2020": ("cnn", {"backbone": "resnet50"}), "npr": ("npr", {"size": "paper"})}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_score_only_fit_reproduces_the_authors_forward(files, name, tmp_path):
    key, extra = RELEASED[name]
    det = detectors().get(name)(checkpoint=str(files[key]), **extra)
    det.check_params()
    images = image_set()
    det.fit(images, LABELS)
    expected = reference_p_fake(files[f"{key}_model"], torch.from_numpy(images.array).float() / 255).numpy()
    np.testing.assert_allclose(det.score(images), expected, atol=1e-5)
    info = det.fit_info_
    assert info["trained_on"] == "released" and info["epochs_run"] == 0 and info["image_size"] == 32
    assert info["checkpoint"] == file_fingerprint(files[key])
    # the torch path of white-box attacks is the released network too
    np.testing.assert_allclose(torch.sigmoid(det.logits(det_images(images))).detach().double().numpy(), expected,
                               atol=1e-5)
    # saved without a copy of the weights; loaded back from the file, whose hash must still match
    det.save(tmp_path / "saved")
    assert not (tmp_path / "saved" / "model.pt").exists()
    np.testing.assert_allclose(type(det).load(tmp_path / "saved").score(images), expected, atol=1e-5)


def det_images(images: ArrayImageSet) -> torch.Tensor:
    return torch.from_numpy(np.asarray(images.array)).float() / 255


def test_a_changed_released_file_is_refused_when_the_detector_is_loaded(files, tmp_path):
    path = write_npr(tmp_path / "NPR.pth", files["npr_model"])
    det = detectors().get("npr")(size="paper", checkpoint=str(path)).fit(image_set(), LABELS)
    det.save(tmp_path / "saved")
    write_npr(path, randomise(RefNPR(), seed=9))
    with pytest.raises(ValueError, match=r"changed since this detector was saved \(SHA-256 then [0-9a-f]{12}"):
        type(det).load(tmp_path / "saved")


def config(files: dict[str, Path], **params: dict) -> RunConfig:
    return RunConfig(dataset="demo", refiners="", detectors=",".join(params), detector_params=params)


@pytest.mark.parametrize("params, message", [
    ({"checkpoint": "missing.pth", "backbone": "resnet50"}, r"checkpoint: checkpoint not found: .*missing\.pth"),
    ({"checkpoint": "NPR.pth"}, r"backbone=resnet50 and num_outputs=1"),
    ({"checkpoint": "NPR.pth", "backbone": "resnet50"}, r"176 missing keys \['layer3\.0\.conv1\.weight'.*2 unexpected keys \['fc1\.weight'"),
    ({"checkpoint": "noise.bin", "backbone": "resnet50"}, r"not a PyTorch checkpoint"),
    ({"checkpoint": "blur_jpg_prob0.5.pth", "backbone": "resnet50", "weights": "NPR.pth"}, "exclude each other"),
])
def test_bad_released_files_fail_in_the_plan_naming_what(files, params, message, monkeypatch):
    (files["root"] / "noise.bin").write_bytes(b"\x00not a checkpoint" * 10)
    monkeypatch.chdir(files["root"])
    with pytest.raises(PlanError, match=message) as info:
        resolve(config(files, **{"wang2020": params}))
    assert "detector 'wang2020'" in str(info.value)


def test_missing_keys_are_named_in_the_plan(files, tmp_path):
    state = dict(files["npr_model"].state_dict())
    del state["layer2.3.bn3.weight"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(PlanError, match=r"1 missing keys \['layer2\.3\.bn3\.weight'\]"):
        resolve(config(files, **{"npr": {"checkpoint": str(tmp_path / "cut.pth"), "size": "paper"}}))
    with pytest.raises(PlanError, match="set size=paper"):
        resolve(config(files, **{"npr": {"checkpoint": str(files["npr"])}}))


def test_variants_paths_and_hashes_in_the_plan(files, monkeypatch):
    monkeypatch.chdir(files["root"])
    plan = resolve(RunConfig(dataset="demo", refiners="", detectors="npr,npr@released",
                             detector_params={"npr@released": {"checkpoint": "NPR.pth", "size": "paper"}},
                             file_hashes={"npr@released": {"checkpoint": "0" * 64}}))
    trained, released = plan.detectors
    assert (trained.display, trained.name, trained.trained_on) == ("npr", "npr", "fake")
    sha = file_fingerprint(files["npr"])["sha256"]
    assert (released.display, released.name, released.trained_on) == ("npr@released", "npr", released_label(sha))
    assert released.params["checkpoint"] == str(files["npr"])  # absolute: workers and `detect` find it
    assert released.files["checkpoint"]["sha256"] == sha
    assert any("changed since the run that saved this config (SHA-256 then 000000000000" in n for n in plan.notes)
    with pytest.raises(PlanError, match="letters, digits"):
        resolve(RunConfig(dataset="demo", refiners="", detectors="npr@a b"))
    # a grid's cells reach Ray/Slurm workers with absolute checkpoint paths
    sent = worker_config(RunConfig(detector_params={"wang2020@released": {"checkpoint": "x.pth"}, "durall": {"c": 2}}))
    assert sent.detector_params == {"wang2020@released": {"checkpoint": str(files["root"] / "x.pth")},
                                    "durall": {"c": 2}}


@pytest.fixture(scope="module")
def released_run(files, tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    args = ["run", "--real", str(tiny_dataset / "real"), "--fake", str(tiny_dataset / "fake"), "--refiner", "blur:1",
            "--detectors", "durall,wang2020@released,npr@released", "--set", "wang2020@released.backbone=resnet50",
            "--set", f"wang2020@released.checkpoint={files['cnn']}", "--set", "npr@released.size=paper",
            "--set", f"npr@released.checkpoint={files['npr']}", "--adaptive", "--no-quality", "--n-boot", "20",
            "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return next(out.glob("*/*"))


@pytest.mark.heavy
def test_a_run_scores_released_files_without_training_them(released_run, files):
    m = pd.read_csv(released_run / "metrics.csv", keep_default_na=False)
    marks = {d: released_label(file_fingerprint(files[k])["sha256"]) for d, k in
             (("wang2020@released", "cnn"), ("npr@released", "npr"))}
    for det, mark in marks.items():
        rows = m[m.detector == det]
        assert set(rows.trained_on) == {mark}  # never retrained by --adaptive: no "refined" rows
        assert {"acc_authors", "acc_real_authors", "acc_fake_authors"} <= set(rows.metric)
        assert set(rows.condition) == {"fake", "refined"}
        info = json.loads((released_run / "detectors" / det / "fit_info.json").read_text())
        assert info["trained_on"] == "released" and info["epochs_run"] == 0
    assert "refined" in set(m[m.detector == "durall"].trained_on)  # the trained detector is retrained
    thresholds = pd.read_csv(released_run / "thresholds.csv", keep_default_na=False)
    authors = dict(zip(thresholds.detector + "/" + thresholds.trained_on, thresholds.authors_threshold))
    assert authors[f"npr@released/{marks['npr@released']}"] == "0.5" and authors["durall/fake"] == ""
    saved = json.loads((released_run / "config.json").read_text())["config"]
    assert saved["file_hashes"]["npr@released"]["checkpoint"] == file_fingerprint(files["npr"])["sha256"]
    run = json.loads((released_run / "run.json").read_text())
    assert any("--adaptive skips detector 'npr@released'" in n for n in run["notes"])
    summary = (released_run / "summary.md").read_text()
    assert f"npr@released ({marks['npr@released']})" in summary  # the deployed table marks it
    assert "Acc (authors' 0.5)" in summary


@pytest.mark.heavy
def test_detect_from_the_run_and_from_the_checkpoint(released_run, files, tiny_dataset):
    fakes = str(tiny_dataset / "fake")
    runner = CliRunner()
    from_run = runner.invoke(main, ["detect", "--detector", str(released_run / "detectors" / "npr@released"),
                                    "--input", fakes, "--format", "csv", "--quiet"], catch_exceptions=False)
    assert from_run.exit_code == 0, from_run.output
    direct = runner.invoke(main, ["detect", "--detector", "npr", "--set", f"checkpoint={files['npr']}", "--set",
                                  "size=paper", "--set", "precision=auto", "--input", fakes, "--size", "32", "--format", "csv", "--quiet"],
                           catch_exceptions=False)
    assert direct.exit_code == 0, direct.output
    a, b = (pd.read_csv(__import__("io").StringIO(r.output)) for r in (from_run, direct))
    assert list(a.columns) == ["file", "p_fake", "label", "label_authors"] and list(b.columns) == ["file", "p_fake", "label"]
    np.testing.assert_allclose(a.p_fake, b.p_fake, atol=1e-6)  # the run's precision (auto) given here too
    assert (b.label == np.where(b.p_fake > 0.5, "fake", "real")).all()
    assert (a.label_authors == b.label).all()
    refused = runner.invoke(main, ["detect", "--detector", "npr", "--input", fakes])
    assert refused.exit_code != 0 and "without checkpoint= is trained by a run" in refused.output


def test_attack_success_is_read_for_released_detectors_too():
    from stigbench.evaluation.detection import success_rows

    mark = released_label("ab" * 32)
    paths = [f"f{i}" for i in range(4)]
    scores = pd.DataFrame({"test_dataset": "d", "detector": "npr@released", "trained_on": mark,
                           "condition": ["fake"] * 4 + ["refined"] * 4, "refiner": [""] * 4 + ["stig"] * 4,
                           "perturbation": "none", "path": paths * 2, "label": 1,
                           "score": [0.9, 0.8, 0.7, 0.1, 0.2, 0.9, 0.3, 0.1]})
    thresholds = pd.DataFrame({"detector": ["npr@released"], "trained_on": [mark], "refiner": [""],
                               "threshold": [0.5]})
    (row,) = success_rows(scores, thresholds, dataset="d", seed=0, n_boot=0)
    assert (row["trained_on"], row["metric"], row["value"]) == (mark, "asr", pytest.approx(2 / 3))


@pytest.mark.heavy
def test_reports_mark_released_detectors_and_the_leaderboard_ranks_them_apart(released_run, files):
    from types import SimpleNamespace

    from stigbench.reporting.compare.leaderboard import leaderboard, leaderboard_table
    from stigbench.reporting.run.deployed_table import deployed_table
    from stigbench.reporting.run.metrics_csv import read_metrics

    metrics = read_metrics(released_run / "metrics.csv")
    mark = released_label(file_fingerprint(files["npr"])["sha256"])
    assert f"npr@released ({mark})" in set(deployed_table(metrics)["detector"])
    board = leaderboard([SimpleNamespace(metrics=metrics, inactive={})], {0: "tiny"})
    kinds = board.drop_duplicates("detector").set_index("detector")["trained"]
    assert kinds["durall"] == "run" and kinds[f"npr@released ({mark})"] == "released"
    # ranked apart: the run's detector first (rank 1 of its kind), then the released ones from 1 again
    assert list(board.drop_duplicates("detector")["trained"]) == ["run", "released", "released"]
    assert sorted(board[board.trained == "released"].drop_duplicates("detector")["rank"]) == [1, 2]
    table = leaderboard_table(board)
    assert list(table.columns[:3]) == ["rank", "detector", "trained"]


def test_the_authors_threshold_is_strict_as_in_their_test_code():
    from stigbench.evaluation.detection import detection_rows

    mark = released_label("cd" * 32)
    scores = pd.DataFrame({"test_dataset": "d", "detector": "wang2020", "trained_on": mark, "condition": "fake",
                           "refiner": "", "perturbation": "none", "path": [f"p{i}" for i in range(4)],
                           "label": [0, 0, 1, 1], "score": [0.2, 0.5, 0.5, 0.9]})
    thresholds = pd.DataFrame({"detector": ["wang2020"], "trained_on": [mark], "refiner": [""], "threshold": [0.5],
                               "authors_threshold": [0.5]})
    rows = {r["metric"]: r["value"] for r in detection_rows(scores, thresholds, dataset="d", seed=0, n_boot=0)}
    assert rows["acc_fake"] == 1.0 and rows["acc_real"] == 0.5  # the run's threshold: P(fake) >= 0.5 is fake
    assert rows["acc_fake_authors"] == 0.5 and rows["acc_real_authors"] == 1.0  # theirs: P(fake) > 0.5


def test_a_checkpoint_at_a_new_path_is_loaded_from_there(files, tiny_dataset, tmp_path):
    """The fit stage's key holds the file's path as well as its hash: a cached score-only detector reads its
    file from the path it was saved with, so the same bytes elsewhere (the old copy gone) are a new fit."""
    import shutil

    out = []
    for where in ("a", "b"):
        folder = tmp_path / where
        folder.mkdir()
        path = shutil.copy(files["npr"], folder / "NPR.pth")
        args = ["run", "--real", str(tiny_dataset / "real"), "--fake", str(tiny_dataset / "fake"), "--refiner", "",
                "--detectors", "npr", "--set", "npr.size=paper", "--set", f"npr.checkpoint={path}", "--no-quality",
                "--n-boot", "0", "--out", str(tmp_path / "out"), "--quiet"]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        shutil.rmtree(folder)  # the first copy is gone before the second run
        run = sorted((tmp_path / "out").glob("*/*"))[-1]
        assert not json.loads((run / "run.json").read_text()).get("errors"), run
        out.append(pd.read_csv(run / "scores.csv").score.to_numpy())
    np.testing.assert_array_equal(out[0], out[1])
