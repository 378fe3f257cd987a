"""Wall, CPU, kernel time, page faults and peak memory of the README's first command, per heap setting.

    python benchmarks/bench_demo_time.py                         # as shipped, 3 repeats, dataset built each time
    python benchmarks/bench_demo_time.py --variants shipped,mmap-1MiB,mmap-32MiB --repeat 1 --prebuilt

Each repeat runs ``bench.py run --dataset demo-gan`` (README line 1 without the ``pip install``) as a
subprocess in an empty ``STIGBENCH_CACHE`` (so the dataset is built, and every stage and feature
statistic computed, as on a fresh machine; ``--prebuilt`` copies an existing dataset build in to time
the run alone) and records, from ``os.wait4`` on a launcher process (the run's own and its children's
usage, not this script's): wall time, user and system CPU time, minor page faults and peak RSS; and
from the run's ``run.json`` the time of each stage. The variants differ only in the C library's heap
settings (glibc's own environment variables, which stigbench leaves alone when set):

* ``shipped`` — what the code does by itself (``stigbench.core.memory``);
* ``mmap-1MiB`` — ``MALLOC_MMAP_THRESHOLD_=1048576``: the fixed 1 MiB threshold of stigbench 0.2;
* ``mmap-32MiB`` — ``MALLOC_MMAP_THRESHOLD_=33554432``: the fixed threshold the issue measured.

Every variant's ``metrics.csv`` must be identical (heap settings change where memory comes from, not a
value); the script says so per row. The median of the repeats goes to RESULTS.md with the load average
at the start of each repeat.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import append_section

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "shipped": {},
    "mmap-1MiB": {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)},
    "mmap-32MiB": {"MALLOC_MMAP_THRESHOLD_": str(32 << 20)},
}
# A launcher that runs the command and reports the usage of exactly that process tree: a child's
# ru_maxrss would start from this script's peak (the kernel keeps it across exec).
LAUNCHER = """
import json, os, sys, time
t0 = time.perf_counter()
pid = os.spawnvp(os.P_NOWAIT, sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
print(json.dumps({"status": os.waitstatus_to_exitcode(status), "wall": time.perf_counter() - t0,
                  "user": ru.ru_utime, "sys": ru.ru_stime, "minflt": ru.ru_minflt, "majflt": ru.ru_majflt,
                  "maxrss_mib": ru.ru_maxrss / 1024}))
"""


def _stage_seconds(run_dir: Path) -> dict[str, float]:
    """Seconds of the run's timed stages from ``run.json`` (refiner fits and refines, detectors) and the
    rest of the run (loading, quality, reports: the total minus those)."""
    record = json.loads((run_dir / "run.json").read_text())
    out: dict[str, float] = {}
    for name, info in (record.get("refiners") or {}).items():
        out[f"{name} fit"] = float(info.get("fit_seconds") or 0.0)
        out[f"{name} refine"] = float(info.get("refine_seconds") or 0.0)
    for name, info in (record.get("detectors") or {}).items():
        out[f"{name} (fit + score)"] = float(info.get("seconds") or 0.0)
    out["everything else (data, quality, report)"] = float(record["seconds"]) - sum(out.values())
    return out


def one_run(variant: str, prebuilt: Path | None, keep: Path | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="stigbench-demo-time-") as tmp:
        cache, out = Path(tmp) / "cache", Path(tmp) / "reports"
        if prebuilt is not None:
            shutil.copytree(prebuilt, cache / "datasets" / "demo-gan")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        env.update(VARIANTS[variant], STIGBENCH_CACHE=str(cache), HF_HUB_OFFLINE="1")
        load = os.getloadavg()[0]
        cmd = [sys.executable, "-c", LAUNCHER, sys.executable, "bench.py", "run", "--dataset", "demo-gan",
               "--out", str(out), "--quiet"]
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True)
        usage = json.loads(res.stdout.strip().splitlines()[-1])
        if usage["status"] != 0:
            raise RuntimeError(f"{variant}: the run failed with status {usage['status']}: {res.stderr[-2000:]}")
        (run_dir,) = [p.parent for p in out.rglob("metrics.csv")]
        metrics = (run_dir / "metrics.csv").read_bytes()
        if keep is not None:
            shutil.copytree(run_dir, keep / f"{variant}-{time.strftime('%H%M%S')}")
        return {**usage, "load": load, "metrics_sha256": hashlib.sha256(metrics).hexdigest(),
                "stages": _stage_seconds(run_dir)}


def _fmt_min(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="shipped", help="comma-separated of " + ",".join(VARIANTS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--prebuilt", type=Path, nargs="?", const=Path.home() / ".cache/stigbench/datasets/demo-gan",
                    default=None, help="copy this demo-gan build in (time the run without the build)")
    ap.add_argument("--keep", type=Path, default=None, help="copy each run folder here")
    ap.add_argument("--no-write", action="store_true", help="print only; RESULTS.md untouched")
    args = ap.parse_args()
    rows, hashes = [], set()
    for variant in args.variants.split(","):
        runs = []
        for i in range(args.repeat):
            r = one_run(variant, args.prebuilt, args.keep)
            print(f"{variant} #{i + 1}: {json.dumps(r)}", flush=True)
            runs.append(r)
            hashes.add(r["metrics_sha256"])
        med = {k: statistics.median(r[k] for r in runs) for k in ("wall", "user", "sys", "minflt", "maxrss_mib")}
        rows.append((variant, med, runs))
    lines = ["| variant | wall (median) | user s | sys s | sys share of CPU | minor faults | peak RSS | "
             "walls | load averages at start |", "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for variant, med, runs in rows:
        share = med["sys"] / (med["user"] + med["sys"])
        walls = ", ".join(f"{r['wall']:.0f} s" for r in runs)
        loads = ", ".join(f"{r['load']:.2f}" for r in runs)
        lines.append(f"| `{variant}` | {_fmt_min(med['wall'])} | {med['user']:.0f} | {med['sys']:.0f} | {share:.1%} | "
                     f"{med['minflt'] / 1e6:.1f} M | {med['maxrss_mib'] / 1024:.2f} GiB | {walls} | {loads} |")
    stages = rows[0][2][0]["stages"]
    body = (f"`bench.py run --dataset demo-gan` (README line 1 without `pip install`), empty stage and feature "
            f"caches, {'the dataset build copied in (build excluded)' if args.prebuilt else 'the dataset built in each run'}"
            f"; {args.repeat} repeat(s) per variant, one after another.\n\n" + "\n".join(lines) + "\n\n"
            + ("Every run wrote the same `metrics.csv`" if len(hashes) == 1 else
               f"**`metrics.csv` differs between runs ({len(hashes)} versions)**")
            + f" (SHA-256 {sorted(hashes)[0][:12]}…).\n\nStage times of the first `{rows[0][0]}` run (run.json): "
            + ", ".join(f"{k} {v:.0f} s" for k, v in sorted(stages.items(), key=lambda kv: -kv[1])) + ".")
    print(body)
    if not args.no_write:
        append_section("bench_demo_time: README line 1, wall and kernel time per heap setting", body)
    return 0 if len(hashes) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
