"""The ``--attack`` value: gradient attacks crafted against the run's fitted detectors.

* ``pgd`` attacks each detector of the run that has a torch path (a ``logits`` method,
  :class:`~stigbench.core.contracts.DifferentiableDetector`), one attacked set per detector;
  ``pgd:target=durall`` attacks that detector only.
* ``pgd:start=stig`` starts from the fakes refined by the run's refiner ``stig`` and centres the budget
  there (``stig+pgd`` is that attack registered under its own name);
* ``pgd:surrogate=spectrum-cnn+durall`` is a *transfer* attack: crafted on detectors the attacker fits
  himself on the training split with his own seed (an ensemble: their mean logit), scored by every
  detector of the run;
* ``name:param=value`` sets any constructor parameter (several: ``pgd:eps=8/255:steps=20``); ε is a
  number in ``[0, 1]`` or ``k/255``. ``name:param=*`` expands to the grid the class declares for the
  parameter (``pgd:eps=*`` -> 1, 2, 4 and 8/255).

Display names (the ``refiner`` column of attacked rows, with ``target`` in its own column too) are
canonical: ``pgd:eps=4/255:target=durall`` — the parameters the spec sets in constructor order, ε written
as ``k/255`` when it is a whole number of 8-bit steps, the target last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from stigbench.attacks.gradient import parse_eps
from stigbench.attacks.registry import attacks as attack_registry
from stigbench.attacks.white_box import format_eps
from stigbench.pipeline.refiner_specs import _canonical, _expand_named, _format, _named_parts, _named_value

#: Parameters whose value is a budget: parsed by :func:`~stigbench.attacks.gradient.parse_eps`.
BUDGET_PARAMS = ("eps",)


@dataclass(frozen=True)
class AttackSpec:
    """One ``--attack`` item after expansion: its registry ``name``, the ``params`` it sets (without
    ``target``) and the detector it names as ``target`` (``None``: every attackable one)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    target: str | None = None
    #: The refiner of the run whose refined fakes the attack starts from (its budget is centred there);
    #: ``None``: the test fakes. ``stig+pgd`` implies ``stig``.
    start: str | None = None
    #: A transfer attack's surrogates: detectors the attacker fits himself (an ensemble when several).
    surrogates: tuple[str, ...] = ()

    def display(self, target: str | None = None) -> str:
        """The canonical name of this attack against ``target`` (default: its own)."""
        implied = getattr(attack_registry().get(self.name), "start_from", None)
        start = self.start if self.start != implied else None
        return attack_display(self.name, self.params, target or self.target, start, self.surrogates)


def _pixel_budget(cls: type, param: str) -> bool:
    """Whether ``param`` of attack ``cls`` is a pixel budget (``eps`` of an attack whose ``domain`` is pixels,
    the default): parsed by ``parse_eps`` and written as ``k/255``. A spectral budget is a plain number."""
    return param in BUDGET_PARAMS and getattr(cls, "domain", "pixel") == "pixel"


def _display_value(cls: type, param: str, value: Any) -> str:
    # A pixel ε reads as k/255 wherever it is a whole number of 8-bit steps, whatever the norm: names are keys.
    return format_eps(float(value), "linf") if _pixel_budget(cls, param) else _format(value)


def attack_display(name: str, params: dict[str, Any], target: str | None, start: str | None = None,
                   surrogates: tuple[str, ...] = ()) -> str:
    """``('pgd', {'eps': 4/255}, 'durall')`` -> ``'pgd:eps=4/255:target=durall'`` (``start`` and ``surrogate``
    before the target)."""
    cls = attack_registry().get(name)
    parts = [f"{k}={_display_value(cls, k, v)}" for k, v in _canonical(cls, params).items() if k != "target"]
    if start:
        parts.append(f"start={start}")
    if surrogates:
        parts.append("surrogate=" + "+".join(surrogates))
    if target:
        parts.append(f"target={target}")
    return ":".join([name, *parts])


def _typed(name: str, cls: type, param: str, text: str) -> Any:
    if param in ("start", "surrogate"):  # pipeline parameters, like target: names as given
        return text
    if _pixel_budget(cls, param):
        try:
            return parse_eps(text)
        except ValueError as exc:
            raise ValueError(f"attack {name!r}: {exc}") from None
    return _named_value(name, cls, param, text, kind="attack")


def resolve_attack_spec(item: str) -> AttackSpec:
    """``'pgd:eps=8/255:target=durall'`` -> ``AttackSpec('pgd', {'eps': 8/255}, 'durall')``.

    Raises :class:`~stigbench.core.registry.RegistryError` (with suggestions) for an unknown attack and
    ``ValueError`` for a malformed item or an unknown parameter (with suggestions)."""
    item = item.strip()
    name, sep, arg = (part.strip() for part in item.partition(":"))
    if not name:
        raise ValueError(f"attack spec {item!r} has no name (expected e.g. 'pgd:eps=4/255')")
    cls = attack_registry().get(name)
    params: dict[str, Any] = {}
    for param, value in _named_parts(item, name, arg, kind="attack") if sep else []:
        if param in params:
            raise ValueError(f"attack spec {item!r} sets {param!r} twice")
        params[param] = _typed(name, cls, param, value)
    target = params.pop("target", None)
    if target is not None and not isinstance(target, str):
        raise ValueError(f"attack spec {item!r}: target must be a detector name, got {target!r}")
    start = params.pop("start", None) or getattr(cls, "start_from", None)
    if start is not None and not isinstance(start, str):
        raise ValueError(f"attack spec {item!r}: start must be a refiner of the run, got {start!r}")
    surrogate = params.pop("surrogate", None)
    surrogates = tuple(n.strip() for n in surrogate.split("+")) if surrogate is not None else ()
    if surrogate is not None and not all(surrogates):
        raise ValueError(f"attack spec {item!r}: surrogate names the attacker's own detectors, '+'-separated "
                         "(e.g. surrogate=spectrum-cnn+durall); an empty name is not a detector")
    if surrogates and target is not None:
        raise ValueError(f"attack spec {item!r}: a transfer attack (surrogate=) is scored by every detector; "
                         "it takes no target")
    params = _canonical(cls, params)
    for param, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"attack spec {item!r}: {param} must be finite")
    return AttackSpec(name, params, target, start, surrogates)


def resolve_attack_specs(spec: str) -> list[AttackSpec]:
    """An ``--attack`` value (``'pgd:eps=*,apgd:loss=margin'``) into attack specs, in order; ``*`` values
    expand to the class's ``param_grids``; duplicates are dropped."""
    out: list[AttackSpec] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, _, arg = (p.strip() for p in item.partition(":"))
        items = [item]
        if "*" in arg:
            cls = attack_registry().get(name)
            items = _expand_named(item, name, arg, cls, kind="attack",
                                  fmt=lambda param, value, cls=cls: _display_value(cls, param, value))
        for it in items:
            resolved = resolve_attack_spec(it)
            if resolved.display() not in {o.display() for o in out}:
                out.append(resolved)
    return out
