"""``dzanic``: the decay of the high-frequency power spectrum, fitted by a power law.

Dzanic, Shah, Witherden, "Fourier spectrum discrepancies in deep network generated images", NeurIPS
2020. Generated images reproduce the highest frequencies badly, so the *shape of the spectrum's tail*
separates them. Per image: the grey image's power spectrum ``|F|²`` averaged over rings (the
reduced spectrum ``E(k)``), normalised by its DC term ``E(0)`` so that brightness does not count;
then a least-squares line through ``(ln k, ln E(k))`` for the rings ``k ≥ k_min · k_max`` (the paper
fits the high-frequency end of the spectrum, ``k_min = 0.75`` here), i.e. ``E(k) ≈ b1 · k^b2``.
Features: the decay exponent ``b2``, the fitted level ``ln E`` at the threshold frequency (the
amplitude, better conditioned than ``ln b1`` which extrapolates to ``k = 1``) and the RMS residual
of the fit. ``channels="rgb"`` adds the same three numbers per colour channel.

The paper classifies with k-nearest neighbours (``classifier="knn"``); the default is a logistic
regression, because a k-NN's ``P(fake)`` takes only ``k + 1`` values, which makes AUC coarse.
"""

from __future__ import annotations

import torch
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from stigbench.detection.base import CHANNELS, LogisticFeatureDetector, check_choice
from stigbench.detection.registry import register_detector
from stigbench.measures.spectrum import fft_shifted, grey, radial_profile

PAPER = "Dzanic, Shah, Witherden, Fourier spectrum discrepancies in deep network generated images, NeurIPS 2020"


def decay_fit(images: torch.Tensor, k_min: float = 0.75) -> torch.Tensor:
    """``(..., 3)``: exponent, level at the threshold and RMS residual of a power-law fit to the tail of
    the DC-normalised reduced power spectrum of ``images`` (``(..., H, W)``)."""
    power = radial_profile(fft_shifted(images.double()).abs().square())
    power = power / power[..., :1].clamp_min(1e-30)
    k = torch.arange(power.shape[-1], dtype=torch.float64, device=power.device)
    keep = k >= max(1.0, k_min * (power.shape[-1] - 1))
    x = k[keep].log()
    y = power[..., keep].clamp_min(1e-30).log()
    xc = x - x.mean()
    slope = (y * xc).sum(-1) / xc.square().sum()
    level_mean = y.mean(-1)
    level_at_threshold = level_mean + slope * (x[0] - x.mean())
    residual = (y - level_mean.unsqueeze(-1) - slope.unsqueeze(-1) * xc).square().mean(-1).sqrt()
    return torch.stack([slope, level_at_threshold, residual], dim=-1)


@register_detector("dzanic", family="frequency", domain="spectrum", paper=PAPER,
                   description="power-law fit to the high-frequency spectrum + logistic regression")
class Dzanic(LogisticFeatureDetector):
    def __init__(self, k_min: float = 0.75, channels: str = "grey", classifier: str = "logistic",
                 c: float = 1.0, n_neighbors: int = 5, seed: int = 0) -> None:
        check_choice("channels", channels, CHANNELS)
        check_choice("classifier", classifier, ("logistic", "knn"))
        super().__init__(c=c, seed=seed)
        self.k_min = k_min
        self.channels = channels
        self.classifier = classifier
        self.n_neighbors = n_neighbors

    def torch_features(self, images: torch.Tensor) -> torch.Tensor:
        # Torch code (float64) throughout, so features() is this as a NumPy array and white-box attacks
        # differentiate it.
        planes = grey(images).unsqueeze(1)
        if self.channels == "rgb":
            planes = torch.cat([planes, images], dim=1)
        return decay_fit(planes, self.k_min).flatten(1)

    def make_estimator(self) -> Pipeline:
        if self.classifier == "knn":
            return make_pipeline(StandardScaler(), KNeighborsClassifier(self.n_neighbors))
        return super().make_estimator()
