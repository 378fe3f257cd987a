"""Wall time of one grid on each executor (``bench.py grid --executor local|ray|slurm``), and whether
every cell's ``metrics.csv`` equals the local executor's.

    python benchmarks/bench_executors.py [--datasets demo-gan,demo-diffusion] [--seeds 0,1]
        [--executors local,ray,slurm] [--out /tmp/bench-executors] [--write] [--note TEXT]

Each executor runs the same command a user types, as a fresh process, uncached (``--no-cache``, so
every executor computes every cell): ``spectral-match`` against ``durall,dzanic``, no FID/KID.
``slurm`` uses submitit's local executor (``--slurm-cluster local``: each cell a local process), so
its time is that of the Slurm code path without a cluster's queue. The demo datasets are built
before the clock starts. The wall time includes starting Ray or the worker processes; ``local`` runs
the cells one after another with torch's default threads, ``ray`` one cell per core (one thread
each). With ``--write`` the table is appended to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from _common import append_section

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
EXTRA = {"local": [], "ray": [], "slurm": ["--slurm-cluster", "local"]}


def run_grid_command(executor: str, args: argparse.Namespace, out: Path) -> float:
    """Seconds for ``bench.py grid`` on ``executor`` into ``out`` (which must not exist yet)."""
    if out.exists():
        raise SystemExit(f"{out} exists; pass another --out (results are never overwritten)")
    command = [sys.executable, str(ROOT / "bench.py"), "grid", "--datasets", args.datasets, "--seeds", args.seeds,
               "--refiner", args.refiner, "--detectors", args.detectors, "--no-quality", "--no-cache", "--quiet",
               "--out", str(out), "--executor", executor, *EXTRA[executor]]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def metrics(out: Path) -> dict[str, pd.DataFrame]:
    cells = json.loads((out / "grid.json").read_text(encoding="utf-8"))["cells"]
    return {name: pd.read_csv(out / cell["run_dir"] / "metrics.csv", keep_default_na=False)
            for name, cell in cells.items()}


def identical(ours: dict[str, pd.DataFrame], reference: dict[str, pd.DataFrame]) -> int:
    """How many of ``reference``'s cells ``ours`` reproduces exactly (every value, every row)."""
    return sum(name in ours and ours[name].equals(frame) for name, frame in reference.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="demo-gan,demo-diffusion")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--refiner", default="spectral-match")
    parser.add_argument("--detectors", default="durall,dzanic")
    parser.add_argument("--executors", default="local,ray,slurm")
    parser.add_argument("--out", default="/tmp/bench-executors", help="parent of one grid folder per executor")
    parser.add_argument("--note", default="")
    parser.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    executors = args.executors.split(",")
    if executors[0] != "local":
        raise SystemExit("--executors must start with local: the other executors are compared with it")

    from stigbench.data.specs import datasets, load_dataset

    for name in args.datasets.split(","):  # build once, outside the timings
        load_dataset(datasets().get(name), progress=False)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    load = os.getloadavg()[0]
    rows, reference = [], {}
    for executor in executors:
        out = Path(args.out) / f"{stamp}-{executor}"
        seconds = run_grid_command(executor, args, out)
        frames = metrics(out)
        reference = reference or frames
        same = identical(frames, reference)
        rows.append(f"| {executor} | {len(frames)} | {seconds:,.1f} | {same}/{len(reference)} |")
        print(rows[-1], flush=True)
    n = len(args.datasets.split(",")) * len(args.seeds.split(","))
    text = "\n".join([
        f"`bench.py grid --datasets {args.datasets} --seeds {args.seeds} --refiner {args.refiner} "
        f"--detectors {args.detectors} --no-quality --no-cache --executor E` ({n} cells; slurm with "
        "`--slurm-cluster local`); the demo datasets built beforehand.", "",
        "| executor | cells | wall s | metrics.csv identical to local (cells) |",
        "| --- | ---: | ---: | ---: |", *rows])
    print(text)
    if args.write:
        note = " ".join(filter(None, [args.note and f"{args.note}.", f"Load average {load:.2f} before the first grid."]))
        print(f"appended to {append_section('bench_executors: one grid on local, Ray and submitit', note + chr(10) * 2 + text)}")


if __name__ == "__main__":
    main()
