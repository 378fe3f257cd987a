"""Throughput of FID/KID feature extraction (images/s), Inception and random-net, at 64² and 256².

    python benchmarks/bench_fid.py                    # print a Markdown table
    python benchmarks/bench_fid.py --batches 3 --write # and append a dated section to RESULTS.md

Times the whole per-batch path of :func:`stigbench.evaluation.quality.extract_features` (domain transform,
resize to 299 for Inception, forward pass) on synthetic 8-bit images, after one warm-up batch.
Image decoding is not included. On a shared machine the numbers are a lower bound.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from _common import append_section

from stigbench.evaluation.quality import FeatureExtractor, RandomConvExtractor, WeightsError, get_extractor, to_domain

def throughput(extractor: FeatureExtractor, size: int, domain: str, batch_size: int, batches: int) -> float:
    gen = torch.Generator().manual_seed(0)
    batch = (torch.randint(0, 256, (batch_size, 3, size, size), generator=gen) / 255.0).float()
    extractor(to_domain(batch, domain))  # warm-up: TorchScript profiling runs, allocator
    if extractor.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        extractor(to_domain(batch, domain))
    if extractor.device.type == "cuda":
        torch.cuda.synchronize()
    return batch_size * batches / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batches", type=int, default=2, help="timed batches per cell (after one warm-up)")
    ap.add_argument("--domains", nargs="+", default=["image"], choices=["image", "spectrum"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--note", default="", help="free text for the results section (e.g. 'shared CPU')")
    ap.add_argument("--write", action="store_true", help="append a dated section to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)

    extractors: list[FeatureExtractor] = []
    try:
        extractors.append(get_extractor(device=args.device, allow_random=False))
    except WeightsError as exc:
        print(f"skipping Inception: {exc}", file=sys.stderr)
    extractors.append(RandomConvExtractor(device=args.device))

    rows = ["| extractor | metric | size | domain | batch | images/s |", "| --- | --- | ---: | --- | ---: | ---: |"]
    for ext in extractors:
        for size in args.sizes:
            for domain in args.domains:
                ips = throughput(ext, size, domain, args.batch_size, args.batches)
                rows.append(f"| {ext.name} | {ext.metric_names(domain)[0]} | {size} | {domain} | "
                            f"{args.batch_size} | {ips:.1f} |")
                print(rows[-1], flush=True)
    device = extractors[0].device
    table = "\n".join(rows)
    print()
    print(table)
    if args.write:
        note = f"{args.note}. " if args.note else ""
        body = f"{note}{args.batches} timed batches of {args.batch_size} after one warm-up.\n\n{table}"
        print(f"\nappended to {append_section('bench_fid: FID feature extraction', body, device)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
