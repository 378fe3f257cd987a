"""``spectral-match``: a training-free baseline that moves the fakes' mean spectrum onto the reals'.

Each frequency of a fake gets the gain ``exp(strength * (M_real - M_fake))`` on its magnitude, where
``M`` are the dataset-mean log-magnitude spectra of the training reals and fakes (the per-frequency
"spectral matching" the STIG paper contrasts with; Durall et al., CVPR 2020 show such spectra are
what detectors key on). The image's own phase is kept; the result is the real part of the inverse
FFT, clamped to ``[0, 1]``. Because one gain serves every image, it over-corrects images whose
spectrum already looked real.

``strength`` in ``[0, 1]`` scales the log-gain at refine time (0 = the fakes, 1 = the means matched):
a sweep (``--refiner 'spectral-match:strength=*'``) fits the means once (:mod:`stigbench.attacks.strength`).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from stigbench.core.contracts import ImageSetLike
from stigbench.core.estimator import Estimator
from stigbench.core.imageset import ArrayImageSet, map_batches
from stigbench.attacks.registry import register_refiner
from stigbench.attacks.strength import STRENGTHS, check_strength
from stigbench.measures.spectrum import from_log_magnitude, magnitude_phase, mean_log_spectrum


@register_refiner("spectral-match", paper="per-frequency spectral matching baseline (cf. Durall et al., CVPR 2020)",
                  kind="training-free", description="mean log-magnitude gain from fakes to reals, phase kept")
class SpectralMatch(Estimator):
    """Per-frequency log-magnitude gain, fitted from dataset means.

    Args:
        strength: fraction of the log-gain applied, in ``[0, 1]`` (1 = full matching of the means);
            used at refine time only.
        batch_size: images per batch when computing spectra and refining.
    """

    #: Acts at refine time only: not part of the fit stage's key, so a sweep fits once.
    refine_params: ClassVar[tuple[str, ...]] = ("strength",)
    #: What ``spectral-match:strength=*`` expands to.
    param_grids: ClassVar[dict[str, tuple[float, ...]]] = {"strength": STRENGTHS}

    def __init__(self, strength: float = 1.0, batch_size: int = 64) -> None:
        self.strength = strength
        self.batch_size = batch_size

    def check_params(self) -> None:
        """Validate the hyper-parameters (a run's plan calls this before any image is read)."""
        check_strength(self.strength)

    def fit(self, fake_set: ImageSetLike, real_set: ImageSetLike) -> SpectralMatch:
        self.check_params()
        m_fake = mean_log_spectrum(fake_set.batches(self.batch_size, progress="spectral-match: fakes"))
        m_real = mean_log_spectrum(real_set.batches(self.batch_size, progress="spectral-match: reals"))
        self.log_gain_ = (m_real - m_fake).float()
        return self

    @property
    def image_size_(self) -> int:
        """The image size the gains were fitted at."""
        self._check_fitted("log_gain_")
        return int(self.log_gain_.shape[-1])

    def refine_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Refine a float batch ``(N, 3, H, W)``; returns floats in ``[0, 1]``."""
        self._check_fitted("log_gain_")
        if images.shape[-3:] != self.log_gain_.shape:
            raise ValueError(f"fitted for images {tuple(self.log_gain_.shape)}, got {tuple(images.shape[-3:])}")
        lm, ph = magnitude_phase(images)
        # The gain multiplies |F|; in log1p space that is log1p(expm1(lm) * g).
        mag = torch.expm1(lm) * torch.exp(self.strength * self.log_gain_.to(lm.device))
        return from_log_magnitude(torch.log1p(mag), ph).clamp(0, 1)

    def refine(self, image_set: ImageSetLike, store: str | Path | None = None) -> ArrayImageSet:
        return map_batches(image_set, self.refine_batch, self.batch_size, progress="spectral-match: refine", store=store)

    def save(self, path: str | Path) -> None:
        self._check_fitted("log_gain_")
        folder = self.save_params(path)
        np.save(folder / "log_gain.npy", self.log_gain_.numpy())

    @classmethod
    def load(cls, path: str | Path) -> SpectralMatch:
        obj = cls.from_params(path)
        obj.log_gain_ = torch.from_numpy(np.load(Path(path) / "log_gain.npy", allow_pickle=False))
        return obj
