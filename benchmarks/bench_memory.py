"""Peak memory of one run as the dataset grows (issue 14: memory flat in dataset size), and throughput.

    python benchmarks/bench_memory.py                          # 1k, 4k, 10k images per class
    python benchmarks/bench_memory.py --sizes 1000 --no-write  # one size, print only

For each size it writes synthetic folders ``real/`` and ``fake/`` of that many 256² PNGs each under
``--scratch`` (kept for the next call), then runs

    bench.py run --real R --fake F --refiner spectral-match --detectors <default frequency detectors>

as a subprocess in fresh stage and feature caches, and records its peak memory three ways:

* ``ru_maxrss`` of the process tree (``os.wait4`` on the run: its own and its waited-for children's),
  taken by a small launcher process: a child's ``ru_maxrss`` starts from its parent's peak RSS (the
  kernel carries the old address space's high-water mark across ``exec``), so measured from this
  script, which grows while it times the direct calls below, a run would inherit this script's peak;
* ``VmHWM`` (peak RSS) of every process of the tree, from ``/proc/<pid>/status``: monotonic, so a
  brief spike between two samples is not missed;
* a sampler thread (every ``--interval`` s) summing ``Rss``, ``Anonymous`` and ``Pss`` of
  ``/proc/<pid>/smaps_rollup`` over the process tree. ``Anonymous`` is what the run holds in memory;
  ``Rss`` also counts pages of memory-mapped files (the cached image arrays), which the kernel can
  drop and re-read at will, so the two tell "in memory" from "mapped".

Throughput (images/s): decoding (every file, as the run's scan does), feature extraction per detector
(on up to ``--feature-images`` images decoded beforehand: compute only), PSNR/SSIM (64 decoded image
pairs, pairs/s) and FID feature extraction (``--quality-images`` reals per domain, decoding included)
are timed by direct library calls; refiner fit, refining, detector fit and scoring come from the
run's own ``run.json`` timings.

Synthetic images: a real is a colour ``1/f`` noise field (the spectrum of natural images); a fake is
the same at half the size, up-sampled by a stride-2 transposed convolution with a slightly uneven
kernel (the up-sampling fingerprint of GAN generators) — cheap to make, since it is the files that
matter here, not the science.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import append_section
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3


# -- synthetic folders ------------------------------------------------------------------------------
def _noise_fields(n: int, side: int, gen: torch.Generator) -> torch.Tensor:
    """``(n, 3, side, side)`` colour ``1/f`` noise, normalised to mean 0.5 and a random contrast."""
    fy = torch.fft.fftfreq(side)[:, None]
    fx = torch.fft.fftfreq(side)[None, :]
    radius = torch.sqrt(fy**2 + fx**2)
    radius[0, 0] = 1.0
    noise = torch.randn(n, 4, side, side, generator=gen)
    fields = torch.fft.ifft2(torch.fft.fft2(noise) / radius).real
    fields = (fields - fields.mean(dim=(-2, -1), keepdim=True)) / fields.std(dim=(-2, -1), keepdim=True)
    luma, chroma = fields[:, :1], fields[:, 1:]
    images = luma + 0.35 * chroma
    contrast = 0.10 + 0.08 * torch.rand(n, 1, 1, 1, generator=gen)
    return (0.5 + contrast * images).clamp(0, 1)


def _upsample_kernel() -> torch.Tensor:
    """A bilinear stride-2 transposed-convolution kernel, made 4 % uneven between pixel parities."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 4
    kernel = torch.outer(k, k)
    kernel[::2, ::2] *= 1.04
    return kernel.expand(3, 1, 4, 4).contiguous()


