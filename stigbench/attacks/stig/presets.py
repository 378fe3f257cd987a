"""Named hyper-parameter sets of the STIG refiner (Lee, Jung, Seo, AAAI 2024, arXiv 2403.05093).

A preset (:class:`StigPreset`) fixes every hyper-parameter: networks, losses, optimisation and
checkpoint selection. :class:`~stigbench.attacks.stig.refiner.StigRefiner` takes one by name
(``--set stig.preset=NAME``) and keyword overrides of each field (``--set stig.PARAM=VALUE``).

* ``paper`` — the paper's setting: 256², UNet++ 5 levels width 64, batch 1, 10 epochs, Adam 8e-5
  (0.5, 0.999), loss weights of the official code, PatchNCE on encoder layer 0 with the effective
  weight 20 per term that the official code ends up using, seed 42, no identity start, per-image
  min-max spectrum normalisation, the sigmoid output, and the last refiner kept (no selection set).
* ``cpu`` (default) — for 2 CPU cores and small images (~2-5 min at 64², bf16 where the CPU has it):
  UNet++ 3 levels width 16, identity start, per-frequency real-set spectrum normalisation, batch 4,
  13 epochs but at least 600 iterations (``min_iterations``) at lr 1e-3, PatchNCE weight 1 on layers 0
  and 1, content SSIM weight 5, D on the rebuilt image's spectrum, the moving average of G's weights
  (decay 0.995) as the refiner, and the refiner chosen on 15 % of the training fakes held out, when
  that selection set can see the fingerprint above its noise floor, else the last one
  (:mod:`.selection`). The floor: 13 epochs of the 50-150 training fakes users have are 160-490
  iterations, where the selection curves of the real development sets were still falling (GTSRB DDPM,
  82 fakes: held-out LFD 0.0199 -> 0.0134 after 400 iterations, 0.0116 after 600; with 1,000 the game
  overshot after ~550 and the selection caught it). Its cost: ~1.5 min at 64², 5.5-10.5 min at 128² on 2
  cores. Its losses depart from the paper's where the paper's version made the attack *add* evidence
  on the calibrated ``demo-gan`` / ``demo-diffusion`` data:

  - no linear profile discriminator D_s (``w_psd=0``): it learns a slope over the rings, whose
    gradient does not shrink as G moves, and pushed the high frequencies past the reals';
  - moment matching instead (``w_mean=100``, ``match_moments=2``, ``match_luma=True``;
    :class:`~.losses.MeanMatchingLoss`): the first and second moments of the refined spectra, per
    colour channel and of the luma, are pulled onto the reals' and the push stops there (detectors
    read powers, which matching mean log-magnitudes alone leaves too high at the highest frequencies);
  - an identity term on the reals' spectra (``w_spec_identity=10``): without it G raised every
    image's high frequencies, so refined *reals* looked more real than reals;
  - circular padding in G (``padding="circular"``): the centred spectrum is periodic, and with zero
    padding G treated its border (the Nyquist row and column) as an edge.
* ``gpu`` — paper networks and losses with the ``cpu`` preset's identity start and normalisation,
  PatchNCE on layers 0-2, batch 8, lr 2e-4, 10 epochs but at least 2,000 iterations, the ``cpu``
  preset's selection rule; not tuned (no GPU run yet).

Every preset states its selection rule: ``paper`` keeps the last refiner (no selection set, as the
paper); ``cpu`` and ``gpu`` select on held-out fakes when the selection set can see them, else keep the
last; with ``--fit-refiners-on test`` the selection fakes are carved out of the test fakes the refiner
is fitted on (and still refined and scored) under the same rule.

Measurements: ``benchmarks/RESULTS.md`` ("STIG ablation on demo-gan" for each departure,
"bench_stig_families" for the preset over seeds, "STIG preset history" for the variants tried
earlier); docs/stig.md summarises them.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StigPreset:
    """Every hyper-parameter of STIG. Exactly one of ``iterations`` / ``epochs`` is set; an epoch is
    ``ceil(n_train_fakes / batch_size)`` iterations."""

    # generator G (UNet++)
    levels: int = 5
    width: int = 64
    norm: str = "group"
    upsample: str = "bicubic"
    padding: str = "zeros"  # "circular": the spectrum is periodic, its border bins are not an edge
    identity_init: bool = False
    spectrum_norm: str = "minmax"
    symmetric: bool = False  # symmetrise G's output (the magnitude of a real image is; G's raw output is not)
    periodic: bool = False  # G works on the periodic component of Moisan's decomposition (no border cross)
    # discriminators
    d_width: int = 64
    d_input: str = "generator"  # what D sees as refined: G's raw output (paper) or the rebuilt "image"'s spectrum
    rings: str = "square"
    profile_scale: str = "minmax"  # D_s's profile: min-max scaled per image (paper) or "none"
    # PatchNCE
    nce_layers: tuple[int, ...] = (0,)
    nce_patches: int = 256
    nce_temperature: float = 0.07
    nce_dim: int = 256
    # loss weights (each the weight of one term; the NCE and LF terms are applied to fakes and reals)
    w_gan: float = 3.0
    w_psd: float = 3.0
    w_mean: float = 0.0  # mean-spectrum matching that stops at the reals (losses.MeanMatchingLoss); not in the paper
    match_moments: int = 1  # 2: match the second moments of the normalised spectra too
    match_luma: bool = False  # match the luma spectrum's moments as well as each colour channel's
    w_nce: float = 10.0
    w_ssim_identity: float = 3.0
    w_spec_identity: float = 0.0  # L1 identity on the reals' normalised spectra (not in the paper)
    w_ssim_content: float = 1.0
    w_lf: float = 3.0
    lf_sigma: float = 8.0  # half-side of the low-frequency box at N = 256, scaled with N
    # optimisation
    batch_size: int = 1
    iterations: int | None = None
    epochs: float | None = 10.0
    # Floor on an epoch-counted budget: on a small set a few epochs are a few hundred iterations, too few
    # for the game to settle (selection curves still falling at the last evaluation). 0: no floor. An
    # explicit iterations/epochs override turns it off unless it is given too (StigRefiner).
    min_iterations: int = 0
    lr: float = 8e-5
    beta1: float = 0.5
    beta2: float = 0.999
    constant_lr_fraction: float = 0.2
    ema: float = 0.0  # decay of the moving average of G's weights that is kept; 0: keep G as trained (paper)
    # checkpoint selection on a held-out part of the training images (see .selection); 0: keep the last
    select_fraction: float = 0.15
    select_evals: int = 20  # evaluations spread evenly over training (plus one before the first step)
    seed: int = 42
    # bookkeeping
    checkpoint_every: int = 1000
    refine_batch_size: int = 32
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        choices = {"norm": ("group", "instance", "batch"), "upsample": ("bicubic", "bilinear"), "padding": ("zeros", "circular"),
                   "spectrum_norm": ("minmax", "real-channel", "real-frequency"), "rings": ("square", "circular"),
                   "d_input": ("generator", "image"), "profile_scale": ("minmax", "none"), "match_moments": (1, 2)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0.0 <= self.select_fraction < 1.0:
            raise ValueError(f"select_fraction must be in [0, 1), got {self.select_fraction}")
        if int(self.min_iterations) < 0:
            raise ValueError(f"min_iterations must be >= 0, got {self.min_iterations}")
        for name in ("levels", "width", "d_width", "nce_patches", "nce_dim", "batch_size", "checkpoint_every",
                     "refine_batch_size", "select_evals"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.levels < 2:
            raise ValueError(f"levels must be >= 2, got {self.levels}")
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError("set exactly one of iterations and epochs (the other None)")
        if not self.nce_layers or any(not 0 <= k < self.levels for k in self.nce_layers):
            raise ValueError(f"nce_layers must be encoder levels in 0..{self.levels - 1}, got {list(self.nce_layers)}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if not 0.0 <= self.constant_lr_fraction <= 1.0:
            raise ValueError(f"constant_lr_fraction must be in [0, 1], got {self.constant_lr_fraction}")
        if self.spectrum_norm != "minmax" and not self.identity_init:
            raise ValueError(f"spectrum_norm={self.spectrum_norm!r} needs identity_init=True (a residual output)")

    def params(self) -> dict:
        """The hyper-parameters as JSON-ready values (tuples as lists), without the description."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "description"}
        out["nce_layers"] = list(out["nce_layers"])
        return out


