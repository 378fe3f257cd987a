"""Do two revisions of stigbench write the same ``metrics.csv`` for the same runs?

A refactor must not change results. This script installs each revision (a git revision, or ``.`` for
the working tree as it is) into its own folder, runs a fixed list of cases with each, every case in a
fresh stage cache, and compares the metrics tables value by value::

    python benchmarks/check_identical.py --base aa08f1e            # base vs the working tree
    python benchmarks/check_identical.py --base aa08f1e --head main

A revision's results are kept under ``--work`` (keyed by the commit), so the base runs once. Rows are
matched on their keys (dataset, seed, refiner, detector, trained_on, condition, perturbation, metric);
the report lists rows only one side has and every value that differs. Exit status 1 if anything
differs. Timings and paths are not compared (``run.json``); only ``metrics.csv``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
KEYS = ["dataset", "test_dataset", "seed", "refiner", "detector", "trained_on", "condition", "perturbation", "metric"]
VALUES = ["value", "ci_low", "ci_high"]

# Small enough to run twice in a session, wide enough to touch every stage: learned and training-free
# refiners, every default detector (frequency and CNN), a test-time perturbation, the adaptive
# defender, LFD/FID/PSNR rows, and both calibrated families.
CASES: dict[str, list[str]] = {
    "demo": ["--dataset", "demo", "--refiner", "stig,spectral-match,blur:1", "--perturb", "jpeg:75",
             "--adaptive", "--set", "stig.epochs=2", "--n-boot", "50", "--quality-max-images", "64"],
    "demo-gan": ["--dataset", "demo-gan", "--max-per-class", "160", "--set", "stig.epochs=2",
                 "--n-boot", "50", "--quality-max-images", "64"],
    "demo-diffusion": ["--dataset", "demo-diffusion", "--max-per-class", "160", "--refiner", "stig",
                       "--detectors", "dzanic,durall,peaks,frank-dct", "--set", "stig.epochs=2",
                       "--n-boot", "50", "--quality-max-images", "64"],
}


def commit_of(rev: str) -> str:
    if rev == ".":
        return "worktree"
    return subprocess.run(["git", "rev-parse", "--short=12", rev], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout.strip()


def install(rev: str, target: Path) -> None:
    """``pip install --no-deps`` the revision into ``target`` (its own copy of the package)."""
    if (target / ".installed").is_file():
        return
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = REPO
        if rev != ".":
            src = Path(tmp) / "src"
            src.mkdir()
            archive = Path(tmp) / "src.tar"
            subprocess.run(["git", "archive", "-o", str(archive), rev], cwd=REPO, check=True)
            with tarfile.open(archive) as tar:
                tar.extractall(src, filter="data")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(src)], check=True, capture_output=True)
    (target / ".installed").write_text(rev)


def run_case(target: Path, case: str, args: list[str], out: Path) -> Path:
    """Run one case with the package in ``target``; returns its metrics.csv (reused when present)."""
    done = out / case / "metrics.csv"
    if done.is_file():
        return done
    shutil.rmtree(out / case, ignore_errors=True)
    runs, cache = out / case / "runs", out / case / "stages"
    runs.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", "from stigbench.cli import main; main()", "run", *args, "--out", str(runs),
           "--cache-dir", str(cache), "--quiet"]
    print(f"[{target.name}] {case}: {' '.join(args)}", flush=True)
    subprocess.run(cmd, env=env, check=True, cwd=out)
    metrics = next(runs.glob("*/*/metrics.csv"))
    shutil.copy(metrics, done)
    shutil.rmtree(cache, ignore_errors=True)  # stage folders are large; the run folder stays
    return done


def compare(a: Path, b: Path) -> tuple[list[str], int]:
    """Lines describing every difference between two metrics tables, and the number of rows compared."""
    ta = pd.read_csv(a, keep_default_na=False, na_values=[""])
    tb = pd.read_csv(b, keep_default_na=False, na_values=[""])
    for t in (ta, tb):  # metrics.csv before cross-dataset scoring: every row is on its own dataset
        if "test_dataset" not in t:
            t.insert(1, "test_dataset", t["dataset"])
    ta[KEYS] = ta[KEYS].astype(str)
    tb[KEYS] = tb[KEYS].astype(str)
    merged = ta.merge(tb, on=KEYS, how="outer", suffixes=("_base", "_head"), indicator=True)
    lines = [f"only in {side}: " + " ".join(f"{k}={r[k]}" for k in KEYS if r[k])
             for side, which in (("base", "left_only"), ("head", "right_only"))
             for _, r in merged[merged._merge == which].iterrows()]
    both = merged[merged._merge == "both"]
    for _, r in both.iterrows():
        for v in VALUES:
            x, y = float(r[f"{v}_base"]), float(r[f"{v}_head"])
            if not (x == y or (np.isnan(x) and np.isnan(y))):
                key = " ".join(f"{k}={r[k]}" for k in KEYS if r[k])
                lines.append(f"{key}: {v} {x!r} -> {y!r}")
    return lines, len(both)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git revision taken as the reference")
    ap.add_argument("--head", default=".", help="git revision to check, or '.' for the working tree")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES))
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "stigbench-identical")
    opts = ap.parse_args()
    cases = [c for c in opts.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s) {sorted(unknown)}; choose from {sorted(CASES)}")
    tables: dict[str, dict[str, Path]] = {}
    for side, rev in (("base", opts.base), ("head", opts.head)):
        commit = commit_of(rev)
        root = opts.work / commit
        if commit == "worktree":  # the working tree changes between calls: never reuse its results
            shutil.rmtree(root, ignore_errors=True)
        install(rev, root / "pkg")
        tables[side] = {c: run_case(root / "pkg", c, CASES[c], root / "out") for c in cases}
    failed = False
    for case in cases:
        lines, n = compare(tables["base"][case], tables["head"][case])
        print(f"{case}: {n} rows compared, {len(lines)} difference(s)")
        for line in lines:
            print(f"  {line}")
        failed |= bool(lines)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