def synthetic_batch(n: int, size: int, fake: bool, seed: int) -> np.ndarray:
    """``uint8`` ``(n, size, size, 3)``: reals, or fakes with an up-sampling fingerprint."""
    gen = torch.Generator().manual_seed(seed)
    if not fake:
        x = _noise_fields(n, size, gen)
    else:
        low = _noise_fields(n, size // 2, gen)
        x = torch.nn.functional.conv_transpose2d(low, _upsample_kernel(), stride=2, padding=1, groups=3)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def make_folders(root: Path, n: int, size: int = 256, seed: int = 0, chunk: int = 64) -> tuple[Path, Path]:
    """``root/real`` and ``root/fake`` with ``n`` PNGs each (reused when a previous call completed them)."""
    done = root / f".complete-{n}-{size}-{seed}"
    real, fake = root / "real", root / "fake"
    if done.is_file():
        return real, fake
    for folder in (real, fake):
        folder.mkdir(parents=True, exist_ok=True)

    def save(args: tuple[np.ndarray, Path]) -> None:
        Image.fromarray(args[0]).save(args[1], compress_level=1)

    with ThreadPoolExecutor(2) as pool:  # zlib releases the GIL
        for label, folder in (("real", real), ("fake", fake)):
            for start in range(0, n, chunk):
                count = min(chunk, n - start)
                batch = synthetic_batch(count, size, label == "fake", seed * 1_000_003 + start * 2 + (label == "fake"))
                list(pool.map(save, [(batch[i], folder / f"{label[0]}{start + i:06d}.png") for i in range(count)]))
    done.write_text("")
    return real, fake


# -- memory of a process tree -----------------------------------------------------------------------
def tree_pids(root: int) -> list[int]:
    """``root`` and every descendant, from the parent ids in ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def smaps_rollup(pid: int) -> dict[str, int]:
    """``Rss``, ``Anonymous`` and ``Pss`` of one process in bytes (empty when it is gone)."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Anonymous", "Pss"):
                out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        return {}
    return out


def vm_hwm(pid: int) -> int:
    """Peak resident set size of one process so far (``VmHWM``, bytes; 0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


#: Runs ``argv[1:]`` and writes its ``ru_maxrss`` (bytes) to ``$BENCH_MAXRSS_FILE``; exits with its status.
_LAUNCHER = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "open(os.environ['BENCH_MAXRSS_FILE'], 'w').write(str(usage.ru_maxrss * 1024))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


class TreeSampler(threading.Thread):
    """Samples the summed ``smaps_rollup`` of a process tree until :meth:`stop`; keeps the peaks and a
    timeline (wall-clock time, Rss, Anonymous), also appended to ``log`` as it goes."""

    def __init__(self, pid: int, interval: float, log: Path) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.log = pid, interval, log
        self.peak = {"Rss": 0, "Anonymous": 0, "Pss": 0}
        self.peak_hwm = 0  # the largest VmHWM of any process of the tree (bytes)
        self.timeline: list[tuple[float, int, int]] = []
        self._halt = threading.Event()  # not ``_stop``: Thread has a method of that name

    def run(self) -> None:
        with open(self.log, "w", encoding="utf-8") as out:
            out.write("time,rss,anonymous,pss\n")
            while not self._halt.is_set():
                total = {"Rss": 0, "Anonymous": 0, "Pss": 0}
                for pid in tree_pids(self.pid):
                    for k, v in smaps_rollup(pid).items():
                        total[k] += v
                    self.peak_hwm = max(self.peak_hwm, vm_hwm(pid))
                for k, v in total.items():
                    self.peak[k] = max(self.peak[k], v)
                now = time.time()
                self.timeline.append((now, total["Rss"], total["Anonymous"]))
                out.write(f"{now:.2f},{total['Rss']},{total['Anonymous']},{total['Pss']}\n")
                out.flush()
                self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def measure(cmd: list[str], env: dict[str, str], work: Path, interval: float) -> dict[str, Any]:
    """Run ``cmd``; its tree's peak ``ru_maxrss`` and sampled ``smaps_rollup`` peaks (bytes), wall time."""
    t0 = time.perf_counter()
    maxrss_file = work / "ru_maxrss"
    with open(work / "run.out", "w", encoding="utf-8") as out:
        # Through the launcher (a fresh, small process), so the run's ru_maxrss is its own, not this
        # script's; wait4 on the launcher alone, not getrusage(RUSAGE_CHILDREN), which is the max over
        # every child this script ever waited for.
        proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, *cmd], env={**env, "BENCH_MAXRSS_FILE": str(maxrss_file)},
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        sampler = TreeSampler(proc.pid, interval, work / "memory.csv")
        sampler.start()
        proc.wait()
        sampler.stop()
    if proc.returncode:
        raise SystemExit(f"run failed with status {proc.returncode}; see {work / 'run.out'}")
    return {"ru_maxrss": int(maxrss_file.read_text()), "vm_hwm": sampler.peak_hwm,
            **{f"peak_{k.lower()}": v for k, v in sampler.peak.items()},
            "wall_s": time.perf_counter() - t0, "timeline": sampler.timeline}


