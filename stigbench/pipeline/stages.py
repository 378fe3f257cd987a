"""Stage cache: refiner fits, refined sets, detector fits and scores, keyed by what determines them.

A stage's key is a readable prefix plus a hash of its *payload* — the dataset fingerprint, the split,
the component's name and parameters, the seed, the device/precision and a fingerprint of the code —
so re-running with an extra perturbation or detector recomputes only what is new.

Life of a stage folder ``<root>/<kind>/<label>-<digest>``:

* work happens in ``.<name>.work`` beside it, a folder named by the key (not a random one), so a run
  killed half-way leaves its partial work where the next attempt looks: a *resumable* stage (STIG
  training, which checkpoints into it) continues from its last checkpoint; any other stage starts
  its work folder afresh;
* ``.<name>.lock`` (created with ``O_EXCL``) keeps concurrent runs of the same stage apart: the second
  waits, then finds the stage complete. A lock whose process is gone (same host, pid not alive) is
  stale and broken. Shared file systems: ``O_EXCL`` is atomic on local disks and NFSv3+, but a lock
  held by another host cannot be checked for liveness, so it is never broken automatically — if that
  host's run died, delete the ``.lock`` file by hand (the waiting run says which file);
* when complete, ``manifest.json`` records every file's size and SHA-256, ``.complete`` is written
  last and the work folder is renamed into place. A stage whose files are missing or fail their
  checksums is moved aside and recomputed; a half-written stage is never read back.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from stigbench.core.io import sha256_file
from stigbench.core.memory import release_free_memory

DONE = ".complete"
MANIFEST = "manifest.json"
OWNER = "owner.json"
TEMP_PREFIX = "stigbench-stages-"
log = logging.getLogger("stigbench")


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def process_owner() -> dict[str, Any]:
    """This process, as recorded in lock files and ``run.json``: pid, host and start time."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}


def owner_is_gone(owner: dict[str, Any]) -> bool:
    """True when ``owner`` (as written by this module) is a process of this host that no longer runs."""
    if owner.get("host") != socket.gethostname():
        return False
    pid = int(owner.get("pid", -1))
    if not _pid_alive(pid):
        return True
    # The pid may have been reused by a process started after the owner wrote its record.
    started = _process_start(pid)
    return started is not None and started > float(owner.get("started", float("inf"))) + 1


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (Unix time), from Linux's /proc; ``None`` elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        ticks = float(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the command name
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class StageLock:
    """An exclusive lock file; see the module docstring for staleness and shared file systems."""

    def __init__(self, path: Path, poll: float = 0.5) -> None:
        self.path = path
        self.poll = poll

    def __enter__(self) -> StageLock:
        told = False
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _read_owner(self.path)
                if owner is None:
                    # Being written this instant, or an empty file left by a crash between open and write.
                    if time.time() - self._mtime() > 60:
                        self._break()
                    time.sleep(self.poll)
                    continue
                if owner_is_gone(owner):
                    log.warning("breaking the stale lock %s (pid %s is gone)", self.path, owner.get("pid"))
                    self._break()
                    continue
                if not told:
                    log.info("waiting for %s: the stage is being computed by pid %s on %s (delete the file if "
                             "that run is dead)", self.path, owner.get("pid"), owner.get("host"))
                    told = True
                time.sleep(self.poll)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(process_owner(), f)
            return self

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return time.time()

    def _break(self) -> None:
        # Rename, not unlink: of two processes breaking the same stale lock only one rename succeeds.
        try:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.stale-{os.getpid()}"))
            self.path.with_name(f"{self.path.name}.stale-{os.getpid()}").unlink()
        except FileNotFoundError:
            pass

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def write_manifest(folder: Path) -> None:
    """Record the size and SHA-256 of every file under ``folder``."""
    files = {p.relative_to(folder).as_posix(): [p.stat().st_size, sha256_file(p)]
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in (MANIFEST, DONE)}
    (folder / MANIFEST).write_text(json.dumps(files, indent=0), encoding="utf-8")


