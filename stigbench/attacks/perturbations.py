"""Test-time perturbations: the post-processing an image meets between generator and detector.

A perturbation is a deterministic function on a float batch ``(N, 3, H, W)`` in ``[0, 1]`` returning
the same shape in ``[0, 1]`` (random ones are seeded per image), with a canonical name that carries
its parameter and goes into the ``perturbation`` column of ``metrics.csv``:

* ``none`` — identity (the clean condition);
* ``jpeg:Q`` — quality 95, 90, 75, 50, 30: round to 8 bits, encode with Pillow in memory (4:2:0 chroma
  subsampling, ``optimize=False``, baseline), decode;
* ``blur:S`` — sigma 1, 2, 4 pixels: Gaussian blur, kernel radius ``ceil(3 S)``, reflect padding;
* ``resize:F`` — factor 0.5, 0.25: down by ``F`` (bicubic, antialiased), back up (bicubic);
* ``noise:S`` — sigma 0.01, 0.02, 0.05 in ``[0, 1]`` units: additive Gaussian noise, clamped;
* ``crop:F`` — fraction 0.9, 0.8: centre crop keeping ``F`` of each side, back up (bicubic).

**Spec syntax** (``--perturb``), parsed by :func:`parse_perturbations`: a comma-separated list of
items; an item is ``none`` or ``family:value``; ``family:*`` expands to the family's grid above; and
``a+b`` is a *chain*, "apply ``a``, then ``b``" (``blur:2+jpeg:50`` blurs with σ 2, then
JPEG-compresses at quality 50 — the order a photo is edited, then saved). ``*`` inside a chain
expands to every combination. Canonical names write values without exponent or trailing zeros
(``blur:2``, ``resize:0.5``), so ``blur:2.0`` and ``blur:2`` are the same condition.

Perturbations are registered in :data:`PERTURBATIONS` with :func:`register_perturbation`, one
frozen dataclass per family whose single field is the parameter.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from stigbench.core.imageset import ArrayImageSet, ImageSet, map_batches, to_uint8
from stigbench.core.registry import Registry, RegistryError

P = TypeVar("P", bound=type)

CHAIN_SEP = "+"
ITEM_SEP = ","
PARAM_SEP = ":"

# Pillow's 4:2:0 chroma subsampling, which is what cameras, phones and most web encoders write. Fixed
# explicitly: Pillow's own default depends on the quality and the version.
JPEG_SUBSAMPLING = "4:2:0"


@dataclass(frozen=True)
class PerturbationInfo:
    """Metadata of a perturbation family: its parameter's name, the grid ``family:*`` expands to, and
    whether it is ``stochastic`` (its output depends on the seed given to ``__call__``/``apply``)."""

    param: str | None
    grid: tuple[float | int, ...] = ()
    description: str = ""
    reference: str = ""
    stochastic: bool = False


PERTURBATIONS: Registry[type[Perturbation]] = Registry("perturbation", required_methods=("__call__", "apply"))


def register_perturbation(
    name: str, *, param: str | None, grid: tuple[float | int, ...] = (), description: str = "", reference: str = "",
    stochastic: bool = False,
) -> Callable[[P], P]:
    """Class decorator: register a perturbation family under ``name`` (its canonical prefix).

    The class is a frozen dataclass whose only field is ``param`` (none for a parameter-free one);
    the decorator records ``name`` as the class's ``family``.
    """

    def decorator(cls: P) -> P:
        field_names = [f.name for f in fields(cls)]
        expected = [param] if param is not None else []
        if field_names != expected:
            raise TypeError(f"perturbation {name!r}: fields {field_names} must be exactly {expected}")
        cls.family = name
        for value in grid:  # a grid that does not validate would fail at the first --perturb family:*
            cls.from_value(value)
        info = PerturbationInfo(param, tuple(grid), description, reference, bool(stochastic))
        return PERTURBATIONS.register(name, info)(cls)

    return decorator


def list_perturbations(pattern: str | None = None) -> list[str]:
    """Registered perturbation families, optionally filtered by an fnmatch pattern."""
    return PERTURBATIONS.list(pattern)


def format_value(value: float | int) -> str:
    """A parameter as written in canonical names: ``2.0 -> '2'``, ``0.5 -> '0.5'``, never an exponent
    (an exponent's ``+`` would read as a chain)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return np.format_float_positional(float(value), trim="-")


def _check_batch(batch: torch.Tensor) -> torch.Tensor:
    if not isinstance(batch, torch.Tensor) or batch.dim() != 4 or batch.shape[1] != 3:
        shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ValueError(f"expected a float batch (N, 3, H, W), got {shape}")
    if not torch.is_floating_point(batch):
        raise TypeError(f"expected a floating-point batch in [0, 1], got {batch.dtype}")
    return batch.float()


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


class Perturbation:
    """Base of every perturbation: naming, checks, clamping and :meth:`apply` over an image set.

    Subclasses implement :meth:`forward`. ``seed`` and ``start`` only matter to random families:
    image ``i`` of a batch draws from a generator seeded by ``(seed, start + i)``, so its result does
    not depend on how a set is cut into batches (``apply`` passes each batch's offset as ``start``).
    """

    family: ClassVar[str] = ""
    value_type: ClassVar[type] = float

    # -- naming and construction --------------------------------------------------------------
    @property
    def value(self) -> float | int | None:
        fs = fields(self)  # type: ignore[arg-type]
        return getattr(self, fs[0].name) if fs else None

    @property
    def name(self) -> str:
        """Canonical name, e.g. ``jpeg:75`` (the ``perturbation`` column of ``metrics.csv``)."""
        return self.family if self.value is None else f"{self.family}{PARAM_SEP}{format_value(self.value)}"

    def __str__(self) -> str:
        return self.name

    @property
    def stochastic(self) -> bool:
        """Whether the output depends on the seed (the family's registry metadata)."""
        return self.family in PERTURBATIONS and PERTURBATIONS.meta(self.family).stochastic

    @classmethod
    def parse_value(cls, text: str) -> float | int:
        """The parameter from its spec text, typed and validated (``ValueError`` otherwise)."""
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{cls.family}: parameter {text!r} is not a number") from None
        if cls.value_type is int:
            if not number.is_integer():
                raise ValueError(f"{cls.family}: parameter {text!r} must be an integer")
            number = int(number)
        cls.from_value(number)  # validates
        return number

    @classmethod
    def from_value(cls, value: float | int | None) -> Perturbation:
        fs = fields(cls)  # type: ignore[arg-type]
        return cls(**({fs[0].name: value} if fs else {}))

    # -- application ---------------------------------------------------------------------------
    def forward(self, batch: torch.Tensor, seed: int, start: int) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, batch: torch.Tensor, seed: int = 0, start: int = 0) -> torch.Tensor:
        """Perturb a float batch ``(N, 3, H, W)`` in ``[0, 1]``; float32, same shape, in ``[0, 1]``."""
        batch = _check_batch(batch)
        out = self.forward(batch, _check_seed(seed), int(start)).clamp(0.0, 1.0)
        if out.shape != batch.shape:  # pragma: no cover - a family bug
            raise RuntimeError(f"{self.name} changed the shape {tuple(batch.shape)} -> {tuple(out.shape)}")
        return out

    def apply(self, image_set: ImageSet, batch_size: int = 64, store: str | Path | None = None, seed: int = 0,
              progress: str | None = None) -> ArrayImageSet:
        """Perturb every image of ``image_set``; the result is rounded to 8 bits (see ``map_batches``)."""
        seed = _check_seed(seed)
        offset = [0]

        def fn(batch: torch.Tensor) -> torch.Tensor:
            out = self(batch, seed=seed, start=offset[0])
            offset[0] += len(batch)
            return out

        return map_batches(image_set, fn, batch_size, progress=progress, store=store)


