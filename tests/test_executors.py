"""Grid cells on Ray and on submitit (its local executor: no Slurm needed): the same results as the local
executor, failed and dying cells recorded and retried, clear messages on bad input.

Results are compared with ``--no-cache``, so each executor computes every cell itself."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import make_tiny_dataset
from stigbench.cli import main
from stigbench.core.config import RunConfig
from stigbench.core.settings import result_settings
from stigbench.pipeline.executors import (
    EXECUTORS,
    ExecutorError,
    LocalExecutor,
    RayExecutor,
    SlurmExecutor,
    make_executor,
)
from stigbench.pipeline.grid import run_grid

DATASETS = ["executors-a", "executors-b"]  # unique in the session: the dataset registry is global
SEEDS = [0, 1]
CELLS = [f"{d}/seed{s}" for d in DATASETS for s in SEEDS]
TINY = ["--refiner", "spectral-match", "--detectors", "durall", "--no-quality", "--n-boot", "20", "--quiet"]

# A detector that kills its worker process (no exception, no clean-up) while fitting on a dataset whose
# folder holds a DIE file: the refiner's stages are complete by then, the detector's is not.
DIES = '''
import os
from pathlib import Path
from stigbench.detection.registry import register_detector
from stigbench.detectors.durall import Durall

@register_detector("executors-dies", family="frequency", domain="spectrum", paper="none (test)")
class DiesOnMarker(Durall):
    def fit(self, train_set, labels, val_set=None, val_labels=None):
        if any((Path(i).parent.parent / "DIE").exists() for i in train_set.ids[:1]):
            os._exit(3)
        return super().fit(train_set, labels, val_set, val_labels)
'''


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("executors")
    for k, name in enumerate(DATASETS):
        make_tiny_dataset(root / name, n_real=20, n_fake=20, seed=k)
        (root / f"{name}.toml").write_text(f'name = "{name}"\nroot = "{root / name}"\n')
    return root


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (it takes seconds to start), on the machine's two cores."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def base(specs) -> RunConfig:
    return RunConfig(spec_dirs=[str(specs)], refiners="spectral-match", detectors="durall", n_boot=20,
                     quality=False, cache=False, progress=False)


def _cells(out: Path) -> dict[str, dict]:
    return json.loads((out / "grid.json").read_text())["cells"]


@pytest.mark.heavy
def test_ray_and_submitit_give_the_local_results(specs, ray_local, base, tmp_path):
    """A 2 x 2 grid, uncached, on each executor: the same metrics.csv per cell, the same grid.json, the
    same result settings reaching each run, and every run folder inside its grid folder."""
    pytest.importorskip("submitit")
    local = run_grid(DATASETS, SEEDS, tmp_path / "local", base)
    assert local.ran == CELLS and not local.failed
    common = ["grid", "--datasets", ",".join(DATASETS), "--seeds", "0,1", "--spec-dir", str(specs), "--no-cache", *TINY]
    for kind, extra in (("ray", []), ("slurm", ["--slurm-cluster", "local"])):
        r = CliRunner().invoke(main, [*common, "--out", str(tmp_path / kind), "--executor", kind, *extra])
        assert r.exit_code == 0, r.output
        assert "4 cell(s) run, 0 reused" in r.output and "submitted" in r.output
    manifests = {kind: json.loads((tmp_path / kind / "grid.json").read_text()) for kind in EXECUTORS}
    for kind in ("ray", "slurm"):
        assert manifests[kind]["settings"] == manifests["local"]["settings"]
        assert sorted(manifests[kind]["cells"]) == CELLS
        for cell in CELLS:
            ours, theirs = manifests["local"]["cells"][cell], manifests[kind]["cells"][cell]
            assert theirs["errors"] == ours["errors"] == {}
            assert Path(theirs["run_dir"]).parts[0] == cell.split("/")[0]  # <dataset>/<stamp>-seed<n>
            run_dirs = tmp_path / "local" / ours["run_dir"], tmp_path / kind / theirs["run_dir"]
            frames = [pd.read_csv(d / "metrics.csv", keep_default_na=False) for d in run_dirs]
            assert len(frames[0]) > 10
            pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)
            configs = [json.loads((d / "config.json").read_text())["config"] for d in run_dirs]
            assert result_settings(configs[0]) == result_settings(configs[1])
    assert not list((tmp_path / "slurm" / "submitit").glob("*.pkl"))  # transport files go, logs stay
    assert list((tmp_path / "slurm" / "submitit").glob("*_log.out"))


@pytest.fixture(params=["ray", "slurm"])
def remote(request):
    if request.param == "ray":
        request.getfixturevalue("ray_local")
        return RayExecutor()
    pytest.importorskip("submitit")
    # submitit waits up to 15 s for the result file of a job that ended without one (slow shared file
    # systems); on a local disk a dead job's result never comes, so the test does not wait for it.
    monkeypatch = request.getfixturevalue("monkeypatch")
    from submitit.local.local import LocalJob

    monkeypatch.setattr(LocalJob, "_results_timeout_s", 1)
    return SlurmExecutor(cluster="local")


@pytest.mark.heavy
def test_failed_and_dead_cells_are_recorded_and_retried(remote, specs, base, tmp_path):
    """One cell raises (a dataset without fakes), one kills its worker mid-run; the third finishes. The
    next run retries the killed cell, not the finished one, and it resumes from the stage cache."""
    plugin = tmp_path / "dies.py"
    plugin.write_text(DIES)
    names = {"ok": "executors-a", "broken": f"executors-broken-{remote.name}", "dies": f"executors-dies-{remote.name}"}
    data = tmp_path / "data"
    make_tiny_dataset(data / "dies", n_real=20, n_fake=20, seed=5)
    (data / "dies" / "DIE").write_text("")
    make_tiny_dataset(data / "broken", n_real=20, n_fake=1)
    shutil.rmtree(data / "broken" / "fake")
    for key in ("broken", "dies"):
        (data / f"{names[key]}.toml").write_text(f'name = "{names[key]}"\nroot = "{data / key}"\n')
    cfg = dataclasses.replace(base, detectors="durall,executors-dies", plugins=[str(plugin)],
                              spec_dirs=[*base.spec_dirs, str(data)], cache=True, cache_dir=str(tmp_path / "stages"))
    out, grid = tmp_path / "grid", list(names.values())
    first = run_grid(grid, [0], out, cfg, executor=remote)
    assert first.ran == ["executors-a/seed0"]
    assert sorted(first.failed) == sorted(f"{names[k]}/seed0" for k in ("broken", "dies"))
    cells = _cells(out)
    assert "worker died" in cells[f"{names['dies']}/seed0"]["error"]
    broken = cells[f"{names['broken']}/seed0"]["error"]
    assert "fake" in broken and "worker died" not in broken  # the dataset's own message came back
    assert (out / cells["executors-a/seed0"]["run_dir"] / "metrics.csv").is_file()

    (data / "dies" / "DIE").unlink()
    again = run_grid([names["ok"], names["dies"]], [0], out, cfg, executor=remote)  # each worker costs seconds
    assert again.skipped == ["executors-a/seed0"] and again.ran == [f"{names['dies']}/seed0"] and not again.failed
    assert f"{names['broken']}/seed0" in _cells(out)  # still recorded, for the run that retries it
    resumed = json.loads((again.run_dirs[f"{names['dies']}/seed0"] / "run.json").read_text())
    assert resumed["status"] == "complete" and resumed["stages"]["reused"] >= 2  # refiner fit, refined set
    killed = [json.loads(p.read_text()) for p in (out / names["dies"]).glob("*/run.json")]
    assert sorted(r["status"] for r in killed) == ["complete", "interrupted"]


def test_missing_package_fails_before_any_cell(monkeypatch, base, tmp_path):
    for module, kind, extra in (("ray", "ray", "ray"), ("submitit", "slurm", "slurm")):
        monkeypatch.setitem(sys.modules, module, None)  # `import ray` now raises ImportError
        with pytest.raises(ExecutorError, match=rf"pip install 'stigbench\[{extra}\]'"):
            run_grid(DATASETS, [0], tmp_path / kind, base, executor=make_executor(kind))
        assert not (tmp_path / kind).exists()
        r = CliRunner().invoke(main, ["grid", "--datasets", DATASETS[0], "--spec-dir", base.spec_dirs[0],
                                      "--out", str(tmp_path / f"cli-{kind}"), "--executor", kind])
        assert r.exit_code == 2 and f"pip install 'stigbench[{extra}]'" in r.output, r.output


def test_unreachable_ray_address(base, tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
        r = CliRunner().invoke(main, ["grid", "--datasets", DATASETS[0], "--spec-dir", base.spec_dirs[0],
                                      "--out", str(tmp_path / "g"), "--executor", "ray", "--ray-address", address])
    assert r.exit_code == 2 and f"cannot reach a Ray cluster at {address}" in r.output, r.output
    assert not (tmp_path / "g").exists()
    with pytest.raises(ExecutorError, match="expected host:port"):
        RayExecutor(address="nowhere").check()


def test_options_of_another_executor_are_refused(base, tmp_path):
    with pytest.raises(ValueError, match="--ray-address, --slurm-partition do\\(es\\) not apply to --executor local"):
        make_executor("local", ray_address="h:1", slurm_partition="gpu")
    with pytest.raises(ValueError, match="--ray-address do\\(es\\) not apply to --executor slurm"):
        make_executor("slurm", ray_address="h:1")
    assert isinstance(make_executor("local", ray_address=None), LocalExecutor)
    r = CliRunner().invoke(main, ["grid", "--datasets", DATASETS[0], "--spec-dir", base.spec_dirs[0],
                                  "--out", str(tmp_path / "g"), "--gpus-per-cell", "1"])
    assert r.exit_code == 2 and "--gpus-per-cell do(es) not apply to --executor local" in r.output
    slurm = make_executor("slurm", slurm_partition="gpu", slurm_time=30, cpus_per_cell=2.5, gpus_per_cell=1)
    assert (slurm.partition, slurm.time_min, slurm.cpus_per_cell, slurm.gpus_per_cell) == ("gpu", 30, 3, 1)


def test_cli_choices_are_the_executors():
    grid = next(c for c in main.commands.values() if c.name == "grid")
    option = next(p for p in grid.params if p.name == "executor")
    assert tuple(option.type.choices) == EXECUTORS


def test_ci_installs_both_engines():
    """CI installs the ``test`` extra: it must carry the ``ray`` and ``slurm`` extras, or these tests skip."""
    import tomllib

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert set(extras["ray"]) | set(extras["slurm"]) <= set(extras["test"])
