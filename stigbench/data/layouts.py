"""Named dataset layouts: the folder trees of published deepfake test sets, one dataset per generator.

A spec (or ``bench.py run/grid --layout NAME --root DIR``) names a layout instead of real and fake
folders; :func:`find_generators` walks ``root`` and finds the generators, and :func:`generator_specs`
turns each into an ordinary :class:`~stigbench.data.specs.DatasetSpec` named ``<spec>-<generator>``
(``forensynths-stylegan``; a nested generator path is joined with ``-``). ``subset`` keeps the
generators whose path (``diffusion_datasets/guided``), dashed name (``diffusion_datasets-guided``) or
last folder (``guided``) matches one of its fnmatch patterns.

The layouts and the trees they expect (``{...}`` one folder per value, ``[...]`` optional):

``forensynths`` (the CNNDetection test set of Wang et al. 2020)::

    ROOT/{generator}/[{category}/]{0_real,1_fake}/

  A generator's dataset is all its categories (``stylegan/bedroom``, ``stylegan/car``, ...).

``genimage`` (GenImage, Zhu et al. 2023)::

    ROOT/{generator}/{subfolder}/{train,val}/{nature,ai}/

  GenImage's own split is kept: its ``train`` images form our train and val parts (by the spec's
  fractions, renormalised), its ``val`` images our test part.

``ufd`` (UniversalFakeDetect, Ojha et al. 2023)::

    ROOT/{generator}/[{category}/]{0_real,1_fake}/      as forensynths
    ROOT/diffusion_datasets/{laion,imagenet}/0_real/    reals shared by the diffusion generators
    ROOT/diffusion_datasets/{generator}/1_fake/         guided, ldm_200, glide_100_27, dalle, ...

  Following UFD's ``dataset_paths.py``, ``guided`` (ADM, trained on ImageNet) is paired with
  ``imagenet/0_real`` and every other diffusion generator with ``laion/0_real``; a diffusion generator
  folder with a ``0_real/`` of its own uses that instead.

``synthbuster`` (Synthbuster, Bammey 2023)::

    ROOT/{generator}/*.png        fakes only (dalle2, midjourney-v5, stable-diffusion-xl, ...)
    REAL_ROOT/**/*                the RAISE-1k reals (``real_root`` / ``--real-root``), shared

``folders`` (plain folders)::

    ROOT/{real,fake}/  or  ROOT/{0_real,1_fake}/   one generator (named after ROOT)
    ROOT/{name}/.../{real,fake}/                    or one generator per folder holding the pair

Reals shared by several generators (``ufd``'s diffusion part, ``synthbuster``) are split once per
real folder, by a seeded hash of each file's path relative to that folder, so no real image is in one
generator's training part and another's test part (:func:`stigbench.data.split.make_split`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stigbench.data.specs import DatasetError, DatasetSpec

CLASS_PAIRS = (("0_real", "1_fake"), ("real", "fake"))


@dataclass(frozen=True)
class Generator:
    """One generator found under a layout root: the folders of its images.

    ``test_real``/``test_fake`` hold the source's own test images (genimage's ``val``); ``real_root``
    is the folder of reals shared with other generators (their split is per file, by hash)."""

    name: str  # path relative to the root, '/'-separated
    real: tuple[Path, ...]
    fake: tuple[Path, ...]
    test_real: tuple[Path, ...] = ()
    test_fake: tuple[Path, ...] = ()
    real_root: Path | None = None
    error: str = ""  # why this generator cannot be used (raised when it is selected)

    @property
    def safe_name(self) -> str:
        return folder_safe(self.name)


@dataclass(frozen=True)
class Layout:
    name: str
    tree: str  # the expected folder tree, shown in every error
    find: Callable[[Path, Path | None], list[Generator]]
    needs_real_root: bool = False

    def error(self, problem: str) -> DatasetError:
        return DatasetError(f"{problem}\nlayout {self.name!r} expects:\n{self.tree}")


def folder_safe(name: str) -> str:
    """``diffusion_datasets/guided`` -> ``diffusion_datasets-guided`` (valid in a dataset name)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name.strip("/").replace("/", "-")).lstrip("._-")
    return safe or "root"


