"""Names a reader knows: an ad-hoc (``--real/--fake``) dataset is named after its folders or ``--name``,
never a generic constant; the name is a display name (no setting, no part of a stage key); reports
show names, a settings hash only where two groups share a name, and older runs that recorded the
generic ``real-vs-fake`` under the name their folders give them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from stigbench.cli import main
from stigbench.core.config import RunConfig
from stigbench.core.settings import result_settings
from stigbench.data.specs import adhoc_spec, folder_dataset_name
from stigbench.pipeline.plan import PlanError, resolve_spec
from stigbench.reporting.compare.collect import collect_runs, display_name
from stigbench.reporting.compare.grouping import group_runs
from test_report import write_run

FIXTURE = Path(__file__).parent / "fixtures" / "run-v0.1"


@pytest.mark.parametrize(("real", "fake", "name"), [
    ("/d/progan/0_real", "/d/progan/1_fake", "progan"),  # the parent both share
    ("/d/ffhq", "/d/stylegan2", "ffhq-vs-stylegan2"),  # two named folders
    ("/d/real", "/d/sd15", "sd15"),  # a generic real folder beside a named fake one: the fake's name
    ("/h/exp1/data/real", "/h/exp1/data/fake", "exp1"),  # generic names skipped upwards
    ("/g/genimage/sdv4/train/nature", "/g/genimage/sdv4/train/ai", "sdv4"),
    ("/x/coco/real", "/y/sd/fake", "coco-vs-sd"),
    ("/d/my set/real", "/d/my set/fake", "my_set"),  # only characters a dataset name allows
])
def test_folder_names(real, fake, name):
    assert folder_dataset_name(real, fake) == name


def test_adhoc_spec_names(tmp_path):
    for part in ("biggan/real", "biggan/fake"):
        (tmp_path / part).mkdir(parents=True)
    spec = adhoc_spec(tmp_path / "biggan" / "real", tmp_path / "biggan" / "fake")
    assert spec.name == "biggan"
    config = RunConfig(real=str(tmp_path / "biggan" / "real"), fake=str(tmp_path / "biggan" / "fake"), name="BigGAN-256")
    assert resolve_spec(config).name == "BigGAN-256"
    with pytest.raises(PlanError, match="--name names a --real/--fake dataset"):
        resolve_spec(RunConfig(name="x"))
    with pytest.raises(ValueError, match="invalid dataset name 'a b'"):
        resolve_spec(RunConfig(real=config.real, fake=config.fake, name="a b"))
    # a display name: no result setting, so the grid and the comparison never split runs by it
    assert "name" not in result_settings(config.to_dict())


@pytest.mark.heavy
def test_renaming_reuses_every_stage(tiny_dataset, tmp_path, one_thread):
    from stigbench.pipeline.runner import run_benchmark

    base = RunConfig(real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"), refiners="spectral-match",
                     detectors="durall", n_boot=20, quality=False, out=str(tmp_path / "runs"), progress=False,
                     cache_dir=str(tmp_path / "cache"))
    first = run_benchmark(base)
    renamed = run_benchmark(RunConfig(**{**base.to_dict(), "name": "renamed"}))
    assert first.run_dir.parent.name == folder_dataset_name(tiny_dataset / "real", tiny_dataset / "fake")
    assert renamed.run_dir.parent.name == "renamed"
    assert first.stage_misses > 0 and renamed.stage_misses == 0 and renamed.stage_hits == first.stage_misses
    a = pd.read_csv(first.run_dir / "metrics.csv", keep_default_na=False)
    b = pd.read_csv(renamed.run_dir / "metrics.csv", keep_default_na=False)
    assert set(b["dataset"]) == {"renamed"} and set(b["test_dataset"]) == {"renamed"}
    pd.testing.assert_frame_equal(a.drop(columns=["dataset", "test_dataset"]), b.drop(columns=["dataset", "test_dataset"]))
    # the comparison shows the two names, no hash (no two groups share a name)
    _, groups, _ = group_runs(collect_runs([tmp_path / "runs"]).runs)
    assert sorted(groups["group"]) == sorted([first.run_dir.parent.name, "renamed"])


def test_cli_run_takes_name(tiny_dataset, tmp_path):
    result = CliRunner().invoke(main, ["run", "--real", str(tiny_dataset / "real"), "--fake", str(tiny_dataset / "fake"),
                                       "--name", "a b", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "invalid dataset name 'a b'" in result.output
    result = CliRunner().invoke(main, ["run", "--name", "x", "--dataset", "demo", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--name names a --real/--fake dataset" in result.output
    assert not any(tmp_path.iterdir())  # both fail before anything is written


def test_hash_only_where_two_groups_share_a_name(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "a" / "s0", seed=0, dataset="progan")
    write_run(runs / "a" / "s1", seed=1, dataset="progan")
    write_run(runs / "b" / "s0", seed=0, dataset="progan", n_boot=50)  # same name, other settings
    write_run(runs / "c" / "s0", seed=0, dataset="biggan")
    _, groups, _ = group_runs(collect_runs([runs]).runs)
    labels = list(groups["group"])
    assert "biggan" in labels  # a name of its own: no hash
    progan = sorted(g for g in labels if g.startswith("progan"))
    hashes = sorted(groups.loc[groups.dataset == "progan", "settings_hash"])
    assert progan == sorted(f"progan [{h}]" for h in hashes) and len(progan) == 2


def test_older_runs_named_real_vs_fake_get_their_folders_name(tmp_path):
    config = json.loads((FIXTURE / "config.json").read_text())
    assert config["config"]["real"] == "/tmp/fx/data/real" and config["dataset_spec"]["name"] == "real-vs-fake"
    assert display_name(config, "real-vs-fake") == "fx"  # "data" says nothing, its parent does
    assert display_name(config, "my-name") == "my-name"  # a name the user chose stays
    assert display_name({"config": {**config["config"], "name": "x"}}, "real-vs-fake") == "real-vs-fake"
    runs = tmp_path / "runs"
    shutil.copytree(FIXTURE, runs / "old")
    collected = collect_runs([runs])
    _, groups, _ = group_runs(collected.runs)
    group = groups.iloc[0]
    assert group["group"] == "fx" and group["recorded_name"] == "real-vs-fake"
    assert [r.dataset for r in collected.runs] == ["fx"] and collected.skipped == []
