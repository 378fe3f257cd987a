"""Does a change to the STIG trainer leave its ``train_log.csv`` bit for bit as it was?

``check_identical.py`` compares whole runs; this compares the trainer's own log, every column but the
timing one, on variants that together take every loss term and option path (the cpu preset in fp32
and bf16, the paper preset with its profile discriminator, moment matching without the luma channel
with D on G's raw output, no weight average with symmetric/periodic G and BatchNorm)::

    PYTHONPATH=/path/to/old/checkout python benchmarks/check_train_log.py write /tmp/before
    python benchmarks/check_train_log.py write /tmp/after
    python benchmarks/check_train_log.py compare /tmp/before /tmp/after

(``git worktree add /tmp/old REV`` gives an old checkout.) Exit status 1 if any value differs.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from stigbench.attacks.stig import StigRefiner
from stigbench.core.imageset import ArrayImageSet

TINY = dict(levels=2, width=4, d_width=4, nce_layers=[0, 1], nce_patches=16, nce_dim=8, batch_size=2,
            iterations=12, checkpoint_every=5, refine_batch_size=8, progress=False, seed=5, select_fraction=0.25,
            select_evals=4)
VARIANTS: dict[str, dict] = {
    "cpu": dict(precision="fp32"),
    "cpu-bf16": dict(precision="bf16"),
    "paper": dict(preset="paper", precision="fp32"),
    "mean-noluma": dict(precision="fp32", match_luma=False, w_psd=2.0, d_input="generator"),
    "noema-sym": dict(precision="fp32", ema=0.0, symmetric=True, periodic=True, norm="batch"),
}
TIMING = ("seconds",)


def _images(seed: int, n: int, size: int = 32) -> ArrayImageSet:
    """Alternating 1/f noise and 2x pixel-replicated 1/f noise (a "fake" with up-sampling peaks)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        side = size if i % 2 else size // 2
        f = np.fft.fft2(rng.standard_normal((side, side, 3)), axes=(0, 1))
        u, v = np.fft.fftfreq(side)[:, None], np.fft.fftfreq(side)[None, :]
        f /= (np.sqrt(u**2 + v**2) + 1.0 / side)[..., None]
        img = np.real(np.fft.ifft2(f, axes=(0, 1)))
        img = np.clip((img - img.mean()) / (img.std() * 6) + 0.5, 0, 1)
        out.append(img if i % 2 else img.repeat(2, axis=0).repeat(2, axis=1))
    return ArrayImageSet((np.stack(out).transpose(0, 3, 1, 2) * 255).round().astype(np.uint8))


def write(out: Path) -> None:
    torch.set_num_threads(1)  # the same reduction order on any core count
    fakes, reals = _images(1, 40), _images(2, 30)
    for name, variant in VARIANTS.items():
        kwargs = {**TINY, **variant}
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        StigRefiner(kwargs.pop("preset", "cpu"), **kwargs).fit(fakes, reals, log_dir=folder)
        print(f"{name}: {folder / 'train_log.csv'}")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(fh)]


def compare(a: Path, b: Path) -> int:
    differing = 0
    for name in VARIANTS:
        ra, rb = _rows(a / name / "train_log.csv"), _rows(b / name / "train_log.csv")
        diffs = [(i, k) for i, (x, y) in enumerate(zip(ra, rb)) for k in x if x[k] != y.get(k)]
        same = len(ra) == len(rb) and not diffs
        differing += not same
        print(f"{name}: {len(ra)} rows x {len(ra[0]) if ra else 0} columns, "
              + ("bitwise identical" if same else f"{len(diffs)} value(s) differ, first at row {diffs[0] if diffs else '?'}"))
    return 1 if differing else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("write").add_argument("out", type=Path)
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("a", type=Path)
    cmp_.add_argument("b", type=Path)
    args = ap.parse_args()
    if args.cmd == "write":
        write(args.out)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
