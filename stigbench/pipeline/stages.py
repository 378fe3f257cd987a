"""Stage cache: refiner fits, refined sets, detector fits and scores, keyed by what determines them.

A stage's key is a readable prefix plus a hash of its *payload* — the dataset fingerprint, the split,
the component's name and parameters, the seed, the device/precision and a fingerprint of the code —
so re-running with an extra perturbation or detector recomputes only what is new, and an
interrupted run resumes at the first missing stage. A stage is a folder, written under a temporary
name and renamed into place when complete: a half-written stage is never read back.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

DONE = ".complete"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))


def digest(obj: Any, length: int = 16) -> str:
    """Short SHA-256 of a JSON-serialisable object (keys sorted)."""
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()[:length]


def _hash_files(files: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def library_fingerprint() -> str:
    """Hash of the stigbench sources (library, built-in detectors): a code change invalidates stages."""
    detectors = importlib.util.find_spec("stigbench.detectors")
    roots = {Path(__file__).resolve().parents[1]}
    if detectors is not None and detectors.origin:
        roots.add(Path(detectors.origin).parent)
    return _hash_files(f for root in roots for f in root.rglob("*.py"))


def code_fingerprint(obj: Any) -> str:
    """Library fingerprint plus the source file defining ``obj`` (plug-ins live outside the library)."""
    try:
        source = Path(inspect.getsourcefile(obj) or "")
    except TypeError:
        source = Path()
    extra = _hash_files([source]) if source.is_file() else ""
    return f"{library_fingerprint()}{extra}"


def files_fingerprint(paths: Iterable[str]) -> str:
    """Identity of a set of image files: path, size and modification time of each."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class StageStore:
    """Folders of completed stages under ``root``; with ``root=None`` nothing is kept between runs
    (stages go to a temporary folder removed by :meth:`close`)."""

    def __init__(self, root: str | Path | None) -> None:
        self.persistent = root is not None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="stigbench-stages-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits: list[str] = []
        self.misses: list[str] = []

    def key(self, kind: str, label: str, payload: dict[str, Any]) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", label)[:60]
        return f"{kind}/{safe}-{digest(payload)}"

    def path(self, key: str) -> Path:
        return self.root / key

    def done(self, key: str) -> bool:
        return (self.path(key) / DONE).is_file()

    def get_or_make(self, key: str, make: Callable[[Path], Any], payload: dict[str, Any] | None = None) -> Path:
        """The folder of stage ``key``, running ``make(folder)`` first if it is not complete yet."""
        final = self.path(key)
        if self.done(key):
            self.hits.append(key)
            return final
        self.misses.append(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
        try:
            make(tmp)
            if payload is not None:
                (tmp / "stage.json").write_text(_canonical(payload), encoding="utf-8")
            (tmp / DONE).write_text("", encoding="utf-8")
            if final.exists():  # an incomplete leftover of an interrupted run
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def close(self) -> None:
        if not self.persistent:
            shutil.rmtree(self.root, ignore_errors=True)
