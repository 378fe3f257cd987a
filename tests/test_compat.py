"""Saves written by stigbench 0.1 (before modules moved) still load and compute what they computed then."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import pink_noise, upsampled_noise
from stigbench.attacks.registry import load_refiner
from stigbench.cli import main
from stigbench.core.imageset import ArrayImageSet
from stigbench.detection.registry import detectors

FIXTURE = Path(__file__).parent / "fixtures" / "run-v0.1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text()) if FIXTURE.is_dir() else {}


def _images() -> ArrayImageSet:
    rng = np.random.default_rng(123)
    imgs = np.stack([pink_noise(rng, 32) for _ in range(2)] + [upsampled_noise(rng, 32) for _ in range(2)])
    return ArrayImageSet((imgs.transpose(0, 3, 1, 2) * 255).round().astype(np.uint8))


def test_the_fixture_names_0_1_class_paths():
    params = json.loads((FIXTURE / "refiners" / "stig" / "params.json").read_text())
    assert params["class"] == "stigbench.refiners.stig.refiner.StigRefiner"


@pytest.mark.parametrize("name", ["stig", "spectral-match"])
def test_a_0_1_refiner_loads_and_refines_as_it_did(name):
    out = load_refiner(FIXTURE / "refiners" / name).refine(_images()).to_array()
    assert hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest() == EXPECTED["refined_sha256"][name]


@pytest.mark.parametrize("name", ["durall", "spectrum-cnn"])
def test_a_0_1_detector_loads_and_scores_as_it_did(name):
    det = detectors().get(name).load(FIXTURE / "detectors" / name)
    np.testing.assert_allclose(det.score(_images()), EXPECTED["scores"][name], rtol=0, atol=1e-6)


@pytest.mark.heavy
def test_report_reads_a_0_1_run_folder(tmp_path):
    run = shutil.copytree(FIXTURE, tmp_path / "runs" / "real-vs-fake" / "20261130-083828-seed0")
    result = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "cmp")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "durall" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_settings_added_since_0_1_have_their_default_as_legacy_value():
    """A 0.1 run and a run of today with default settings fall in one comparison group."""
    from stigbench.core.settings import LEGACY_DEFAULTS, NON_RESULT_SETTINGS
    from stigbench.core.config import RunConfig

    old = json.loads((FIXTURE / "config.json").read_text())["config"]
    today = RunConfig().to_dict()
    for key in set(today) - set(old) - NON_RESULT_SETTINGS:  # those never enter a group's settings
        assert key in LEGACY_DEFAULTS and LEGACY_DEFAULTS[key] == today[key], key
