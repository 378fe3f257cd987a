"""STIG's spectrum translation: image -> normalised log-magnitude -> G -> refined image.

After Lee, Jung, Seo, "Spectrum Translation for Refinement of Image Generation (STIG)", AAAI 2024,
arXiv 2403.05093. The FFT convention is :mod:`stigbench.measures.spectrum`'s; spectra are always float32.

Decisions (the paper and the official code leave them open or disagree):

* **Normalisation** of the log-magnitude ``M = log1p|F|`` before G, undone after it with the *input's*
  statistics:

  - ``minmax`` (paper): per image, over all channels, to ``[-1, 1]``;
  - ``real-channel``: ``(M - mu_c) / sd_c`` with the per-channel mean and standard deviation of the
    training reals' log-magnitudes: one fixed affine map for every image, so the discriminator compares
    spectra on one scale and the generator's output is not tied to per-image extremes;
  - ``real-frequency``: the same per channel *and frequency*, ``(M - mu_c(u, v)) / sd_c(u, v)``: a real
    spectrum becomes zero-mean, unit-variance noise at every frequency, and a fake's anomaly (a peak, a
    high-frequency deficit) the same kind of offset wherever it sits, which a convolutional generator
    (blind to absolute position) can learn to undo with one rule.

  The ``real-*`` variants need a residual generator output (values are not confined to ``[-1, 1]``).
* **Reconstruction**: ``|F^| = expm1(M^)`` with the fake's own phase, inverse FFT, *real part, clamped
  to [0, 1]*. The official code takes the modulus and min-max stretches each image, which changes
  its global contrast and brightness — something a detector sees and the attack should not cause (on
  the official code's own samples this gave near-black images that a detector separated perfectly).
  With an identity generator the round trip gives back the input image up to float error.
* **Symmetry** (``symmetric``, off in the paper): the magnitude spectrum of a real image is its own
  mirror, ``M(k) = M(-k)``; G's raw output is not. The real part of the inverse FFT then keeps only a
  blend of ``M(k)`` and ``M(-k)``, so the image the attack outputs is not the spectrum G was trained to
  produce, and D (which judges G's raw output) can tell refined from real by the asymmetry alone. With
  ``symmetric`` G's output is replaced by ``(M(k) + M(-k)) / 2`` before every loss and the rebuild.
* **Periodic component** (``periodic``, off in the paper): the DFT of an image that is not periodic
  has a bright cross on the frequency axes from the jumps between opposite borders, whose strength
  varies from image to image. With the per-frequency normalisation the axes get the largest standard
  deviations, so whatever smooth change G makes in normalised units is multiplied up on the axes: a
  narrow excess along a frequency axis that neither class had. With ``periodic`` the spectrum G sees
  and changes is that of the periodic component ``p`` of Moisan's decomposition ``x = p + s``
  (:func:`~stigbench.measures.spectrum.periodic_smooth`); the smooth component ``s``, which carries the border
  jumps, is added back unchanged.
* **Spectral profile** P: square rings ``max(|u|, |v|) = r`` (the official code's; they cover every
  frequency up to N/2, where circular rings drop the corners).
"""

from __future__ import annotations

import torch
from torch import nn

from stigbench.measures.spectrum import (
    from_log_magnitude,
    grey,
    log_magnitude,
    magnitude_phase,
    minmax_scale,
    periodic_smooth,
    radial_profile,
    symmetrise,
)

from .networks import UNetPlusPlus

SPECTRUM_NORMS = ("minmax", "real-channel", "real-frequency")


def spectral_profile(log_mag: torch.Tensor, rings: str = "square", scale: str = "minmax") -> torch.Tensor:
    """STIG's 1-D spectral profile of centred log-magnitudes ``(B, 3, N, N)`` -> ``(B, N/2 + 1)``.

    Per ring, the mean of ``20 * grey(M)`` (grey = 0.299 R + 0.587 G + 0.114 B), min-max scaled per image
    to ``[0, 1]`` (``scale="minmax"``, the paper's) or left in its units (``"none"``). Differentiable, so a
    profile of a reconstructed image passes its gradient to G.
    """
    if scale not in ("minmax", "none"):
        raise ValueError(f"scale must be 'minmax' or 'none', got {scale!r}")
    prof = radial_profile(20.0 * grey(log_mag), kind=rings)
    return minmax_scale(prof, 0.0, 1.0) if scale == "minmax" else prof


