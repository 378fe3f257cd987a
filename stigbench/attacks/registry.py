"""The refiner (attack) registry: ``@register_refiner("name", paper=..., kind=...)``, and rebuilding a
fitted refiner from its saved folder.

Built-in refiners are STIG, the spectral-matching baseline and the post-processing attacks; third-party
packages add theirs through the ``stigbench.refiners`` entry-point group.

White-box gradient attacks (:class:`~stigbench.core.contracts.GradientAttack`) have a registry of their own:
``@register_attack("name", paper=...)``, built-ins in :mod:`stigbench.attacks.white_box`, plug-ins through
the ``stigbench.attacks`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from stigbench.core.contracts import ATTACK_METHODS, REFINER_METHODS, GradientAttack, Refiner
from stigbench.core.plugins import builtin_loader
from stigbench.core.registry import Registry
from stigbench.core.estimator import saved_class

T = TypeVar("T")

BUILTIN = ("stigbench.attacks.stig.refiner", "stigbench.attacks.spectral_match", "stigbench.attacks.postprocess")
BUILTIN_ATTACKS = ("stigbench.attacks.white_box", "stigbench.attacks.spectral_gradient", "stigbench.attacks.query")


@dataclass(frozen=True)
class RefinerInfo:
    """Metadata of a refiner (an attack on detectors)."""

    paper: str
    kind: str = "learned"  # learned | training-free
    description: str = ""
    # Whether the output depends on the seed (the ``seed`` constructor argument): a stochastic refiner
    # fitted with another seed refines differently, a deterministic one identically. The contract tests
    # check both directions.
    stochastic: bool = False


REFINERS: Registry[type[Refiner]] = Registry("refiner", required_methods=REFINER_METHODS)
_load_builtin = builtin_loader(lambda: BUILTIN, "stigbench.refiners")


def register_refiner(
    name: str, *, paper: str, kind: str = "learned", description: str = "", stochastic: bool | None = None
) -> Callable[[T], T]:
    """Class decorator: register a refiner under ``name`` (see :class:`RefinerInfo`).

    ``stochastic`` defaults to ``kind == "learned"``: a learned refiner starts from seeded random
    weights, a training-free one applies a fixed operation.
    """
    info = RefinerInfo(paper, kind, description, kind == "learned" if stochastic is None else bool(stochastic))
    return REFINERS.register(name, info)  # type: ignore[return-value]


def refiners() -> Registry[type[Refiner]]:
    """The refiner registry with built-ins and entry-point plug-ins loaded."""
    _load_builtin()
    return REFINERS


def load_refiner(path: str | Path) -> Refiner:
    """Rebuild a fitted refiner from its saved folder (``params.json`` names its class; class paths
    written before modules moved are mapped to today's)."""
    _, cls = saved_class(path, refiners(), "refiner")
    return cls.load(Path(path))


@dataclass(frozen=True)
class AttackInfo:
    """Metadata of a gradient attack (:class:`~stigbench.core.contracts.GradientAttack`)."""

    paper: str
    knowledge: str = "white-box"  # what the attacker sees of the detector
    description: str = ""


ATTACKS: Registry[type[GradientAttack]] = Registry("attack", required_methods=ATTACK_METHODS)
_load_builtin_attacks = builtin_loader(lambda: BUILTIN_ATTACKS, "stigbench.attacks")


def register_attack(
    name: str, *, paper: str, knowledge: str = "white-box", description: str = ""
) -> Callable[[T], T]:
    """Class decorator: register a gradient attack under ``name`` (see :class:`AttackInfo`)."""
    return ATTACKS.register(name, AttackInfo(paper, knowledge, description))  # type: ignore[return-value]


def attacks() -> Registry[type[GradientAttack]]:
    """The gradient-attack registry with built-ins and entry-point plug-ins loaded."""
    _load_builtin_attacks()
    return ATTACKS