def _dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _has_files(folder: Path) -> bool:
    return any(f.is_file() and not f.name.startswith(".") for f in folder.rglob("*"))


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _class_pairs(folder: Path, layout: Layout, root: Path,
                 pairs: Sequence[tuple[str, str]] = CLASS_PAIRS[:1]) -> list[tuple[Path, Path]]:
    """Every (real, fake) folder pair at or under ``folder`` (not looking inside class folders)."""
    names = {n for pair in pairs for n in pair}
    here = {p.name: p for p in _dirs(folder)}
    found: list[tuple[Path, Path]] = []
    for real, fake in pairs:
        if real in here and fake in here:
            found.append((here[real], here[fake]))
        elif real in here or fake in here:
            missing, present = (fake, real) if real in here else (real, fake)
            what = "no fakes" if missing == fake else "no reals"
            raise layout.error(f"{_rel(folder, root) or '.'} has {present}/ but no {missing}/ ({what}) under {root}")
    for sub in here.values():
        if sub.name not in names:
            found.extend(_class_pairs(sub, layout, root, pairs))
    return found


def _pair_generator(name: str, pairs: list[tuple[Path, Path]]) -> Generator:
    return Generator(name, tuple(r for r, _ in pairs), tuple(f for _, f in pairs))


# -- the layouts -------------------------------------------------------------------------------
def _find_forensynths(root: Path, real_root: Path | None, layout: Layout | None = None,
                      skip: Iterable[str] = ()) -> list[Generator]:
    layout = layout or LAYOUTS["forensynths"]
    out = []
    for gen in _dirs(root):
        if gen.name in skip:
            continue
        if gen.name in {n for pair in CLASS_PAIRS for n in pair}:
            raise layout.error(f"{root} holds {gen.name}/ directly; ROOT must hold one folder per generator")
        try:
            pairs = _class_pairs(gen, layout, root)
            if not pairs:
                raise layout.error(f"generator {gen.name}: no 0_real/ + 1_fake/ folders under {gen}")
        except DatasetError as exc:
            out.append(Generator(gen.name, (), (), error=str(exc)))
            continue
        out.append(_pair_generator(gen.name, pairs))
    return out


def _broken(name: str, exc: DatasetError) -> Generator:
    return Generator(name, (), (), error=str(exc))


_UFD_DIFFUSION = "diffusion_datasets"
_UFD_REAL_POOLS = ("laion", "imagenet")
_UFD_IMAGENET_GENERATORS = ("guided",)


def _find_ufd(root: Path, real_root: Path | None) -> list[Generator]:
    layout = LAYOUTS["ufd"]
    out = _find_forensynths(root, real_root, layout, skip=(_UFD_DIFFUSION,))
    diff = root / _UFD_DIFFUSION
    if not diff.is_dir():
        return out
    pools = {p: diff / p / "0_real" for p in _UFD_REAL_POOLS if (diff / p / "0_real").is_dir()}
    for gen in _dirs(diff):
        own_real, fake = gen / "0_real", gen / "1_fake"
        name = f"{_UFD_DIFFUSION}/{gen.name}"
        if not fake.is_dir():
            if gen.name in _UFD_REAL_POOLS and own_real.is_dir():
                continue
            out.append(_broken(name, layout.error(f"{name} has no 1_fake/ (no fakes) under {root}")))
            continue
        if own_real.is_dir():
            out.append(Generator(name, (own_real,), (fake,)))
            continue
        pool = "imagenet" if gen.name in _UFD_IMAGENET_GENERATORS else "laion"
        if pool not in pools:
            out.append(_broken(name, layout.error(f"{name} has no 0_real/ of its own and {_UFD_DIFFUSION}/{pool}/"
                                                  f"0_real/ (its shared reals) is missing under {root}")))
            continue
        out.append(Generator(name, (pools[pool],), (fake,), real_root=pools[pool]))
    return out


