"""torchrun data parallelism (:mod:`stigbench.core.distributed`).

The splitting rules are checked directly; the whole path runs as real ``torchrun`` jobs of 2 CPU
processes on a tiny setting (tens of STIG iterations, 2 CNN epochs, ``--no-cache``, fp32, one thread
per process), compared with a single-process run of the same global batches.

Tolerance, and why it is not zero: DDP averages each rank's gradient of its slice, which adds the same
terms in another order than one process's backward over the whole batch. Measured here: STIG weights
differ by at most 2e-7 after 20 iterations and detector scores by at most 2e-5, so the test allows 1e-5
on weights, 1e-4 on scores and 1e-3 on every metric.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from stigbench.core import distributed
from stigbench.core.imageset import ArrayImageSet

ROOT = Path(__file__).resolve().parents[1]
TINY = {"stig.levels": 2, "stig.width": 4, "stig.d_width": 4, "stig.nce_layers": "[0,1]", "stig.nce_patches": 16,
        "stig.nce_dim": 8, "stig.iterations": 20, "stig.select_fraction": 0,
        # A start away from the identity, so that 20 iterations change the images (the default identity
        # start with a weight average leaves them as they are at this budget).
        "stig.identity_init": "false", "stig.ema": 0, "stig.spectrum_norm": "minmax",
        # Uneven slices on 2 ranks (2 + 1 and 4 + 3): the loss weights are exercised.
        "stig.batch_size": 3, "spectrum-cnn.epochs": 2, "spectrum-cnn.batch_size": 7}


# -- the rules -------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 64])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shards_cover_the_global_batch_in_order(n, size):
    worlds = [distributed.World(r, size, r, "gloo") for r in range(size)]
    parts = [distributed.shard(n, w) for w in worlds]
    assert [i for a, b in parts for i in range(a, b)] == list(range(n))
    assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1
    # DDP averages the ranks' gradients: the weights make that the mean over the global batch.
    weights = [distributed.loss_weight(n, w) for w in worlds]
    assert sum(wt * (1 / max(1, b - a)) * (b - a) for wt, (a, b) in zip(weights, parts)) / size == pytest.approx(1.0)
    for wt, (a, b) in zip(weights, parts):
        assert wt == pytest.approx((b - a) * size / n)


def test_single_process_is_untouched():
    assert distributed.world() is None and distributed.active() is None
    assert distributed.shard(5) == (0, 5) and distributed.loss_weight(5) == 1.0
    assert distributed.stage_key(True) == {} and distributed.describe() is None
    assert distributed.run_on_all(lambda a, b: a + b, 2, b=3) == 5
    x = torch.randn(3, requires_grad=True)
    assert distributed.all_reduce_sum(x) is x
    net = torch.nn.Linear(2, 2)
    assert distributed.wrap(net) is net


def test_backend_errors_are_clear():
    with pytest.raises(distributed.DistributedError, match="must be one of"):
        distributed.resolve_backend("mpi")
    if not torch.cuda.is_available():
        with pytest.raises(distributed.DistributedError, match="nccl.*not available.*gloo"):
            distributed.resolve_backend("nccl")
        assert distributed.resolve_backend("auto") == "gloo"


def test_follow_and_init_refuse_outside_torchrun(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert not distributed.launched()
    with pytest.raises(distributed.DistributedError, match="not launched by torchrun"):
        distributed.init("gloo")
    with pytest.raises(distributed.DistributedError, match="ranks other than 0"):
        distributed.follow()


def test_a_memory_mapped_set_travels_as_its_path(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    mapped = ArrayImageSet(np.load(tmp_path / "images.npy", mmap_mode="r"), ids=list("abcde"))
    payload = pickle.dumps(mapped)
    assert len(payload) < images.nbytes / 2  # the path, not the pixels
    back = pickle.loads(payload)
    assert isinstance(back.array, np.memmap) and back.ids == list("abcde")
    np.testing.assert_array_equal(back.array, images)
    in_memory = pickle.loads(pickle.dumps(ArrayImageSet(images)))
    np.testing.assert_array_equal(in_memory.array, images)
    np.save(tmp_path / "images.npy", images[:3])  # the file changed after it was sent
    with pytest.raises(ValueError, match="changed since it was sent"):
        pickle.loads(payload)


# -- real torchrun jobs ------------------------------------------------------------------------------
def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "STIGBENCH_CACHE": str(tmp / "user-cache"), "PYTHONPATH": str(ROOT)}


def _args(data: Path, out: Path, detectors: str = "durall,spectrum-cnn", refiner: str = "stig",
          settings: dict | None = None) -> list[str]:
    args = ["run", "--real", str(data / "real"), "--fake", str(data / "fake"), "--refiner", refiner,
            "--detectors", detectors, "--n-boot", "20", "--no-quality", "--quiet", "--no-cache",
            "--precision", "fp32", "--out", str(out)]
    for key, value in (TINY if settings is None else settings).items():
        args += ["--set", f"{key}={value}"]
    return args


def _torchrun(args: list[str], env: dict[str, str], nproc: int = 2, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "stigbench.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _run_dir(out: Path) -> Path:
    runs = list(out.glob("*/*/run.json"))
    assert len(runs) == 1, runs  # one run folder, whatever the number of ranks
    return runs[0].parent


@pytest.fixture(scope="module")
def single_and_torchrun(tiny_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    env = _env(tmp)
    single = subprocess.run([sys.executable, str(ROOT / "bench.py"), *_args(tiny_dataset, tmp / "single")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    multi = _torchrun(_args(tiny_dataset, tmp / "multi"), env)
    assert multi.returncode == 0, (multi.stdout + multi.stderr)[-4000:]
    return _run_dir(tmp / "single"), _run_dir(tmp / "multi"), tmp


@pytest.mark.heavy
def test_torchrun_writes_one_run_folder_and_records_the_world(single_and_torchrun):
    single, multi, tmp = single_and_torchrun
    record = json.loads((multi / "run.json").read_text())
    assert record["status"] == "complete" and not record["errors"]
    assert record["distributed"] == {"world_size": 2, "backend": "gloo", "devices": ["cpu", "cpu"]}
    assert record["refiners"]["stig"]["fit_info"]["world_size"] == 2
    assert record["detectors"]["spectrum-cnn"]["fit_info"]["world_size"] == 2
    assert "world_size" not in record["detectors"]["durall"]["fit_info"]  # rank 0 alone
    assert json.loads((single / "run.json").read_text())["distributed"] is None
    # Rank 1 wrote nothing: the same files as the single-process run, nothing else under the output.
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(multi) == files(single)
    assert [p.name for p in (tmp / "multi").iterdir()] == [multi.parent.name]


@pytest.mark.heavy
def test_torchrun_results_equal_a_single_process_within_tolerance(single_and_torchrun):
    single, multi, _ = single_and_torchrun
    for a, b in zip(sorted((single / "refiners" / "stig").glob("*.pt")), sorted((multi / "refiners" / "stig").glob("*.pt"))):
        sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
        tensors = [k for k in sa if torch.is_tensor(sa[k])] if isinstance(sa, dict) else []
        assert tensors, a
        assert max(float((sa[k].float() - sb[k].float()).abs().max()) for k in tensors) < 1e-5
    sa, sb = pd.read_csv(single / "scores.csv"), pd.read_csv(multi / "scores.csv")
    assert sa[["detector", "condition", "path", "label"]].equals(sb[["detector", "condition", "path", "label"]])
    assert np.abs(sa.score.to_numpy() - sb.score.to_numpy()).max() < 1e-4
    ma, mb = pd.read_csv(single / "metrics.csv"), pd.read_csv(multi / "metrics.csv")
    assert ma.drop(columns=["value", "ci_low", "ci_high"]).equals(mb.drop(columns=["value", "ci_low", "ci_high"]))
    np.testing.assert_allclose(mb.value.to_numpy(), ma.value.to_numpy(), atol=1e-3, equal_nan=True)
    # STIG really trained: the refined images are not the fakes.
    assert ma.query("metric == 'psnr'").value.iloc[0] < 60


@pytest.mark.heavy
def test_torchrun_bad_backend_and_small_batch_fail_clearly(tiny_dataset, tmp_path):
    env = _env(tmp_path)
    if not torch.cuda.is_available():
        result = _torchrun([*_args(tiny_dataset, tmp_path / "a"), "--dist-backend", "nccl"], env)
        assert result.returncode != 0
        assert "distributed backend 'nccl' is not available here" in result.stderr
    result = _torchrun(_args(tiny_dataset, tmp_path / "b", detectors="spectrum-cnn", refiner="",
                             settings={"spectrum-cnn.batch_size": 1}), env)
    assert result.returncode != 0
    assert "batch_size (1) is smaller than the number of ranks (2)" in result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # failed before any work


DIES = '''
import os

from stigbench.detection.registry import register_detector
from stigbench.detectors.spectrum_cnn import SpectrumCNN


@register_detector("dies-on-rank-1", family="cnn", domain="spectrum", paper="test only")
class DiesOnRank1(SpectrumCNN):
    def augment_batch(self, images, rng):
        if os.environ.get("RANK") == "1":
            os._exit(3)
        return images
'''


@pytest.mark.heavy
def test_a_rank_that_dies_fails_the_run_with_a_clear_record(tiny_dataset, tmp_path):
    plugin = tmp_path / "dies.py"
    plugin.write_text(DIES)
    args = [*_args(tiny_dataset, tmp_path / "runs", detectors="dies-on-rank-1", refiner="",
                   settings={"dies-on-rank-1.epochs": 1, "dies-on-rank-1.batch_size": 8}),
            "--detector-plugin", str(plugin)]
    result = _torchrun(args, _env(tmp_path))
    assert result.returncode != 0
    assert "exitcode  : 3" in result.stderr  # torchrun names the rank that died and how
    record = json.loads((_run_dir(tmp_path / "runs") / "run.json").read_text())
    # Two orders, both a clear record: torchrun's SIGTERM reaches rank 0 first (the run is marked
    # failed), or rank 0's collective fails first (the detector is recorded as failed, the run goes on
    # and completes before the SIGTERM lands). Which comes first is a race between processes.
    if record["status"] == "failed":
        assert "another rank failed" in record["error"]
    else:
        assert record["status"] == "complete"
        assert "by peer" in record["errors"]["detector:dies-on-rank-1"]  # gloo: reset / closed by peer
    shutil.rmtree(tmp_path / "runs")
