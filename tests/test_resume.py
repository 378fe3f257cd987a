"""A run killed with SIGKILL during STIG training continues from its checkpoint when run again.

Real subprocesses on a tiny setting: one uninterrupted run (reference), one killed as soon as the
first STIG checkpoint exists in its fresh stage cache, and the same command again. The re-run must
continue training from the checkpoint (not from 0, not a cache hit), write exactly the reference's
metrics.csv, name the killed run folder as interrupted and leave no work or lock folders behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_STIG = {"levels": 2, "width": 4, "d_width": 4, "nce_layers": "[0,1]", "nce_patches": 16, "nce_dim": 8,
             "batch_size": 2, "iterations": 30, "checkpoint_every": 3, "precision": "fp32", "select_fraction": 0}


def _command(data: Path, out: Path, cache: Path) -> list[str]:
    cmd = [sys.executable, str(ROOT / "bench.py"), "run", "--real", str(data / "real"), "--fake", str(data / "fake"),
           "--refiner", "stig", "--detectors", "durall", "--n-boot", "20", "--no-quality", "--quiet",
           "--out", str(out), "--cache-dir", str(cache)]
    for key, value in TINY_STIG.items():
        cmd += ["--set", f"stig.{key}={value}"]
    return cmd


def _env(tmp: Path) -> dict[str, str]:
    # One thread: the same arithmetic in every process, and no contention with the test runner.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "STIGBENCH_CACHE": str(tmp / "user-cache")}


def _run(cmd: list[str], env: dict[str, str]) -> Path:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(next(line.split(":", 1)[1].strip() for line in result.stdout.splitlines()
                     if line.startswith("Run folder:")))


def _kill_after_first_checkpoint(cmd: list[str], env: dict[str, str], cache: Path) -> None:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            if list(cache.glob("refiner/.*.work/training/checkpoint.pt")):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return
            if proc.poll() is not None:
                pytest.fail("the run ended before its first STIG checkpoint could be seen")
            time.sleep(0.02)
        pytest.fail("no STIG checkpoint within 600 s")
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.heavy
def test_a_killed_run_continues_stig_from_its_checkpoint(tiny_dataset, tmp_path):
    env = _env(tmp_path)
    reference = _run(_command(tiny_dataset, tmp_path / "ref-runs", tmp_path / "ref-cache"), env)

    cache, out = tmp_path / "cache", tmp_path / "runs"
    cmd = _command(tiny_dataset, out, cache)
    _kill_after_first_checkpoint(cmd, env, cache)
    killed = next(out.glob("*/*/run.json")).parent
    assert json.loads((killed / "run.json").read_text())["status"] == "running"  # what the kill left

    rerun = _run(cmd, env)
    record = json.loads((rerun / "run.json").read_text())
    fit = record["refiners"]["stig"]
    assert not fit["cached"]
    assert 0 < fit["fit_info"]["resumed_from_iteration"] < TINY_STIG["iterations"]
    assert record["stages"]["resumed"] == 1 and record["status"] == "complete"
    assert json.loads((killed / "run.json").read_text())["status"] == "interrupted"

    pd.testing.assert_frame_equal(pd.read_csv(rerun / "metrics.csv"), pd.read_csv(reference / "metrics.csv"))
    leftovers = [p for p in cache.rglob(".*") if p.name != ".complete"]
    assert leftovers == [], leftovers