def _find_genimage(root: Path, real_root: Path | None) -> list[Generator]:
    layout = LAYOUTS["genimage"]
    out = []
    for gen in _dirs(root):
        subs = [s for s in _dirs(gen) if (s / "train").is_dir() or (s / "val").is_dir()]
        if not subs:
            out.append(_broken(gen.name, layout.error(
                f"generator {gen.name}: no {{subfolder}}/train/ or {{subfolder}}/val/ under {gen}")))
            continue
        parts: dict[str, list[Path]] = {"train/nature": [], "train/ai": [], "val/nature": [], "val/ai": []}
        missing = [sub / key for sub in subs for key in parts if not (sub / key).is_dir()]
        if missing:
            what = "no fakes" if any(m.name == "ai" for m in missing) else "no reals"
            out.append(_broken(gen.name, layout.error(
                f"generator {gen.name}: {', '.join(_rel(m, root) + '/' for m in missing)} missing ({what})")))
            continue
        for sub in subs:
            for key, found in parts.items():
                found.append(sub / key)
        out.append(Generator(gen.name, tuple(parts["train/nature"]), tuple(parts["train/ai"]),
                             tuple(parts["val/nature"]), tuple(parts["val/ai"])))
    return out


def _find_synthbuster(root: Path, real_root: Path | None) -> list[Generator]:
    layout = LAYOUTS["synthbuster"]
    if real_root is None:
        raise layout.error("synthbuster has fakes only: give the RAISE reals with real_root / --real-root")
    if not real_root.is_dir():
        raise layout.error(f"real_root not found: {real_root}")
    if not _has_files(real_root):
        raise layout.error(f"real_root {real_root} holds no files")
    out = []
    for gen in _dirs(root):
        if gen.resolve() == real_root.resolve():
            continue
        if not _has_files(gen):
            out.append(_broken(gen.name, layout.error(f"generator {gen.name}: no images (no fakes) in {gen}")))
            continue
        out.append(Generator(gen.name, (real_root,), (gen,), real_root=real_root))
    return out


def _find_folders(root: Path, real_root: Path | None) -> list[Generator]:
    layout = LAYOUTS["folders"]
    pairs = _class_pairs(root, layout, root, CLASS_PAIRS)
    by_parent: dict[Path, list[tuple[Path, Path]]] = {}
    for real, fake in pairs:
        by_parent.setdefault(real.parent, []).append((real, fake))
    return [_pair_generator(_rel(parent, root) if parent != root else root.name, found)
            for parent, found in sorted(by_parent.items())]


LAYOUTS: dict[str, Layout] = {
    "forensynths": Layout("forensynths", "  ROOT/{generator}/[{category}/]{0_real,1_fake}/", _find_forensynths),
    "genimage": Layout("genimage", "  ROOT/{generator}/{subfolder}/{train,val}/{nature,ai}/", _find_genimage),
    "ufd": Layout("ufd", "  ROOT/{generator}/[{category}/]{0_real,1_fake}/\n"
                         "  ROOT/diffusion_datasets/{laion,imagenet}/0_real/\n"
                         "  ROOT/diffusion_datasets/{generator}/1_fake/", _find_ufd),
    "synthbuster": Layout("synthbuster", "  ROOT/{generator}/*.png   (fakes only)\n"
                                         "  REAL_ROOT/**/*           (RAISE reals, --real-root)",
                          _find_synthbuster, needs_real_root=True),
    "folders": Layout("folders", "  ROOT/{real,fake}/ or ROOT/{0_real,1_fake}/\n"
                                 "  or ROOT/{name}/.../{real,fake}/ (one generator per folder holding the pair)",
                      _find_folders),
}


def get_layout(name: str) -> Layout:
    if name not in LAYOUTS:
        trees = "\n".join(f"{n}:\n{lay.tree}" for n, lay in LAYOUTS.items())
        raise DatasetError(f"unknown layout {name!r}; known layouts and the trees they expect:\n{trees}")
    return LAYOUTS[name]


def _path(text: str | Path, base: Path | None = None) -> Path:
    p = Path(os.path.expandvars(os.path.expanduser(str(text))))
    if not p.is_absolute() and base is not None:
        p = base / p
    return p.resolve()


def _matches(gen: Generator, pattern: str) -> bool:
    names = (gen.name, gen.safe_name, gen.name.rsplit("/", 1)[-1])
    return any(fnmatch.fnmatchcase(n, pattern) for n in names)


