"""``frank-dct``: log-scaled 2-D DCT coefficients + a regularised linear classifier.

Frank, Eisenhofer, Schönherr, Fischer, Kolossa, Holz, "Leveraging Frequency Analysis for Deep Fake
Image Recognition", ICML 2020. Up-sampling leaves grid-like peaks in the DCT spectrum of GAN images,
which a linear model on the coefficients finds. Features: the orthonormal type-II DCT over ``H, W``
of the grey image (or of each colour channel, ``channels="rgb"``), ``ln(|DCT| + eps)``, standardised
per coefficient on the training set (the paper's normalisation); then an L2-regularised logistic
regression, standing in for the paper's ridge regression because the benchmark needs probabilities
(same penalty on the same linear score; ``C`` chosen for ``N²`` features).

Images larger than ``max_side`` have their log-coefficients averaged over ``s × s`` blocks
(``s = side / max_side``), which keeps the feature count at ``max_side²`` per channel (4,096 at
the default) and the classifier's memory bounded at 256²; a peak then shows as a raised block.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import torch

from stigbench.detection.base import CHANNELS, LogisticFeatureDetector, check_choice
from stigbench.detection.registry import register_detector
from stigbench.measures.spectrum import grey

PAPER = "Frank et al., Leveraging Frequency Analysis for Deep Fake Image Recognition, ICML 2020"


def log_dct(planes: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``ln(|DCT-II_ortho(x)| + eps)`` over the last two axes, ``float64``."""
    return np.log(np.abs(scipy.fft.dctn(planes.astype(np.float64), type=2, norm="ortho", axes=(-2, -1))) + eps)


def block_mean(x: np.ndarray, max_side: int) -> np.ndarray:
    """Average ``(..., S, S)`` over ``s × s`` blocks so the side is at most ``max_side`` (``S`` divisible)."""
    side = x.shape[-1]
    if side <= max_side:
        return x
    s = -(-side // max_side)
    if side % s:
        raise ValueError(f"image side {side} is not a multiple of the DCT block {s} (max_side={max_side})")
    return x.reshape(*x.shape[:-2], side // s, s, side // s, s).mean(axis=(-3, -1))


@register_detector("frank-dct", family="frequency", domain="dct", paper=PAPER,
                   description="log |DCT-II| coefficients + L2 logistic regression")
class FrankDCT(LogisticFeatureDetector):
    batch_size = 64

    def __init__(self, channels: str = "grey", max_side: int = 64, c: float = 1e-3, seed: int = 0) -> None:
        check_choice("channels", channels, CHANNELS)
        super().__init__(c=c, seed=seed)
        self.channels = channels
        self.max_side = max_side

    def features(self, images: torch.Tensor) -> np.ndarray:
        planes = grey(images).unsqueeze(1) if self.channels == "grey" else images
        coeffs = block_mean(log_dct(planes.float().cpu().numpy()), self.max_side)
        return coeffs.reshape(len(coeffs), -1).astype(np.float32)