# -- families ------------------------------------------------------------------------------------
@register_perturbation("none", param=None, description="identity: the clean condition")
@dataclass(frozen=True)
class Identity(Perturbation):
    def forward(self, batch: torch.Tensor, seed: int, start: int) -> torch.Tensor:
        return batch.clone()


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """One ``uint8`` ``(3, H, W)`` image as a JPEG stream (Pillow, baseline, 4:2:0, no optimisation)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), "RGB").save(
        buf, format="JPEG", quality=int(quality), subsampling=JPEG_SUBSAMPLING, optimize=False, progressive=False
    )
    return buf.getvalue()


@register_perturbation("jpeg", param="quality", grid=(95, 90, 75, 50, 30),
                       description="JPEG re-compression (Pillow/libjpeg, 4:2:0, optimize off)",
                       reference="Wang et al., CVPR 2020; Frank et al., ICML 2020; Corvi et al., ICASSP 2023")
@dataclass(frozen=True)
class Jpeg(Perturbation):
    """JPEG at the IJG quality ``quality`` (1..100), encoded and decoded in memory.

    The image is rounded to 8 bits first, as a real file would be before encoding; the quality goes
    straight to libjpeg's quantisation-table scaling (checked by a test: each quality yields a
    different stream, guarding against wrappers that silently drop the setting).
    """

    quality: int
    value_type: ClassVar[type] = int

    def __post_init__(self) -> None:
        if isinstance(self.quality, bool) or not isinstance(self.quality, (int, np.integer)) \
                or not 1 <= self.quality <= 100:
            raise ValueError(f"jpeg: quality must be an integer in 1..100, got {self.quality!r}")

    def forward(self, batch: torch.Tensor, seed: int, start: int) -> torch.Tensor:
        images = to_uint8(batch)
        decoded = []
        for img in images:
            with Image.open(io.BytesIO(jpeg_bytes(img, self.quality))) as im:
                decoded.append(np.asarray(im.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))
        out = torch.from_numpy(np.stack(decoded)).float() / 255.0
        return out.to(batch.device)


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised sampled Gaussian, radius ``ceil(3 sigma)`` (same taps as torchvision's blur)."""
    radius = math.ceil(3.0 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).float()


