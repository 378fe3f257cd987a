"""``resolve(RunConfig) -> Plan``: every component of a run built and checked before any image is read.

The plan loads plug-in files, finds the dataset spec (without decoding images), parses the refiner,
detector and perturbation lists, and constructs each refiner and detector once with its final keyword
arguments, so a bad name or value fails in seconds with a message naming the component and the
parameter (``refiner 'stig': norm must be one of ...``). Parameters that depend on the image size are
checked by :meth:`Plan.check_image_size` as soon as the size is known: from the spec, else from the
first file read.

Run-wide settings reach components in one explicit :class:`~stigbench.pipeline.context.RunContext`.
A component receives a context setting (``seed``, ``device``, ``precision``, ``progress``) as a plain
keyword argument when its constructor declares a parameter of that name and the user did not set it
(``--set stig.seed=3`` wins over ``--seed``); the plan records which values came from where.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stigbench.attacks.perturbations import Perturbation, parse_perturbations
from stigbench.pipeline.attack_specs import resolve_attack_specs
from stigbench.pipeline.refiner_specs import (
    RefinerSpec,
    refine_time_params,
    refiner_display_name,
    resolve_refiner_specs,
)
from stigbench.attacks.registry import attacks as attack_registry
from stigbench.attacks.registry import refiners as refiner_registry
from stigbench.core import distributed
from stigbench.core.config import RunConfig
from stigbench.core.contracts import file_params, released_checkpoint, released_label, torch_path_unavailable
from stigbench.core.estimator import accepted_params
from stigbench.core.plugins import load_plugin_file
from stigbench.data.layouts import layout_spec, select_generator
from stigbench.data.specs import DatasetSpec, adhoc_spec, datasets
from stigbench.detection.registry import VARIANT_SEP, split_variant
from stigbench.detection.registry import detectors as detector_registry
from stigbench.detection.released import file_fingerprint
from stigbench.evaluation.rows import CLEAN
from stigbench.pipeline.context import CONTEXT_PARAMS, RunContext


class PlanError(ValueError):
    """A run that cannot start: a bad name, parameter or value, found before any image is read."""


@dataclass
class Component:
    """One refiner or detector of the plan: its registry entry and its final constructor call."""

    kind: str  # "refiner" | "detector" | "attack"
    display: str  # as shown in tables ("blur:2"); the registry name for detectors
    name: str  # registry name
    cls: type
    params: dict[str, Any]  # what the user set (``--set``, short forms): part of the stage keys
    kwargs: dict[str, Any]  # params plus the context settings the constructor declares
    from_context: tuple[str, ...] = ()
    #: The instance built and checked when the plan was resolved (for further checks; never fitted).
    prototype: Any = field(default=None, repr=False, compare=False)
    #: An attack that starts from a refiner's refined fakes: that refiner's display name.
    start: str | None = None
    #: A transfer attack's surrogates: the detectors the attacker fits himself (kind ``surrogate``).
    surrogates: tuple[Component, ...] = ()
    #: A detector's files (:func:`~stigbench.core.contracts.file_params`): parameter -> ``{"path", "sha256", "bytes"}``.
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: A detector's training set: ``fake`` (trained by the run) or ``released <sha256[:12]>`` (score-only).
    trained_on: str = "fake"

    def build(self) -> Any:
        """A fresh, unfitted instance."""
        return self.cls(**self.kwargs)

    def describe(self) -> dict[str, Any]:
        extra = {**({"start": self.start} if self.start else {}),
                 **({"surrogates": {c.name: c.describe() for c in self.surrogates}} if self.surrogates else {}),
                 **({"files": self.files} if self.files else {}),
                 **({"trained_on": self.trained_on} if self.kind == "detector" else {})}
        return {"name": self.name, "params": self.params,
                "from_run": {k: self.kwargs[k] for k in self.from_context}, **extra}


@dataclass
class Plan:
    """A validated run: what ``run_benchmark`` executes."""

    config: RunConfig
    spec: DatasetSpec
    context: RunContext
    refiners: list[Component]
    detectors: list[Component]
    perturbations: list[Perturbation]
    notes: list[str] = field(default_factory=list)
    #: Other datasets whose test splits the detectors also score (cross-dataset), and whether their fakes
    #: are refined by the refiners of this run's dataset (``True``) or of each test dataset.
    test_specs: list[DatasetSpec] = field(default_factory=list)
    attack_from_own: bool = False
    #: Gradient attacks, one per (attack, target detector); ``params["target"]`` names the detector.
    attacks: list[Component] = field(default_factory=list)

    @property
    def detector_names(self) -> list[str]:
        """The detectors as the run names them: registry names, and ``NAME@TAG`` for variants."""
        return [d.display for d in self.detectors]

    def check_image_size(self, size: int) -> None:
        """Fail before any training when a component cannot work at ``size`` px."""
        for c in self.refiners + self.detectors:
            check = getattr(c.prototype, "check_image_size", None)
            if check is None:
                continue
            try:
                check(size)
            except (ValueError, TypeError) as exc:
                raise PlanError(f"{c.kind} {c.display!r} at {size}x{size} px: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {"refiners": {c.display: c.describe() for c in self.refiners},
                "detectors": {c.display: c.describe() for c in self.detectors},
                "attacks": {c.display: c.describe() for c in self.attacks},
                "perturbations": [p.name for p in self.perturbations], "notes": self.notes,
                "test_datasets": [s.name for s in self.test_specs],
                "attack_from": self.spec.name if self.attack_from_own else "each test dataset"}


def resolve_spec(config: RunConfig) -> DatasetSpec:
    """The dataset spec of ``config`` (``--real``/``--fake`` make an ad-hoc one, ``--layout`` one
    generator of a layout, as does a layout spec); reads no image."""
    if config.real or config.fake:
        if not (config.real and config.fake):
            raise PlanError("--real and --fake go together")
        if config.layout:
            raise PlanError("--layout and --real/--fake exclude each other")
        return adhoc_spec(config.real, config.fake, size=config.size, resize=config.resize, name=config.name)
    if config.name:
        raise PlanError("--name names a --real/--fake dataset; a registered dataset or layout keeps its own name")
    subset = tuple(p.strip() for p in (config.subset or "").split(",") if p.strip())
    if config.layout:
        if not config.root:
            raise PlanError(f"--layout {config.layout} needs --root")
        spec = layout_spec(config.layout, config.root, subset, config.real_root, size=config.size)
    else:
        if config.root or config.real_root:
            raise PlanError("--root/--real-root go with --layout")
        spec = datasets(config.spec_dirs).get(config.dataset)
        if config.subset and not spec.layout:
            raise PlanError(f"--subset picks generators of a layout; dataset {spec.name} has none")
        if subset:
            spec = dataclasses.replace(spec, subset=subset)
    if spec.layout:
        spec = select_generator(spec)
    if config.resize and not spec.resize:
        spec = dataclasses.replace(spec, resize=True)
    if config.max_per_class is not None:
        spec = dataclasses.replace(spec, max_per_class=config.max_per_class)
    return spec


def resolve_test_datasets(config: RunConfig, own: DatasetSpec) -> tuple[list[DatasetSpec], bool]:
    """The specs of ``--test-datasets`` (the run's own dataset left out: it is always scored) and
    whether ``--attack-from`` names the run's dataset (``train`` is a synonym, for grids)."""
    if config.attack_from not in (None, "", "train", own.name):
        raise PlanError(f"--attack-from must name this run's dataset ({own.name!r}, or 'train'), got "
                        f"{config.attack_from!r}; without it each test dataset's own refiners are used")
    if not config.test_datasets.strip():
        if config.attack_from:
            raise PlanError("--attack-from goes with --test-datasets")
        return [], False
    registry = datasets(config.spec_dirs)
    specs = []
    for name in registry.resolve(config.test_datasets):
        if name == own.name:
            continue
        spec = registry.get(name)
        if config.resize and not spec.resize:
            spec = dataclasses.replace(spec, resize=True)
        if config.max_per_class is not None:
            spec = dataclasses.replace(spec, max_per_class=config.max_per_class)
        specs.append(spec)
    return specs, bool(config.attack_from)


def resolve_detectors(spec: str) -> list[str]:
    """Detector names from ``--detectors`` (names, patterns, ``default`` and variants ``NAME@TAG``)."""
    reg = detector_registry()
    if spec.strip() == "default":
        return [n for n in reg.list() if reg.meta(n).default]
    out: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if VARIANT_SEP in item:
            try:
                base, _ = split_variant(item)
            except ValueError as exc:
                raise PlanError(str(exc)) from None
            reg.get_entry(base)  # an unknown name fails as in reg.resolve, with suggestions
            names = [item]
        else:
            names = reg.resolve(item) if item else []
        out.extend(n for n in names if n not in out)
    return out


def check_params(cls: type, params: dict[str, Any], name: str) -> None:
    """Raise ``PlanError`` naming the accepted parameters (and the closest ones) when ``params`` has one
    ``cls`` lacks; a ``**kwargs`` constructor checks its own in ``check_params()``."""
    accepted = accepted_params(cls)
    if any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        return
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        close = [c for u in unknown for c in difflib.get_close_matches(u, list(accepted), n=1)]
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise PlanError(f"{name} has no parameter(s) {unknown}{hint}; it takes {sorted(accepted)}")


def construct(cls: type, params: dict[str, Any], **context: Any) -> Any:
    """``cls(**params)`` plus the ``context`` settings its constructor declares and ``params`` lacks
    (for benchmarks and tests that build one component outside a run)."""
    accepted = accepted_params(cls)
    kwargs = {**{k: v for k, v in context.items() if k in accepted}, **params}
    check_params(cls, kwargs, cls.__name__)
    return cls(**kwargs)


def _component(kind: str, display: str, name: str, cls: type, params: dict[str, Any],
               context: RunContext) -> Component:
    label = f"{kind} {display!r}"
    check_params(cls, params, label)
    accepted = accepted_params(cls)
    given = context.component_settings()
    from_context = tuple(k for k in CONTEXT_PARAMS if k in accepted and k not in params)
    component = Component(kind, display, name, cls, dict(params),
                          {**params, **{k: given[k] for k in from_context}}, from_context)
    try:
        component.prototype = component.build()
        validate = getattr(component.prototype, "check_params", None)
        if callable(validate):
            validate()
        if getattr(cls, "data_parallel", False):
            # Under torchrun each rank needs at least one image of every global batch: say so now, not
            # after the stages before this fit have run.
            distributed.check_global_batch(getattr(component.prototype, "batch_size", None), "its batch_size",
                                           distributed.world())
    except (ValueError, TypeError, distributed.DistributedError) as exc:
        raise PlanError(f"{label}: {exc}") from exc
    return component


def absolute_path(path: str) -> str:
    """``path`` absolute (``~`` expanded, relative to the working folder), as another process needs it."""
    return str(Path(path).expanduser().absolute())


def absolute_file_params(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the values of ``cls``'s file parameters as absolute paths (``~`` expanded):
    a detector saved by the run, a later ``bench.py detect`` and a Ray or Slurm worker started in
    another folder all read the file the user meant."""
    names = file_params(cls)
    return {k: (absolute_path(v) if k in names and isinstance(v, str) and v else v)
            for k, v in params.items()}


def absolute_detector_files(detector_params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``--set`` detector parameters with every file parameter of a registered detector made absolute
    (:func:`absolute_file_params`); names that are not detectors are left for the plan to refuse."""
    out = {}
    for name, params in detector_params.items():
        base = name.partition(VARIANT_SEP)[0]
        out[name] = absolute_file_params(detector_registry().get(base), params) if base in detector_registry() else params
    return out


def _detector_component(display: str, params: dict[str, Any], context: RunContext,
                        recorded: dict[str, str] | None = None) -> tuple[Component, list[str]]:
    """The component of detector ``display`` (a registry name or a variant ``NAME@TAG``): its files
    fingerprinted, score-only ones marked ``released <sha256[:12]>``; and notes on files whose hash
    differs from ``recorded`` (the hashes a saved config's run read)."""
    try:
        base, _ = split_variant(display)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    cls = detector_registry().get(base)
    component = _component("detector", display, base, cls, absolute_file_params(cls, params), context)
    notes = []
    for param in file_params(cls):
        path = component.kwargs.get(param)
        if not path:
            continue
        try:
            component.files[param] = file_fingerprint(path)
        except OSError as exc:
            raise PlanError(f"detector {display!r}: {param}={path}: {exc.strerror or exc}") from None
        then, now = (recorded or {}).get(param), component.files[param]["sha256"]
        if then and then != now:
            notes.append(f"detector {display!r}: {param} {path} changed since the run that saved this config "
                         f"(SHA-256 then {then[:12]}, now {now[:12]}): its numbers will differ")
    released = released_checkpoint(component.prototype)
    if released:
        match = [f for f in component.files.values() if f["path"] == str(Path(released).absolute())]
        fingerprint = match[0] if match else file_fingerprint(released)
        component.trained_on = released_label(str(fingerprint["sha256"]))
    return component, notes


def _refiner_params(config: RunConfig, spec: RefinerSpec) -> dict[str, Any]:
    base = dict(config.refiner_params.get(spec.name, {}))
    # The same value both ways is no conflict: a saved config.json names --set refine-time values in
    # its refiner list too (``spectral-match:strength=0.5``, see _refiner_display).
    clash = {k for k in set(base) & set(spec.params) if base[k] != spec.params[k]}
    if clash:
        raise PlanError(f"refiner {spec.display!r}: {sorted(clash)} set both by --set and by the short form")
    return {**base, **spec.params}


def _refiner_display(config: RunConfig, spec: RefinerSpec) -> str:
    """``spec``'s display name, carrying refine-time parameters set with ``--set`` too
    (``--set stig.strength=0.5`` -> ``stig:strength=0.5``): reports read a sweep point's strength from it."""
    cls = refiner_registry().get(spec.name)
    later = refine_time_params(cls, config.refiner_params.get(spec.name, {}))
    return refiner_display_name(spec.name, {**spec.params, **later}) if later else spec.display


def _check_targets(kind: str, params: dict[str, dict[str, Any]], selected: set[str]) -> None:
    for name in params:
        if name not in selected:
            raise PlanError(f"parameters given for {kind} {name!r}, which is not selected "
                            f"({', '.join(sorted(selected)) or 'none'})")


#: The attacker's seed, for the surrogates he fits: the run's seed plus this (his own draw, never the defender's).
SURROGATE_SEED_OFFSET = 1000


def _surrogates(names: tuple[str, ...], label: str, query: bool, context: RunContext) -> tuple[Component, ...]:
    """The attacker's own detectors of a transfer attack, built with their defaults and the attacker's seed."""
    if query:
        raise PlanError(f"{label}: a transfer attack crafts on its surrogates' gradients; a query attack has none to use")
    if len(set(names)) != len(names):
        raise PlanError(f"{label}: a surrogate is named twice in {'+'.join(names)}")
    attacker = dataclasses.replace(context, seed=context.seed + SURROGATE_SEED_OFFSET)
    out = []
    for name in names:
        try:
            cls = detector_registry().get(name)
        except KeyError as exc:
            raise PlanError(f"{label}: surrogate {name!r} is not a registered detector: {exc}") from None
        component = _component("surrogate", name, name, cls, {}, attacker)
        reason = torch_path_unavailable(component.prototype)
        if reason:
            raise PlanError(f"{label}: surrogate {name!r} has no torch path to craft on: {reason}")
        out.append(component)
    return tuple(out)


def resolve_attacks(config: RunConfig, detectors: list[Component], context: RunContext,
                    refiners: Sequence[Component] = ()) -> tuple[list[Component], list[str]]:
    """One component per ``--attack`` item and target detector, and the notes on detectors it skips.

    A named target must be a detector of the run with a torch path; without one, every detector that
    has a torch path is attacked and the others are named in a note."""
    try:
        specs = resolve_attack_specs(config.attacks)
    except (ValueError, KeyError) as exc:
        raise PlanError(str(exc)) from None
    names = [d.display for d in detectors]
    missing = {d.display: torch_path_unavailable(d.prototype) for d in detectors} if specs else {}
    out: list[Component] = []
    notes: list[str] = []
    for spec in specs:
        label = f"attack {spec.display()!r}"
        if spec.start is not None and spec.start not in [r.display for r in refiners]:
            raise PlanError(f"{label} starts from the fakes refined by {spec.start!r}, which is not a refiner of this "
                            f"run ({', '.join(r.display for r in refiners) or 'none'}); add it with --refiner")
        # A query attack reads scores only: every detector can be its target.
        query = attack_registry().meta(spec.name).knowledge == "query"
        cls = attack_registry().get(spec.name)
        if spec.surrogates:
            component = _component("attack", spec.display(), spec.name, cls, dict(spec.params), context)
            component.start, component.surrogates = spec.start, _surrogates(spec.surrogates, label, query, context)
            out.append(component)
            continue
        if spec.target is not None:
            if spec.target not in names:
                raise PlanError(f"{label}: target {spec.target!r} is not a detector of this run "
                                f"({', '.join(names)}); add it with --detectors")
            if missing[spec.target] and not query:
                raise PlanError(f"{label}: a white-box attack needs the target's torch path, and detector "
                                f"{spec.target!r} has none: {missing[spec.target]}")
            targets = [spec.target]
        elif query:
            targets = names
        else:
            targets = [n for n in names if missing[n] is None]
            skipped = [f"{n} ({missing[n]})" for n in names if missing[n]]
            if not targets:
                raise PlanError(f"{label}: no detector of this run has a torch path to attack: {'; '.join(skipped)}")
            if skipped:
                notes.append(f"{label} skips the detectors without a torch path: {'; '.join(skipped)}")
        for t in targets:
            component = _component("attack", spec.display(t), spec.name, cls, {**spec.params, "target": t}, context)
            component.start = spec.start
            out.append(component)
    if out and config.adaptive:
        notes.append("--adaptive retrains on refined fakes only; the attacked sets of --attack are not used "
                     "to retrain the detectors")
    if out and config.test_datasets.strip():
        notes.append("--attack crafts attacked sets from this run's own test fakes only; the cross-dataset "
                     "cells score no attacked set")
    return out, notes


def resolve(config: RunConfig) -> Plan:
    """Build and check every component of ``config``; reads no image (see the module docstring)."""
    for plugin in config.plugins:
        load_plugin_file(plugin)
    spec = resolve_spec(config)
    context = RunContext.from_config(config)
    refiner_specs = resolve_refiner_specs(config.refiners)
    detector_names = resolve_detectors(config.detectors)
    if not detector_names:
        raise PlanError("no detectors selected")
    if config.adaptive and not refiner_specs:
        raise PlanError("--adaptive needs at least one refiner")
    _check_targets("refiner", config.refiner_params, {s.name for s in refiner_specs})
    _check_targets("detector", config.detector_params, set(detector_names))
    perturbations = parse_perturbations(config.perturb) or parse_perturbations(CLEAN)
    if CLEAN not in [p.name for p in perturbations]:
        perturbations = parse_perturbations(CLEAN) + perturbations  # the clean condition is always scored
    refs = [_component("refiner", _refiner_display(config, s), s.name, refiner_registry().get(s.name),
                       _refiner_params(config, s), context) for s in refiner_specs]
    dets, notes = [], []
    for n in detector_names:
        component, file_notes = _detector_component(n, config.detector_params.get(n, {}), context,
                                                    config.file_hashes.get(n))
        dets.append(component)
        notes += file_notes
    plan = Plan(config, spec, context, refs, dets, perturbations, notes=notes)
    plan.attacks, attack_notes = resolve_attacks(config, dets, context, refs)
    if config.attack_reals and not plan.attacks:
        raise PlanError("--attack-reals pushes the real test images toward 'fake' with the attacks of --attack; "
                        "give at least one attack")
    plan.notes += attack_notes
    plan.test_specs, plan.attack_from_own = resolve_test_datasets(config, spec)
    fits: set[tuple[str, str]] = set()
    for c in refs + dets:
        if "seed" not in accepted_params(c.cls):
            continue
        fit = (c.kind + ":" + c.name, repr(sorted((k, repr(v)) for k, v in c.params.items()
                                                  if k not in refine_time_params(c.cls, c.params))))
        if fit in fits:  # the points of a strength sweep share one fit: one note for them all
            continue
        fits.add(fit)
        if "seed" in c.params and c.params["seed"] != config.seed:
            plan.notes.append(f"{c.kind} {c.display!r} uses seed {c.params['seed']} (set explicitly), not the run's {config.seed}")
        elif "seed" in c.from_context:
            # A preset may carry a seed of its own (STIG's paper preset: the official code's 42); the run's
            # seed replaces it so that seeds vary every component, and the run says so.
            if getattr(c.prototype, "preset", None) is None:
                continue
            own = c.cls(**c.params).get_params()  # what the preset alone would use
            if own.get("seed", config.seed) != config.seed:
                plan.notes.append(f"{c.kind} {c.display!r}: the run's seed {config.seed} replaces the seed "
                                  f"{own['seed']} of preset {own['preset']!r} (--set {c.name}.seed={own['seed']} keeps it)")
    if spec.size is not None or config.size is not None:
        plan.check_image_size(config.size or spec.size)
    return plan