def manifest_problem(folder: Path) -> str | None:
    """Why the files of a completed stage cannot be trusted, or ``None`` when they match the manifest."""
    if not (folder / MANIFEST).is_file():
        return f"no {MANIFEST}"
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except ValueError:
        return f"unreadable {MANIFEST}"
    for rel, (size, sha) in files.items():
        p = folder / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != size or sha256_file(p) != sha:
            return f"{rel} does not match its recorded checksum"
    return None


class StageStore:
    """Folders of completed stages under ``root``; with ``root=None`` nothing is kept between runs
    (stages go to a temporary folder removed by :meth:`close`, or by the next store if this process
    is killed)."""

    def __init__(self, root: str | Path | None) -> None:
        self.persistent = root is not None
        if root is None:
            _clean_orphaned_temp_roots()
            self.root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
            (self.root / OWNER).write_text(json.dumps(process_owner()), encoding="utf-8")
        else:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
        self.hits: list[str] = []
        self.misses: list[str] = []
        self.resumed: list[str] = []
        self._verified: set[str] = set()

    def key(self, kind: str, label: str, payload: dict[str, Any]) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", label)[:60]
        return f"{kind}/{safe}-{digest(payload)}"

    def path(self, key: str) -> Path:
        return self.root / key

    def work_path(self, key: str) -> Path:
        final = self.path(key)
        return final.with_name(f".{final.name}.work")

    def done(self, key: str) -> bool:
        return (self.path(key) / DONE).is_file()

    def _usable(self, key: str) -> bool:
        """Complete and intact (checksums are verified once per key and process)."""
        if not self.done(key):
            return False
        if key in self._verified:
            return True
        problem = manifest_problem(self.path(key))
        if problem is None:
            self._verified.add(key)
            return True
        log.warning("stage %s is damaged (%s): recomputing it", key, problem)
        aside = self.path(key).with_name(f".{self.path(key).name}.damaged-{os.getpid()}")
        os.replace(self.path(key), aside)
        shutil.rmtree(aside, ignore_errors=True)
        return False

    def get_or_make(self, key: str, make: Callable[[Path], Any], payload: dict[str, Any] | None = None,
                    resumable: bool = False) -> Path:
        """The folder of stage ``key``, running ``make(folder)`` first if it is not complete yet.

        ``resumable``: ``make`` continues from what an interrupted attempt left in its work folder
        (it must check what it finds there); otherwise the work folder starts empty."""
        final = self.path(key)
        if self._usable(key):
            self.hits.append(key)
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        self._clean_legacy_temp(final)
        with StageLock(final.with_name(f".{final.name}.lock")):
            if self._usable(key):  # completed by a concurrent run while this one waited
                self.hits.append(key)
                return final
            self.misses.append(key)
            work = self.work_path(key)
            if work.exists() and not resumable:
                shutil.rmtree(work)
            elif work.exists():
                self.resumed.append(key)
                log.info("stage %s: continuing the interrupted attempt in %s", key, work)
            work.mkdir(exist_ok=True)
            make(work)
            release_free_memory()  # what the stage freed leaves no resident holes (stigbench.core.memory)
            if payload is not None:
                (work / "stage.json").write_text(_canonical(payload), encoding="utf-8")
            write_manifest(work)
            (work / DONE).write_text("", encoding="utf-8")
            if final.exists():  # an incomplete leftover
                shutil.rmtree(final)
            os.replace(work, final)
            self._verified.add(key)
        return final

    @staticmethod
    def _clean_legacy_temp(final: Path) -> None:
        """Remove the random ``.<name>.tmp-*`` folders of stigbench 0.1 attempts (never resumable)."""
        for old in final.parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(old, ignore_errors=True)

    def close(self) -> None:
        if not self.persistent:
            shutil.rmtree(self.root, ignore_errors=True)


def _clean_orphaned_temp_roots() -> None:
    """Remove the temporary stage folders of ``--no-cache`` runs that were killed on this host."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        owner = _read_owner(folder / OWNER)
        if owner is not None and owner_is_gone(owner):
            shutil.rmtree(folder, ignore_errors=True)
