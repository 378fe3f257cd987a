"""The ``--refiner`` value: names, fnmatch patterns, the short form ``name:value`` and ``name:param=value``.

* ``blur:2`` sets the refiner's ``spec_param`` (a class attribute naming one constructor argument);
  ``jpeg:*`` expands to the grid of the perturbation family the refiner applies. Any refiner class that
  declares ``spec_param`` gets the short form.
* ``stig:strength=0.5`` sets any constructor parameter by name (several: ``name:a=1:b=2``);
  ``stig:strength=*`` expands to the grid the class declares for it in ``param_grids``
  (:data:`stigbench.attacks.strength.STRENGTHS` for ``strength``). An unknown parameter fails with the
  refiner's parameters and a "did you mean".

Display names (the ``refiner`` column, ``refiners/<display>``) are canonical: the short form where only
``spec_param`` is set (``blur:sigma=2`` -> ``blur:2``), else ``name:param=value`` in constructor order.
A *refine-time* parameter (the class's ``refine_params``) at its constructor default is dropped, from
the display name and from the parameters: ``stig:strength=1`` is ``stig``, the full attack, so a sweep's
last point and a plain run of the refiner are one condition across runs.
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stigbench.attacks.perturbations import PERTURBATIONS, Perturbation, format_value
from stigbench.attacks.registry import refiners as refiner_registry
from stigbench.core.estimator import accepted_params


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
        raise ValueError(f"refiner {name!r} takes no ':' parameter; set its parameters with --set {name}.<param>=... "
                         f"or {name}:<param>=<value>")
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


def _constructor(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters of ``cls``'s constructor (``**kwargs`` under the key ``"**"``)."""
    params = accepted_params(cls)
    out = {k: p for k, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        out["**"] = inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)
    return out


