"""The demo families build to the same images whatever the processor's instruction set (issue #22).

    python benchmarks/bench_demo_isa.py                          # native and avx2, both families, full size
    python benchmarks/bench_demo_isa.py --caps native,avx2,baseline --size 32 --n 48 --write

Builds each family once per *cap* in a fresh subprocess, each into its own temporary folder, and compares
the SHA-256 of the images (:func:`stigbench.data.demo_families.images_sha256`). A cap emulates an older or
other processor on this one through the libraries' own dispatch switches, read at start-up:

* ``ONEDNN_MAX_CPU_ISA`` (oneDNN: torch's float32 convolutions), ``MKL_ENABLE_INSTRUCTIONS`` (MKL: matrix
  products), ``ATEN_CPU_CAPABILITY`` (torch's own vectorised kernels), ``NPY_DISABLE_CPU_FEATURES`` (numpy's
  SIMD loops) and, for ``baseline``, ``GLIBC_TUNABLES`` hiding AVX/AVX2/FMA/AVX-512 from libm's dispatch.

The caller's thread count alternates (2, 1, ...); the build trains on one thread either way (for speed on
shared cores: the arithmetic is exact, threads do not change the images).
``--keep DIR`` keeps the first cap's builds (e.g. for ``bench_demo_families.py --root DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import append_section

CAPS: dict[str, dict[str, str]] = {
    "native": {},
    "avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
             "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
    "baseline": {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ATEN_CPU_CAPABILITY": "default",
                 "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
                 "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX,-AVX2,-FMA,-AVX512F,-AVX512DQ,-AVX512BW,-AVX512VL"},
}
FAMILIES = ("demo-gan", "demo-diffusion")


def build_in_subprocess(family: str, root: Path, cap: str, threads: int, size: int, n: int,
                        steps: int = 0) -> dict[str, Any]:
    """Build ``family`` into ``root`` in a fresh interpreter under ``cap``; its report as a dict.
    ``steps`` > 0 shortens the generator's training (smoke tests); 0 keeps the default."""
    env = {**os.environ, **CAPS[cap], "STIGBENCH_ISA_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--worker", family, str(root), str(size), str(n), str(steps)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{family} under {cap} failed:\n{done.stderr[-3000:]}")
    return {"cap": cap, "threads": threads, **json.loads(done.stdout.strip().splitlines()[-1])}


def worker(family: str, root: str, size: int, n: int, steps: int) -> None:
    import dataclasses
    import time

    import torch

    from stigbench.data.demo_families import (DiffusionTraining, GanTraining, build_demo_diffusion, build_demo_gan,
                                              images_sha256)

    torch.set_num_threads(int(os.environ.get("STIGBENCH_ISA_THREADS", "1")))
    build, training = {"demo-gan": (build_demo_gan, GanTraining()),
                       "demo-diffusion": (build_demo_diffusion, DiffusionTraining())}[family]
    if steps:
        training = dataclasses.replace(training, steps=steps)
    t0 = time.perf_counter()
    manifest = build(Path(root), size=size, n_real=n, n_fake=n, progress=False, training=training)  # type: ignore[operator]
    seconds = time.perf_counter() - t0
    on_disk = images_sha256(Path(root))
    print(json.dumps({"aten": torch.backends.cpu.get_cpu_capability(), "seconds": round(seconds, 1),
                      "timings": manifest["timings_s"], "sha256": manifest["images_sha256"],
                      "disk_matches_manifest": on_disk == manifest["images_sha256"],
                      "reference": manifest.get("reference")}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--caps", default="native,avx2", help=f"comma-separated, of {', '.join(CAPS)}")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n", type=int, default=480, help="images per class")
    ap.add_argument("--steps", type=int, default=0, help="shorter training, for a smoke test (0: default)")
    ap.add_argument("--keep", type=Path, help="keep the first cap's builds in DIR/<family>")
    ap.add_argument("--note", default="")
    ap.add_argument("--write", action="store_true", help="append a dated section to benchmarks/RESULTS.md")
    ap.add_argument("--worker", nargs=5, metavar=("FAMILY", "ROOT", "SIZE", "N", "STEPS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        family, root, size, n, steps = args.worker
        worker(family, root, int(size), int(n), int(steps))
        return 0

    caps, families = args.caps.split(","), args.families.split(",")
    unknown = set(caps) - set(CAPS)
    if unknown:
        ap.error(f"unknown caps {sorted(unknown)}; known: {', '.join(CAPS)}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="stigbench-isa-") as tmp:
        for family in families:
            for k, cap in enumerate(caps):
                root = Path(tmp) / f"{family}-{cap}"
                row = {"family": family, **build_in_subprocess(family, root, cap, 2 - k % 2, args.size, args.n, args.steps)}
                print(json.dumps(row), flush=True)
                rows.append(row)
                if k == 0 and args.keep:
                    shutil.copytree(root, args.keep / family, dirs_exist_ok=True)

    identical = {f: len({json.dumps(r["sha256"], sort_keys=True) for r in rows if r["family"] == f}) == 1 for f in families}
    lines = ["| family | cap | torch ATen capability | threads | build s (pictures / generator / write) "
             "| SHA-256 real | SHA-256 sources | SHA-256 fake | reference |",
             "| --- | --- | --- | ---: | --- | --- | --- | --- | --- |"]
    for r in rows:
        t, h, ref = r["timings"], r["sha256"], r["reference"]
        lines.append(f"| {r['family']} | {r['cap']} | {r['aten']} | {r['threads']} | {r['seconds']:.0f} "
                     f"({t['pictures']:.0f} / {t['generator']:.0f} / {t['write']:.0f}) | `{h['real'][:16]}` | "
                     f"`{h['sources'][:16]}` | `{h['fake'][:16]}` | "
                     f"{'—' if ref is None else ('matches' if ref['matches'] else 'DIFFERS')} |")
    verdict = "; ".join(f"{f}: {'identical' if ok else 'DIFFERENT'} under {', '.join(caps)}" for f, ok in identical.items())
    table = "\n".join(lines)
    print(f"\n{table}\n\n{verdict}")
    for f in families:
        for r in rows:
            if r["family"] == f:
                print(f"{f} {r['cap']}: {json.dumps(r['sha256'])}")
    if args.write:
        caps_env = "; ".join(f"`{c}`: {' '.join(f'{k}={v}' for k, v in CAPS[c].items()) or 'no cap'}" for c in caps)
        note = f"{args.note}. " if args.note else ""
        flags = _cpu_flags()
        steps = f", training shortened to {args.steps} steps" if args.steps else ""
        body = (f"{note}{args.size}², {args.n} + {args.n} images{steps}, seed 0, each build in a fresh process under a cap "
                f"({caps_env}). CPU flags: {flags}.\n\n{table}\n\n{verdict}.")
        print(f"\nappended to {append_section('bench_demo_isa: demo families under capped instruction sets', body)}")
    return 0 if all(identical.values()) else 1


def _cpu_flags() -> str:
    from stigbench.core.provenance import cpu_info

    info = cpu_info()
    return ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info["isa"].items())


if __name__ == "__main__":
    raise SystemExit(main())
