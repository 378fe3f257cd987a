"""The one FFT convention of stigbench, and the pure spectral functions built on it.

Convention (used by every refiner, detector, metric and plot):

* images are real tensors ``(..., C, H, W)``; the transform is ``torch.fft.fft2`` over the last two
  axes only (never the batch or channel axes — the official STIG code's un-dimensioned ``fftshift``
  also rolled those) with the default ``norm="backward"``, i.e. an unscaled forward transform, so
  ``F[0, 0] = sum(x)``;
* ``fftshift`` over the last two axes moves DC to index ``(H // 2, W // 2)``;
* the *log-magnitude* is ``log1p(|F|)`` and the *phase* ``angle(F)``;
* :func:`from_log_magnitude` inverts ``(log-magnitude, phase)`` exactly: ``expm1``, polar form,
  ``ifftshift``, ``ifft2``, real part. Clamping to ``[0, 1]`` is left to the caller, since whether to
  clamp is a modelling decision (refiners document theirs).

Everything here is a pure function of its tensor arguments; I/O, caching and plots live elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import torch

_DIMS = (-2, -1)


#: ITU-R BT.601 luma weights of R, G, B: the grey image that frequency detectors take spectra of.
LUMA = (0.299, 0.587, 0.114)


def grey(images: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB images ``(..., 3, H, W)`` -> ``(..., H, W)`` (any float tensor: images or spectra)."""
    w = torch.tensor(LUMA, dtype=images.dtype, device=images.device)
    return torch.einsum("...chw,c->...hw", images, w)


def fft_shifted(x: torch.Tensor) -> torch.Tensor:
    """Centred complex spectrum ``fftshift(fft2(x))`` over the last two axes (float32 at least)."""
    if not torch.is_floating_point(x):
        raise TypeError(f"expected a floating-point image tensor, got {x.dtype}")
    # FFTs in half precision lose the dynamic range of the DC term; spectra always run in >= fp32.
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return torch.fft.fftshift(torch.fft.fft2(x, dim=_DIMS), dim=_DIMS)


def log_magnitude(x: torch.Tensor) -> torch.Tensor:
    """``log1p(|fftshift(fft2(x))|)`` over the last two axes."""
    return torch.log1p(fft_shifted(x).abs())


def magnitude_phase(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log-magnitude, phase)`` of ``x``, computed from a single FFT."""
    f = fft_shifted(x)
    return torch.log1p(f.abs()), torch.angle(f)


def from_log_magnitude(log_mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`magnitude_phase`: the real image whose spectrum has this magnitude and phase.

    The result is the real part of the inverse FFT; for a magnitude that came from a real image it is
    that image up to float error. Not clamped.
    """
    mag = torch.expm1(log_mag).clamp_min(0)
    f = torch.polar(mag.to(phase.dtype), phase)
    return torch.fft.ifft2(torch.fft.ifftshift(f, dim=_DIMS), dim=_DIMS).real


def periodic_smooth(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(p, s)`` with ``x = p + s``: Moisan's periodic-plus-smooth decomposition over the last two axes.

    Moisan, "Periodic plus smooth image decomposition", J. Math. Imaging Vis. 2011. The DFT treats an
    image as periodic, so the jump between its opposite borders puts a bright cross on the frequency
    axes of every spectrum (energy falling as ``1/|k|``), which varies from image to image with the
    content at the borders. ``s`` is the smooth image (zero mean) whose discrete Laplacian is the
    "boundary image" ``v`` of those jumps; ``p = x - s`` has the same content without the jumps, so its
    spectrum has no cross. ``s`` is solved in the Fourier domain:
    ``S(q, r) = V(q, r) / (2 cos(2 pi q / H) + 2 cos(2 pi r / W) - 4)``, ``S(0, 0) = 0``.
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"expected a floating-point image tensor, got {x.dtype}")
    work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    h, w = work.shape[-2:]
    v = torch.zeros_like(work)
    jump_rows = work[..., -1, :] - work[..., 0, :]
    jump_cols = work[..., :, -1] - work[..., :, 0]
    v[..., 0, :] += jump_rows
    v[..., -1, :] -= jump_rows
    v[..., :, 0] += jump_cols
    v[..., :, -1] -= jump_cols
    denom = _laplacian_eigenvalues(h, w, work.dtype, str(work.device))
    s = torch.fft.ifft2(torch.fft.fft2(v, dim=_DIMS) / denom, dim=_DIMS).real
    return work - s, s


