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

The features go through SciPy; :meth:`FrankDCT.torch_features` is their differentiable twin in torch
(the DCT as products with the orthonormal DCT-II matrix), the torch path of white-box attacks.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import scipy.fft
import torch

from stigbench.detection.base import CHANNELS, LogisticFeatureDetector, check_choice
from stigbench.detection.registry import register_detector
from stigbench.measures.spectrum import grey

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
PAPER = "Frank et al., Leveraging Frequency Analysis for Deep Fake Image Recognition, ICML 2020"


def log_dct(planes: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``ln(|DCT-II_ortho(x)| + eps)`` over the last two axes, ``float64``."""
    return np.log(np.abs(scipy.fft.dctn(planes.astype(np.float64), type=2, norm="ortho", axes=(-2, -1))) + eps)


def dct_matrix(n: int, device: torch.device | None = None) -> torch.Tensor:
    """The orthonormal DCT-II matrix, ``float64`` ``(n, n)``: ``C @ x`` is SciPy's
    ``dct(x, type=2, norm="ortho")``, ``C[k, i] = sqrt((2 - [k = 0]) / n) · cos(π (2i + 1) k / (2n))``."""
    k = torch.arange(n, dtype=torch.float64, device=device)[:, None]
    i = torch.arange(n, dtype=torch.float64, device=device)[None, :]
    scale = torch.full((n, 1), math.sqrt(2.0 / n), dtype=torch.float64, device=device)
    scale[0] = math.sqrt(1.0 / n)
    return scale * torch.cos(math.pi * (2.0 * i + 1.0) * k / (2.0 * n))


def torch_log_dct(planes: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """:func:`log_dct` in torch (``float64``), differentiable: the 2-D DCT as ``C_H · x · C_Wᵀ``.

    White-box attacks need gradients through the features, which SciPy's DCT does not give; the matrix
    products agree with it to float64 rounding (about 1e-15), which the detector's ``float32`` cast of
    the features almost always absorbs.
    """
    x = planes.to(torch.float64)
    h, w = x.shape[-2:]
    coeffs = dct_matrix(h, x.device) @ x @ dct_matrix(w, x.device).T
    return torch.log(coeffs.abs() + eps)


def block_mean(x: ArrayT, max_side: int) -> ArrayT:
    """Average ``(..., S, S)`` over ``s × s`` blocks so the side is at most ``max_side`` (``S`` divisible);
    a NumPy array or a torch tensor (both read ``mean(axis=...)``)."""
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

    def _planes(self, images: torch.Tensor) -> torch.Tensor:
        return (grey(images).unsqueeze(1) if self.channels == "grey" else images).float()

    def features(self, images: torch.Tensor) -> np.ndarray:
        coeffs = block_mean(log_dct(self._planes(images).cpu().numpy()), self.max_side)
        return coeffs.reshape(len(coeffs), -1).astype(np.float32)

    def torch_features(self, images: torch.Tensor) -> torch.Tensor:
        # features() with the DCT as matrix products (torch_log_dct), for white-box attacks' gradients;
        # rounded to float32 as features() is, so that the classifier sees the same numbers.
        coeffs = block_mean(torch_log_dct(self._planes(images)), self.max_side)
        return coeffs.reshape(len(coeffs), -1).to(torch.float32)
