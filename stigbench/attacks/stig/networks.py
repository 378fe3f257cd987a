"""The networks of STIG (Lee, Jung, Seo, "Spectrum Translation for Refinement of Image Generation
(STIG)", AAAI 2024, arXiv 2403.05093).

* :class:`UNetPlusPlus` — the spectrum generator G, a nested U-Net (Zhou et al., "UNet++", DLMIA 2018)
  whose encoder also feeds PatchNCE.
* :class:`SpectrumDiscriminator` — the PatchGAN D on normalised log-magnitude spectra.
* :class:`ProfileDiscriminator` — D_s, a linear classifier on the 1-D spectral profile.
* :class:`PatchProjector` — the PatchNCE projection heads H (Park et al., CUT, ECCV 2020).

Networks take plain keyword arguments and know nothing about training (that lives in ``trainer.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("group", "instance", "batch")


def norm_layer(kind: str, channels: int, groups: int = 8) -> nn.Module:
    """A normalisation that behaves the same in training and inference.

    ``group`` (default) and ``instance`` use per-image statistics in both modes. ``batch`` keeps running
    statistics for inference; the official STIG code's train-mode BatchNorm at inference (statistics of
    one image) is deliberately not offered.
    """
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, groups), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown norm {kind!r}; use one of {NORMS}")


_WRAP = 2  # samples borrowed from the other side for periodic up-sampling (bicubic reaches 2 away)


@functools.lru_cache(maxsize=64)
def _upsample_matrix(n: int, mode: str, device: torch.device, dtype: torch.dtype, periodic: bool = False) -> torch.Tensor:
    # The matrix is cached for the whole process: built under inference mode (a refiner refining
    # before another one trains) it would be an inference tensor that autograd refuses to save.
    with torch.inference_mode(False):
        return _build_upsample_matrix(n, mode, periodic).to(device=device, dtype=dtype)


def _build_upsample_matrix(n: int, mode: str, periodic: bool) -> torch.Tensor:
    # Column j is the ×2 up-sampled unit vector e_j: F.interpolate is linear and separable, so
    # U @ x @ U.T is exactly F.interpolate(x, scale_factor=2, mode=mode) (borders included).
    if not periodic:
        eye = torch.eye(n, dtype=torch.float64).view(1, 1, n, n)
        return F.interpolate(eye, size=(2 * n, n), mode=mode, align_corners=False)[0, 0]
    # Periodic: interpolate the signal extended by _WRAP samples from the other side on each end, keep
    # the middle 2n outputs, and fold the borrowed samples' columns back onto the ones they copy.
    m = n + 2 * _WRAP
    eye = torch.eye(m, dtype=torch.float64).view(1, 1, m, m)
    wide = F.interpolate(eye, size=(2 * m, m), mode=mode, align_corners=False)[0, 0, 2 * _WRAP:2 * _WRAP + 2 * n]
    u = torch.zeros(2 * n, n, dtype=torch.float64)
    u.index_add_(1, (torch.arange(m) - _WRAP) % n, wide)
    return u


def upsample2x(x: torch.Tensor, mode: str = "bicubic", periodic: bool = False) -> torch.Tensor:
    """×2 up-sampling equal to ``F.interpolate(x, scale_factor=2, mode=mode, align_corners=False)``,
    computed as two small matrix products: on CPUs the native bicubic kernel (and above all its
    backward) is 5-10× slower than this, and it was a quarter of a training step. ``periodic`` treats
    the map as one period of a periodic signal (the borders interpolate across the wrap-around).

    A channels-last input gives a channels-last output without a layout copy (the products run along
    the H and W axes of the ``(B, H, W, C)`` memory directly)."""
    b, c, h, w = x.shape
    uh = _upsample_matrix(h, mode, x.device, x.dtype, periodic)
    uw = uh if w == h else _upsample_matrix(w, mode, x.device, x.dtype, periodic)
    if c > 1 and x.is_contiguous(memory_format=torch.channels_last):
        nhwc = x.permute(0, 2, 3, 1)  # a contiguous view
        y = torch.matmul(uw, nhwc.reshape(b * h, w, c))  # along W: (B*H, 2W, C)
        y = torch.matmul(uh, y.reshape(b, h, 2 * w * c))  # along H: (B, 2H, 2W*C)
        return y.view(b, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    return uh @ x @ uw.T


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    # oneDNN's CPU convolutions and cuDNN's tensor-core ones run faster on NHWC memory (a 64->64
    # conv3x3 at 256² trained ~3× faster on this project's 2-core CPU); the values are unchanged.
    return x.contiguous(memory_format=torch.channels_last)


class ConvBlock(nn.Sequential):
    """A UNet++ node: (conv3x3 - norm - ReLU) x 2."""

    def __init__(self, c_in: int, c_out: int, norm: str = "group", padding: str = "zeros") -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode=padding, bias=False), norm_layer(norm, c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode=padding, bias=False), norm_layer(norm, c_out),
            nn.ReLU(inplace=True),
        )


def level_widths(levels: int, width: int) -> list[int]:
    """Filters per level: ``width * min(2**i, 8)``, i.e. 64-128-256-512-512 at width 64 and 5 levels."""
    return [width * min(2**i, 8) for i in range(levels)]


class UNetPlusPlus(nn.Module):
    """Nested U-Net spectrum generator G: normalised log-magnitude ``(B, 3, H, W)`` -> same shape.

    Node ``X[i][j]`` (level ``i``, ``j`` skip steps) is a :class:`ConvBlock` over the concatenation of
    ``X[i][0..j-1]`` and the ×2 up-sampled ``X[i+1][j-1]``; ``X[i][0]`` (the backbone) is the encoder.
    Down-sampling is max-pooling, up-sampling bicubic (paper) or bilinear, the head a 1×1 conv on
    ``X[0][levels-1]``.

    Output:
        * ``identity_init=False`` (paper): ``2 * sigmoid(head) - 1`` in ``[-1, 1]``.
        * ``identity_init=True``: the residual ``x + head`` with a zero-initialised head, so G starts as
          the identity and training only has to learn the *change* of the spectrum. The sigmoid output
          cannot represent the identity; started from a random map, a short adversarial run moves the
          spectra away from the reals before it learns to bring them closer (the official code, run for
          200-1,000 iterations at batch 1, refined fakes spectrally farther from the reals than before).

    Args:
        levels: number of resolution levels (paper 5); inputs must be multiples of ``2**(levels-1)``.
        width: filters of the first level (paper 64); level ``i`` has ``width * min(2**i, 8)``.
        norm: ``group``, ``instance`` or ``batch`` (see :func:`norm_layer`).
        upsample: ``bicubic`` (paper) or ``bilinear``.
        identity_init: residual output with a zero-initialised head (see above).
        padding: ``zeros`` (paper) or ``circular``. A centred spectrum is periodic: its border rows and
            columns (the Nyquist frequencies) neighbour each other across the wrap-around. With zero
            padding G treats them as an edge and, trained on a 64² spectrum, raised the bins next to
            the border by +0.24 in mean log-magnitude where fakes and reals agreed; ``circular`` pads
            convolutions and up-samples across the wrap-around, so no frequency is an edge.
    """

    def __init__(self, levels: int = 5, width: int = 64, norm: str = "group", upsample: str = "bicubic",
                 identity_init: bool = False, channels: int = 3, padding: str = "zeros") -> None:
        super().__init__()
        if levels < 2:
            raise ValueError(f"UNet++ needs at least 2 levels, got {levels}")
        if upsample not in ("bicubic", "bilinear"):
            raise ValueError(f"upsample must be 'bicubic' or 'bilinear', got {upsample!r}")
        if padding not in ("zeros", "circular"):
            raise ValueError(f"padding must be 'zeros' or 'circular', got {padding!r}")
        self.levels, self.upsample, self.identity_init, self.padding = levels, upsample, identity_init, padding
        self.widths = level_widths(levels, width)
        w = self.widths
        # nodes[i][j] is X[i][j]; a node at level i and step j sees j same-level maps plus one from below.
        self.nodes = nn.ModuleList()
        for i in range(levels):
            row = nn.ModuleList([ConvBlock(channels if i == 0 else w[i - 1], w[i], norm, padding)])
            for j in range(1, levels - i):
                row.append(ConvBlock(w[i] * j + w[i + 1], w[i], norm, padding))
            self.nodes.append(row)
        self.head = nn.Conv2d(w[0], channels, 1)
        if identity_init:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.to(memory_format=torch.channels_last)  # weights in the activations' layout: no reorder per call

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (one halving per level below the first)."""
        return 2 ** (self.levels - 1)

    def check_size(self, h: int, w: int) -> None:
        m = self.multiple
        if h % m or w % m or h < m or w < m:
            raise ValueError(
                f"a {self.levels}-level UNet++ needs image sides that are multiples of {m}; got {h}x{w}"
            )

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return upsample2x(x, self.upsample, periodic=self.padding == "circular")

    def encode(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """Backbone features ``X[i][0]`` for ``i`` in ``layers`` (runs the encoder only as deep as needed)."""
        feats: dict[int, torch.Tensor] = {}
        h = _channels_last(x)
        for i in range(max(layers) + 1):
            h = self.nodes[i][0](h if i == 0 else F.max_pool2d(h, 2))
            feats[i] = h
        return [feats[i] for i in layers]

    def forward(self, x: torch.Tensor, layers: Sequence[int] = ()) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """G(x); with ``layers`` also the encoder features of those levels (from the same pass)."""
        self.check_size(*x.shape[-2:])
        x = _channels_last(x)
        grid: list[list[torch.Tensor]] = [[] for _ in range(self.levels)]
        for i in range(self.levels):
            grid[i].append(self.nodes[i][0](x if i == 0 else F.max_pool2d(grid[i - 1][0], 2)))
            # Once X[i][0] exists, the diagonal of nodes that depend on it can be computed.
            for k in range(1, i + 1):
                lvl = i - k
                grid[lvl].append(self.nodes[lvl][k](torch.cat([*grid[lvl], self._up(grid[lvl + 1][k - 1])], 1)))
        h = self.head(grid[0][-1])
        out = x + h.to(x.dtype) if self.identity_init else 2 * torch.sigmoid(h) - 1
        if layers:
            return out, [grid[i][0] for i in layers]
        return out


class SpectrumDiscriminator(nn.Sequential):
    """PatchGAN D on normalised spectra: 4 x [conv3x3 stride 2, InstanceNorm (not first), LeakyReLU 0.2]
    with ``width * (1, 2, 4, 8)`` channels (paper width 64), then conv3x3 to one raw (LSGAN) score map."""

    def __init__(self, width: int = 64, channels: int = 3) -> None:
        layers: list[nn.Module] = []
        c_in = channels
        for k in range(4):
            c_out = width * 2**k
            layers.append(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1))
            if k > 0:
                layers.append(nn.InstanceNorm2d(c_out, affine=True))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 3, padding=1))
        super().__init__(*layers)