PRESETS: dict[str, StigPreset] = {
    "paper": StigPreset(
        w_nce=20.0,  # official code: layer 0 only, weight 20 per term (its effective setting)
        select_fraction=0.0,  # the paper trains on every image and keeps the last refiner
        description="AAAI 2024 setting: 256², UNet++ 5x64, batch 1, 10 epochs, no identity start",
    ),
    # lr 1e-3: at 3e-4 G barely moves in ~800 iterations. PatchNCE 1 and content SSIM 5: the same
    # evasion at a higher PSNR. The loss terms: module docstring.
    "cpu": StigPreset(
        levels=3, width=16, d_width=16, identity_init=True, spectrum_norm="real-frequency",
        d_input="image", profile_scale="none", nce_layers=(0, 1), nce_patches=64, nce_dim=64, w_nce=1.0,
        w_ssim_content=5.0, w_psd=0.0, w_mean=100.0, match_moments=2, match_luma=True, w_spec_identity=10.0,
        padding="circular",
        batch_size=4, epochs=13.0, min_iterations=600, lr=1e-3, ema=0.995,
        checkpoint_every=200, refine_batch_size=64,
        description=("2-core CPU, 64² data in ~2-5 min: UNet++ 3x16, batch 4, 13 epochs, identity start, "
                     "moment matching instead of the profile discriminator, selected on held-out training images"),
    ),
    "gpu": StigPreset(
        identity_init=True, spectrum_norm="real-frequency", nce_layers=(0, 1, 2), batch_size=8,
        min_iterations=2000, lr=2e-4, checkpoint_every=2000,
        description="paper networks and losses, identity start, batch 8, 10 epochs (not tuned: no GPU run yet)",
    ),
}