def gaussian_blur(batch: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with reflect padding (torch ``reflect``: the edge
    pixel is not repeated, scipy's ``mirror``), so no dark border bleeds in and a constant image stays
    constant."""
    k = gaussian_kernel1d(sigma).to(batch.device)
    r = (k.numel() - 1) // 2
    n, c, h, w = batch.shape
    if r >= min(h, w):
        raise ValueError(f"blur:{format_value(sigma)} needs images larger than its kernel radius {r} px, got {h}x{w}")
    x = F.pad(batch.reshape(n * c, 1, h, w), (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x.reshape(n, c, h, w)


@register_perturbation("blur", param="sigma", grid=(1.0, 2.0, 4.0),
                       description="Gaussian blur, sigma in pixels, radius ceil(3 sigma), reflect padding",
                       reference="Wang et al., CVPR 2020; Frank et al., ICML 2020")
@dataclass(frozen=True)
class Blur(Perturbation):
    sigma: float

    def __post_init__(self) -> None:
        if not 0.0 < float(self.sigma) <= 32.0:
            raise ValueError(f"blur: sigma must be in (0, 32] pixels, got {self.sigma!r}")

    def forward(self, batch: torch.Tensor, seed: int, start: int) -> torch.Tensor:
        return gaussian_blur(batch, float(self.sigma))


def down_up(batch: torch.Tensor, factor: float) -> torch.Tensor:
    """Resize by ``factor`` with antialiased bicubic (Pillow-like: the filter widens by 1/factor, so
    frequencies above the new Nyquist are removed rather than aliased), clamp as an 8-bit file would,
    and resize back to the original size with bicubic."""
    h, w = batch.shape[-2:]
    small_size = (max(1, round(h * factor)), max(1, round(w * factor)))
    small = F.interpolate(batch, size=small_size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)


@register_perturbation("resize", param="factor", grid=(0.5, 0.25),
                       description="down by factor (antialiased bicubic) and back up (bicubic)",
                       reference="Frank et al., ICML 2020; Corvi et al., ICASSP 2023")
@dataclass(frozen=True)
class Resize(Perturbation):
    factor: float

    def __post_init__(self) -> None:
        if not 0.0 < float(self.factor) < 1.0:
            raise ValueError(f"resize: factor must be in (0, 1), got {self.factor!r}")

    def forward(self, batch: torch.Tensor, seed: int, start: int) -> torch.Tensor:
        return down_up(batch, float(self.factor))


def image_generator(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index`` under base ``seed``: independent of batching and of the
    other images (a ``SeedSequence`` over both numbers, so nearby seeds do not share streams)."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


@register_perturbation("noise", param="sigma", grid=(0.01, 0.02, 0.05),
                       description="additive Gaussian noise, sigma in [0, 1] intensity units, clamped",
                       reference="Frank et al., ICML 2020", stochastic=True)
@dataclass(frozen=True)
class Noise(Perturbation):
    sigma: float

    def __post_init__(self) -> None:
        if not 0.0 < float(self.sigma) <= 1.0:
            raise ValueError(f"noise: sigma must be in (0, 1], got {self.sigma!r}")

    def forward(self, batch: torch.Tensor, seed: int, start: int) -> torch.Tensor:
        shape = tuple(batch.shape[1:])
        noise = np.stack([image_generator(seed, start + i).standard_normal(shape, dtype=np.float32)
                          for i in range(batch.shape[0])]) if len(batch) else np.zeros(batch.shape, np.float32)
        return batch + float(self.sigma) * torch.from_numpy(noise).to(batch.device)


def center_crop_resize(batch: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keep the central ``fraction`` of each side (``round(fraction * side)`` pixels, offset
    ``(side - crop) // 2``) and resize back to the full size with bicubic."""
    h, w = batch.shape[-2:]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = batch[..., top:top + ch, left:left + cw]
    return F.interpolate(crop, size=(h, w), mode="bicubic", align_corners=False)


@register_perturbation("crop", param="fraction", grid=(0.9, 0.8),
                       description="centre crop keeping a fraction of each side, resized back (bicubic)",
                       reference="Corvi et al., ICASSP 2023")
@dataclass(frozen=True)
class Crop(Perturbation):
    fraction: float

    def __post_init__(self) -> None:
        if not 0.0 < float(self.fraction) < 1.0:
            raise ValueError(f"crop: fraction must be in (0, 1), got {self.fraction!r}")

    def forward(self, batch: torch.Tensor, seed: int, start: int) -> torch.Tensor:
        return center_crop_resize(batch, float(self.fraction))


# -- chains --------------------------------------------------------------------------------------
def step_seed(seed: int, k: int) -> int:
    """Seed of step ``k`` of a chain: ``seed`` itself for the first step (so ``noise:0.02+jpeg:75``
    extends ``noise:0.02`` with the very same noise), an independent derived seed for later steps
    (so ``noise:0.01+noise:0.01`` draws twice)."""
    return seed if k == 0 else int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


@dataclass(frozen=True)
class Chain(Perturbation):
    """Steps applied left to right; the name joins the steps' names with ``+``.

    Each step clamps to ``[0, 1]`` (each stands for a saved image); only JPEG rounds to 8 bits
    inside a chain, and ``apply`` rounds the end result.
    """

    steps: tuple[Perturbation, ...]

    def __post_init__(self) -> None:
        if len(self.steps) < 2:
            raise ValueError("a chain needs at least two steps")
        for step in self.steps:
            if isinstance(step, (Chain, Identity)) or not isinstance(step, Perturbation):
                raise ValueError(f"a chain step must be a single perturbation other than 'none', got {step!r}")

    @property
    def name(self) -> str:
        return CHAIN_SEP.join(step.name for step in self.steps)

    @property
    def value(self) -> None:
        return None

    @property
    def stochastic(self) -> bool:
        return any(step.stochastic for step in self.steps)

    def forward(self, batch: torch.Tensor, seed: int, start: int) -> torch.Tensor:
        for k, step in enumerate(self.steps):
            batch = step(batch, seed=step_seed(seed, k), start=start)
        return batch


# -- parsing -------------------------------------------------------------------------------------
def _family(name: str) -> tuple[type[Perturbation], PerturbationInfo]:
    return PERTURBATIONS.get(name), PERTURBATIONS.meta(name)


def _parse_step(text: str) -> list[Perturbation]:
    """One ``family[:value|:*]`` into its perturbation(s)."""
    family, sep, arg = (part.strip() for part in text.partition(PARAM_SEP))
    if not family:
        raise ValueError(f"perturbation {text!r} has no family name (expected e.g. 'jpeg:75')")
    cls, info = _family(family)
    if info.param is None:
        if sep:
            raise ValueError(f"perturbation {family!r} takes no parameter, got {text!r}")
        return [cls.from_value(None)]
    grid = ",".join(format_value(v) for v in info.grid)
    if not sep or not arg:
        raise ValueError(f"perturbation {family!r} needs its {info.param}, e.g. "
                         f"'{family}:{format_value(info.grid[0])}' or '{family}:*' for {grid}")
    if arg == "*":
        return [cls.from_value(v) for v in info.grid]
    if PARAM_SEP in arg:
        raise ValueError(f"perturbation {text!r}: one parameter only")
    return [cls.from_value(cls.parse_value(arg))]


def parse_perturbation(item: str) -> Perturbation:
    """Exactly one perturbation or chain from its (canonical or not) name; no ``*``.

    Raises :class:`~stigbench.core.registry.RegistryError` (a ``KeyError``) for an unknown family, with
    suggestions, and ``ValueError`` for a bad parameter.
    """
    found = parse_perturbations(item)
    if len(found) != 1 or "*" in item or ITEM_SEP in item:
        raise ValueError(f"{item!r} names {len(found)} perturbations; expected exactly one")
    return found[0]


def parse_perturbations(spec: str) -> list[Perturbation]:
    """Perturbations from a CLI spec such as ``'none,jpeg:*,blur:2+jpeg:50'`` (see the module doc).

    Order is kept and duplicates (by canonical name) dropped; a blank spec gives ``[]``. Unknown
    families raise :class:`~stigbench.core.registry.RegistryError` ("did you mean"), bad parameters
    ``ValueError``.
    """
    out: list[Perturbation] = []
    seen: set[str] = set()
    for item in (s.strip() for s in spec.split(ITEM_SEP)):
        if not item:
            continue
        steps = [s.strip() for s in item.split(CHAIN_SEP)]
        if any(not s for s in steps):
            raise ValueError(f"empty step in chain {item!r} (syntax: 'blur:2+jpeg:50')")
        options = [_parse_step(s) for s in steps]
        for combo in itertools.product(*options):
            if len(combo) > 1 and any(isinstance(p, Identity) for p in combo):
                raise ValueError(f"'none' cannot be part of a chain: {item!r}")
            p = combo[0] if len(combo) == 1 else Chain(tuple(combo))
            if p.name not in seen:
                seen.add(p.name)
                out.append(p)
    return out


def describe_perturbations() -> list[dict[str, Any]]:
    """One row per family (name, parameter, grid, description), for ``list perturbations``."""
    rows = []
    for name in PERTURBATIONS.list():
        info = PERTURBATIONS.meta(name)
        rows.append({"name": name, "param": info.param or "", "grid": ",".join(format_value(v) for v in info.grid),
                     "description": info.description})
    return rows


__all__ = [
    "PERTURBATIONS", "Blur", "Chain", "Crop", "Identity", "Jpeg", "Noise", "Perturbation", "PerturbationInfo",
    "RegistryError", "Resize", "center_crop_resize", "describe_perturbations", "down_up", "format_value",
    "gaussian_blur", "gaussian_kernel1d", "image_generator", "jpeg_bytes", "list_perturbations",
    "parse_perturbation", "parse_perturbations", "register_perturbation", "step_seed",
]