def phase_peaks(timeline: list[tuple[float, int, int]], run_log: Path) -> dict[str, int]:
    """Peak Anonymous memory per phase, split at the run log's lines: loading and refining (until the
    last refiner is ready), the detectors (until the last one is done), and the rest (LFD, PSNR/SSIM,
    FID/KID, the report)."""
    marks = {"refiners": 0.0, "detectors": 0.0}
    for line in run_log.read_text(encoding="utf-8").splitlines():
        stamp = line[:23]
        try:
            t = time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:23]) / 1000
        except ValueError:
            continue
        if " refiner " in line and " ready " in line:
            marks["refiners"] = t
        elif " detector " in line and " done " in line:
            marks["detectors"] = t
    out = {"load_refine": 0, "detectors": 0, "rest": 0}
    for t, _, anon in timeline:
        phase = "load_refine" if t <= marks["refiners"] else "detectors" if t <= marks["detectors"] else "rest"
        out[phase] = max(out[phase], anon)
    return out


# -- throughput by direct calls ---------------------------------------------------------------------
def _rate(n: int, fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return n / max(time.perf_counter() - t0, 1e-9)


def direct_throughput(real: Path, fake: Path, detectors: list[str], feature_images: int,
                      quality_images: int, fidelity_images: int = 64) -> dict[str, float]:
    """Images/s of decoding every file, of each detector's features, of PSNR/SSIM (image pairs, as the
    run's quality stage computes them) and of FID features (both domains)."""
    from stigbench.core.imageset import ArrayImageSet, FileImageSet
    from stigbench.detection.registry import detectors as registry
    from stigbench.evaluation.quality import extract_features, get_extractor
    from stigbench.measures.fidelity import mean_fidelity

    paths = sorted(real.glob("*.png")) + sorted(fake.glob("*.png"))
    files = FileImageSet(paths, 256)
    rates = {"decode": _rate(len(files), lambda: [None for _ in files.batches(64)])}
    pick = np.linspace(0, len(files) - 1, min(feature_images, len(files))).round().astype(np.int64)
    decoded = ArrayImageSet(files.subset(pick).to_array())
    for name in detectors:
        det = registry().get(name)()
        rates[f"features:{name}"] = _rate(len(decoded), lambda det=det: det.extract(decoded))
    pairs = ArrayImageSet(files.subset(pick[:fidelity_images]).to_array())
    rates["psnr_ssim"] = _rate(len(pairs), lambda: mean_fidelity(zip(pairs.batches(64), pairs.batches(64))))
    extractor = get_extractor()
    reals = FileImageSet(sorted(real.glob("*.png")), 256)
    n_q = min(quality_images, len(reals))
    for domain in ("image", "spectrum"):
        rates[f"fid:{domain}"] = _rate(n_q, lambda d=domain: extract_features(reals, extractor, 32, d, quality_images))
    rates["fid_extractor"] = extractor.name  # type: ignore[assignment]
    return rates


def run_rates(run_dir: Path) -> dict[str, Any]:
    """Images/s of the refiner fit, refining, each detector's fit and scoring, from ``run.json``."""
    record = json.loads((run_dir / "run.json").read_text())
    split = record["dataset"]["split"]
    n = {part: split["real"][part] + split["fake"][part] for part in ("train", "val", "test")}
    out: dict[str, Any] = {"seconds": record["seconds"], "split": split}
    for name, info in record["refiners"].items():
        out[f"refiner_fit:{name}"] = (split["real"]["train"] + split["fake"]["train"]) / info["fit_seconds"]
        out[f"refine:{name}"] = split["fake"]["test"] / info["refine_seconds"]
    n_refined = len(record["refiners"])
    for name, info in record["detectors"].items():
        # fit_seconds: features of train + val, the classifier fit, scoring val; the rest: scoring the
        # test reals, fakes and each refined set.
        out[f"fit:{name}"] = (n["train"] + n["val"]) / info["fit_seconds"]
        scored = n["test"] + n_refined * split["fake"]["test"]
        out[f"score:{name}"] = scored / max(info["seconds"] - info["fit_seconds"], 1e-9)
    return out


# -- one size ---------------------------------------------------------------------------------------
def bench_size(n: int, args: argparse.Namespace, detectors: list[str]) -> dict[str, Any]:
    scratch = Path(args.scratch)
    t0 = time.perf_counter()
    real, fake = make_folders(scratch / f"data-{n}", n)
    made = time.perf_counter() - t0
    work = Path(tempfile.mkdtemp(prefix=f"run-{n}-", dir=scratch))
    cmd = [sys.executable, str(REPO / "bench.py"), "run", "--real", str(real), "--fake", str(fake),
           "--refiner", "spectral-match", "--detectors", ",".join(detectors), "--out", str(work / "runs"),
           "--cache-dir", str(work / "stages"), "--quiet", *args.run_args]
    env = {**os.environ, "STIGBENCH_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    print(f"[{n}] folders ready ({made:.0f} s); running: {' '.join(cmd[1:])}", flush=True)
    mem = measure(cmd, env, work, args.interval)
    run_dir = next((work / "runs").glob("*/*/run.json")).parent
    phases = phase_peaks(mem.pop("timeline"), run_dir / "run.log")
    result = {"n_per_class": n, "command": " ".join(cmd[1:]), "work": str(work), **mem,
              **{f"anonymous_{k}": v for k, v in phases.items()}, **run_rates(run_dir)}
    if args.throughput:
        result.update(direct_throughput(real, fake, detectors, args.feature_images, args.quality_images))
    print(f"[{n}] " + ", ".join(f"{k} {result[k] / GIB:.2f} GiB" for k in
                               ("ru_maxrss", "vm_hwm", "peak_rss", "peak_anonymous", "peak_pss")) + f", {mem['wall_s']:.0f} s",
          flush=True)
    (work / "result.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"[{n}] results in {work / 'result.json'}", flush=True)
    return result


def tables(results: list[dict[str, Any]], detectors: list[str]) -> str:
    first = results[0]
    gib = lambda v: f"{v / GIB:.2f} GiB" if v else "–"
    lines = [("| images per class | ru_maxrss (tree) | VmHWM (largest process) | peak Rss | peak Pss | peak Anonymous | "
              f"Anonymous vs {first['n_per_class']} | Anonymous: load + refine / detectors / rest | wall s |"),
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        growth = r["peak_anonymous"] / first["peak_anonymous"] - 1
        phases = " / ".join(f"{r[f'anonymous_{p}'] / GIB:.2f}" for p in ("load_refine", "detectors", "rest"))
        lines.append(f"| {r['n_per_class']} | {gib(r.get('ru_maxrss'))} | {gib(r.get('vm_hwm'))} | {gib(r['peak_rss'])} | "
                     f"{gib(r['peak_pss'])} | {gib(r['peak_anonymous'])} | {growth:+.0%} | {phases} GiB | {r['wall_s']:.0f} |")
    keys = [k for k in results[-1] if k.split(":")[0] in
            ("decode", "refiner_fit", "refine", "features", "fit", "score", "psnr_ssim", "fid")]
    lines += ["", "Throughput (images/s):", "",
              "| stage | " + " | ".join(str(r["n_per_class"]) for r in results) + " |",
              "| --- | " + " | ".join("---:" for _ in results) + " |"]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(f"{r[k]:.1f}" if isinstance(r.get(k), float) else "–"
                                              for r in results) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,4000,10000", help="images per class, comma-separated")
    ap.add_argument("--scratch", default=str(Path(tempfile.gettempdir()) / "stigbench-bench-memory"),
                    help="where the synthetic folders and runs go (never inside the repository)")
    ap.add_argument("--detectors", default="", help="default: the default detectors of the frequency family")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between smaps_rollup samples")
    ap.add_argument("--throughput", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--feature-images", type=int, default=1000, help="images per detector for feature rates")
    ap.add_argument("--quality-images", type=int, default=64, help="images for FID rates, per domain")
    ap.add_argument("--note", default="", help="free text for the results section")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, default=True,
                    help="append a dated section to benchmarks/RESULTS.md")
    ap.add_argument("--tabulate", nargs="+", type=Path, default=None, metavar="RESULT_JSON",
                    help="only tabulate earlier sizes' result.json files (printed by each size)")
    ap.add_argument("run_args", nargs="*", help="extra `bench.py run` arguments (after --)")
    args = ap.parse_args(argv)
    if Path(args.scratch).resolve().is_relative_to(REPO):
        ap.error("--scratch must be outside the repository")
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    from stigbench.detection.registry import detectors as registry

    reg = registry()
    names = [d for d in args.detectors.split(",") if d] or [
        name for name in reg.list() if reg.meta(name).family == "frequency" and reg.meta(name).default]
    if args.tabulate:
        results = [json.loads(p.read_text()) for p in args.tabulate]
    else:
        results = [bench_size(int(n), args, names) for n in args.sizes.split(",")]
    body = tables(results, names)
    print(body)
    if args.write:
        extra = f" -- {' '.join(args.run_args)}" if args.run_args else ""
        cmd = (f"`python benchmarks/bench_memory.py --sizes {args.sizes}{extra}`; each size runs "
               f"`{results[0]['command']}`")
        append_section("bench_memory: peak memory against dataset size", f"{args.note}\n\n{cmd}\n\n{body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
