"""Lazily loaded image sets and the checks that keep bad files out of a run.

An image set is indexable and yields ``float32`` ``(3, H, W)`` tensors in ``[0, 1]`` (see
:mod:`stigbench.core.contracts`). File-backed sets decode on access, so 10,000 images at 256² never sit in
memory at once; :class:`ArrayImageSet` holds 8-bit images in memory or in a memory-mapped file.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile
from tqdm.auto import tqdm

from stigbench.core.io import scratch_array

# Pillow's default is to raise on truncated files, which is what we want; make it explicit since a
# plug-in setting it globally would silently let half-decoded images into a benchmark.
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".jp2", ".tga"}
)


_PROGRESS = {"enabled": True}


def set_progress(enabled: bool) -> None:
    """Turn every stigbench progress bar on or off (``--quiet``)."""
    _PROGRESS["enabled"] = bool(enabled)


def progress_bar(total: int | None = None, desc: str | None = None, unit: str = "img", **kw: object) -> tqdm:
    """A tqdm bar, shown only when ``desc`` is given and progress is enabled."""
    return tqdm(total=total, desc=desc, unit=unit, leave=False,
                disable=desc is None or not _PROGRESS["enabled"], **kw)


class BadImage(ValueError):
    """A file that cannot enter the benchmark; the message says why."""


def _to_rgb(img: Image.Image, grayscale: str = "skip") -> Image.Image:
    """Convert a decoded image to 8-bit RGB or raise :class:`BadImage` with the reason.

    Grayscale images are skipped by default: a grey image has three identical channels, which a
    detector learns as a trivial cue when only one class contains them.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        if mode.startswith("I") or mode == "F":
            if grayscale != "convert":
                raise BadImage(f"single-channel high-bit-depth image (mode {mode})")
            arr = np.asarray(img, dtype=np.float64)
            hi = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
            img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
            return img.convert("RGB")
        if grayscale != "convert":
            raise BadImage(f"grayscale image (mode {mode})")
        if mode == "LA":
            _check_opaque(img)
        return img.convert("RGB")
    if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in img.info):
        _check_opaque(img.convert("RGBA"))
        return img.convert("RGB")
    if mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    raise BadImage(f"unsupported image mode {mode}")


def _check_opaque(img: Image.Image) -> None:
    alpha = np.asarray(img.getchannel("A"))
    if alpha.min() < 255:
        raise BadImage(f"image has transparent pixels (mode {img.mode}); composite it on a background first")


