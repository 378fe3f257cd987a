"""The ``--refiner`` value: names, fnmatch patterns and the short form ``name:value``.

``blur:2`` sets the refiner's ``spec_param`` (a class attribute naming one constructor argument);
``jpeg:*`` expands to the grid of the perturbation family the refiner applies. Any refiner class that
declares ``spec_param`` gets the short form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stigbench.attacks.perturbations import PERTURBATIONS, Perturbation, format_value
from stigbench.attacks.registry import refiners as refiner_registry


@dataclass(frozen=True)
class RefinerSpec:
    """One selected refiner: its ``display`` name (the ``refiner`` column, the run folder's
    ``refiners/<display>``), its registry ``name`` and the constructor ``params`` the spec sets."""

    display: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)


def _spec_param(name: str) -> tuple[type, str, type[Perturbation] | None]:
    cls = refiner_registry().get(name)  # unknown names raise with "did you mean"
    param = getattr(cls, "spec_param", None)
    if param is None:
        raise ValueError(f"refiner {name!r} takes no ':' parameter; set its parameters with --set {name}.<param>=...")
    return cls, param, getattr(cls, "perturbation_cls", None)


def _typed_value(name: str, param: str, pcls: type[Perturbation] | None, text: str) -> Any:
    if pcls is not None:
        try:
            return pcls.parse_value(text)
        except ValueError as exc:
            raise ValueError(f"refiner {name!r}: {param} {text!r} is invalid ({exc})") from None
    try:  # a third-party refiner with spec_param but no perturbation: a plain number
        number = float(text)
    except ValueError:
        raise ValueError(f"refiner {name!r}: {param} {text!r} is not a number") from None
    return int(number) if number.is_integer() and "." not in text else number


def resolve_refiner_spec(item: str) -> tuple[str, dict[str, Any]]:
    """``'blur:2'`` -> ``('blur', {'sigma': 2.0})``; a plain name -> ``(name, {})``.

    Raises :class:`~stigbench.core.registry.RegistryError` (a ``KeyError``) for an unknown refiner, with
    suggestions, and ``ValueError`` for a malformed item, a refiner without a short parameter or an
    invalid value. The canonical display name is :func:`refiner_display_name`.
    """
    item = item.strip()
    name, sep, arg = (part.strip() for part in item.partition(":"))
    if not name:
        raise ValueError(f"refiner spec {item!r} has no name (expected e.g. 'blur:2')")
    if any(ch in item for ch in ",*?["):
        raise ValueError(f"refiner spec {item!r}: one refiner, no patterns or spaces (use resolve_refiner_specs)")
    if not sep:
        refiner_registry().get_entry(name)
        return name, {}
    _, param, pcls = _spec_param(name)
    if not arg or ":" in arg:
        raise ValueError(f"refiner spec {item!r}: expected '{name}:<{param}>'")
    return name, {param: _typed_value(name, param, pcls, arg)}


def refiner_display_name(name: str, params: dict[str, Any]) -> str:
    """``('blur', {'sigma': 2.0})`` -> ``'blur:2'``: the canonical form of a resolved short spec."""
    if not params:
        return name
    _, param, _ = _spec_param(name)
    if set(params) != {param}:
        raise ValueError(f"refiner {name!r}: a display name carries only {param!r}, got {sorted(params)}")
    return f"{name}:{format_value(params[param])}"


def resolve_refiner_specs(spec: str) -> list[RefinerSpec]:
    """A ``--refiner`` value (``'stig,spectral-*,blur:2,jpeg:*'``) into refiner specs, in order.

    Plain items are names or fnmatch patterns (:meth:`Registry.resolve`); ``name:value`` sets the
    refiner's ``spec_param``; ``name:*`` expands to its perturbation family's grid (``blur:*`` ->
    ``blur:1,blur:2,blur:4``). Duplicates (by display name) are dropped.
    """
    reg = refiner_registry()
    out: list[RefinerSpec] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if ":" not in item:
            specs = [RefinerSpec(n, n, {}) for n in reg.resolve(item)]
        else:
            name, _, arg = (p.strip() for p in item.partition(":"))
            if arg == "*":
                _, param, pcls = _spec_param(name)
                grid = _grid(pcls)
                if not grid:
                    raise ValueError(f"refiner {name!r} has no default grid for '{name}:*'")
                items = [f"{name}:{format_value(v)}" for v in grid]
            else:
                items = [item]
            specs = []
            for it in items:
                n, params = resolve_refiner_spec(it)
                specs.append(RefinerSpec(refiner_display_name(n, params), n, params))
        out.extend(s for s in specs if s.display not in {o.display for o in out})
    return out


def _grid(pcls: type[Perturbation] | None) -> tuple[float | int, ...]:
    if pcls is None or not pcls.family:
        return ()
    return PERTURBATIONS.meta(pcls.family).grid
