"""``spectral-pgd``: a white-box gradient attack confined to each image's magnitude spectrum.

The per-image, gradient counterpart of STIG's spectral refinement (Lee, Jung, Seo, "Spectrum Translation
for Refinement of Image Generation (STIG)", AAAI 2024), which rewrites the magnitude spectrum of a fake and
keeps its phase: here the magnitude of each image is optimised by PGD (Madry et al., "Towards Deep Learning
Models Resistant to Adversarial Attacks", ICLR 2018) against one detector, instead of translated by a
network trained on unpaired sets.

In the FFT convention of :mod:`stigbench.measures.spectrum`, each channel of an image ``x`` has the
log-magnitude ``L = log1p|fftshift(fft2(x))|`` and the phase ``phi``. The attack adds a perturbation
``delta`` to ``L`` only and keeps the fake's phase::

    x_adv = clamp(from_log_magnitude(L + delta, phi), 0, 1)

* **Budget**: ``|delta| <= eps`` per frequency and channel (L∞ in log-magnitude, in nats). Since
  ``1 + |F'| = (1 + |F|) · exp(delta)``, ``eps = 0.1`` scales ``1 + |F|`` by at most ``e^0.1 ≈ 1.105``:
  about ±10 % of each frequency's magnitude wherever ``|F| >> 1`` (nearly everywhere: the transform is
  unnormalised, so ``|F|`` grows with the pixel count), and at most ``e^eps - 1`` in absolute terms where
  the magnitude is near 0. A magnitude cannot fall below 0: where ``|F| < e^eps - 1`` a decrease stops
  at ``|F'| = 0`` (a change of ``-L``, within the bound).
* **Symmetry**: ``delta`` is Hermitian-symmetric, ``delta(k) = delta(-k)`` (:func:`~stigbench.measures.
  spectrum.symmetrise`), like the magnitude of any real image, so the inverse FFT is real up to float
  error. The ascent direction is the sign of the *symmetrised* gradient: the steepest L∞ ascent over the
  symmetric perturbations (one free value per pair ``{k, -k}``).
* **DC**: with ``dc=False`` (the default) ``delta`` is 0 at DC, so each channel's mean brightness is kept.
* **The [0, 1] clamp** comes after the inverse FFT: where it cuts a pixel, the attacked image's spectrum
  is no longer ``L + delta``, and ``|log_magnitude(x_adv) - L|`` can exceed ``eps`` (the clamp can move
  every frequency). Where no pixel is clamped, the change is ``delta`` up to float error.

PGD in ``delta``-space: sign steps of ``step_size`` (default ``2.5 · eps / steps``), a random start uniform
in the symmetric box, projection by clipping to ``[-eps, eps]``, and, per image, the best point among the
clean image and every iterate (as :func:`~stigbench.attacks.gradient.pgd`). Losses and ``towards`` as in
:mod:`stigbench.attacks.gradient`.

There is no pixel ball: :meth:`SpectralPGD.store` only rounds to the 8-bit grid, so the *stored* image's
spectrum can differ from ``L + delta`` by that rounding (and the clamp). PSNR to the clean fake is
reported for it like for every attack.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from stigbench.attacks.gradient import LOSSES, _Best, _chunked, _objective, _with_grad_allowed
from stigbench.attacks.registry import register_attack
from stigbench.attacks.white_box import WhiteBoxAttack
from stigbench.core.contracts import FAKE, REAL, LogitsFn
from stigbench.core.imageset import to_float, to_uint8
from stigbench.measures.spectrum import from_log_magnitude, log_magnitude, magnitude_phase, mirror, symmetrise

#: The largest budget, in nats: beyond log 7 ≈ 1.95 a magnitude may change more than 7-fold (``e^2 ≈ 7.4``).
MAX_EPS = 2.0
#: What ``spectral-pgd:eps=*`` expands to.
EPS_GRID = (0.025, 0.05, 0.1, 0.2)


# -- the symmetric box -----------------------------------------------------------------------------
def _representatives(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """``(h, w)`` bool, true at one frequency of each pair ``{k, -k}`` (and at the self-mirrored ones:
    DC and, for even sizes, the Nyquist frequencies)."""
    index = torch.arange(h * w, device=device).reshape(h, w)
    return index <= mirror(index)


def dc_mask(h: int, w: int, dc: bool, device: torch.device | None = None, dtype: torch.dtype = torch.float32
            ) -> torch.Tensor:
    """``(h, w)`` ones, with 0 at DC (``(h // 2, w // 2)``, centred) unless ``dc``: where ``delta`` may act."""
    mask = torch.ones(h, w, device=device, dtype=dtype)
    if not dc:
        mask[h // 2, w // 2] = 0
    return mask


def uniform_symmetric(shape: torch.Size, eps: float, generator: torch.Generator | None = None,
                      device: torch.device | None = None) -> torch.Tensor:
    """A Hermitian-symmetric ``delta`` of ``shape`` ``(..., H, W)``, each pair ``{k, -k}`` sharing one value
    uniform in ``[-eps, eps]`` (symmetrising independent draws would pile the values up near 0); drawn on the
    generator's device."""
    where = generator.device if generator is not None else device
    u = (2 * torch.rand(shape, generator=generator, device=where) - 1) * eps
    return torch.where(_representatives(*shape[-2:], device=where), u, mirror(u)).to(device)


def synthesise(log_mag: torch.Tensor, phase: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The image with log-magnitude ``log_mag + delta`` and phase ``phase``, clamped to ``[0, 1]``
    (differentiable in ``delta``: torch.fft is)."""
    return from_log_magnitude(log_mag + delta, phase).clamp(0.0, 1.0)


def log_magnitude_change(adversarial: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``log_magnitude(adversarial) - log_magnitude(images)`` per channel: the budget's measure."""
    return log_magnitude(adversarial) - log_magnitude(images)


# -- the attack ------------------------------------------------------------------------------------
def _number(value: Any) -> bool:
    """A finite int or float (not a bool, not a string: this budget has no ``k/255`` form)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_spectral_settings(*, eps: Any, steps: Any, step_size: Any, loss: Any, towards: Any) -> None:
    """Raise ``ValueError`` naming the first invalid setting of :func:`spectral_pgd`."""
    if not _number(eps) or not 0.0 < eps <= MAX_EPS:
        raise ValueError(f"eps must be a number of nats in (0, {MAX_EPS:g}], got {eps!r}: it bounds each "
                         f"log-magnitude change, and a bound beyond log 7 (≈ 1.95) lets a magnitude change more "
                         f"than 7-fold (e^{MAX_EPS:g} ≈ {math.exp(MAX_EPS):.1f} at the edge)")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if step_size is not None and not (_number(step_size) and step_size > 0):
        raise ValueError(f"step_size must be a positive number or None, got {step_size!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if towards not in (REAL, FAKE):
        raise ValueError(f"towards must be {REAL} (real) or {FAKE} (fake), got {towards!r}")


def spectral_pgd(images: torch.Tensor, logits_fn: LogitsFn, *, eps: float, steps: int = 10,
                 step_size: float | None = None, random_start: bool = True, loss: str = "ce",
                 towards: int = REAL, dc: bool = False, generator: torch.Generator | None = None,
                 batch_size: int | None = None) -> torch.Tensor:
    """PGD on the log-magnitude spectrum (see the module notes): ``delta ← clip(delta + step_size ·
    sign(symmetrise(∇_delta)), -eps, eps)``, the phase kept, the best point per image returned.

    ``images`` ``(N, C, H, W)`` in ``[0, 1]``; the result has their shape and dtype (spectra in at least
    float32). ``batch_size`` attacks that many images at a time; the result does not depend on it.
    """
    check_spectral_settings(eps=eps, steps=steps, step_size=step_size, loss=loss, towards=towards)
    eps = float(eps)
    step = 2.5 * eps / steps if step_size is None else float(step_size)
    images = images.detach()
    h, w = images.shape[-2:]
    # Drawn for all images before they are split into batches: the batch size does not change the start.
    starts = uniform_symmetric(images.shape, eps, generator, images.device) if random_start else None

    def run(orig: torch.Tensor, index: slice) -> torch.Tensor:
        log_mag, phase = magnitude_phase(orig)
        mask = dc_mask(h, w, dc, orig.device, log_mag.dtype)
        best = _Best(orig, _objective(orig, logits_fn, loss, towards, need_grad=False)[0])
        delta = (torch.zeros_like(log_mag) if starts is None else starts[index].to(log_mag.dtype)) * mask
        for t in range(steps + 1):
            need_grad = t < steps
            d = delta.detach().requires_grad_(need_grad)
            with torch.set_grad_enabled(need_grad):
                x = synthesise(log_mag, phase, d)
            values, grad_x = _objective(x, logits_fn, loss, towards, need_grad=need_grad)
            best.update(x.detach().to(orig.dtype), values)
            if grad_x is not None:
                grad = torch.autograd.grad(x, d, grad_x)[0]
                delta = (delta + step * symmetrise(grad).sign() * mask).clamp(-eps, eps)
        return best.x

    return _with_grad_allowed(lambda: _chunked(images, batch_size, run))


@register_attack("spectral-pgd", paper="the per-image, gradient counterpart of STIG's spectral refinement "
                 "(Lee et al., AAAI 2024) with PGD (Madry et al., ICLR 2018)", knowledge="white-box",
                 description="PGD on each channel's log-magnitude spectrum (L∞ in nats, Hermitian-symmetric, "
                 "phase kept, DC kept by default), random start, best iterate")
class SpectralPGD(WhiteBoxAttack):
    """PGD confined to the magnitude spectrum (:func:`spectral_pgd`).

    Args:
        eps: L∞ bound on each log-magnitude change, in nats, in ``(0, 2]`` (0.1 ≈ ±10 % of each magnitude).
        steps: PGD iterations.
        step_size: sign-step length in nats; ``None`` is ``2.5 · eps / steps``.
        random_start: start uniform in the symmetric box (seeded by the generator).
        loss: ``"ce"`` or ``"margin"`` (:data:`~stigbench.attacks.gradient.LOSSES`).
        dc: let the DC term (each channel's mean) change too; ``False`` keeps it.
        target: the detector of the run to attack (``None``: each attackable one); read by the pipeline.
        seed: seeds the random start when ``perturb`` gets no generator.
        batch_size: images attacked at a time.
    """

    param_grids: ClassVar[dict[str, tuple[float, ...]]] = {"eps": EPS_GRID}
    #: The budget's norm; it is measured on the log-magnitude spectrum (``domain``), not on pixels.
    norm: ClassVar[str] = "linf"
    domain: ClassVar[str] = "log-magnitude"

    def __init__(self, eps: float = 0.1, steps: int = 10, step_size: float | None = None, random_start: bool = True,
                 loss: str = "ce", dc: bool = False, target: str | None = None, seed: int = 0,
                 batch_size: int = 32) -> None:
        self.eps = eps
        self.steps = steps
        self.step_size = step_size
        self.random_start = random_start
        self.loss = loss
        self.dc = dc
        self.target = target
        self.seed = seed
        self.batch_size = batch_size

    def _check_settings(self) -> None:
        check_spectral_settings(eps=self.eps, steps=self.steps, step_size=self.step_size, loss=self.loss,
                                towards=REAL)

    def budget(self) -> str:
        """``"log-magnitude linf 0.1"``: the bound in nats."""
        self.check_params()
        return f"{self.domain} {self.norm} {float(self.eps):g}"

    def store(self, adversarial: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """``adversarial`` rounded to the 8-bit grid (``float32`` multiples of 1/255 in ``[0, 1]``).

        There is no pixel ball to re-project into: the stored image's spectrum can differ from
        ``L + delta`` by the rounding (about ``H·W/(2·255)`` in ``|F|`` at most, far less in practice);
        its distance to the clean fake is reported as PSNR, like every attack's."""
        return to_float(to_uint8(adversarial)).to(adversarial.device)

    def _attack(self, images: torch.Tensor, logits_fn: LogitsFn, towards: int,
                generator: torch.Generator) -> torch.Tensor:
        return spectral_pgd(images, logits_fn, eps=self.eps, steps=self.steps, step_size=self.step_size,
                            random_start=bool(self.random_start), loss=self.loss, towards=towards, dc=bool(self.dc),
                            generator=generator, batch_size=self.batch_size)
