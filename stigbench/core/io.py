"""Small file helpers: atomic writes, JSON, fresh (never overwritten) folders, memory-mapped scratch arrays."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: The environment variable that overrides :func:`cache_dir`.
ENV_CACHE = "STIGBENCH_CACHE"


def cache_dir() -> Path:
    """The user cache for built datasets, feature statistics and stages (``STIGBENCH_CACHE`` overrides)."""
    from platformdirs import user_cache_dir

    return Path(os.environ.get(ENV_CACHE) or user_cache_dir("stigbench"))


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one step.

    A reader (or a run interrupted mid-write) therefore sees either the old file or the new one,
    never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (NaN is written as ``null``-free ``NaN``)."""
    text = json.dumps(obj, indent=2, default=_default, sort_keys=False) + "\n"
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def fresh_dir(parent: str | Path, name: str) -> Path:
    """Create and return ``parent/name``, or ``parent/name-2``, ``-3``... if taken: never reuses a folder."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 10_000):
        candidate = parent / (name if k == 1 else f"{name}-{k}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"no free folder name for {name!r} under {parent}")


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scratch_array(shape: tuple[int, ...], dtype: np.dtype | type = np.float64, prefix: str = "stigbench-") -> np.memmap:
    """A zero-filled writable array memory-mapped from a temporary file (in ``TMPDIR``).

    Its pages belong to the file, so the kernel can write them out and drop them: a large
    intermediate (a feature matrix of full-size spectra) need not fit in memory. On POSIX the file is
    unlinked at once and its space freed with the last view of the array, even if the process is
    killed; elsewhere it is deleted when the array is collected.
    """
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".bin")
    os.close(fd)
    try:
        array = np.memmap(name, dtype=dtype, mode="w+", shape=shape)
    except BaseException:
        os.unlink(name)
        raise
    try:
        os.unlink(name)
    except OSError:  # Windows: a mapped file cannot be deleted yet
        weakref.finalize(array, _remove_quietly, name)
    return array


def _remove_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:  # still mapped by a view, or gone: the temporary folder's cleaner gets it
        pass

