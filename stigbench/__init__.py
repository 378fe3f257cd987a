"""stigbench: how robust are deepfake detectors against STIG spectral refinement?

The public API is what this module exports (``__all__``); plug-ins and scripts import from here::

    from stigbench import FeatureDetector, register_detector

Names are resolved on first use, so ``import stigbench`` itself loads neither torch nor any
subpackage; ``from stigbench import X`` imports the one module that defines ``X``. Everything else
lives in the layered subpackages (``core``, ``measures``, ``data``, ``attacks``, ``detection``,
``evaluation``, ``reporting``, ``pipeline``; see docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> the module that defines it (the single place it lives)
_EXPORTS: dict[str, str] = {
    # contracts: labels and the protocols every component follows
    "FAKE": "stigbench.core.contracts",
    "REAL": "stigbench.core.contracts",
    "Detector": "stigbench.core.contracts",
    "ImageSetLike": "stigbench.core.contracts",
    "PersistentDetector": "stigbench.core.contracts",
    "Refiner": "stigbench.core.contracts",
    "ReleasedDetector": "stigbench.core.contracts",
    # the generic registry
    "Registry": "stigbench.core.registry",
    "RegistryError": "stigbench.core.registry",
    # datasets
    "DatasetSpec": "stigbench.data.specs",
    "register_builder": "stigbench.data.specs",
    "register_dataset": "stigbench.data.specs",
    # detectors: registry and base classes
    "DetectorInfo": "stigbench.detection.registry",
    "register_detector": "stigbench.detection.registry",
    "FeatureDetector": "stigbench.detection.base",
    "LogisticFeatureDetector": "stigbench.detection.base",
    "CNNDetector": "stigbench.detection.cnn",
    # refiners (attacks): registry and loading a saved one
    "RefinerInfo": "stigbench.attacks.registry",
    "load_refiner": "stigbench.attacks.registry",
    "refiners": "stigbench.attacks.registry",
    "register_refiner": "stigbench.attacks.registry",
}

# ``stigbench.detectors`` is the package of built-in detectors (the repository's detectors/), so the
# registry accessor cannot share that name here: importing the package would rebind the attribute.
# Use ``stigbench.detection.registry.detectors()``.
_SUBPACKAGES = frozenset({
    "attacks", "cli", "core", "data", "datasets", "detection", "detectors", "evaluation", "measures",
    "pipeline", "reporting",
})

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ resolves these lazily
    from stigbench.attacks.registry import RefinerInfo, load_refiner, refiners, register_refiner
    from stigbench.core.contracts import FAKE, REAL, Detector, ImageSetLike, PersistentDetector, Refiner, ReleasedDetector
    from stigbench.core.registry import Registry, RegistryError
    from stigbench.data.specs import DatasetSpec, register_builder, register_dataset
    from stigbench.detection.base import FeatureDetector, LogisticFeatureDetector
    from stigbench.detection.cnn import CNNDetector
    from stigbench.detection.registry import DetectorInfo, register_detector


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562) and cache the name here."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name in _SUBPACKAGES:  # ``stigbench.core`` after a bare ``import stigbench``
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
