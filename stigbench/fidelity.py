"""How much an attack changes each fake: PSNR and SSIM of refined vs original, as pure functions.

SSIM after Wang, Bovik, Sheikh, Simoncelli, "Image Quality Assessment: From Error Visibility to
Structural Similarity", IEEE TIP 2004: 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
data range 1, computed per channel and averaged; "valid" windows only (no padding artefacts).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F


def psnr(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-image PSNR in dB between batches in ``[0, 1]`` (``(N,)``; identical images give ~120 dB)."""
    mse = ((x.double() - y.double()) ** 2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / (mse + eps))


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image mean SSIM of batches ``(N, C, H, W)`` in ``[0, 1]`` (differentiable)."""
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    c = x.shape[1]
    window = min(window, x.shape[-1], x.shape[-2])
    w = _gaussian_window(window, sigma, x.dtype, x.device).expand(c, 1, window, window)
    filt = lambda t: F.conv2d(t, w, groups=c)  # noqa: E731
    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(dim=1)


def mean_fidelity(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Mean PSNR and SSIM over batches of (original, changed) images."""
    p, s = [], []
    for a, b in pairs:
        p.append(psnr(a, b).numpy())
        s.append(ssim(a.double(), b.double()).numpy())
    if not p:
        raise ValueError("no images")
    return {"psnr": float(np.concatenate(p).mean()), "ssim": float(np.concatenate(s).mean())}