def _check_param(name: str, cls: type, param: str, kind: str = "refiner") -> inspect.Parameter | None:
    accepted = _constructor(cls)
    if param in accepted:
        return accepted[param]
    if "**" in accepted:
        return None
    close = difflib.get_close_matches(param, list(accepted), n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
    raise ValueError(f"{kind} {name!r} has no parameter {param!r}{hint} It takes: {', '.join(accepted)}")


def _named_value(name: str, cls: type, param: str, text: str, kind: str = "refiner") -> Any:
    """``text`` as the value of constructor parameter ``param`` (JSON, else a string; a float where the
    default is a float, so that ``strength=1`` and ``strength=1.0`` are one value)."""
    spec = getattr(cls, "spec_param", None)
    if param == spec:
        return _typed_value(name, param, getattr(cls, "perturbation_cls", None), text)
    default = _check_param(name, cls, param, kind)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    whole = isinstance(value, int) and not isinstance(value, bool)
    if default is not None and isinstance(default.default, float) and whole:
        value = float(value)
    return value


def _grid(cls: type, param: str) -> tuple[Any, ...]:
    grids = getattr(cls, "param_grids", None) or {}
    if param in grids:
        return tuple(grids[param])
    pcls = getattr(cls, "perturbation_cls", None)
    if param == getattr(cls, "spec_param", None) and pcls is not None and pcls.family:
        return PERTURBATIONS.meta(pcls.family).grid
    return ()


def _canonical(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` in constructor order, without refine-time parameters at their default."""
    accepted = _constructor(cls)
    refine_time = set(getattr(cls, "refine_params", ()))
    order = {k: i for i, k in enumerate(accepted)}
    out = {}
    for k in sorted(params, key=lambda k: order.get(k, len(order))):
        p = accepted.get(k)
        if k in refine_time and p is not None and p.default is not p.empty and params[k] == p.default:
            continue
        out[k] = params[k]
    return out


def _named_parts(item: str, name: str, arg: str, kind: str = "refiner") -> list[tuple[str, str]]:
    parts = []
    for part in arg.split(":"):
        param, eq, value = (p.strip() for p in part.partition("="))
        if not eq or not param or not value:
            short = f"'{name}:<value>' or " if kind == "refiner" else ""
            raise ValueError(f"{kind} spec {item!r}: expected {short}'{name}:<param>=<value>'")
        parts.append((param, value))
    return parts


def resolve_refiner_spec(item: str) -> tuple[str, dict[str, Any]]:
    """``'blur:2'`` -> ``('blur', {'sigma': 2.0})``, ``'stig:strength=0.5'`` -> ``('stig', {'strength': 0.5})``;
    a plain name -> ``(name, {})``.

    Raises :class:`~stigbench.core.registry.RegistryError` (a ``KeyError``) for an unknown refiner, with
    suggestions, and ``ValueError`` for a malformed item, a refiner without a short parameter, an unknown
    parameter (with suggestions) or an invalid value. Parameters come back canonical (see the module
    docstring); the display name is :func:`refiner_display_name`.
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
    if "=" not in arg:
        _, param, pcls = _spec_param(name)
        if not arg or ":" in arg:
            raise ValueError(f"refiner spec {item!r}: expected '{name}:<{param}>'")
        return name, {param: _typed_value(name, param, pcls, arg)}
    cls = refiner_registry().get(name)
    params: dict[str, Any] = {}
    for param, value in _named_parts(item, name, arg):
        if param in params:
            raise ValueError(f"refiner spec {item!r} sets {param!r} twice")
        params[param] = _named_value(name, cls, param, value)
    return name, _canonical(cls, params)


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_value(value)
    return str(value)


def refiner_display_name(name: str, params: dict[str, Any]) -> str:
    """``('blur', {'sigma': 2.0})`` -> ``'blur:2'``, ``('stig', {'strength': 0.5})`` -> ``'stig:strength=0.5'``:
    the canonical name of a resolved spec (module docstring)."""
    if not params:
        return name
    cls = refiner_registry().get(name)
    params = _canonical(cls, params)
    if not params:
        return name
    spec = getattr(cls, "spec_param", None)
    if spec is not None and set(params) == {spec}:
        return f"{name}:{format_value(params[spec])}"
    return name + "".join(f":{k}={_format(v)}" for k, v in params.items())


def _expand(item: str) -> list[str]:
    """The items one ``name:...`` item stands for: ``name:*`` and ``name:param=*`` expand to grids."""
    name, _, arg = (p.strip() for p in item.partition(":"))
    if arg == "*":
        cls, param, _ = _spec_param(name)
        grid = _grid(cls, param)
        if not grid:
            raise ValueError(f"refiner {name!r} has no default grid for '{name}:*'")
        return [f"{name}:{format_value(v)}" for v in grid]
    if "=" not in arg or "*" not in arg:
        return [item]
    return _expand_named(item, name, arg, refiner_registry().get(name))


def _expand_named(item: str, name: str, arg: str, cls: type, kind: str = "refiner",
                  fmt: Callable[[str, Any], str] = lambda _param, value: _format(value)) -> list[str]:
    """``name:a=*:b=2`` -> one item per value of ``a``'s grid (``fmt(param, value)`` writes a value)."""
    choices = []
    for param, value in _named_parts(item, name, arg, kind):
        if value != "*":
            choices.append([f"{param}={value}"])
            continue
        _check_param(name, cls, param, kind)
        grid = _grid(cls, param)
        if not grid:
            raise ValueError(f"{kind} {name!r} has no default grid for its parameter {param!r} ('{name}:{param}=*')")
        choices.append([f"{param}={fmt(param, v)}" for v in grid])
    return [f"{name}:" + ":".join(combo) for combo in itertools.product(*choices)]


def resolve_refiner_specs(spec: str) -> list[RefinerSpec]:
    """A ``--refiner`` value (``'stig,spectral-*,blur:2,jpeg:*,stig:strength=*'``) into refiner specs, in order.

    Plain items are names or fnmatch patterns (:meth:`Registry.resolve`); ``name:value`` sets the
    refiner's ``spec_param``; ``name:*`` expands to its perturbation family's grid (``blur:*`` ->
    ``blur:1,blur:2,blur:4``); ``name:param=value`` sets a constructor parameter and ``name:param=*``
    expands to the class's grid for it. Duplicates (by display name) are dropped.
    """
    reg = refiner_registry()
    out: list[RefinerSpec] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if ":" not in item:
            specs = [RefinerSpec(n, n, {}) for n in reg.resolve(item)]
        else:
            specs = []
            for it in _expand(item):
                n, params = resolve_refiner_spec(it)
                specs.append(RefinerSpec(refiner_display_name(n, params), n, params))
        out.extend(s for s in specs if s.display not in {o.display for o in out})
    return out


def refine_time_params(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters among ``params`` that ``cls`` applies at refine time only (its ``refine_params``):
    left out of its fit stage's key and set on the fitted refiner before it refines."""
    names = set(getattr(cls, "refine_params", ()))
    return {k: v for k, v in params.items() if k in names}
