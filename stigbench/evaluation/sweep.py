"""Strength sweeps: attacks compared at equal image cost. Pure functions of display names and numbers.

A refiner swept over its refine-time ``strength`` (``--refiner 'stig:strength=*'``,
:mod:`stigbench.attacks.strength`) appears under one display name per point: ``stig:strength=0.5``
..., and ``stig`` for strength 1 (the full attack; :mod:`stigbench.pipeline.refiner_specs`). Each point
is a (PSNR, LFD, evasion, attack success rate) of the same attack, so the sweep traces a curve of
evasion against image cost, and two attacks can be compared at the *same* PSNR: the reading
watermark-removal benchmarks give, which no detector benchmark does. Such a comparison interpolates on
the measured points and never extrapolates (:func:`interpolate_at`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from stigbench.evaluation.evidence import display_strength

#: The refine-time parameter of a sweep, as it appears in display names (``stig:strength=0.5``).
STRENGTH = "strength"
_STRENGTH_PART = re.compile(rf":{STRENGTH}=([^:,\s]+)")
#: A gradient attack's budget in its display name (``pgd:eps=4/255:target=durall``): its sweep parameter.
_EPS_PART = re.compile(r":eps=([0-9.eE+-]+)(?:/([0-9]+))?(?=:|$)")


def sweep_point(display: str) -> tuple[str, float | None]:
    """``'stig:strength=0.5'`` -> ``('stig', 0.5)``; ``'stig'`` or ``'blur:2'`` -> ``(display, 1.0)``
    (no strength: the full attack); a strength that is not a number -> ``None``
    (:func:`stigbench.evaluation.evidence.display_strength`). A gradient attack is swept over its budget:
    ``'pgd:eps=4/255:target=durall'`` -> ``('pgd:target=durall', 4/255)`` (never a full-strength point,
    so every refiner is compared with it at equal PSNR)."""
    eps = _EPS_PART.search(display)
    if eps:
        value = float(eps.group(1)) / (float(eps.group(2)) if eps.group(2) else 1.0)
        return _EPS_PART.sub("", display), value
    return _STRENGTH_PART.sub("", display), display_strength(display)


def full_strength(condition_key: str) -> bool:
    """Whether a set key (``fake``, ``refined:<display>``) is at strength 1: the unrefined fakes and every
    attack without a lower strength (gradient attacks included, whatever their budget). Sweep points
    below 1 get PSNR, SSIM and LFD, but no FID/KID."""
    condition, _, display = condition_key.partition(":")
    return condition != "refined" or display_strength(display) == 1.0


def interpolate_at(x: float, xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """``y`` at ``x`` on the piecewise-linear curve through ``(xs, ys)`` (sorted by ``xs``; missing values
    dropped); ``None`` when ``x`` lies outside ``[min(xs), max(xs)]`` or fewer than two points remain:
    a comparison at equal cost is read off a measured sweep, never extrapolated."""
    pts = sorted((float(a), float(b)) for a, b in zip(xs, ys) if _finite(a) and _finite(b))
    if len(pts) < 2 or not _finite(x) or not pts[0][0] <= x <= pts[-1][0]:
        return None
    px, py = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    if np.any(np.diff(px) == 0):  # equal costs twice: average their values so the curve is a function
        ux = np.unique(px)
        py = np.array([py[px == u].mean() for u in ux])
        px = ux
        if len(px) < 2:
            return float(py[0]) if x == px[0] else None
    return float(np.interp(x, px, py))


def _finite(v: object) -> bool:
    try:
        return math.isfinite(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


__all__ = ["STRENGTH", "full_strength", "interpolate_at", "sweep_point"]
