"""The registries of stigbench and their decorators.

``@register_detector("name", family=..., domain=..., paper=...)`` and ``@register_refiner(...)`` are
the only ways in; third-party packages can also expose modules through the ``stigbench.detectors`` /
``stigbench.refiners`` entry-point groups, and one-off files load with :func:`load_plugin_file`.
Built-in entries are imported lazily on first use, so ``import stigbench`` stays cheap.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar
from collections.abc import Callable

from stigbench.contracts import DETECTOR_METHODS, REFINER_METHODS
from stigbench.registry import Registry

T = TypeVar("T")

FAMILIES = ("frequency", "cnn", "other")
DOMAINS = ("spectrum", "rgb", "residual", "dct", "other")


@dataclass(frozen=True)
class DetectorInfo:
    """What ``bench.py list detectors`` shows, declared in the detector's decorator."""

    family: str
    domain: str
    paper: str
    default: bool = True  # part of the default set of ``bench.py run``
    description: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {self.domain!r}")
        if not self.paper:
            raise ValueError("every detector names its paper")


@dataclass(frozen=True)
class RefinerInfo:
    """Metadata of a refiner (an attack on detectors)."""

    paper: str
    kind: str = "learned"  # learned | training-free
    description: str = ""


DETECTORS: Registry[Any] = Registry("detector", required_methods=DETECTOR_METHODS)
REFINERS: Registry[Any] = Registry("refiner", required_methods=REFINER_METHODS)


def register_detector(
    name: str, *, family: str, domain: str, paper: str, default: bool = True, description: str = ""
) -> Callable[[T], T]:
    """Class decorator: register a detector under ``name`` (see :class:`DetectorInfo`)."""
    return DETECTORS.register(name, DetectorInfo(family, domain, paper, default, description))


def register_refiner(name: str, *, paper: str, kind: str = "learned", description: str = "") -> Callable[[T], T]:
    """Class decorator: register a refiner under ``name`` (see :class:`RefinerInfo`)."""
    return REFINERS.register(name, RefinerInfo(paper, kind, description))


_loaded: set[str] = set()


def _import_package_modules(package: str) -> None:
    pkg = importlib.import_module(package)
    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{package}.{mod.name}")


def _load_entry_points(group: str) -> None:
    for ep in entry_points(group=group):
        ep.load()  # importing the module runs its decorators


def load_builtin(kind: str) -> None:
    """Import the built-in modules and entry-point plug-ins of ``kind`` once ("detectors"/"refiners")."""
    if kind in _loaded:
        return
    _loaded.add(kind)
    try:
        if kind == "detectors":
            _import_package_modules("stigbench.detectors")
        elif kind == "refiners":
            _import_package_modules("stigbench.refiners")
        else:
            raise ValueError(f"unknown plug-in kind {kind!r}")
        _load_entry_points(f"stigbench.{kind}")
    except BaseException:
        _loaded.discard(kind)
        raise


def detectors() -> Registry[Any]:
    """The detector registry with built-ins and entry-point plug-ins loaded."""
    load_builtin("detectors")
    return DETECTORS


def refiners() -> Registry[Any]:
    """The refiner registry with built-ins and entry-point plug-ins loaded."""
    load_builtin("refiners")
    return REFINERS


def load_plugin_file(path: str | Path) -> str:
    """Import a one-off plug-in file (e.g. ``my_detector.py``) so its decorators register it.

    The module gets a name derived from the file's absolute path, so the same file is imported once
    and two files with the same name do not clash. Returns the module name.
    """
    path = Path(path).resolve()
    if not path.is_file() or path.suffix != ".py":
        raise FileNotFoundError(f"plug-in file not found or not a .py file: {path}")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"stigbench_plugin_{path.stem}_{digest}"
    if name in sys.modules:
        return name
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - defensive
        raise ImportError(f"cannot import plug-in {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return name
