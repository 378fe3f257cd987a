"""Arithmetic that gives the same bits on every x86-64 CPU, for the demo datasets' generators.

**Why.** torch's float32 CPU kernels add up dot products in an order that depends on the processor:
oneDNN's convolutions and MKL's matrix products block their loops differently for AVX2, AVX-512 and AMX,
and ATen's reductions run as wide as the vector registers. A seeded training loop therefore ends with
different weights on different processors, and hundreds of Adam steps amplify a last-bit difference
into a different dataset (issue #22: ``demo-diffusion``'s LFD 0.018 built on an Intel Xeon with AMX,
0.028 on an AMD EPYC). float64 alone only delays it: ``demo-gan``'s training still drifted by 5e-7 of
an 8-bit level in 200 steps between an AVX2 and an AVX-512 build, and chaos grows that without bound.

**How.** Every floating-point operation the generators run is one of two kinds, and both are exact
functions of their inputs on any IEEE-754 machine:

* **Exact dot products.** Convolutions run in float64 on operands on a 19-bit grid (:func:`snap`: one
  power-of-two step per tensor, ``2^-19`` of its largest magnitude, round half to even). A product of
  two such numbers has at most 38 significant bits, and a sum of up to ``2^15`` of them (:data:`MAX_TERMS`)
  fits float64's 53-bit significand, so *every* partial sum is exact: the result is the same whatever
  order, blocking, vector width, thread count or fused multiply-add the kernel uses. That holds for the
  forward product and for both backward products (input gradient, weight gradient), because
  :class:`ExactConv2d` and :class:`ExactConvTranspose2d` snap their input on the way in and the gradient
  on the way back; bias gradients are sums of snapped gradients, exact too. :func:`check_terms` refuses
  a layer or batch beyond the budget.
* **Basic operations elementwise** (``+ - * /``, ``sqrt``, rounding, comparisons): IEEE-754 rounds each
  correctly, so each is the same on every conforming CPU. What is *not* a basic operation is written out
  in basic operations: torch's Adam uses fused multiply-adds (``lerp``, ``addcmul``) that round once on a
  CPU with FMA and twice without (:class:`Adam` does not); ``exp``, ``log`` and ``cos`` from libm or SLEEF
  are accurate to about an ulp but differ between implementations (:func:`exp`, :func:`log` and
  :func:`normal` use fixed polynomials).

Random numbers come from torch's CPU generator as integers or 53-bit uniforms, which are exact. The one
reduction that is not exact, the logged training loss, never feeds back into training. Everything else
that builds a dataset (picture pool, partition, PNG writing) is integer or numpy code that is already
exact (checked across capped instruction sets by ``benchmarks/bench_demo_isa.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

BITS = 19
# Largest number of products one exact dot product may add: 2 * BITS + log2(MAX_TERMS) = 53.
MAX_TERMS = 2 ** (53 - 2 * BITS)
DTYPE = torch.float64


def quantise(x: torch.Tensor, bits: int = BITS) -> torch.Tensor:
    """``x`` rounded to multiples of ``2^(e - bits)``, where ``2^e`` bounds ``max |x|`` (half to even).

    The maximum, the exponent and the power-of-two scaling are exact, so the grid is too.
    """
    lo, hi = torch.aminmax(x.detach())
    top = max(-float(lo), float(hi))
    if not top > 0:
        return x.clone()
    step = math.ldexp(1.0, math.frexp(top)[1] - bits)  # exact: powers of two
    return (x * (1.0 / step)).round_().mul_(step)


class _Snap(torch.autograd.Function):
    """Identity with both the value (forward) and the gradient (backward) rounded to the grid."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return quantise(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return quantise(grad)


def snap(x: torch.Tensor) -> torch.Tensor:
    """:func:`quantise` in the forward pass and for the gradient (straight-through otherwise)."""
    return _Snap.apply(x)


def check_terms(terms: int, what: str) -> None:
    if terms > MAX_TERMS:
        raise ValueError(f"{what}: {terms} products per sum exceed the {MAX_TERMS} that float64 adds exactly "
                         f"at {BITS}-bit operands; use a smaller batch, crop or layer")


class ExactConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state dict) whose three products are exact: see the module docstring.

    A stride-1 "same" convolution over more channels than taps runs as :class:`_ShiftConv` (the same
    exact sums, two to four times faster than torch's float64 im2col); the others run as torch's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        if (self.stride == (1, 1) and self.dilation == (1, 1) and self.groups == 1 and self.kernel_size == (k, k)
                and k % 2 == 1 and self.padding == ((k - 1) // 2,) * 2 and self.padding_mode == "zeros"
                and self.in_channels > k * k):
            y = _ShiftConv.apply(snap(x), self.weight)
        else:
            y = self._conv_forward(snap(x), self.weight, None)
        _check_conv(self, x, y)
        return snap(y + self.bias.view(1, -1, 1, 1) if self.bias is not None else y)


class _ShiftConv(torch.autograd.Function):
    """A stride-1 ``k x k`` convolution with ``(k - 1) / 2`` zero padding as ``k^2`` matrix products.

    On the padded image flattened channels-last, tap ``(i, j)`` reads the rows shifted by
    ``i * padded_width + j``: a contiguous slice, so each tap is one GEMM with no im2col copy. Rows that
    wrap around a border are computed and dropped. The sums are the convolution's, hence exact on the grid.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n, c, h, wd = x.shape
        co, k = w.shape[0], w.shape[-1]
        p = (k - 1) // 2
        hp, wp = h + 2 * p, wd + 2 * p
        xp = F.pad(x, (p, p, p, p)).permute(0, 2, 3, 1).contiguous().view(n * hp * wp, c)
        rows = n * hp * wp - (k - 1) * (wp + 1)  # the last output row any tap can reach
        taps = w.permute(2, 3, 1, 0).contiguous()  # (k, k, c, co)
        out = torch.zeros(n * hp * wp, co, dtype=x.dtype)
        for i in range(k):
            for j in range(k):
                out[:rows].addmm_(xp[i * wp + j:i * wp + j + rows], taps[i, j])
        ctx.save_for_backward(xp, taps)
        ctx.shape = (n, c, h, wd, k, rows)  # type: ignore[attr-defined]
        return out.view(n, hp, wp, co)[:, :h, :wd].permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        xp, taps = ctx.saved_tensors  # type: ignore[attr-defined]
        n, c, h, wd, k, rows = ctx.shape  # type: ignore[attr-defined]
        p = (k - 1) // 2
        hp, wp, co = h + 2 * p, wd + 2 * p, taps.shape[-1]
        g = torch.zeros(n, hp, wp, co, dtype=grad.dtype)
        g[:, :h, :wd] = grad.permute(0, 2, 3, 1)
        g = g.view(n * hp * wp, co)[:rows]
        grad_taps = torch.empty_like(taps)
        grad_xp = torch.zeros(n * hp * wp, c, dtype=grad.dtype)
        for i in range(k):
            for j in range(k):
                torch.mm(xp[i * wp + j:i * wp + j + rows].t(), g, out=grad_taps[i, j])
                grad_xp[i * wp + j:i * wp + j + rows].addmm_(g, taps[i, j].t())
        grad_x = grad_xp.view(n, hp, wp, c)[:, p:p + h, p:p + wd].permute(0, 3, 1, 2)
        return grad_x, grad_taps.permute(3, 2, 0, 1)


class ExactConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose three products are exact (no output size or padding overrides)."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None:
            raise ValueError("ExactConvTranspose2d takes no output_size")
        y = F.conv_transpose2d(snap(x), self.weight, None, self.stride, self.padding, self.output_padding,
                               self.groups, self.dilation)
        _check_conv(self, x, y)
        return snap(y + self.bias.view(1, -1, 1, 1) if self.bias is not None else y)


def _check_conv(layer: nn.Conv2d | nn.ConvTranspose2d, x: torch.Tensor, y: torch.Tensor) -> None:
    """The longest sums: an output or an input gradient adds at most channels x taps products, a weight
    or bias gradient one per image and position (of the input or the output, whichever is larger)."""
    taps = layer.kernel_size[0] * layer.kernel_size[1]
    check_terms(max(layer.in_channels, layer.out_channels) * taps // layer.groups, type(layer).__name__)
    if torch.is_grad_enabled() and layer.weight.requires_grad:
        # padded positions: _ShiftConv's weight gradient runs over the padded grid
        positions = max((x.shape[-2] + 2 * layer.padding[0]) * (x.shape[-1] + 2 * layer.padding[1]),
                        y.shape[-2] * y.shape[-1])
        check_terms(x.shape[0] * positions, f"{type(layer).__name__} weight gradient")


def init_exact(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Float64 parameters drawn like torch's default (uniform in ``+-1/sqrt(fan_in)``) from ``gen``, on the grid.

    torch's own initialisation draws float32 values through a multiply-add that a compiler may fuse or not
    per instruction set; an ulp there would decide a grid rounding. 53-bit uniforms are exact.
    """
    model.to(DTYPE)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                w = layer.weight
                fan_in = w.shape[1] * w.shape[2] * w.shape[3] if isinstance(layer, nn.Conv2d) else \
                    w.shape[0] * w.shape[2] * w.shape[3]
                bound = 1.0 / math.sqrt(fan_in)
                for p in (w, layer.bias):
                    if p is not None:
                        u = torch.rand(p.shape, dtype=DTYPE, generator=gen)
                        p.copy_(quantise((u * 2 - 1) * bound))
    return model


class Adam:
    """Adam (Kingma & Ba, ICLR 2015) in basic operations, parameters kept on the grid after each step.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, ``p <- p - lr m_hat / (sqrt(v_hat) + eps)``,
    each product and sum its own correctly rounded operation (torch.optim.Adam fuses some of them).
    """

    def __init__(self, params: Iterable[nn.Parameter], *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self._b1t, self._b2t = 1.0, 1.0  # beta^t by repeated multiplication: Python's pow is libm's

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self._b1t *= b1
        self._b2t *= b2
        c1, c2 = 1.0 - self._b1t, 1.0 - self._b2t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            m.copy_(m * b1 + g * (1.0 - b1))
            v.copy_(v * b2 + (g * g) * (1.0 - b2))
            update = (m / c1) / (torch.sqrt(v / c2) + self.eps) * self.lr
            p.copy_(quantise(p - update))


# -- elementary functions in basic operations ------------------------------------------------------
# Cody & Waite's split of ln 2 (fdlibm): k * _LN2_HI is exact for |k| < 2^20.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00
_TWO_PI = 6.283185307179586
_EXP_TERMS = 14  # |r| <= ln2/2: r^14/14! < 1e-17
_LOG_TERMS = 12  # |t| <= 0.1716: t^25/25 < 1e-20
_COS_TERMS = 12  # x <= pi/2: x^24/24! < 1e-19


def _pow2(k: torch.Tensor) -> torch.Tensor:
    """``2^k`` for integer-valued float64 ``k`` in [-1022, 1023], built from its exponent bits."""
    return ((k.to(torch.int64) + 1023) << 52).view(DTYPE)


def exp(x: torch.Tensor) -> torch.Tensor:
    """``e^x`` (float64, |x| clamped at 700): ``x = k ln2 + r``, a Taylor polynomial of ``r``, times ``2^k``."""
    x = x.clamp(-700.0, 700.0)
    k = torch.round(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = torch.ones_like(r)
    for n in range(_EXP_TERMS, 0, -1):  # Horner: 1 + r/1 (1 + r/2 (1 + ...))
        p = p * r / n + 1.0
    return p * _pow2(k)


def log(x: torch.Tensor) -> torch.Tensor:
    """Natural log of positive float64 ``x``: ``x = m 2^e`` with ``m`` in [1/sqrt2, sqrt2), ``ln m = 2 atanh t``."""
    m, e = torch.frexp(x)
    low = m < 0.7071067811865476
    m = torch.where(low, m * 2.0, m)
    e = (e - low.to(e.dtype)).to(DTYPE)
    t = (m - 1.0) / (m + 1.0)
    t2 = t * t
    s = torch.full_like(t, 1.0 / (2 * _LOG_TERMS + 1))
    for n in range(_LOG_TERMS - 1, -1, -1):
        s = s * t2 + 1.0 / (2 * n + 1)
    return e * _LN2_HI + (e * _LN2_LO + 2.0 * t * s)


def cos_turns(u: torch.Tensor) -> torch.Tensor:
    """``cos(2 pi u)`` for float64 ``u``: reduced by symmetry to a quarter turn, then a Taylor polynomial."""
    w = (u - torch.round(u)).abs()  # [0, 1/2], exact
    flip = w > 0.25
    w = torch.where(flip, 0.5 - w, w)  # [0, 1/4], exact; cos(pi - y) = -cos(y)
    x = w * _TWO_PI
    x2 = x * x
    c = torch.ones_like(x)
    for n in range(_COS_TERMS, 0, -1):
        c = 1.0 - c * x2 / ((2 * n) * (2 * n - 1))
    return torch.where(flip, -c, c)


def normal(shape: tuple[int, ...] | torch.Size, gen: torch.Generator) -> torch.Tensor:
    """Standard normal float64 draws by Box & Muller (1958) over 53-bit uniforms from ``gen``."""
    n = math.prod(shape)
    pairs = (n + 1) // 2
    u1 = 1.0 - torch.rand(pairs, dtype=DTYPE, generator=gen)  # (0, 1], exact
    u2 = torch.rand(pairs, dtype=DTYPE, generator=gen)
    radius = torch.sqrt(log(u1) * -2.0)
    z = torch.cat([radius * cos_turns(u2), radius * cos_turns(u2 - 0.25)])
    return z[:n].reshape(shape)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``1 / (1 + e^-x)`` with :func:`exp`; its gradient ``y (1 - y)`` in basic operations too."""
    return _Sigmoid.apply(x)


class _Sigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = 1.0 / (exp(-x) + 1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return grad * (y * (1.0 - y))


__all__ = ["Adam", "BITS", "DTYPE", "ExactConv2d", "ExactConvTranspose2d", "MAX_TERMS", "check_terms", "cos_turns",
           "exp", "init_exact", "log", "normal", "quantise", "sigmoid", "snap"]
