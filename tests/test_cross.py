"""Cross-dataset scoring (``--test-datasets``): the run's detectors on other datasets' test splits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_tiny_dataset
from stigbench.core.config import RunConfig
from stigbench.pipeline.plan import PlanError, resolve
from stigbench.pipeline.runner import run_benchmark


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> Path:
    """Three spec files: crossa and crossb (32 px, other images), crosssmall (16 px); names unique in
    the test session, because the dataset registry is global."""
    root = tmp_path_factory.mktemp("cross")
    for name, size, seed in (("crossa", 32, 0), ("crossb", 32, 1), ("crosssmall", 16, 2)):
        make_tiny_dataset(root / name, n_real=20, n_fake=20, size=size, seed=seed)
        (root / f"{name}.toml").write_text(f'name = "{name}"\nroot = "{root / name}"\n')
    return root


@pytest.fixture
def base(specs, tmp_path) -> RunConfig:
    return RunConfig(dataset="crossa", spec_dirs=[str(specs)], refiners="spectral-match", detectors="durall",
                     n_boot=20, quality=False, out=str(tmp_path / "runs"), cache_dir=str(tmp_path / "stages"),
                     progress=False)


def _own(m: pd.DataFrame) -> pd.DataFrame:
    return m[m.test_dataset == m.dataset].reset_index(drop=True)


@pytest.mark.heavy
def test_cross_rows_are_scored_on_the_test_datasets_split(base):
    alone = run_benchmark(base)
    cross = run_benchmark(dataclasses.replace(base, test_datasets="crossb"))
    m = cross.metrics
    assert set(m.test_dataset) == {"crossa", "crossb"} and set(m.dataset) == {"crossa"}
    pd.testing.assert_frame_equal(_own(m), alone.metrics)  # the run's own rows do not change
    b = m[m.test_dataset == "crossb"]
    auc = b[b.metric == "auc"].set_index(["condition", "refiner"]).value
    assert set(auc.index) == {("fake", ""), ("refined", "spectral-match")}
    assert {"lfd", "psnr", "ssim"} <= set(b.metric)  # measured against crossb's reals and fakes
    scores = pd.read_csv(cross.run_dir / "scores.csv", keep_default_na=False)
    split_b = json.loads((cross.run_dir / "run.json").read_text())["cross"]["crossb"]
    assert split_b["attack_from"] == "crossb" and split_b["error"] is None
    on_b = scores[(scores.test_dataset == "crossb") & (scores.condition == "fake")]
    assert len(on_b) == split_b["split"]["real"]["test"] + split_b["split"]["fake"]["test"]
    assert all("crossb" in p for p in on_b.path)

    # crossb's refiner and refined test set are the very stages crossb's own run computes
    own_b = run_benchmark(dataclasses.replace(base, dataset="crossb"))
    assert own_b.stage_hits >= 2


@pytest.mark.heavy
def test_attack_from_uses_the_runs_own_refiners(base):
    res = run_benchmark(dataclasses.replace(base, test_datasets="crossb", attack_from="crossa"))
    record = json.loads((res.run_dir / "run.json").read_text())
    assert record["cross"]["crossb"]["attack_from"] == "crossa"
    assert record["cross"]["crossb"]["refiners"] == {}  # nothing fitted on crossb
    assert ((res.metrics.test_dataset == "crossb") & (res.metrics.condition == "refined")).any()
    with pytest.raises(PlanError, match="must name this run's dataset"):
        resolve(dataclasses.replace(base, test_datasets="crossb", attack_from="crossb"))
    with pytest.raises(PlanError, match="goes with --test-datasets"):
        resolve(dataclasses.replace(base, attack_from="crossa"))


@pytest.mark.heavy
def test_a_test_dataset_with_smaller_images_fails_its_cell_only(base):
    res = run_benchmark(dataclasses.replace(base, test_datasets="crossb,crosssmall"))
    record = json.loads((res.run_dir / "run.json").read_text())
    assert "smaller than the 32-px images" in record["cross"]["crosssmall"]["error"]
    assert "cross:crosssmall" in res.errors
    assert record["cross"]["crossb"]["error"] is None
    assert set(res.metrics.test_dataset) == {"crossa", "crossb"}


def test_the_runs_own_dataset_is_not_a_cross_cell(base):
    plan = resolve(dataclasses.replace(base, test_datasets="cross*"))
    assert [s.name for s in plan.test_specs] == ["crossb", "crosssmall"]