class Moments:
    """Running mean and standard deviation over the axes ``dims`` (kept as size 1) of a stream of
    same-shaped batches, accumulated in float64; the first axis is always reduced (the images)."""

    def __init__(self, dims: tuple[int, ...] = (0,)) -> None:
        self.dims = dims
        self.s: torch.Tensor | None = None
        self.s2: torch.Tensor | None = None
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.double()
        s, s2 = x.sum(self.dims, keepdim=True), (x * x).sum(self.dims, keepdim=True)
        self.s, self.s2 = (s, s2) if self.s is None else (self.s + s, self.s2 + s2)
        self.count += x.numel() // s.numel()

    def result(self, min_std: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` without the leading image axis, float32; ``std`` floored at ``min_std``."""
        if self.s is None:
            raise ValueError("no data: real-set statistics need at least one real image")
        mean = self.s / self.count
        std = (self.s2 / self.count - mean * mean).clamp_min(0).sqrt().clamp_min(min_std)
        return mean[0].float(), std[0].float()


class SpectrumTranslator(nn.Module):
    """G plus the spectrum normalisation (whose real-set statistics are buffers, saved with G).

    ``forward(x)`` refines images ``(B, 3, H, W)`` in ``[0, 1]``; training uses the pieces.
    """

    def __init__(self, generator: UNetPlusPlus, spectrum_norm: str = "minmax", size: int | None = None,
                 symmetric: bool = False, periodic: bool = False) -> None:
        super().__init__()
        if spectrum_norm not in SPECTRUM_NORMS:
            raise ValueError(f"spectrum_norm must be one of {SPECTRUM_NORMS}, got {spectrum_norm!r}")
        if spectrum_norm != "minmax" and not generator.identity_init:
            # A sigmoid output lives in [-1, 1]; standardised spectra do not.
            raise ValueError(f"spectrum_norm={spectrum_norm!r} needs the residual generator (identity_init=True)")
        if spectrum_norm == "real-frequency" and size is None:
            raise ValueError("spectrum_norm='real-frequency' needs the image size")
        self.generator = generator
        self.spectrum_norm = spectrum_norm
        self.symmetric = symmetric
        self.periodic = periodic
        shape = (3, size, size) if spectrum_norm == "real-frequency" else (3, 1, 1)
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    @property
    def needs_real_stats(self) -> bool:
        return self.spectrum_norm != "minmax"

    def real_stats_moments(self) -> Moments:
        """An accumulator for the statistics of this normalisation; feed it the reals' log-magnitudes."""
        return Moments((0,) if self.spectrum_norm == "real-frequency" else (0, 2, 3))

    def set_real_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std)

    def normalise(self, log_mag: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``(z, (shift, scale))`` with ``z = (M - shift) / scale``; the pair undoes it."""
        if self.spectrum_norm == "minmax":
            flat = log_mag.flatten(1)
            lo = flat.amin(1).view(-1, 1, 1, 1)
            hi = flat.amax(1).view(-1, 1, 1, 1)
            half = ((hi - lo) / 2).clamp_min(1e-12)
            shift, scale = lo + half, half
        else:
            shift, scale = self.mean, self.std
        return (log_mag - shift) / scale, (shift, scale)

    @staticmethod
    def denormalise(z: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        shift, scale = stats
        return z.float() * scale + shift

    def finish(self, zh: torch.Tensor) -> torch.Tensor:
        """G's raw output as the refined normalised spectrum: symmetrised when ``symmetric`` (every
        normalisation's statistics are themselves symmetric, so this is the same in z and in M)."""
        return symmetrise(zh) if self.symmetric else zh

    def analyse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(log-magnitude, phase, smooth)`` of what G works on: the image itself, or its periodic
        component when ``periodic`` (``smooth`` is then the part added back, else ``None``)."""
        smooth = None
        if self.periodic:
            x, smooth = periodic_smooth(x)
        lm, phase = magnitude_phase(x)
        return lm, phase, smooth

    @staticmethod
    def spectrum_of(image: torch.Tensor, smooth: torch.Tensor | None, luma: bool = False) -> torch.Tensor:
        """The log-magnitude, in :meth:`analyse`'s terms, of an image rebuilt with ``smooth`` (with
        ``luma``: of its grey image, ``(B, 1, H, W)``)."""
        x = image if smooth is None else image - smooth
        return log_magnitude(grey(x).unsqueeze(1) if luma else x)

    def reconstruct(self, z: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor], phase: torch.Tensor,
                    smooth: torch.Tensor | None = None) -> torch.Tensor:
        """The image with log-magnitude ``denormalise(z)`` and ``phase`` (plus ``smooth``): real part,
        clamped to [0, 1]."""
        x = from_log_magnitude(self.denormalise(z, stats), phase)
        return (x if smooth is None else x + smooth).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lm, phase, smooth = self.analyse(x)
        z, stats = self.normalise(lm)
        return self.reconstruct(self.finish(self.generator(z)), stats, phase, smooth)
