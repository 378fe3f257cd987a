"""Apply a saved refiner to a folder of images (``bench.py refine``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stigbench.data.specs import default_size
from stigbench.core.imageset import FileImageSet, Skipped, scan_images
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
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"no files in {src}")
    size = size or getattr(refiner, "image_size_", None)
    good, skipped, min_side = scan_images(files, size, resize, progress="checking images" if progress else None)
    if not good:
        raise ValueError(f"none of the {len(files)} files in {src} is usable: "
                         + "; ".join(sorted({s.reason for s in skipped})[:3]))
    size = size or default_size(min_side)
    targets = [dst / p.relative_to(src).with_suffix(".png") for p in good]
    clash = [t for t in targets if t.exists()]
    if clash:
        raise FileExistsError(f"{len(clash)} output file(s) already exist, e.g. {clash[0]}; choose another --output")
    if len(set(targets)) != len(targets):
        raise ValueError("two input files map to the same output name (same stem, different suffix)")
    images = FileImageSet(good, size, resize)
    refined = refiner.refine(images)
    for i, target in enumerate(targets):
        refined.save_png(i, target)
    return RefineResult(written=targets, skipped=skipped, size=size)
