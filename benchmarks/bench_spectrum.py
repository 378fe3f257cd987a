"""Spectral feature extraction throughput (images/s) at 64² and 256² on this machine.

    python benchmarks/bench_spectrum.py [--write]

Measures the FFT convention's building blocks as the benchmark uses them: the log-magnitude
spectrum, the radial profile (durall's features) and the dataset-mean spectrum used by LFD.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import append_section

from stigbench.measures.spectrum import log_magnitude, mean_log_spectrum, radial_profile

def throughput(fn, batch: torch.Tensor, min_seconds: float = 1.0) -> float:
    fn(batch)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        fn(batch)
        n += batch.shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    rows = []
    for size, batch_size in ((64, 256), (256, 32)):
        x = torch.rand(batch_size, 3, size, size)
        grey = x.mean(dim=1)
        rows.append((size, "log-magnitude (3 channels)", throughput(log_magnitude, x)))
        rows.append((size, "radial profile of grey log-magnitude", throughput(lambda b: radial_profile(log_magnitude(b)), grey)))
        rows.append((size, "mean log-spectrum, float64 (LFD)", throughput(lambda b: mean_log_spectrum([b]), x)))
    table = ["| size | stage | images/s |", "| ---: | --- | ---: |"]
    table += [f"| {s}² | {name} | {ips:,.0f} |" for s, name, ips in rows]
    text = "\n".join(table)
    print(text)
    if args.write:
        print(f"appended to {append_section('bench_spectrum: spectral feature extraction', text)}")


if __name__ == "__main__":
    main()