def fit_to_size(img: Image.Image, size: int, resize: bool = False) -> Image.Image:
    """Bring an image to ``size x size``: centre crop at native resolution, or resize then crop.

    Cropping is the default because resampling low-pass filters the image and erases the up-sampling
    fingerprints frequency detectors look for.
    """
    w, h = img.size
    if resize:
        scale = size / min(w, h)
        if scale != 1.0:
            img = img.resize(
                (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.LANCZOS
            )
            w, h = img.size
    elif min(w, h) < size:
        raise BadImage(f"image is {w}x{h}, smaller than the benchmark size {size}")
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def load_image(path: str | Path, size: int | None = None, resize: bool = False, grayscale: str = "skip") -> np.ndarray:
    """Decode ``path`` fully and return ``uint8`` ``(3, size, size)``; :class:`BadImage` on failure."""
    try:
        with Image.open(path) as im:
            im.load()
            n_frames = getattr(im, "n_frames", 1)
            if n_frames > 1:
                im.seek(0)
            rgb = _to_rgb(im, grayscale)
            if size is not None:
                rgb = fit_to_size(rgb, size, resize)
            arr = np.asarray(rgb, dtype=np.uint8)
    except BadImage:
        raise
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except Image.DecompressionBombError as exc:
        raise BadImage(f"refused by Pillow's decompression-bomb guard: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow raises UnidentifiedImageError (an OSError) for non-images and OSError for truncation.
        raise BadImage(f"cannot decode: {exc}") from None
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def to_float(arr: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``uint8`` image(s) to ``float32`` in ``[0, 1]``."""
    t = torch.from_numpy(np.asarray(arr)) if not isinstance(arr, torch.Tensor) else arr
    return t.to(torch.float32) / 255.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``float`` image(s) in ``[0, 1]`` to ``uint8`` by rounding, as saving a PNG would."""
    return (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


class ImageSet:
    """Base class: indexing, batching, subsets. Subclasses implement ``__len__`` and ``_load_uint8``."""

    size: int

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load_uint8(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load_many(self, indices: Sequence[int]) -> np.ndarray:
        return np.stack([self._load_uint8(i) for i in indices]) if len(indices) else np.zeros(
            (0, 3, self.size, self.size), np.uint8
        )

    def __getitem__(self, index: int) -> torch.Tensor:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        return to_float(self._load_uint8(index % n))

    @property
    def ids(self) -> list[str]:
        """A stable identifier per image (a path for file-backed sets)."""
        return [str(i) for i in range(len(self))]

    def batches(self, batch_size: int = 64, progress: str | None = None) -> Iterator[torch.Tensor]:
        """All images in order as ``(B, 3, H, W)`` float batches, one batch in memory at a time."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        n = len(self)
        bar = progress_bar(n, progress)
        try:
            for start in range(0, n, batch_size):
                idx = list(range(start, min(n, start + batch_size)))
                yield to_float(self._load_many(idx))
                bar.update(len(idx))
        finally:
            bar.close()

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        return SubsetImageSet(self, np.asarray(indices, dtype=np.int64))

    def save_png(self, index: int, path: str | Path) -> Path:
        """Write image ``index`` as an 8-bit RGB PNG (its exact stored pixels)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self._load_uint8(index).transpose(1, 2, 0)).save(path)
        return path

    def to_array(self) -> np.ndarray:
        """All images as one ``uint8`` array (only for small sets)."""
        return self._load_many(list(range(len(self))))


class FileImageSet(ImageSet):
    """Images decoded from files on access (centre-cropped or resized to ``size``)."""

    def __init__(self, paths: Sequence[str | Path], size: int, resize: bool = False, grayscale: str = "skip",
                 workers: int | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.size = int(size)
        self.resize = resize
        self.grayscale = grayscale
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def ids(self) -> list[str]:
        return [str(p) for p in self.paths]

    def _load_uint8(self, index: int) -> np.ndarray:
        return load_image(self.paths[index], self.size, self.resize, self.grayscale)

    def _load_many(self, indices: Sequence[int]) -> np.ndarray:
        # Pillow releases the GIL while decoding, so threads use every core without pickling.
        if self.workers > 1 and len(indices) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                arrays = list(pool.map(self._load_uint8, indices))
            return np.stack(arrays)
        return super()._load_many(indices)


class ArrayImageSet(ImageSet):
    """Images held as a ``uint8`` array ``(N, 3, H, W)`` (in memory or a NumPy memmap)."""

    def __init__(self, array: np.ndarray, ids: Sequence[str] | None = None) -> None:
        if array.ndim != 4 or array.shape[1] != 3 or array.shape[2] != array.shape[3]:
            raise ValueError(f"expected (N, 3, S, S) images, got shape {array.shape}")
        if array.dtype != np.uint8:
            raise TypeError(f"expected uint8 images, got {array.dtype}")
        self.array = array
        self.size = int(array.shape[-1])
        self._ids = list(ids) if ids is not None else None

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def ids(self) -> list[str]:
        return self._ids if self._ids is not None else super().ids

    def _load_uint8(self, index: int) -> np.ndarray:
        return np.asarray(self.array[index])

    def _load_many(self, indices: Sequence[int]) -> np.ndarray:
        return np.asarray(self.array[np.asarray(indices, dtype=np.int64)]) if len(indices) else super()._load_many(indices)

    def __reduce__(self) -> tuple:
        # A set memory-mapped from a whole .npy file travels (to another torchrun rank or worker) as the
        # file's path, not as its pixels.
        arr = self.array
        if isinstance(arr, np.memmap) and isinstance(arr.base, mmap.mmap) and arr.mode in ("r", "r+", "w+"):
            if arr.mode != "r":
                arr.flush()
            return _open_mapped, (str(arr.filename), arr.shape, self._ids)
        return ArrayImageSet, (np.asarray(arr), self._ids)

    @classmethod
    def from_float(cls, images: torch.Tensor, ids: Sequence[str] | None = None) -> ArrayImageSet:
        """From a float batch in ``[0, 1]`` (rounded to 8 bits, as a saved PNG would be)."""
        return cls(to_uint8(images), ids)


def _open_mapped(path: str, shape: tuple[int, ...], ids: Sequence[str] | None) -> ArrayImageSet:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.shape != shape:
        raise ValueError(f"{path} holds images of shape {array.shape}, expected {shape}: changed since it was sent")
    return ArrayImageSet(array, ids)


class SubsetImageSet(ImageSet):
    def __init__(self, base: ImageSet, indices: np.ndarray) -> None:
        if len(indices) and (indices.min() < 0 or indices.max() >= len(base)):
            raise IndexError("subset indices out of range")
        self.base, self.indices, self.size = base, indices, base.size

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def ids(self) -> list[str]:
        base_ids = self.base.ids
        return [base_ids[i] for i in self.indices]

    def _load_uint8(self, index: int) -> np.ndarray:
        return self.base._load_uint8(int(self.indices[index]))

    def _load_many(self, indices: Sequence[int]) -> np.ndarray:
        return self.base._load_many([int(self.indices[i]) for i in indices])


class ConcatImageSet(ImageSet):
    """Several same-sized sets one after the other (e.g. reals then fakes for a detector)."""

    def __init__(self, parts: Sequence[ImageSet]) -> None:
        sizes = {p.size for p in parts}
        if len(sizes) > 1:
            raise ValueError(f"cannot concatenate image sets of sizes {sorted(sizes)}")
        self.parts = list(parts)
        self.size = sizes.pop() if sizes else 0
        self._offsets = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def ids(self) -> list[str]:
        return [i for p in self.parts for i in p.ids]

    def _locate(self, index: int) -> tuple[int, int]:
        part = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return part, index - int(self._offsets[part])

    def _load_uint8(self, index: int) -> np.ndarray:
        part, local = self._locate(index)
        return self.parts[part]._load_uint8(local)

    def _load_many(self, indices: Sequence[int]) -> np.ndarray:
        if not len(indices):
            return super()._load_many(indices)
        out = np.empty((len(indices), 3, self.size, self.size), np.uint8)
        located = [self._locate(i) for i in indices]
        for part in {p for p, _ in located}:
            pos = [k for k, (p, _) in enumerate(located) if p == part]
            out[pos] = self.parts[part]._load_many([located[k][1] for k in pos])
        return out


def labelled(real: ImageSet, fake: ImageSet) -> tuple[ImageSet, np.ndarray]:
    """Reals followed by fakes, with labels (0 = real, 1 = fake)."""
    labels = np.concatenate([np.zeros(len(real), np.int64), np.ones(len(fake), np.int64)])
    return ConcatImageSet([real, fake]), labels


def map_batches(
    image_set: ImageSet,
    fn: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 64,
    progress: str | None = None,
    store: str | Path | None = None,
) -> ArrayImageSet:
    """Apply ``fn`` (float batch -> float batch in ``[0, 1]``) to every image; results rounded to 8 bits.

    Rounding matters: the real and fake images come from 8-bit files, and a refined set left in float
    would lack their quantisation noise, a cue detectors pick up that has nothing to do with the attack.
    With ``store`` the result is a memory-mapped ``.npy`` file, so large sets do not sit in RAM.
    """
    n, s = len(image_set), image_set.size
    shape = (n, 3, s, s)
    if store is not None:
        store = Path(store)
        store.parent.mkdir(parents=True, exist_ok=True)
        out: np.ndarray = np.lib.format.open_memmap(store, mode="w+", dtype=np.uint8, shape=shape)
    else:
        out = np.empty(shape, np.uint8)
    _write_batches(out, image_set.batches(batch_size, progress=progress), fn)
    if isinstance(out, np.memmap):
        out.flush()
    return ArrayImageSet(out, ids=image_set.ids)


def _write_batches(out: np.ndarray, batches: Iterable[torch.Tensor],
                   fn: Callable[[torch.Tensor], torch.Tensor] = lambda batch: batch) -> None:
    """``fn`` of each float batch, rounded to 8 bits, into consecutive rows of ``out``."""
    pos = 0
    for batch in batches:
        result = fn(batch)
        if result.shape != batch.shape:
            raise ValueError(f"refinement changed the batch shape {tuple(batch.shape)} -> {tuple(result.shape)}")
        out[pos : pos + len(batch)] = to_uint8(result)
        pos += len(batch)


def random_access_array(images: Any, in_memory_limit: int, batch_size: int = 256) -> np.ndarray:
    """Every image of ``images`` as one ``uint8`` array ``(N, 3, S, S)``, for drawing batches by index.

    A set that already is an array (in memory or memory-mapped from a stage's ``images.npy``) is used
    as it is. Otherwise the set is decoded once: into memory when it takes at most
    ``in_memory_limit`` bytes, else into a memory-mapped scratch file (:func:`~stigbench.core.io.scratch_array`),
    batch by batch, so a training set of any size costs disk, not memory. Images are rounded to 8
    bits, as a saved PNG would be (exact for an :class:`ImageSet`, whose floats are ``k / 255``).
    """
    if isinstance(images, ArrayImageSet):
        return images.array
    n = len(images)
    if n == 0:
        raise ValueError("no images")
    first = images[0]
    shape = (n, *first.shape)
    out: np.ndarray = (np.empty(shape, np.uint8) if n * first.numel() <= in_memory_limit
                       else scratch_array(shape, np.uint8, prefix="stigbench-images-"))
    _write_batches(out, images.batches(batch_size))
    return out


def listable(path: Path) -> bool:
    """Whether a folder listing keeps ``path``: a regular file, or a symbolic link whose target is gone,
    so that the scan names it in ``skipped.csv`` instead of it vanishing without a word."""
    return path.is_file() or (path.is_symlink() and not path.exists())


@dataclass(frozen=True)
class Skipped:
    """A file left out of a run, and why."""

    path: str
    reason: str


def scan_images(
    paths: Iterable[str | Path],
    size: int | None,
    resize: bool = False,
    grayscale: str = "skip",
    progress: str | None = None,
    workers: int | None = None,
) -> tuple[list[Path], list[Skipped], int]:
    """Decode every file once; return the usable paths, the skipped files with reasons, and the
    smallest image side among the usable ones (for choosing a default size).

    A full decode (not just a header read) is the only way to catch truncated files before a run is
    half-way through.
    """
    paths = [Path(p) for p in paths]
    workers = workers or min(4, os.cpu_count() or 1)

    def check(path: Path) -> tuple[Path, str | None, int]:
        if path.is_symlink() and not path.exists():
            return path, f"dangling symbolic link: its target {os.readlink(path)} does not exist", 0
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            return path, f"not an image file suffix ({path.suffix or 'none'})", 0
        try:
            arr = load_image(path, None, False, grayscale)
        except BadImage as exc:
            return path, str(exc), 0
        side = min(arr.shape[1:])
        if size is not None and not resize and side < size:
            return path, f"image is {arr.shape[2]}x{arr.shape[1]}, smaller than the benchmark size {size}", side
        return path, None, side

    good: list[Path] = []
    skipped: list[Skipped] = []
    min_side = 0
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(check, paths)
        bar = progress_bar(len(paths), progress)
        for path, reason, side in results:
            bar.update(1)
            if reason is None:
                good.append(path)
                min_side = side if min_side == 0 else min(min_side, side)
            else:
                skipped.append(Skipped(str(path), reason))
        bar.close()
    return good, skipped, min_side


def temporary_store(prefix: str = "stigbench-") -> Path:
    """A fresh folder for memory-mapped intermediates (callers delete it)."""
    return Path(tempfile.mkdtemp(prefix=prefix))
