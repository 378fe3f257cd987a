"""Apply a saved refiner to a folder of images (``bench.py refine``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stigbench.data.specs import input_images
from stigbench.core.imageset import Skipped
from stigbench.attacks.registry import load_refiner


@dataclass
class RefineResult:
    written: list[Path]
    skipped: list[Skipped]
    size: int


def refine_folder(checkpoint: str | Path, input_dir: str | Path, output_dir: str | Path, size: int | None = None,
                  resize: bool = False, batch_size: int = 16, progress: bool = True) -> RefineResult:
    """Refine every usable image under ``input_dir`` into ``output_dir`` as PNG (same file stems).

    The size defaults to the one the refiner was trained at (``image_size_``), else to the largest
    power of two not above the smallest image side. Existing output files are never overwritten.
    """
    refiner = load_refiner(checkpoint)
    src, dst = Path(input_dir), Path(output_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"input folder not found: {src}")
    images, skipped = input_images(src, size or getattr(refiner, "image_size_", None), resize, progress=progress)
    targets = [dst / p.relative_to(src).with_suffix(".png") for p in images.paths]
    clash = [t for t in targets if t.exists()]
    if clash:
        raise FileExistsError(f"{len(clash)} output file(s) already exist, e.g. {clash[0]}; choose another --output")
    if len(set(targets)) != len(targets):
        raise ValueError("two input files map to the same output name (same stem, different suffix)")
    refined = refiner.refine(images)
    for i, target in enumerate(targets):
        refined.save_png(i, target)
    return RefineResult(written=targets, skipped=skipped, size=images.size)