@lru_cache(maxsize=16)
def _laplacian_eigenvalues(h: int, w: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """``2 cos(2 pi q / h) + 2 cos(2 pi r / w) - 4`` (unshifted layout), with 1 at DC where the
    solution is fixed to zero mean instead (the boundary image has zero mean, so ``V(0, 0) = 0``)."""
    with torch.inference_mode(False):
        q = torch.arange(h, dtype=torch.float64, device=device)
        r = torch.arange(w, dtype=torch.float64, device=device)
        d = (2 * torch.cos(2 * torch.pi * q / h))[:, None] + (2 * torch.cos(2 * torch.pi * r / w))[None, :] - 4
        d[0, 0] = 1.0
        return d.to(dtype)


def mirror(spec: torch.Tensor) -> torch.Tensor:
    """``spec`` at the negated frequency: ``out[..., u, v] = spec[..., -u, -v]`` in the centred layout.

    With DC at ``(H // 2, W // 2)``, frequency ``-k`` sits at index ``2 * (H // 2) - i`` (mod H): a flip,
    then (for even sizes) a roll by one, which keeps DC in place and maps the Nyquist row onto itself.
    The magnitude of a real image's spectrum is its own mirror (Hermitian symmetry).
    """
    h, w = spec.shape[-2:]
    return torch.roll(torch.flip(spec, _DIMS), shifts=(1 - h % 2, 1 - w % 2), dims=_DIMS)


def symmetrise(spec: torch.Tensor) -> torch.Tensor:
    """``(spec + mirror(spec)) / 2``: the nearest (least-squares) map with ``M(k) = M(-k)``, the symmetry
    of a real image's magnitude spectrum."""
    return 0.5 * (spec + mirror(spec))


def minmax_scale(x: torch.Tensor, lo: float = -1.0, hi: float = 1.0, eps: float = 1e-12) -> torch.Tensor:
    """Min-max scale each item of a batch ``(N, ...)`` to ``[lo, hi]`` (per image, all channels)."""
    flat = x.reshape(x.shape[0], -1)
    mn = flat.min(dim=1).values.reshape(-1, *([1] * (x.dim() - 1)))
    mx = flat.max(dim=1).values.reshape(-1, *([1] * (x.dim() - 1)))
    return lo + (hi - lo) * (x - mn) / (mx - mn).clamp_min(eps)


def spectrum_image(x: torch.Tensor) -> torch.Tensor:
    """The STIG paper's detector input: log-magnitude min-max scaled per image to ``[-1, 1]``."""
    return minmax_scale(log_magnitude(x))


def radius_map(h: int, w: int, kind: str = "circular", device: torch.device | None = None) -> torch.Tensor:
    """Integer ring index of each frequency of a centred ``h x w`` spectrum (DC at ``(h//2, w//2)``).

    ``circular`` rounds the Euclidean distance (the azimuthal average of Durall et al. 2020);
    ``square`` uses the Chebyshev distance ``max(|u|, |v|)`` (the rings of the official STIG code).
    """
    u = torch.arange(h, device=device) - h // 2
    v = torch.arange(w, device=device) - w // 2
    uu, vv = torch.meshgrid(u, v, indexing="ij")
    if kind == "circular":
        return torch.sqrt((uu**2 + vv**2).double()).round().long()
    if kind == "square":
        return torch.maximum(uu.abs(), vv.abs()).long()
    raise ValueError(f"unknown ring kind {kind!r}; use 'circular' or 'square'")


def radial_profile(spec: torch.Tensor, kind: str = "circular") -> torch.Tensor:
    """Mean of ``spec`` (``(..., H, W)``, centred) over rings ``r = 0 .. min(H, W) // 2``.

    Frequencies farther out than the inscribed circle (the corners) are left out so that every ring
    is complete. Returns ``(..., min(H, W) // 2 + 1)``.
    """
    h, w = spec.shape[-2:]
    keep, idx, counts = _rings(h, w, kind, spec.device)
    flat = spec.reshape(*spec.shape[:-2], h * w)[..., keep]
    sums = torch.zeros(*spec.shape[:-2], counts.numel(), dtype=spec.dtype, device=spec.device)
    sums.index_add_(-1, idx, flat)
    return sums / counts.to(spec.dtype)


@lru_cache(maxsize=32)
def _rings(h: int, w: int, kind: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which frequencies fall in a complete ring, their ring index, and the ring sizes (cached:
    profiles are taken for every batch at the same few sizes)."""
    n_rings = min(h, w) // 2 + 1
    # Normal tensors even when first called under inference_mode: cached ones are reused by code that
    # needs gradients (STIG's profile discriminator), which inference tensors would refuse.
    with torch.inference_mode(False):
        r = radius_map(h, w, kind, device=device).reshape(-1)
        keep = torch.nonzero(r < n_rings).squeeze(1)
        idx = r[keep]
        return keep, idx, torch.bincount(idx, minlength=n_rings)


def mean_log_spectrum(batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """Dataset mean of the log-magnitude spectrum, ``(C, H, W)``, accumulated in float64.

    Taking batches keeps memory flat for large sets; the result does not depend on the batching.
    """
    total: torch.Tensor | None = None
    count = 0
    for batch in batches:
        lm = log_magnitude(batch.double()).sum(dim=0)
        total = lm if total is None else total + lm
        count += batch.shape[0]
    if total is None or count == 0:
        raise ValueError("mean_log_spectrum needs at least one image")
    return total / count


def lfd(mean_real: torch.Tensor, mean_other: torch.Tensor) -> float:
    """Log frequency distance between two dataset-mean log-magnitude spectra (the benchmark's default).

    ``LFD = ln(1 + mean_{c,u,v} (M_real - M_other)^2)`` in float64, after the LFD of Jiang et al.
    (Focal Frequency Loss, ICCV 2021) adapted to unpaired sets by comparing dataset means.
    """
    if mean_real.shape != mean_other.shape:
        raise ValueError(f"spectra differ in shape: {tuple(mean_real.shape)} vs {tuple(mean_other.shape)}")
    d = mean_real.double() - mean_other.double()
    return float(torch.log1p((d * d).mean()))
