"""Detector throughput (images/s) on this machine: features, training and scoring, per detector.

    python benchmarks/bench_detectors.py [--sizes 64,256] [--detectors '*'] [--n 64] [--write] [--note TEXT]

* **features**: the pure input stage — ``features()`` of a frequency detector, ``preprocess()`` of a
  CNN detector — on one in-memory float batch of ``n`` images;
* **fit**: images per second of ``fit`` on ``n`` reals + ``n`` fakes (frequency detectors: features and
  classifier; CNN detectors: one epoch, no validation);
* **score**: ``score()`` of the fitted detector on ``2n`` 8-bit images (decoding to float included).

Frequency detectors are measured at every size, CNN detectors at sizes up to ``--cnn-max-size`` (64).
Images are synthetic (1/f² noise and its 2× nearest up-sampling): throughput does not depend on content.
With ``--write`` the table is appended to ``benchmarks/RESULTS.md`` under a dated heading with the
machine's description; other sections are left as they are.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import append_section

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm backbones: never download

from stigbench.detection.cnn import CNNDetector  # noqa: E402
from stigbench.core.imageset import ArrayImageSet, labelled, set_progress  # noqa: E402
from stigbench.detection.registry import detectors  # noqa: E402
from stigbench.pipeline.plan import construct  # noqa: E402

def synthetic(n: int, size: int, seed: int = 0) -> tuple[ArrayImageSet, np.ndarray]:
    """``n`` 1/f² noise images then ``n`` nearest-up-sampled ones, as 8-bit image sets with labels."""
    rng = np.random.default_rng(seed)

    def pink(m: int, s: int) -> np.ndarray:
        f = np.fft.fftfreq(s)
        amp = 1.0 / np.maximum(np.hypot(f[:, None], f[None, :]), 1.0 / s)
        x = np.fft.ifft2(np.fft.fft2(rng.standard_normal((m, 3, s, s))) * amp).real
        x = 0.5 + 0.15 * x / x.std(axis=(-2, -1), keepdims=True)
        return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)

    fake = pink(n, size // 2).repeat(2, axis=-2).repeat(2, axis=-1)
    return labelled(ArrayImageSet(pink(n, size)), ArrayImageSet(fake))


def rate(fn, n_images: int, min_seconds: float) -> float:
    """Images per second of ``fn`` (which handles ``n_images``), after one warm-up call."""
    fn()
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return calls * n_images / elapsed


def measure(name: str, size: int, n: int, min_seconds: float, params: dict | None = None) -> dict[str, float]:
    """features/fit/score images per second of ``name`` at ``size``² (``params``: extra constructor arguments)."""
    cls = detectors().get(name)
    is_cnn = isinstance(cls, type) and issubclass(cls, CNNDetector)
    params = {**({"epochs": 1, "patience": None} if is_cnn else {}), **(params or {})}
    train, labels = synthetic(n, size)
    batch = next(train.batches(n))
    det = construct(cls, params, seed=0, device="cpu")
    stage = det.preprocess if is_cnn else det.features
    out = {"features": rate(lambda: stage(batch), len(batch), min_seconds)}
    construct(cls, params, seed=0, device="cpu").fit(*synthetic(8, size, seed=1))  # warm-up (lazy inits)
    t0 = time.perf_counter()
    det.fit(train, labels)
    out["fit"] = len(train) / (time.perf_counter() - t0)
    out["score"] = rate(lambda: det.score(train), len(train), min_seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,256", help="comma-separated image sizes")
    parser.add_argument("--detectors", default="*", help="names or fnmatch patterns, comma-separated")
    parser.add_argument("--n", type=int, default=64, help="images per class (and per features batch)")
    parser.add_argument("--cnn-max-size", type=int, default=64, help="largest size at which CNN detectors run")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time each rate is averaged over")
    parser.add_argument("--note", default="", help="added to the machine line (e.g. 'CPU shared with other jobs')")
    parser.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    set_progress(False)
    names = detectors().resolve(args.detectors)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for name in names:
            cls = detectors().get(name)
            if isinstance(cls, type) and issubclass(cls, CNNDetector) and size > args.cnn_max_size:
                continue
            r = measure(name, size, args.n, args.min_seconds)
            rows.append((name, detectors().meta(name).family, size, r))
            print(f"{name} {size}²: " + ", ".join(f"{k} {v:,.0f} img/s" for k, v in r.items()), flush=True)
    table = ["| detector | family | size | features img/s | fit img/s | score img/s |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    table += [f"| {name} | {family} | {size}² | {r['features']:,.0f} | {r['fit']:,.1f} | {r['score']:,.0f} |"
              for name, family, size, r in rows]
    text = "\n".join(table)
    print(text)
    if args.write:
        note = f"{args.note}. " if args.note else ""
        body = f"{note}{args.n} images per class; CNN fit = one epoch.\n\n{text}"
        print(f"appended to {append_section('bench_detectors: detector throughput', body)}")


if __name__ == "__main__":
    main()
