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


def gaussian_window(size: int, sigma: float, dtype: torch.dtype = torch.float32,
                    device: torch.device | None = None) -> torch.Tensor:
    """Normalised 2-D Gaussian window ``(size, size)``."""
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image mean SSIM of batches ``(N, C, H, W)`` in ``[0, 1]`` (differentiable).

    ``SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`` averaged
    over the valid window positions and channels.
    """
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if min(x.shape[-2:]) < window:
        raise ValueError(f"SSIM window {window} is larger than the image {tuple(x.shape[-2:])}")
    c = x.shape[1]
    w = gaussian_window(window, sigma, x.dtype, x.device).expand(5 * c, 1, window, window)
    # One grouped convolution computes all five local moments.
    stats = F.conv2d(torch.cat([x, y, x * x, y * y, x * y], 1), w, groups=5 * c)
    mx, my, xx, yy, xy = stats.split(c, 1)
    vx, vy, cov = xx - mx * mx, yy - my * my, xy - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)


#: Images per SSIM call in :func:`mean_fidelity`. The float64 grouped convolution behind SSIM holds
#: about 64 MB per 256² image at once (4 GiB for a batch of 64), so a batch is taken in chunks.
SSIM_CHUNK = 8


def chunk_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` chunks of at most ``size`` covering ``range(n)``, with no chunk of one image
    unless ``n == 1`` (a short last chunk joins the one before it). PyTorch computes a batch of one on
    another code path (its convolution is then threaded inside, not across images), whose last bit
    can differ, while a chunk of two or more gives each image the floats of the whole batch."""
    size = max(2, size)
    bounds = [(start, min(n, start + size)) for start in range(0, n, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def mean_fidelity(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Mean PSNR and SSIM over batches of (original, changed) images; SSIM in chunks of at most
    :data:`SSIM_CHUNK` images of a batch (each image's value is the one of the whole batch)."""
    p, s = [], []
    for a, b in pairs:
        p.append(psnr(a, b).numpy())
        for start, stop in chunk_bounds(len(a), SSIM_CHUNK):
            s.append(ssim(a[start:stop].double(), b[start:stop].double()).numpy())
    if not p:
        raise ValueError("no images")
    return {"psnr": float(np.concatenate(p).mean()), "ssim": float(np.concatenate(s).mean())}
