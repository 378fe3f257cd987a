"""Speed and memory of the STIG refiner (Lee, Jung, Seo, AAAI 2024, arXiv 2403.05093).

Measures training iterations/s and refinement images/s on random images for

* the ``cpu`` preset at 64² (its own precision: bf16 where the CPU has it), and
* the paper networks (UNet++ 5 levels, width 64, batch 1) at 64² and 256² in fp32 and bf16,

each in a fresh subprocess so that the peak memory (``ru_maxrss``; ``torch.cuda.max_memory_allocated``
on a GPU) belongs to that configuration alone. Prints a Markdown table; ``--write`` appends it with the
date and a machine description to ``benchmarks/RESULTS.md``.

Reference: the official STIG code on a 2-core CPU in fp32, batch 1, paper width, takes 1.12 s per
iteration at 64² and 12.8 s at 256²; the ``vs official`` column is that time divided by ours.

``GFLOP/it`` is the floating-point work of one training step (torch's FLOP counter) and ``achieved
GFLOP/s`` that work divided by the step time; on a CPU the table ends with the rate of a large matrix
product, the ceiling for a step made of convolutions. A step at that ceiling can only get faster by
doing less arithmetic or by doing it in a cheaper number format (bf16).

    python benchmarks/bench_stig.py                 # all configurations (256²: 2 iterations)
    python benchmarks/bench_stig.py --only cpu,paper-64 --iters 20 --threads 2 --write
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

OFFICIAL_S_PER_IT = {64: 1.12, 256: 12.8}  # official code, 2-core CPU, fp32, batch 1, width 64
CONFIGS = {
    # name: (preset, size, precision, overrides)
    "cpu-64": ("cpu", 64, "auto", {}),
    "paper-64-fp32": ("paper", 64, "fp32", {}),
    "paper-64-bf16": ("paper", 64, "bf16", {}),
    "paper-256-fp32": ("paper", 256, "fp32", {}),
    "paper-256-bf16": ("paper", 256, "bf16", {}),
}


def run_one(name: str, iters: int, warmup: int, device: str, threads: int | None) -> dict:
    """Time one configuration in this process (called in a child process)."""
    import numpy as np
    import torch

    from stigbench.core.device import resolve_device, resolve_precision
    from stigbench.core.imageset import ArrayImageSet
    from stigbench.attacks.stig import StigRefiner
    from stigbench.attacks.stig.trainer import StigTrainer

    if threads:
        torch.set_num_threads(threads)
    preset, size, precision, overrides = CONFIGS[name]
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    rng = np.random.default_rng(0)
    n = 16
    images = ArrayImageSet(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8))
    refiner = StigRefiner(preset, iterations=warmup + 1 + iters, device=device, precision=prec, progress=False,
                          **overrides)
    config = refiner.config()
    trainer = StigTrainer(config, images, images, device=dev, precision=prec, progress=False)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train(steps=warmup)
    # Floating-point work of one training step (torch's FLOP counter: convolutions and matrix products),
    # to compare the achieved rate with what the hardware can do (matmul_peak). This step is untimed.
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        trainer.step()
    gflop = counter.get_total_flops() / 1e9
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    trainer.train(steps=iters)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    train_s = (time.perf_counter() - t0) / iters

    refiner.translator_, refiner.image_size_ = trainer.translator.eval(), size
    n_refine = max(4, min(64, 2**18 // size**2))  # 64 images at 64², 4 at 256²
    batch = torch.from_numpy(images.array[: min(n_refine, config.refine_batch_size)]).float() / 255
    refiner.refine_batch(batch[:1])  # warm-up
    reps = max(1, n_refine // len(batch))
    t0 = time.perf_counter()
    for _ in range(reps):
        refiner.refine_batch(batch)
    refine_ips = reps * len(batch) / (time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"config": name, "preset": preset, "size": size, "precision": prec, "batch": config.batch_size,
            "levels": config.levels, "width": config.width, "train_s_per_it": train_s, "gflop_per_it": gflop,
            "refine_img_per_s": refine_ips, "peak_mib": peak, "device": str(dev),
            "threads": torch.get_num_threads(), "iters": iters}


def table(rows: list[dict]) -> str:
    head = ("| config | size | precision | batch | UNet++ | train s/it | train it/s | vs official | GFLOP/it | "
            "achieved GFLOP/s | refine img/s | peak MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        ref = OFFICIAL_S_PER_IT.get(r["size"]) if r["preset"] == "paper" and r["batch"] == 1 else None
        vs = f"{ref / r['train_s_per_it']:.1f}×" if ref else "–"
        lines.append(
            f"| {r['config']} | {r['size']}² | {r['precision']} | {r['batch']} | {r['levels']}×{r['width']} | "
            f"{r['train_s_per_it']:.3f} | {1 / r['train_s_per_it']:.2f} | {vs} | {r['gflop_per_it']:.0f} | "
            f"{r['gflop_per_it'] / r['train_s_per_it']:.0f} | {r['refine_img_per_s']:.1f} | {r['peak_mib']:.0f} |")
    return "\n".join(lines)


def matmul_peak(threads: int | None, n: int = 4096, reps: int = 5) -> dict[str, float]:
    """GFLOP/s of a large square matrix product in fp32 and bf16: the ceiling a compute-bound step meets."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        out[name] = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated config names or prefixes (default: all)")
    ap.add_argument("--iters", type=int, default=10, help="timed training iterations per 64² config")
    ap.add_argument("--iters-large", type=int, default=2, help="timed training iterations per 256² config")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(run_one(args.child, args.iters, args.warmup, args.device, args.threads)))
        return 0
    wanted = [s for s in args.only.split(",") if s]
    names = [n for n in CONFIGS if not wanted or any(n.startswith(w) for w in wanted)]
    if not names:
        ap.error(f"--only matches no config; choose from {', '.join(CONFIGS)}")
    rows = []
    for name in names:
        iters = args.iters if CONFIGS[name][1] <= 128 else args.iters_large
        cmd = [sys.executable, __file__, "--child", name, "--iters", str(iters), "--warmup", str(args.warmup),
               "--device", args.device] + (["--threads", str(args.threads)] if args.threads else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{name}: {rows[-1]['train_s_per_it']:.3f} s/it", file=sys.stderr, flush=True)
    md = table(rows)
    if rows and rows[0]["device"] == "cpu":
        peak = matmul_peak(args.threads)
        md += (f"\n\nMatrix-product ceiling of this CPU (4096², same threads): fp32 {peak['fp32']:.0f} GFLOP/s, "
               f"bf16 {peak['bf16']:.0f} GFLOP/s.")
    print(md)
    if args.write and rows:
        from _common import append_section

        body = (f"torch threads {rows[0]['threads']}; {args.iters} (64²) / {args.iters_large} (256²) timed training "
                f"iterations after {args.warmup} warm-up, random images; refinement after one warm-up batch; "
                f"GFLOP/it counted by torch.utils.flop_counter on one step.\n\n{md}")
        print(f"appended to {append_section('bench_stig: STIG refiner', body)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