def find_generators(layout: str, root: str | Path, real_root: str | Path | None = None,
                    subset: Iterable[str] = (), strict: bool = True) -> list[Generator]:
    """The generators of ``layout`` under ``root`` (those matching ``subset``, if given). A selected
    generator that cannot be used (no fakes, a class folder without its pair) raises its error when
    ``strict``; otherwise it is returned with ``error`` set (a grid records it as a failed cell)."""
    lay = get_layout(layout)
    root_p = _path(root)
    if not root_p.is_dir():
        raise lay.error(f"layout root not found: {root_p}")
    if real_root and not lay.needs_real_root:
        raise lay.error(f"real_root is only for layouts with fakes only (synthbuster), not {layout!r}")
    gens = lay.find(root_p, _path(real_root) if real_root else None)
    if not gens:
        raise lay.error(f"no generators found under {root_p}")
    patterns = [p.strip() for p in subset if p.strip()]
    if patterns:
        unmatched = [p for p in patterns if not any(_matches(g, p) for g in gens)]
        if unmatched:
            raise DatasetError(f"subset {', '.join(unmatched)} matches no generator of layout {layout!r} under "
                               f"{root_p}; generators found: {', '.join(g.name for g in gens)}")
        gens = [g for g in gens if any(_matches(g, p) for p in patterns)]
    broken = [g for g in gens if g.error]
    if strict and broken:
        raise DatasetError("\n".join(g.error for g in broken[:1]) + (
            f"\n(also unusable: {', '.join(g.name for g in broken[1:])})" if len(broken) > 1 else ""))
    return gens


def escape(generator: str) -> str:
    """An fnmatch pattern matching exactly ``generator`` (for a subset of one)."""
    return glob.escape(generator)


def generator_specs(spec: DatasetSpec, strict: bool = True) -> list[DatasetSpec]:
    """One resolved spec per generator of a layout spec, named ``<spec name>-<generator>``.

    Resolved specs list their folders as absolute ``real``/``fake`` entries (and ``test_real``/
    ``test_fake`` for a source's own test split, ``real_root`` for shared reals), so loading them
    needs no layout."""
    if not spec.layout:
        raise DatasetError(f"dataset {spec.name} has no layout")
    if spec.generator:
        return [spec]
    root = spec.base_dir()
    real_root = _path(spec.real_root, Path(spec.spec_path).parent if spec.spec_path else None) if spec.real_root else None
    out = []
    for gen in find_generators(spec.layout, root, real_root, spec.subset, strict):
        out.append(dataclasses.replace(
            spec, name=f"{spec.name}-{gen.safe_name}", root=str(_path(root)), generator=gen.name, subset=(),
            real=tuple(map(str, gen.real)), fake=tuple(map(str, gen.fake)),
            test_real=tuple(map(str, gen.test_real)), test_fake=tuple(map(str, gen.test_fake)),
            real_root=str(gen.real_root) if gen.real_root else ""))
    return out


def select_generator(spec: DatasetSpec) -> DatasetSpec:
    """The one generator's spec of a layout spec; an error listing the generators when not exactly one."""
    specs = generator_specs(spec)
    if len(specs) != 1:
        names = ", ".join(s.generator for s in specs)
        raise DatasetError(f"layout {spec.layout!r} under {spec.base_dir()}: {len(specs)} generators match "
                           f"({names}); a run needs exactly one: pick it with --subset (or the spec's "
                           f"subset), or run them all with `bench.py grid`")
    return specs[0]


def layout_spec(layout: str, root: str | Path, subset: Iterable[str] = (), real_root: str | Path | None = None,
                **kwargs: object) -> DatasetSpec:
    """An unresolved layout spec from the command line, named after the layout."""
    get_layout(layout)
    return DatasetSpec(name=layout, layout=layout, root=str(_path(root)), subset=tuple(subset),
                       real_root=str(_path(real_root)) if real_root else "",
                       description=f"{layout} layout under {root}", **kwargs)  # type: ignore[arg-type]


__all__ = ["LAYOUTS", "Generator", "Layout", "escape", "find_generators", "folder_safe", "generator_specs",
           "get_layout", "layout_spec", "select_generator"]