class ProfileDiscriminator(nn.Module):
    """D_s: ``Linear(N/2 + 1 -> 1)`` on the spectral profile, returning a *raw* score.

    * The paper puts a sigmoid on it (a logistic regression) but trains it with least squares; an LSGAN
      critic is meant to be unbounded (Mao et al. 2017), and a sigmoid under a squared error saturates
      and stops passing gradient to G once D_s is confident. So the score is left raw.
    * The profile is standardised per ring with the mean and standard deviation of the training
      profiles, reals and fakes together (fixed buffers, :meth:`set_stats`), before the linear layer, as
      a detector's feature scaling would. A linear map of a fixed affine transform of P is still a
      linear map of P — the model is the paper's — but far better conditioned: the high-frequency rings
      vary by ~1 % of the profile's range, so on raw P a few hundred Adam steps never learn to look at
      them, and G is never pushed to fix them.
    """

    def __init__(self, n_rings: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_rings, 1)
        self.register_buffer("mean", torch.zeros(n_rings))
        self.register_buffer("std", torch.ones(n_rings))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, profile: torch.Tensor) -> torch.Tensor:
        return self.linear((profile - self.mean) / self.std).squeeze(-1)


class PatchProjector(nn.Module):
    """PatchNCE heads H: per encoder layer ``Linear(C -> dim) - ReLU - Linear(dim -> dim)``, L2-normalised.

    Works on already-sampled patch features ``(B, P, C)`` so that only the sampled locations are projected.
    """

    def __init__(self, in_channels: Sequence[int], dim: int = 256) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(c, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim)) for c in in_channels
        )

    def forward(self, k: int, patches: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.heads[k](patches).float(), dim=-1)
