"""Cross-dataset scoring (``--test-datasets``): the run's detectors on other datasets' test splits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_tiny_dataset
from stigbench.pipeline.plan import PlanError, RunConfig, resolve
from stigbench.pipeline.runner import run_benchmark


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> Path:
    """Three spec files: tinya and tinyb (32 px, other images), tinysmall (16 px)."""
    root = tmp_path_factory.mktemp("cross")
    for name, size, seed in (("tinya", 32, 0), ("tinyb", 32, 1), ("tinysmall", 16, 2)):
        make_tiny_dataset(root / name, n_real=20, n_fake=20, size=size, seed=seed)
        (root / f"{name}.toml").write_text(f'name = "{name}"\nroot = "{root / name}"\n')
    return root


@pytest.fixture
def base(specs, tmp_path) -> RunConfig:
    return RunConfig(dataset="tinya", spec_dirs=[str(specs)], refiners="spectral-match", detectors="durall",
                     n_boot=20, quality=False, out=str(tmp_path / "runs"), cache_dir=str(tmp_path / "stages"),
                     progress=False)


def _own(m: pd.DataFrame) -> pd.DataFrame:
    return m[m.test_dataset == m.dataset].reset_index(drop=True)


def test_cross_rows_are_scored_on_the_test_datasets_split(base):
    alone = run_benchmark(base)
    cross = run_benchmark(dataclasses.replace(base, test_datasets="tinyb"))
    m = cross.metrics
    assert set(m.test_dataset) == {"tinya", "tinyb"} and set(m.dataset) == {"tinya"}
    pd.testing.assert_frame_equal(_own(m), alone.metrics)  # the run's own rows do not change
    b = m[m.test_dataset == "tinyb"]
    auc = b[b.metric == "auc"].set_index(["condition", "refiner"]).value
    assert set(auc.index) == {("fake", ""), ("refined", "spectral-match")}
    assert {"lfd", "psnr", "ssim"} <= set(b.metric)  # measured against tinyb's reals and fakes
    scores = pd.read_csv(cross.run_dir / "scores.csv", keep_default_na=False)
    split_b = json.loads((cross.run_dir / "run.json").read_text())["cross"]["tinyb"]
    assert split_b["attack_from"] == "tinyb" and split_b["error"] is None
    on_b = scores[(scores.test_dataset == "tinyb") & (scores.condition == "fake")]
    assert len(on_b) == split_b["split"]["real"]["test"] + split_b["split"]["fake"]["test"]
    assert all("tinyb" in p for p in on_b.path)

    # tinyb's refiner and refined test set are the very stages tinyb's own run computes
    own_b = run_benchmark(dataclasses.replace(base, dataset="tinyb"))
    assert own_b.stage_hits >= 2


def test_attack_from_uses_the_runs_own_refiners(base):
    res = run_benchmark(dataclasses.replace(base, test_datasets="tinyb", attack_from="tinya"))
    record = json.loads((res.run_dir / "run.json").read_text())
    assert record["cross"]["tinyb"]["attack_from"] == "tinya"
    assert record["cross"]["tinyb"]["refiners"] == {}  # nothing fitted on tinyb
    assert ((res.metrics.test_dataset == "tinyb") & (res.metrics.condition == "refined")).any()
    with pytest.raises(PlanError, match="must name this run's dataset"):
        resolve(dataclasses.replace(base, test_datasets="tinyb", attack_from="tinyb"))
    with pytest.raises(PlanError, match="goes with --test-datasets"):
        resolve(dataclasses.replace(base, attack_from="tinya"))


def test_a_test_dataset_with_smaller_images_fails_its_cell_only(base):
    res = run_benchmark(dataclasses.replace(base, test_datasets="tinyb,tinysmall"))
    record = json.loads((res.run_dir / "run.json").read_text())
    assert "smaller than the 32-px images" in record["cross"]["tinysmall"]["error"]
    assert "cross:tinysmall" in res.errors
    assert record["cross"]["tinyb"]["error"] is None
    assert set(res.metrics.test_dataset) == {"tinya", "tinyb"}


def test_the_runs_own_dataset_is_not_a_cross_cell(base):
    plan = resolve(dataclasses.replace(base, test_datasets="tiny*"))
    assert [s.name for s in plan.test_specs] == ["tinyb", "tinysmall"]
