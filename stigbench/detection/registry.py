"""The detector registry: ``@register_detector("name", family=..., domain=..., paper=...)``.

Built-in detectors are the modules of ``stigbench.detectors`` (the repository's ``detectors/``);
third-party packages add theirs through the ``stigbench.detectors`` entry-point group, one-off files
through ``--detector-plugin`` (:func:`stigbench.core.plugins.load_plugin_file`). A detector needs
``fit`` and ``score``; ``save``/``load`` are optional (:func:`is_persistent`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from stigbench.core.contracts import DETECTOR_METHODS, DETECTOR_PERSISTENCE_METHODS, Detector
from stigbench.core.estimator import class_path, saved_class
from stigbench.core.plugins import builtin_loader, package_modules
from stigbench.core.registry import Registry

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


DETECTORS: Registry[type[Detector]] = Registry("detector", required_methods=DETECTOR_METHODS)
_load_builtin = builtin_loader(lambda: package_modules("stigbench.detectors"), "stigbench.detectors")


def register_detector(
    name: str, *, family: str, domain: str, paper: str, default: bool = True, description: str = ""
) -> Callable[[T], T]:
    """Class decorator: register a detector under ``name`` (see :class:`DetectorInfo`)."""
    return DETECTORS.register(name, DetectorInfo(family, domain, paper, default, description))  # type: ignore[return-value]


def detectors() -> Registry[type[Detector]]:
    """The detector registry with built-ins and entry-point plug-ins loaded."""
    _load_builtin()
    return DETECTORS


#: ``NAME@TAG`` in ``--detectors`` adds a variant of detector ``NAME`` with parameters of its own
#: (``--set NAME@TAG.PARAM=...``), e.g. ``wang2020@released`` beside ``wang2020``.
VARIANT_SEP = "@"
_TAG = re.compile(r"[A-Za-z0-9_-]+")


def split_variant(name: str) -> tuple[str, str]:
    """``"wang2020@released"`` -> ``("wang2020", "released")``; a plain name -> ``(name, "")``.
    Raises ``ValueError`` for an empty or odd tag (letters, digits, ``_`` and ``-`` only)."""
    base, sep, tag = name.partition(VARIANT_SEP)
    if sep and not _TAG.fullmatch(tag):
        raise ValueError(f"detector variant {name!r}: the tag after {VARIANT_SEP!r} takes letters, digits, '_' and "
                         f"'-' only (e.g. {base}{VARIANT_SEP}released)")
    return base, tag


def is_persistent(cls: Any) -> bool:
    """True when detector class ``cls`` can be saved and rebuilt: a callable ``save`` and a ``load``
    callable on the class itself (a class or static method), as in
    :class:`~stigbench.core.contracts.PersistentDetector`. An instance is judged by its class."""
    if not isinstance(cls, type):
        cls = type(cls)
    save, load = DETECTOR_PERSISTENCE_METHODS
    if not callable(getattr(cls, save, None)) or not callable(getattr(cls, load, None)):
        return False
    raw = inspect.getattr_static(cls, load)
    return isinstance(raw, (classmethod, staticmethod))


def load_detector(path: str | Path) -> Detector:
    """Rebuild a fitted detector from its saved folder (e.g. ``RUN/detectors/NAME``): ``params.json``
    names its class, mapped to today's module path when it was saved before modules moved, and the
    registered detector with that class loads it."""
    try:
        name, cls = saved_class(path, detectors(), "detector")
    except ValueError as exc:
        raise ValueError(f"{exc} (a plug-in's detector needs its --detector-plugin file)") from None
    if not is_persistent(cls):
        raise ValueError(f"detector {name!r} ({class_path(cls)}) has no save/load")
    return cls.load(Path(path))  # type: ignore[attr-defined,no-any-return]