#: The hyper-parameters a preset fixes and a refiner may override (every field but the description).
PARAM_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StigPreset) if f.name != "description")


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=2)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def resolve(preset: str, overrides: Mapping[str, Any]) -> StigPreset:
    """The preset named ``preset`` with ``overrides`` (field name -> value; ``None`` keeps the preset's),
    validated: an unknown name fails with a suggestion, a bad value with :class:`StigPreset`'s message.

    Iterations and epochs are alternatives: overriding one replaces the preset's choice of the other.
    A budget given explicitly is honoured as given: the preset's ``min_iterations`` floor applies to its
    own epochs, so it is dropped unless it is overridden too.
    """
    for name in overrides:
        if name not in PARAM_NAMES:
            raise ValueError(f"STIG has no hyper-parameter {name!r}{_suggest(name, list(PARAM_NAMES))} "
                             f"It takes: {', '.join(PARAM_NAMES)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    changes: dict[str, Any] = {}
    if "iterations" in given and "epochs" not in given:
        changes["epochs"] = None
    if "epochs" in given and "iterations" not in given:
        changes["iterations"] = None
    if ("iterations" in given or "epochs" in given) and "min_iterations" not in given:
        changes["min_iterations"] = 0
    changes.update(given)
    if "nce_layers" in changes:
        changes["nce_layers"] = tuple(int(k) for k in changes["nce_layers"])
    return dataclasses.replace(get_preset(preset), **changes, description=f"preset {preset!r} with overrides")


def get_preset(name: str) -> StigPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown STIG preset {name!r}{_suggest(name, list(PRESETS))} "
                         f"Available: {', '.join(PRESETS)}") from None
