"""Dataset specs (TOML files), their discovery, and loading a dataset into checked image sets.

A spec names the real and fake images (folders or globs, relative to the spec file or to ``root``),
the image size, the split fractions and where the data came from. Built-in specs ship in
``stigbench.datasets``; users add folders of specs with ``--spec-dir`` or ``STIGBENCH_DATASETS``
(``os.pathsep``-separated). A spec may name a *builder* that creates its images on first use in the
user cache (the embedded ``demo`` dataset is built this way).
"""

from __future__ import annotations

import glob
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from stigbench.core.imageset import IMAGE_SUFFIXES, FileImageSet, Skipped, listable, scan_images
from stigbench.core.io import ENV_CACHE, cache_dir  # noqa: F401  (re-exported: where callers have found them)
from stigbench.core.registry import Registry

ENV_SPEC_DIRS = "STIGBENCH_DATASETS"
DEFAULT_GROUP_PATTERN = r"^(?P<group>.+)$"  # every file its own group
# Layouts recognised under a dataset root when the spec gives no explicit real/fake entries.
LAYOUTS = (("real", "fake"), ("0_real", "1_fake"))
MAX_DEFAULT_SIZE = 256


class DatasetError(ValueError):
    """A dataset that cannot be used as specified (missing folders, too few images, bad spec)."""


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.6
    val: float = 0.2
    test: float = 0.2

    def __post_init__(self) -> None:
        parts = (self.train, self.val, self.test)
        if any(p <= 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
            raise DatasetError(f"split fractions must be positive and sum to 1, got {parts}")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset. Paths are resolved against ``root`` (default: the spec file's folder)."""

    name: str
    real: tuple[str, ...] = ()
    fake: tuple[str, ...] = ()
    root: str = ""
    size: int | None = None
    resize: bool = False
    grayscale: str = "skip"
    split: SplitFractions = field(default_factory=SplitFractions)
    group_pattern: str = DEFAULT_GROUP_PATTERN
    max_per_class: int | None = None
    builder: str = ""
    synthetic: bool = False
    description: str = ""
    source: str = ""
    licence: str = ""
    # A named folder layout (stigbench.data.layouts) instead of real/fake entries; a spec resolved to one
    # of its generators lists that generator's folders as real/fake (+ test_real/test_fake) entries.
    layout: str = ""
    subset: tuple[str, ...] = ()
    real_root: str = ""
    generator: str = ""
    test_real: tuple[str, ...] = ()
    test_fake: tuple[str, ...] = ()
    spec_path: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise DatasetError(f"invalid dataset name {self.name!r}: letters, digits, '_', '.', '-' only")
        if self.size is not None and (self.size < 8 or self.size > 4096):
            raise DatasetError(f"dataset {self.name}: size {self.size} out of range [8, 4096]")
        if self.grayscale not in ("skip", "convert"):
            raise DatasetError(f"dataset {self.name}: grayscale must be 'skip' or 'convert'")
        try:
            pattern = re.compile(self.group_pattern)
        except re.error as exc:
            raise DatasetError(f"dataset {self.name}: bad group_pattern: {exc}") from None
        if "group" not in pattern.groupindex:
            raise DatasetError(f"dataset {self.name}: group_pattern needs a named group (?P<group>...)")
        if self.layout and not self.generator and (self.real or self.fake or self.test_real or self.test_fake):
            raise DatasetError(f"dataset {self.name}: a layout spec finds its folders itself; drop real/fake")
        if not self.layout and (self.subset or self.real_root or self.generator):
            raise DatasetError(f"dataset {self.name}: subset/real_root/generator need a layout")
        if (self.test_real or self.test_fake) and not (self.test_real and self.test_fake):
            raise DatasetError(f"dataset {self.name}: give both 'test_real' and 'test_fake', or neither")

    def base_dir(self) -> Path:
        if self.builder and not self.root:
            return cache_dir() / "datasets" / self.name
        root = Path(os.path.expandvars(os.path.expanduser(self.root))) if self.root else Path()
        if not root.is_absolute() and self.spec_path:
            root = Path(self.spec_path).parent / root
        return root

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _LAYOUT_KEYS and not v:
                continue  # unset: a spec without a layout records exactly what it recorded before layouts
            out[f.name] = list(v) if isinstance(v, tuple) else (v.__dict__ if isinstance(v, SplitFractions) else v)
        return out


_SPEC_KEYS = {f.name for f in fields(DatasetSpec)} - {"spec_path"}
_LAYOUT_KEYS = frozenset({"layout", "subset", "real_root", "generator", "test_real", "test_fake"})


def parse_spec(data: dict[str, Any], spec_path: str = "") -> DatasetSpec:
    """Build a spec from a parsed TOML table; unknown keys are an error, not silently ignored."""
    unknown = set(data) - _SPEC_KEYS
    where = f" in {spec_path}" if spec_path else ""
    if unknown:
        raise DatasetError(f"unknown key(s) {sorted(unknown)}{where}; allowed: {sorted(_SPEC_KEYS)}")
    if "name" not in data:
        raise DatasetError(f"dataset spec{where} has no 'name'")
    kw = dict(data)
    for key in ("real", "fake", "subset", "test_real", "test_fake"):
        if key in kw:
            v = kw[key]
            kw[key] = (v,) if isinstance(v, str) else tuple(v)
    if "split" in kw:
        split = kw["split"]
        bad = set(split) - {"train", "val", "test"}
        if bad:
            raise DatasetError(f"unknown split key(s) {sorted(bad)}{where}")
        kw["split"] = SplitFractions(**split)
    return DatasetSpec(**kw, spec_path=spec_path)


def load_spec_file(path: str | Path) -> DatasetSpec:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DatasetError(f"cannot parse {path}: {exc}") from None
    return parse_spec(data, str(path))


# -- registry of datasets and of builders ------------------------------------------------------
DATASETS: Registry[DatasetSpec] = Registry("dataset")
BUILDERS: Registry[Callable[..., Any]] = Registry("dataset builder")
_scanned_dirs: set[str] = set()
# Lazy entries: the demo builders import torch only when a demo is actually built.
BUILDERS.add("demo", "stigbench.data.demo:build_demo", source="stigbench.data.demo")
BUILDERS.add("demo-gan", "stigbench.data.demo_families:build_demo_gan", source="stigbench.data.demo_families")
BUILDERS.add("demo-diffusion", "stigbench.data.demo_families:build_demo_diffusion", source="stigbench.data.demo_families")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register a spec object (spec files found in spec folders are registered automatically)."""
    DATASETS.add(spec.name, spec, meta=spec, source=spec.spec_path or "python")
    return spec


def register_builder(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a function ``build(root: Path, *, seed: int, size: int, progress: bool)`` that
    creates ``root/real`` and ``root/fake`` for a spec whose ``builder`` names it."""
    return BUILDERS.register(name)


def add_spec_dir(path: str | Path) -> list[str]:
    """Register every ``*.toml`` spec in ``path``; returns the names added. Re-adding is a no-op."""
    folder = Path(path).resolve()
    key = str(folder)
    if key in _scanned_dirs:
        return []
    if not folder.is_dir():
        raise DatasetError(f"dataset spec folder not found: {folder}")
    _scanned_dirs.add(key)
    names = []
    for file in sorted(folder.glob("*.toml")):
        names.append(register_dataset(load_spec_file(file)).name)
    return names


def datasets(extra_dirs: Iterable[str | Path] = ()) -> Registry[DatasetSpec]:
    """The dataset registry with the built-in specs, ``STIGBENCH_DATASETS`` and ``extra_dirs`` loaded."""
    builtin = resources.files("stigbench.datasets")
    add_spec_dir(Path(str(builtin)))
    env = os.environ.get(ENV_SPEC_DIRS, "")
    for d in [*filter(None, env.split(os.pathsep)), *extra_dirs]:
        add_spec_dir(d)
    return DATASETS


# -- loading -----------------------------------------------------------------------------------
@dataclass
class Dataset:
    """A loaded dataset: checked real and fake image sets, their groups, and what was skipped."""

    spec: DatasetSpec
    size: int
    real: FileImageSet
    fake: FileImageSet
    real_groups: np.ndarray
    fake_groups: np.ndarray
    skipped: list[Skipped]
    # Per image "test" when it comes from the spec's test_real/test_fake (a source's own test split),
    # else ""; None for a spec without them.
    real_fixed: np.ndarray | None = None
    fake_fixed: np.ndarray | None = None


def _expand(entries: Iterable[str], base: Path) -> list[Path]:
    files: list[Path] = []
    for entry in entries:
        p = Path(os.path.expandvars(os.path.expanduser(entry)))
        if not p.is_absolute():
            p = base / p
        if any(ch in entry for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
            files.extend(m for m in matches if listable(m))
        elif p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if listable(f) and not f.name.startswith(".")))
        elif p.is_file():
            files.append(p)
        else:
            raise DatasetError(f"not found: {p}")
    return files


def _entries(spec: DatasetSpec, base: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if spec.real and spec.fake:
        return spec.real, spec.fake
    if spec.real or spec.fake:
        raise DatasetError(f"dataset {spec.name}: give both 'real' and 'fake', or neither")
    for real, fake in LAYOUTS:
        if (base / real).is_dir() and (base / fake).is_dir():
            return (real,), (fake,)
    raise DatasetError(
        f"dataset {spec.name}: {base} has neither real/ + fake/ nor 0_real/ + 1_fake/ folders"
    )


def groups_of(paths: Iterable[Path], pattern: str, prefix: str) -> np.ndarray:
    """Group label per file from ``pattern`` matched on the file stem (the source picture)."""
    rx = re.compile(pattern)
    out = []
    for p in paths:
        m = rx.match(p.stem)
        # A name the pattern does not cover is its own group: safe (never merges unrelated files).
        out.append(f"{prefix}:{m.group('group') if m else p.stem}")
    return np.asarray(out, dtype=object)


def default_size(min_side: int) -> int:
    """Largest power of two not above the smallest image side, capped at 256."""
    if min_side < 8:
        raise DatasetError(f"smallest image side is {min_side} px; need at least 8")
    return min(MAX_DEFAULT_SIZE, 1 << (int(min_side).bit_length() - 1))


def input_images(path: str | Path, size: int | None = None, resize: bool = False, grayscale: str = "skip",
                 progress: bool = True) -> tuple[FileImageSet, list[Skipped]]:
    """The usable images at ``path`` (a file, or every non-hidden file under a folder, sorted), checked
    as a dataset's are; ``size`` defaults to :func:`default_size` of the smallest side. For applying a
    saved refiner or detector to images outside any dataset spec."""
    src = Path(path)
    if src.is_file():
        files = [src]
    elif src.is_dir():
        files = sorted(p for p in src.rglob("*")
                       if listable(p) and not any(part.startswith(".") for part in p.relative_to(src).parts))
        if not files:
            raise ValueError(f"no files in {src}")
    else:
        raise FileNotFoundError(f"input not found: {src}")
    good, skipped, min_side = scan_images(files, size, resize, grayscale,
                                          progress="checking images" if progress else None)
    if not good:
        raise ValueError(f"none of the {len(files)} file(s) at {src} is usable: "
                         + "; ".join(sorted({s.reason for s in skipped})[:3]))
    return FileImageSet(good, size or default_size(min_side), resize, grayscale), skipped


def build_if_needed(spec: DatasetSpec, seed: int = 0, progress: bool = True) -> Path:
    """For a built dataset, let its builder create (or validate) the images in the cache; return the
    data root. Builders are idempotent: they return at once when a matching build exists."""
    base = spec.base_dir()
    if spec.builder:
        build = BUILDERS.get(spec.builder)
        build(base, seed=seed, size=spec.size, progress=progress)
    return base


def load_dataset(spec: DatasetSpec, size: int | None = None, progress: bool = True) -> Dataset:
    """Resolve files, decode each once to check it, and return the usable images.

    Bad files are skipped with a reason (see :func:`stigbench.core.imageset.scan_images`); an empty or
    missing folder is an error. ``size`` overrides the spec's size.
    """
    if spec.layout and not spec.generator:
        raise DatasetError(f"dataset {spec.name}: layout {spec.layout!r} holds several generators; resolve it to "
                           "one first (stigbench.data.layouts.select_generator / generator_specs)")
    base = build_if_needed(spec, progress=progress)
    if not base.is_dir():
        raise DatasetError(f"dataset {spec.name}: data folder not found: {base}")
    real_entries, fake_entries = _entries(spec, base)
    size = size or spec.size
    found = {"real": _expand(real_entries, base), "fake": _expand(fake_entries, base)}
    test_files: set[Path] = set()
    if spec.test_real:
        for label, entries in (("real", spec.test_real), ("fake", spec.test_fake)):
            extra = _expand(entries, base)
            test_files.update(extra)
            found[label] = found[label] + extra
    for label, files in found.items():
        if spec.max_per_class is not None and len(files) > spec.max_per_class:
            # Deterministic cap: sorted order, evenly spaced, so the cap does not depend on a seed.
            keep = np.linspace(0, len(files) - 1, spec.max_per_class).round().astype(int)
            found[label] = [files[i] for i in keep]
        if not found[label]:
            raise DatasetError(f"dataset {spec.name}: no {label} files in {', '.join(real_entries if label == 'real' else fake_entries)} (under {base})")
    skipped: list[Skipped] = []
    checked: dict[str, list[Path]] = {}
    min_side = 0
    for label, files in found.items():
        good, bad, side = scan_images(files, size, spec.resize, spec.grayscale,
                                      progress=f"checking {label} images" if progress else None)
        checked[label] = good
        skipped.extend(bad)
        if good:
            min_side = side if min_side == 0 else min(min_side, side)
        if not good:
            reasons = sorted({s.reason for s in bad})[:3]
            raise DatasetError(f"dataset {spec.name}: none of the {len(files)} {label} files is usable ({'; '.join(reasons)})")
    if size is None:
        size = default_size(min_side)
    if spec.layout:
        return _layout_dataset(spec, size, checked, skipped, test_files, base)
    return Dataset(
        spec=spec,
        size=size,
        real=FileImageSet(checked["real"], size, spec.resize, spec.grayscale),
        fake=FileImageSet(checked["fake"], size, spec.resize, spec.grayscale),
        real_groups=groups_of(checked["real"], spec.group_pattern, "real"),
        fake_groups=groups_of(checked["fake"], spec.group_pattern, "fake"),
        skipped=skipped,
    )


def _layout_groups(paths: Iterable[Path], pattern: str, prefix: str, root: Path) -> np.ndarray:
    """Groups of a layout dataset: the folder relative to ``root`` plus the stem's group, so equal file
    names in two categories stay apart and a shared real's group does not depend on the generator."""
    rx = re.compile(pattern)
    out = []
    for p in paths:
        m = rx.match(p.stem)
        try:
            folder = p.parent.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            folder = p.parent.resolve().as_posix()
        out.append(f"{prefix}:{folder}/{m.group('group') if m else p.stem}")
    return np.asarray(out, dtype=object)


def _layout_dataset(spec: DatasetSpec, size: int, checked: dict[str, list[Path]], skipped: list[Skipped],
                    test_files: set[Path], base: Path) -> Dataset:
    real_root = Path(spec.real_root) if spec.real_root else base
    fixed = {label: (np.asarray(["test" if f in test_files else "" for f in files], dtype=object)
                     if spec.test_real else None) for label, files in checked.items()}
    return Dataset(
        spec=spec,
        size=size,
        real=FileImageSet(checked["real"], size, spec.resize, spec.grayscale),
        fake=FileImageSet(checked["fake"], size, spec.resize, spec.grayscale),
        real_groups=_layout_groups(checked["real"], spec.group_pattern, "real", real_root),
        fake_groups=_layout_groups(checked["fake"], spec.group_pattern, "fake", base),
        skipped=skipped,
        real_fixed=fixed["real"],
        fake_fixed=fixed["fake"],
    )


#: Folder names that say which class a folder holds, or nothing at all, but not which data it is.
GENERIC_FOLDER_NAMES = frozenset({
    "real", "fake", "reals", "fakes", "0_real", "1_fake", "nature", "ai", "images", "imgs", "img", "data",
    "train", "val", "test", "generated", "synthetic", "original", "originals", "refined"})


def _telling(path: Path) -> str:
    """The name of ``path`` or of its nearest parent whose name is not generic; ``""`` when none is."""
    for p in (path, *path.parents):
        if p.name and p.name.lower() not in GENERIC_FOLDER_NAMES:
            return p.name
    return ""


def folder_dataset_name(real: str | Path, fake: str | Path) -> str:
    """The name of an ad-hoc dataset, read from its folders (``--real R --fake F`` without ``--name``).

    Generic folder names (``real``, ``1_fake``, ``images`` ...) are skipped upwards: a parent both
    folders share names the dataset (``progan/0_real`` + ``progan/1_fake`` -> ``progan``); a fake folder
    with a name of its own beside a generic real one names it alone (``d/real`` + ``d/sd15`` -> ``sd15``);
    otherwise ``<real>-vs-<fake>`` (``ffhq`` + ``stylegan2`` -> ``ffhq-vs-stylegan2``). Only folders named
    generically up to the root give ``real-vs-fake``-like names."""
    real_p, fake_p = Path(real).resolve(), Path(fake).resolve()
    r, f = _telling(real_p), _telling(fake_p)
    shared = _telling(Path(os.path.commonpath([real_p, fake_p])))
    if r and r == f:
        name = r
    elif f and f != shared and (not r or r == shared):
        name = f
    elif r or f:
        name = f"{r if r and r != shared else real_p.name}-vs-{f if f and f != shared else fake_p.name}"
    else:
        name = f"{real_p.name}-vs-{fake_p.name}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("._-")[:80] or "adhoc"


def adhoc_spec(real: str | Path, fake: str | Path, size: int | None = None, resize: bool = False,
               name: str | None = None, group_pattern: str = DEFAULT_GROUP_PATTERN) -> DatasetSpec:
    """A spec for ``bench.py run --real DIR --fake DIR [--name NAME]`` (absolute paths, no spec file);
    without ``name`` it is named after the folders (:func:`folder_dataset_name`)."""
    real_p, fake_p = Path(real).resolve(), Path(fake).resolve()
    for p in (real_p, fake_p):
        if not p.exists():
            raise DatasetError(f"not found: {p}")
    if name is None:
        name = folder_dataset_name(real_p, fake_p)
    return DatasetSpec(name=name, real=(str(real_p),), fake=(str(fake_p),), size=size, resize=resize,
                       group_pattern=group_pattern, description="ad-hoc dataset from the command line")


__all__ = [
    "IMAGE_SUFFIXES", "Dataset", "DatasetError", "DatasetSpec", "SplitFractions", "adhoc_spec",
    "add_spec_dir", "build_if_needed", "cache_dir", "datasets", "default_size", "folder_dataset_name", "load_dataset",
    "load_spec_file", "parse_spec", "register_builder", "register_dataset",
]
