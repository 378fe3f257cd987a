"""Training throughput under torchrun: one process vs N data-parallel ranks, same global batch.

    python benchmarks/bench_ddp.py                  # 1 process x 2 threads vs torchrun 2 x 1 thread
    python benchmarks/bench_ddp.py --nproc 4 --iterations 60 --epochs 2

Times STIG's training (``cpu`` preset, demo-gan at 64², a fixed number of iterations, no selection) and
one CNN detector's epochs (``spectrum-cnn``) on the same machine, first in one process with all its
threads, then under ``torchrun --nproc_per_node N`` with ``threads / N`` threads per rank, and appends
the seconds per STIG iteration and per CNN epoch to RESULTS.md. On a CPU the ranks share the same cores,
so this measures DDP's overhead more than a speed-up; on a multi-GPU node each rank has its own device.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _fit_stig(fakes, reals, iterations: int) -> dict:
    from stigbench.attacks.stig.refiner import StigRefiner

    refiner = StigRefiner("cpu", iterations=iterations, select_fraction=0.0, precision="fp32", progress=False)
    refiner.fit(fakes, reals)
    return {"seconds_per_iteration": refiner.fit_info_["seconds_per_iteration"]}


def _fit_cnn(images, labels, epochs: int) -> dict:
    from stigbench.detectors.spectrum_cnn import SpectrumCNN

    t0 = time.perf_counter()
    SpectrumCNN(epochs=epochs, patience=None, precision="fp32").fit(images, labels)
    return {"seconds_per_epoch": (time.perf_counter() - t0) / epochs}


def worker(iterations: int, epochs: int) -> None:
    """One measurement: run by a single process, or by every rank of a torchrun job."""
    from stigbench.core import distributed
    from stigbench.core.imageset import labelled, set_progress
    from stigbench.data.specs import datasets, load_dataset
    from stigbench.data.split import make_split

    set_progress(False)

    def body() -> dict:
        data = load_dataset(datasets().get("demo-gan"), progress=False)
        split = make_split(data, seed=0)
        fakes = data.fake.subset(split.indices("fake", "train"))
        reals = data.real.subset(split.indices("real", "train"))
        images, labels = labelled(reals, fakes)
        out = distributed.run_on_all(_fit_stig, fakes, reals, iterations)
        out.update(distributed.run_on_all(_fit_cnn, images, labels, epochs))
        return {**out, "n_train": len(labels)}

    result = distributed.run_ranked(body)
    if result is not None:
        print("RESULT " + json.dumps(result), flush=True)


def _measure(cmd: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.worker:
        worker(opts.iterations, opts.epochs)
        return
    threads = os.cpu_count() or 1
    me = [str(Path(__file__).resolve()), "--worker", "--iterations", str(opts.iterations), "--epochs", str(opts.epochs)]
    single = _measure([sys.executable, *me], threads)
    multi = _measure([sys.executable, "-m", "torch.distributed.run", "--standalone",
                      f"--nproc_per_node={opts.nproc}", *me], max(1, threads // opts.nproc))
    from _common import append_section

    rows = [("1 process", threads, single), (f"torchrun × {opts.nproc}", max(1, threads // opts.nproc), multi)]
    table = "\n".join(f"| {name} | {t} | {r['seconds_per_iteration']:.3f} | {r['seconds_per_epoch']:.2f} |"
                      for name, t, r in rows)
    body = (f"`python benchmarks/bench_ddp.py --nproc {opts.nproc} --iterations {opts.iterations} --epochs "
            f"{opts.epochs}`: demo-gan 64², {single['n_train']} training images; STIG `cpu` preset (global "
            "batch 4), spectrum-cnn (global batch 32), fp32, the same global batches in both rows.\n\n"
            "| launch | threads per process | STIG s / iteration | spectrum-cnn s / epoch |\n"
            "| --- | ---: | ---: | ---: |\n" + table + "\n\nOn a CPU every rank shares the same cores: the "
            "second row measures what data parallelism costs here, not what it gains on a multi-GPU node.")
    print(body)
    print(f"appended to {append_section('bench_ddp.py: training under torchrun', body)}")


if __name__ == "__main__":
    main()
