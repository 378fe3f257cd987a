"""Throughput of the ``npr`` and ``freqnet`` detectors, and their training wall time on the demo set.

    python benchmarks/bench_modern_detectors.py [--detectors npr,freqnet] [--sizes small,paper]
        [--threads 1] [--n 32] [--write] [--note TEXT]

* **fit / score img/s** at 64² (the demo's size), per network size (``small`` = the default, ``paper``):
  ``bench_detectors.measure`` (fit = one epoch on ``n`` + ``n`` synthetic images, no validation;
  score = ``score()`` on ``2n`` 8-bit images);
* **demo**: each detector with its default settings fitted on the ``demo`` dataset's training part
  (validation part for early stopping, seed 0) as a run does: wall time, epochs run, and the test AUC.

``--threads`` sets torch's intra-op threads (default 1: on a shared 2-core machine two threads wait on
each other). With ``--write`` the tables are appended to ``benchmarks/RESULTS.md`` under a dated heading.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from _common import append_section
from bench_detectors import measure

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from stigbench.core.imageset import labelled, set_progress  # noqa: E402
from stigbench.data.specs import datasets, load_dataset  # noqa: E402
from stigbench.data.split import make_split  # noqa: E402
from stigbench.detection.registry import detectors  # noqa: E402
from stigbench.measures.metrics import auc  # noqa: E402
from stigbench.pipeline.plan import construct  # noqa: E402


def demo_fit(name: str, seed: int = 0) -> dict[str, float]:
    """Default ``name`` fitted on the demo split as a run fits it: seconds, epochs, test AUC."""
    ds = load_dataset(datasets().get("demo"), progress=False)
    split = make_split(ds, seed=seed)
    parts = {p: labelled(ds.real.subset(split.indices("real", p)), ds.fake.subset(split.indices("fake", p)))
             for p in ("train", "val", "test")}
    det = construct(detectors().get(name), {}, seed=seed, device="cpu")
    t0 = time.perf_counter()
    det.fit(*parts["train"], *parts["val"])
    seconds = time.perf_counter() - t0
    x, y = parts["test"]
    return {"seconds": seconds, "epochs": det.fit_info_["epochs_run"], "best": det.fit_info_["best_epoch"],
            "n_train": len(parts["train"][1]), "auc": auc(y, det.score(x))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detectors", default="npr,freqnet")
    parser.add_argument("--sizes", default="small,paper", help="network sizes (the detectors' size parameter)")
    parser.add_argument("--n", type=int, default=32, help="images per class for the throughput rows")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--no-demo", action="store_true", help="skip the demo training rows")
    parser.add_argument("--note", default="")
    parser.add_argument("--write", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_progress(False)
    names = args.detectors.split(",")
    rate_rows, demo_rows = [], []
    for name in names:
        for size in args.sizes.split(","):
            r = measure(name, 64, args.n, args.min_seconds, params={"size": size})
            rate_rows.append(f"| {name} | {size} | 64² | {r['fit']:,.1f} | {r['score']:,.0f} |")
            print(rate_rows[-1], flush=True)
        if not args.no_demo:
            d = demo_fit(name)
            demo_rows.append(f"| {name} | small (default) | {d['n_train']} | {d['epochs']} (best {d['best']}) | "
                             f"{d['seconds']:,.1f} | {d['auc']:.3f} |")
            print(demo_rows[-1], flush=True)
    text = "\n".join(["| detector | size | image | fit img/s (1 epoch) | score img/s |",
                      "| --- | --- | ---: | ---: | ---: |", *rate_rows])
    if demo_rows:
        text += "\n\nDefault settings fitted on `demo` (seed 0 split, early stopping on `val`), AUC on `test`:\n\n"
        text += "\n".join(["| detector | size | train images | epochs run | fit wall s | test AUC |",
                           "| --- | --- | ---: | ---: | ---: | ---: |", *demo_rows])
    print(text)
    if args.write:
        head = " ".join(filter(None, [args.note and f"{args.note}.", f"torch threads: {args.threads};",
                                      f"{args.n} synthetic images per class for the rates."]))
        print(f"appended to {append_section('bench_modern_detectors: npr and freqnet', head + chr(10) * 2 + text)}")


if __name__ == "__main__":
    main()
