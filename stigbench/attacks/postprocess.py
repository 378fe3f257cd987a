"""Training-free attack baselines: common post-processing applied to every fake.

``blur`` (Gaussian low-pass), ``jpeg`` (re-compression) and ``resample`` (down-and-up resize) are the
laundering operations robustness studies of detectors report (Wang et al., CVPR 2020; Frank et al.,
ICML 2020; Corvi et al., ICASSP 2023): they erase high-frequency generator fingerprints without any
knowledge of the detector. They reuse :mod:`stigbench.attacks.perturbations`, so ``--refiner jpeg:75`` and
``--perturb jpeg:75`` perform the very same operation.

Registry names are plain; the parameter is a constructor argument (``sigma``, ``quality``,
``factor``). The short form ``name:value`` of the CLI (``--refiner 'stig,blur:2,jpeg:75'``) goes
through :func:`resolve_refiner_spec` / :func:`resolve_refiner_specs`, which works for any refiner
class that declares ``spec_param``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from stigbench.core.contracts import ImageSetLike
from stigbench.core.estimator import Estimator
from stigbench.core.imageset import ArrayImageSet, map_batches
from stigbench.core.io import read_json, write_json
from stigbench.attacks.perturbations import Blur, Jpeg, Perturbation, Resize, format_value
from stigbench.attacks.registry import refiners as refiner_registry
from stigbench.attacks.registry import register_refiner

FIT_INFO_FILE = "fit_info.json"


class PerturbationAttack(Estimator):
    """Shared body: one fixed perturbation applied to every image; nothing to learn.

    ``fit`` validates the parameter and records ``image_size_`` (the size ``bench.py refine`` uses by
    default); ``refine`` works at any size, since nothing was fitted to one. Subclasses set
    ``perturbation_cls`` and ``spec_param`` (the constructor argument the CLI's ``name:value`` sets).
    """

    perturbation_cls: ClassVar[type[Perturbation]]
    spec_param: ClassVar[str]

    def perturbation(self) -> Perturbation:
        """The perturbation this attack applies (validates the parameter)."""
        return self.perturbation_cls.from_value(getattr(self, self.spec_param))

    def fit(self, fake_set: ImageSetLike, real_set: ImageSetLike) -> PerturbationAttack:
        self.perturbation()  # a bad parameter fails here, before any image is touched
        size = getattr(fake_set, "size", None)
        self.image_size_ = int(size) if size is not None else int(fake_set[0].shape[-1])
        self.fit_info_ = {"image_size": self.image_size_, "training_free": True}
        return self

    def refine_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Attack a float batch ``(N, 3, H, W)``; floats in ``[0, 1]``."""
        self._check_fitted("image_size_")
        return self.perturbation()(images)

    def refine(self, image_set: ImageSetLike, store: str | Path | None = None) -> ArrayImageSet:
        self._check_fitted("image_size_")
        p = self.perturbation()
        return map_batches(image_set, p, self.batch_size, progress=f"{p.name}: refine", store=store)

    def save(self, path: str | Path) -> None:
        self._check_fitted("image_size_")
        folder = self.save_params(path)
        write_json(folder / FIT_INFO_FILE, self.fit_info_)

    @classmethod
    def load(cls, path: str | Path) -> PerturbationAttack:
        obj = cls.from_params(path)
        obj.fit_info_ = read_json(Path(path) / FIT_INFO_FILE)
        obj.image_size_ = int(obj.fit_info_["image_size"])
        return obj


@register_refiner("blur", paper="common post-processing baseline: Gaussian blur (as in the robustness "
                  "evaluations of Wang et al., CVPR 2020; Frank et al., ICML 2020)", kind="training-free",
                  description="Gaussian low-pass, sigma in pixels, radius ceil(3 sigma), reflect padding")
class BlurAttack(PerturbationAttack):
    """Gaussian blur with standard deviation ``sigma`` pixels (see :class:`~stigbench.attacks.perturbations.Blur`)."""

    perturbation_cls = Blur
    spec_param = "sigma"

    def __init__(self, sigma: float = 1.0, batch_size: int = 64) -> None:
        self.sigma = sigma
        self.batch_size = batch_size


@register_refiner("jpeg", paper="common post-processing baseline: JPEG re-compression (as in the robustness "
                  "evaluations of Frank et al., ICML 2020; Corvi et al., ICASSP 2023)", kind="training-free",
                  description="Pillow JPEG at the given quality, 4:2:0, optimize off, decoded back")
class JpegAttack(PerturbationAttack):
    """JPEG re-compression at IJG ``quality`` (see :class:`~stigbench.attacks.perturbations.Jpeg`)."""

    perturbation_cls = Jpeg
    spec_param = "quality"

    def __init__(self, quality: int = 75, batch_size: int = 64) -> None:
        self.quality = quality
        self.batch_size = batch_size


@register_refiner("resample", paper="common post-processing baseline: down-and-up resampling (as in the "
                  "robustness evaluations of Frank et al., ICML 2020; Corvi et al., ICASSP 2023)",
                  kind="training-free", description="antialiased bicubic down by factor, bicubic back up")
class ResampleAttack(PerturbationAttack):
    """Resize by ``factor`` and back (see :class:`~stigbench.attacks.perturbations.Resize`)."""

    perturbation_cls = Resize
    spec_param = "factor"

    def __init__(self, factor: float = 0.5, batch_size: int = 64) -> None:
        self.factor = factor
        self.batch_size = batch_size


# -- the CLI's short form ------------------------------------------------------------------------
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
    from stigbench.attacks.perturbations import PERTURBATIONS

    if pcls is None or not pcls.family:
        return ()
    return PERTURBATIONS.meta(pcls.family).grid
