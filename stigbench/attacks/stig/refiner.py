"""``stig``: Spectrum Translation for Refinement of Image Generation.

Lee, Jung, Seo, "Spectrum Translation for Refinement of Image Generation (STIG) Based on Contrastive
Learning and Spectral Filter Profile", AAAI 2024, arXiv 2403.05093. An unpaired translator of
log-magnitude spectra (fakes -> reals) that keeps each fake's phase; see :mod:`.translator` for the
forward pass and its decisions, :mod:`.trainer` for the losses and schedule, :mod:`.presets` for the
named settings. The official code's bugs (training on the evaluation set, index-paired real and fake,
an ``fftshift`` over the batch axes, a schedule counted in images, PatchNCE silently on one layer, a
modulus + min-max rebuild) are not reproduced.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from pathlib import Path
from typing import Any, ClassVar

import torch

from stigbench.core.contracts import ImageSetLike
from stigbench.core.device import PRECISIONS, autocast, resolve_device, resolve_precision
from stigbench.core.estimator import PARAMS_FILE, Estimator
from stigbench.core.imageset import ArrayImageSet, map_batches
from stigbench.core.io import read_json, write_json
from stigbench.attacks.registry import register_refiner
from stigbench.attacks.strength import STRENGTHS, blend_log_magnitude, check_strength

from .presets import PARAM_NAMES, StigPreset, resolve
from .trainer import StigTrainer, build_translator
from .translator import SpectrumTranslator

WEIGHTS_FILE = "translator.pt"
FIT_INFO_FILE = "fit_info.json"


@register_refiner(
    "stig",
    paper="Lee, Jung, Seo, Spectrum Translation for Refinement of Image Generation (STIG), AAAI 2024, arXiv 2403.05093",
    kind="learned",
    description="UNet++ translation of log-magnitude spectra (fake -> real), phase kept; GAN + PatchNCE + SSIM + LF",
)
class StigRefiner(Estimator):
    """STIG refiner. ``preset`` names a :class:`~.presets.StigPreset`; keyword ``overrides`` replace any of
    its fields (``StigRefiner("cpu", levels=4, iterations=900)``; ``None`` keeps the preset's value), and
    ``seed`` replaces its seed. :meth:`config` is the resolved preset; :meth:`get_params` lists every
    resolved field, so a saved refiner records all of them.

    ``fit(fake_set, real_set, log_dir=None)`` trains on unpaired sets (resuming from a checkpoint in
    ``log_dir``); ``refine(image_set)`` returns the refined images; ``fit_info_`` describes the run.
    See :class:`~.presets.StigPreset` for the meaning of each hyper-parameter.

    ``strength`` in ``[0, 1]`` acts at refine time only: each fake's log-magnitude is moved that far
    toward the translator's output, its phase kept (:func:`~stigbench.attacks.strength.blend_log_magnitude`);
    1 (the default) is the translator's output itself, 0 the fake.
    """

    #: Trains with every torchrun rank (:mod:`stigbench.core.distributed`).
    data_parallel = True
    #: Acts at refine time only: not part of the fit stage's key, so a sweep trains once.
    refine_params: ClassVar[tuple[str, ...]] = ("strength",)
    #: What ``stig:strength=*`` expands to.
    param_grids: ClassVar[dict[str, tuple[float, ...]]] = {"strength": STRENGTHS}

    def __init__(self, preset: str = "cpu", *, strength: float = 1.0, seed: int | None = None, device: str = "auto",
                 precision: str = "auto", progress: bool = True, **overrides: Any) -> None:
        # The run hands its seed, device, precision and progress to the parameters a constructor declares,
        # so those four are named; every other keyword is a StigPreset field, checked in check_params.
        self.preset = preset
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self.strength = strength
        self.seed = seed
        self.device = device
        self.precision = precision
        self.progress = progress

    @classmethod
    def declared_params(cls) -> dict[str, inspect.Parameter]:
        """Every keyword ``StigRefiner(...)`` accepts, in the order of display names and ``params.json``:
        the preset, each :class:`~.presets.StigPreset` field (``None``: the preset's value), then the
        refine-time and run settings (:func:`stigbench.core.estimator.accepted_params`)."""
        named = {k: p for k, p in inspect.signature(cls.__init__).parameters.items()
                 if k != "self" and p.kind is not p.VAR_KEYWORD}
        fields = {n: named.pop(n, None) or inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None)
                  for n in PARAM_NAMES}
        first = next(iter(named))  # the preset: positional, then its fields
        return {first: named.pop(first), **fields, **named}

    def config(self) -> StigPreset:
        """The resolved hyper-parameters: the preset with the overrides (and ``seed``), validated."""
        return resolve(self.preset, self.overrides if self.seed is None else {**self.overrides, "seed": self.seed})

    def __getattr__(self, name: str) -> Any:
        # A hyper-parameter reads as an attribute (``refiner.levels``), as on any scikit-learn estimator.
        if name in PARAM_NAMES:
            return getattr(self.config(), name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def get_params(self) -> dict[str, Any]:
        """The preset's name, every resolved hyper-parameter and the refine-time and run settings: what
        ``save`` writes and ``StigRefiner(**params)`` rebuilds."""
        resolved = self.config().params()
        return {name: resolved[name] if name in resolved else getattr(self, name) for name in self._param_names()}

    def check_params(self) -> None:
        """Validate every hyper-parameter now: a run's plan calls this before any image is read."""
        self.config()
        check_strength(self.strength)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def check_image_size(self, size: int) -> None:
        """Fail before training when the networks cannot take ``size`` px images."""
        if size < 32:  # the spectrum PatchGAN's fourth stride-2 stage would reach 1x1
            raise ValueError(f"STIG needs images of at least 32x32, got {size}x{size}")
        multiple = 2 ** (self.levels - 1)
        if size % multiple:
            raise ValueError(f"levels={self.levels} needs an image size that is a multiple of {multiple}, got {size}")

    # -- training ----------------------------------------------------------------------------------
    def fit(self, fake_set: ImageSetLike, real_set: ImageSetLike, log_dir: str | Path | None = None) -> StigRefiner:
        config = self.config()
        device = resolve_device(self.device)
        precision = resolve_precision(self.precision, device)
        trainer = StigTrainer(config, fake_set, real_set, device=device, precision=precision, log_dir=log_dir,
                              progress=self.progress)
        resumed_at = trainer.iteration if trainer.resume() else 0
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
        self.translator_ = trainer.kept_refiner()
        self.image_size_ = trainer.size
        g_params = sum(p.numel() for p in trainer.G.parameters())
        self.fit_info_: dict[str, Any] = {
            "preset": self.preset,
            "params": {k: v for k, v in self.get_params().items()
                       if k not in ("strength", "device", "precision", "progress")},
            "variant": {
                "identity_init": config.identity_init,
                "spectrum_norm": config.spectrum_norm,
                "symmetric": config.symmetric,
                "periodic": config.periodic,
                "rings": config.rings,
                "profile_scale": config.profile_scale,
                "d_input": config.d_input,
                "ema": config.ema,
                "norm": config.norm,
                "padding": config.padding,
                "profile_discriminator_weight": config.w_psd,
                "moment_matching": ({"weight": config.w_mean, "moments": config.match_moments, "luma": config.match_luma}
                                    if config.w_mean > 0 else None),
                "spectral_identity_on_reals": config.w_spec_identity,
                "reconstruction": ("real part of the inverse FFT with the fake's phase"
                                   + (", plus the smooth component" if config.periodic else "") + ", clamped to [0, 1]"),
                "profile_discriminator": "linear on the per-ring standardised profile, raw LSGAN score (no sigmoid)",
            },
            "device": str(device),
            "precision": precision,
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "image_size": trainer.size,
            "n_fake": trainer.fakes.n,
            "n_real": trainer.reals.n,
            "iterations": trainer.total,
            "resumed_from_iteration": resumed_at,
            **({"world_size": trainer.world.world_size} if trainer.world is not None else {}),
            "train_seconds": round(trainer.train_seconds, 3),
            "seconds_per_iteration": round(trainer.train_seconds / max(1, trainer.total), 5),
            "fit_wall_seconds_this_call": round(wall, 3),
            "generator_parameters": g_params,
            "final_losses": trainer.final_losses(50),
            "selection": trainer.selection_info(),
            # What D_s ended up rewarding, per ring (DC first; on the standardised profile, so comparable
            # across rings): a negative weight means G gains by lowering that ring.
            "profile_discriminator_weights": [round(float(w), 5) for w in trainer.D_s.linear.weight[0].detach().cpu()],
        }
        return self

    # -- inference ---------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return resolve_device(self.device)

    def refine_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Refine a float batch ``(N, 3, S, S)`` in ``[0, 1]``; returns float32 on the CPU."""
        self._check_fitted("translator_")
        s = self.image_size_
        if tuple(images.shape[-3:]) != (3, s, s):
            raise ValueError(f"this STIG refiner was trained on 3x{s}x{s} images, got {tuple(images.shape[-3:])}")
        device = self._device()
        precision = resolve_precision(self.precision, device)
        self.translator_.to(device).eval()
        with torch.inference_mode(), autocast(device, precision):
            out = self.translator_(images.to(device))
        return blend_log_magnitude(images.float().cpu(), out.float().cpu(), self.strength)

    def refine(self, image_set: ImageSetLike, store: str | Path | None = None) -> ArrayImageSet:
        self._check_fitted("translator_")
        return map_batches(image_set, self.refine_batch, self.refine_batch_size,
                           progress="stig: refine" if self.progress else None, store=store)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """``params.json``, ``translator.pt`` (G and its spectrum statistics) and ``fit_info.json``."""
        self._check_fitted("translator_")
        folder = self.save_params(path)
        state = {k: v.detach().cpu() for k, v in self.translator_.state_dict().items()}
        torch.save(state, folder / WEIGHTS_FILE)
        write_json(folder / FIT_INFO_FILE, self.fit_info_)

    @classmethod
    def load(cls, path: str | Path) -> StigRefiner:
        folder = Path(path)
        saved = read_json(folder / PARAMS_FILE)
        # A hyper-parameter added after this refiner was saved takes its off value (the dataclass
        # default, the behaviour of the code that saved it), not today's preset value: a refiner trained
        # with zero padding must not be loaded with circular padding.
        defaults = {f.name: f.default for f in dataclasses.fields(StigPreset) if f.name != "description"}
        missing = {k: v for k, v in defaults.items() if k not in saved["params"]}
        obj = cls.from_params(folder)  # checks the saved class
        if missing:
            obj = cls(**{**saved["params"], **missing})
        obj.fit_info_ = read_json(folder / FIT_INFO_FILE)
        obj.image_size_ = int(obj.fit_info_["image_size"])
        translator: SpectrumTranslator = build_translator(obj.config(), obj.image_size_)
        translator.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        obj.translator_ = translator.to(obj._device()).eval()
        return obj
