"""The kinds of component a run is made of, in one table: it drives ``bench.py list``, loading the
built-ins and plug-ins of each kind, and which ``RunConfig`` field ``--set NAME.PARAM=VALUE`` fills."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stigbench.attacks.perturbations import PERTURBATIONS, format_value
from stigbench.attacks.registry import attacks, refiners
from stigbench.core.contracts import torch_path_unavailable
from stigbench.core.registry import Registry
from stigbench.data.specs import datasets
from stigbench.detection.registry import VARIANT_SEP, detectors


def _detector_row(reg: Registry[Any], name: str) -> dict[str, Any]:
    m = reg.meta(name)
    try:  # with its default parameters; a configuration may lose it (dzanic:classifier=knn)
        attackable = "yes" if torch_path_unavailable(reg.get(name)()) is None else ""
    except (TypeError, ValueError):  # a plug-in whose constructor needs arguments
        attackable = "?"
    return {"name": name, "family": m.family, "domain": m.domain, "default": "yes" if m.default else "",
            "torch path": attackable, "paper": m.paper}


def _attack_row(reg: Registry[Any], name: str) -> dict[str, Any]:
    m = reg.meta(name)
    return {"name": name, "knowledge": m.knowledge, "paper": m.paper, "description": m.description}


def _refiner_row(reg: Registry[Any], name: str) -> dict[str, Any]:
    m = reg.meta(name)
    return {"name": name, "kind": m.kind, "stochastic": "yes" if m.stochastic else "", "paper": m.paper}


def _perturbation_row(reg: Registry[Any], name: str) -> dict[str, Any]:
    m = reg.meta(name)
    return {"name": name, "param": m.param or "", "grid": ",".join(format_value(v) for v in m.grid),
            "stochastic": "yes" if m.stochastic else "", "description": m.description}


def _dataset_row(reg: Registry[Any], name: str) -> dict[str, Any]:
    s = reg.get(name)
    return {"name": name, "size": s.size or "auto", "synthetic": "yes" if s.synthetic else "", "spec": s.spec_path}


@dataclass(frozen=True)
class Kind:
    """One kind of component: how to get its registry (built-ins and plug-ins loaded), how ``list``
    shows an entry, and the ``RunConfig`` field that holds per-component constructor parameters."""

    name: str  # plural, as typed after ``bench.py list``
    registry: Callable[[Iterable[str]], Registry[Any]]  # takes the extra spec folders (datasets only use them)
    row: Callable[[Registry[Any], str], dict[str, Any]]
    params_field: str | None = None


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("detectors", lambda _dirs: detectors(), _detector_row, "detector_params"),
    Kind("refiners", lambda _dirs: refiners(), _refiner_row, "refiner_params"),
    Kind("attacks", lambda _dirs: attacks(), _attack_row),
    Kind("perturbations", lambda _dirs: PERTURBATIONS, _perturbation_row),
    Kind("datasets", lambda dirs: datasets(dirs), _dataset_row),
)}


def list_components(kind: str, pattern: str | None = None, spec_dirs: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One row per registered component of ``kind`` whose name matches the fnmatch ``pattern``."""
    k = KINDS[kind]
    reg = k.registry(spec_dirs)
    return [k.row(reg, n) for n in reg.list() if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def params_field(component: str) -> str | None:
    """The ``RunConfig`` field for ``--set COMPONENT.PARAM=...``, or ``None`` if no parametrised kind has it.
    A detector variant ``NAME@TAG`` has its own parameters, in the detectors' field."""
    base, sep, _ = component.partition(VARIANT_SEP)
    if sep and base in detectors():
        return KINDS["detectors"].params_field
    for k in KINDS.values():
        if k.params_field and component in k.registry(()):
            return k.params_field
    return None
