"""Named hyper-parameter sets of the STIG refiner (Lee, Jung, Seo, AAAI 2024, arXiv 2403.05093).

* ``paper`` — the paper's setting: 256², UNet++ 5 levels width 64, batch 1, 10 epochs, Adam 8e-5
  (0.5, 0.999), loss weights of the official code, PatchNCE on encoder layer 0 with the effective
  weight 20 per term that the official code ends up using, seed 42, no identity start, per-image
  min-max spectrum normalisation and the sigmoid output.
* ``cpu`` (default) — for 2 CPU cores and small images: UNet++ 3 levels width 16 (130 k parameters),
  identity start, per-frequency real-set spectrum normalisation, batch 4, 800 iterations at lr 1e-3,
  PatchNCE weight 1 on layers 0 and 1, content SSIM weight 5, D judging the rebuilt image's spectrum
  (``d_input="image"``), D_s on the unscaled profile, and the moving average of G's weights (decay
  0.995) kept as the refiner. On the 64² demo data (288 + 288 training images) it trains in ~80-140 s
  at 2 threads (bf16).

  The demo fakes lack most of the reals' high-frequency energy (up to 1.6 lower in mean
  log(1 + |F|)); putting it back costs PSNR (an oracle that copies the reals' mean high-frequency
  magnitudes reaches a radial-spectrum detector's AUC 0.60 at 25.6 dB). Measured on ``demo`` (its
  grouped split; ``durall`` AUC of real vs refined test images, 1.000 on the unrefined fakes; LFD of
  the fakes 0.91-0.94), seeds 0-4 unless noted:

  ================================  ==============================  ===========  ============
  variant                           durall AUC per seed             LFD mean     PSNR mean
  ================================  ==============================  ===========  ============
  this preset                       0.72, 0.78, 0.61, 0.70, 0.60    0.35         26.7 dB
  ``ema`` 0.99                      0.72, 0.78, 0.50, 0.90, 0.73    0.37         26.5 dB
  ``ema`` 0.99, D on G's output     0.66, 0.88, 0.47, 0.92, 0.98    0.47         28.0 dB
  ... with ``symmetric``            0.92, 0.87, 0.60, 0.68, 0.89    0.38         26.4 dB
  ... with ``w_psd`` 6              0.96, 0.67, 0.63, 0.86, 0.09    0.41         26.7 dB
  ... with ``lf_sigma`` 24          0.85, 0.99, 0.40, 0.80, 0.46    0.26         26.2 dB
  ``ema`` 0.99, ``w_psd`` 6         0.51, 0.86, 0.48, 0.87, 0.22    0.34         25.5 dB
  ``ema`` 0.99, ``lf_sigma`` 24     0.83, 0.99, 0.85, 0.90, 0.92    0.44         28.2 dB
  ================================  ==============================  ===========  ============

  Earlier (D on G's output, seeds 0-2 or fewer): last iterate with the min-max profile 0.97
  ± 0.003; ``ema`` 0.995: 0.51, 0.79, 0.31; ``w_gan`` 1: 0.57, 0.82, 0.90; lr 5e-4: 0.98, 0.97, 0.78;
  ``w_nce`` 0: 0.70, 0.97; 1200 iterations: 0.93 (seed 1); no SSIM terms: 0.39 at 23.8 dB (seed 0).

  Most variants spread as widely over seeds as they differ from each other: how much
  high-frequency energy a short adversarial run puts back (LFD 0.13-0.57 within one variant) is
  decided by where the game stands when the schedule ends. The spread in ``durall`` has a second
  cause, found in the discriminator weights (``fit_info.profile_discriminator_weights``): the linear
  D_s learns a *slope* — positive weights on high rings, its most negative weight on rings 3-6
  (0.05-0.09 cycles/pixel) in 30 of 36 runs — and G answers it most cheaply by lowering those mid rings
  below the fakes' own level (a square dip, by up to 0.5 in log(1 + |F|)) rather than raising the high
  ones. A linear critic's gradient does not shrink as G moves, so nothing stops the overshoot. The
  refined profiles then leave the line between fakes and reals, and a linear detector's AUC on them
  depends on its weights at those rings: one setting (``w_psd`` 6) gives ``durall`` 0.09 in one seed
  and 0.96 in another. Protecting the rings up to 0.09 cycles/pixel with the low-frequency loss
  (``lf_sigma`` 24) removes the dip but not the spread. Of the single changes, ``d_input="image"`` is
  the one that improved both the mean distance of ``durall`` from 0.5 (0.23 against 0.29) and LFD
  (0.37 against 0.47), at 1.5 dB more PSNR cost; adding ``w_psd`` 6 to it went a little further (0.21,
  LFD 0.34) for another dB and over-corrected one seed (0.22). A longer weight average (``ema`` 0.995)
  on top narrowed the spread most: ``durall`` 0.60-0.78 (mean distance from 0.5 0.18), LFD 0.24-0.52,
  26.2-27.3 dB, so the preset uses it.
* ``gpu`` — paper networks and losses with the ``cpu`` preset's identity start and normalisation,
  batch 8, 10 epochs; not tuned (no GPU run yet).

A preset fixes every hyper-parameter; :class:`~stigbench.refiners.stig.refiner.StigRefiner` takes
keyword overrides of each.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StigPreset:
    """Every hyper-parameter of STIG. Exactly one of ``iterations`` / ``epochs`` is set; an epoch is
    ``ceil(n_train_fakes / batch_size)`` iterations."""

    # generator G (UNet++)
    levels: int = 5
    width: int = 64
    norm: str = "group"
    upsample: str = "bicubic"
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
        choices = {"norm": ("group", "instance", "batch"), "upsample": ("bicubic", "bilinear"),
                   "spectrum_norm": ("minmax", "real-channel", "real-frequency"), "rings": ("square", "circular"),
                   "d_input": ("generator", "image"), "profile_scale": ("minmax", "none"), "match_moments": (1, 2)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0.0 <= self.select_fraction < 1.0:
            raise ValueError(f"select_fraction must be in [0, 1), got {self.select_fraction}")
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
    # Tuned on the demo data (see the module docstring). lr 1e-3: at 3e-4 G barely moves in 800
    # iterations. PatchNCE 1 instead of 10 and content SSIM 5 instead of 1: the same evasion at a
    # higher PSNR. D width 16 (8 and 4 were less stable).
    "cpu": StigPreset(
        levels=3, width=16, d_width=16, identity_init=True, spectrum_norm="real-frequency",
        d_input="image", profile_scale="none", nce_layers=(0, 1), nce_patches=64, nce_dim=64, w_nce=1.0,
        w_ssim_content=5.0,
        batch_size=4, iterations=800, epochs=None, lr=1e-3, ema=0.995,
        checkpoint_every=200, refine_batch_size=64,
        description="2-core CPU, 64² demo data in ~1.5 min: UNet++ 3x16, batch 4, 800 iterations, identity start",
    ),
    "gpu": StigPreset(
        identity_init=True, spectrum_norm="real-frequency", nce_layers=(0, 1, 2), batch_size=8,
        lr=2e-4, checkpoint_every=2000,
        description="paper networks and losses, identity start, batch 8, 10 epochs (not tuned: no GPU run yet)",
    ),
}


def get_preset(name: str) -> StigPreset:
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(PRESETS), n=2)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown STIG preset {name!r}{hint} Available: {', '.join(PRESETS)}") from None
