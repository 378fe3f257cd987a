"""White-box gradient attacks on a one-logit detector: PGD and APGD as pure functions over tensors.

* **PGD**: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
* **APGD** (Auto-PGD): Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
  diverse parameter-free attacks", ICML 2020.

A detector has one logit ``z`` per image, ``P(fake) = sigmoid(z)`` (:class:`~stigbench.core.contracts.
DifferentiableDetector`). The attacks *maximise* a loss of the true label ``y = 1 - towards``:

* ``"ce"``, the binary cross-entropy of ``y``: ``softplus(-z)`` pushing toward real (``y`` = fake),
  ``softplus(z)`` toward fake;
* ``"margin"``, the logit itself with the sign that helps: ``-z`` toward real, ``z`` toward fake (the
  two-class margin ``z_y - z_other`` of a one-logit model, up to sign).

AutoAttack's DLR loss is not offered: it divides by the gap between the largest and the third-largest
logit, so it needs at least three classes, and a detector has two.

Feasible set: the ε-ball around the clean images (``"linf"`` or ``"l2"``) intersected with the ``[0, 1]``
box. Projection clips to the box *after* projecting onto the ball: exact for L∞ (the two are coordinate-
wise), an approximation of the projection onto the intersection for L2, but always feasible (clipping
only shrinks every coordinate of the perturbation).

The attacked set is stored as 8-bit images; :func:`quantize_in_ball` rounds an adversarial image to the
8-bit grid so that the *stored* image is still within the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from stigbench.core.contracts import FAKE, REAL, LogitsFn

NORMS = ("linf", "l2")

#: Per-image losses ``(logits, towards) -> (N,)`` that the attacks maximise.
LOSSES: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "ce": lambda z, towards: F.softplus(-z if towards == REAL else z),
    "margin": lambda z, towards: -z if towards == REAL else z,
}

# APGD's constants (Croce & Hein 2020, section 3.2): momentum weight, the fraction of improving steps
# below which the step size is halved, the first checkpoint and the checkpoint spacing's decay and floor.
APGD_ALPHA = 0.75
APGD_RHO = 0.75
_P1, _P_DECAY, _P_MIN = 0.22, 0.03, 0.06


# -- budget and settings ---------------------------------------------------------------------------
def parse_eps(value: float | str) -> float:
    """The budget ε as a float in ``[0, 1]``: a number, ``"k/255"`` (``"4 / 255"``, any ``a/b``) or a
    number string; anything else, or a value outside ``[0, 1]``, raises ``ValueError`` naming ``eps``."""
    number = _finite_number(value)
    if number is None or not 0.0 <= number <= 1.0:
        raise ValueError(f"eps must be a number in [0, 1] or 'k/255', got {value!r}")
    return number


def _finite_number(value: object) -> float | None:
    """``value`` as a finite float where it reads as one (``"k/255"`` included), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        num, slash, den = (p.strip() for p in value.partition("/"))
        try:
            value = float(num) / float(den) if slash else float(num)
        except (ValueError, ZeroDivisionError):
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def check_settings(*, eps: float, norm: str, steps: int, loss: str, towards: int) -> None:
    """Raise ``ValueError`` naming the first invalid setting."""
    parse_eps(eps)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if towards not in (REAL, FAKE):
        raise ValueError(f"towards must be {REAL} (real) or {FAKE} (fake), got {towards!r}")


# -- geometry --------------------------------------------------------------------------------------
def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(N,)`` values shaped to broadcast over ``like`` ``(N, ...)``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def _l2(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


def _into_ball(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """``delta`` projected onto the ε-ball around 0."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = _l2(delta)
    return delta * _per_image(torch.where(n > eps, eps / n.clamp_min(1e-30), torch.ones_like(n)), delta)


def project(x: torch.Tensor, orig: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """``x`` projected onto the ε-ball around ``orig``, then clipped to ``[0, 1]`` (see the module notes)."""
    return (orig + _into_ball(x - orig, eps, norm)).clamp(0.0, 1.0)


def _ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent step of unit size: ``sign(g)`` for L∞, ``g / ||g||`` for L2 (0 where g is 0)."""
    if norm == "linf":
        return grad.sign()
    return grad / _per_image(_l2(grad).clamp_min(1e-30), grad)


def uniform_in_ball(images: torch.Tensor, eps: float, norm: str,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniform random point of the ε-ball around each image (the cube for L∞), clipped to ``[0, 1]``;
    drawn on the generator's device."""
    device = generator.device if generator is not None else images.device
    shape = images.shape
    if norm == "linf":
        noise = (2 * torch.rand(shape, generator=generator, device=device) - 1) * eps
    else:
        direction = torch.randn(shape, generator=generator, device=device)
        radius = torch.rand(shape[0], generator=generator, device=device) ** (1.0 / images[0].numel())
        noise = direction / _per_image(_l2(direction).clamp_min(1e-30), direction) * _per_image(radius, direction) * eps
    return (images + noise.to(images.device, images.dtype)).clamp(0.0, 1.0)


# -- the objective ---------------------------------------------------------------------------------
def _objective(x: torch.Tensor, logits_fn: LogitsFn, loss: str, towards: int,
               need_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-image loss ``(N,)`` at ``x`` and, if asked, its gradient (each image's loss depends on that image
    only, so the gradient of the sum is the per-image gradient)."""
    x = x.detach().requires_grad_(need_grad)
    with torch.set_grad_enabled(need_grad):
        logits = logits_fn(x)
        if logits.numel() != x.shape[0]:
            raise ValueError(f"logits_fn must return one logit per image, got shape {tuple(logits.shape)} "
                             f"for {x.shape[0]} images")
        values = LOSSES[loss](logits.reshape(-1), towards)
        grad = torch.autograd.grad(values.sum(), x)[0] if need_grad else None
    return values.detach().to(x.device, torch.float32), grad  # logits may live on the detector's device


def _chunked(images: torch.Tensor, batch_size: int | None,
             run: Callable[[torch.Tensor, slice], torch.Tensor]) -> torch.Tensor:
    """``run(chunk, index)`` over chunks of at most ``batch_size`` images (all at once for ``None``)."""
    n = images.shape[0]
    size = n if batch_size is None else max(int(batch_size), 1)
    return torch.cat([run(images[i:i + size], slice(i, i + size)) for i in range(0, n, size)]) if n else images.clone()


class _Best:
    """The best point per image so far; starts at the clean images, so an attack never returns a point
    with a lower loss than the input (an attack must not add evidence)."""

    def __init__(self, x: torch.Tensor, values: torch.Tensor, grad: torch.Tensor | None = None) -> None:
        self.x, self.values, self.grad = x.clone(), values.clone(), grad

    def update(self, x: torch.Tensor, values: torch.Tensor, grad: torch.Tensor | None = None) -> None:
        better = values > self.values
        mask = _per_image(better, x)
        self.x = torch.where(mask, x, self.x)
        self.values = torch.where(better, values, self.values)
        if grad is not None and self.grad is not None:
            self.grad = torch.where(mask, grad, self.grad)


# -- PGD -------------------------------------------------------------------------------------------
def pgd(images: torch.Tensor, logits_fn: LogitsFn, *, eps: float, norm: str = "linf", steps: int = 10,
        step_size: float | None = None, random_start: bool = True, loss: str = "ce", towards: int = REAL,
        generator: torch.Generator | None = None, batch_size: int | None = None) -> torch.Tensor:
    """Projected gradient ascent (Madry et al., ICLR 2018) on ``loss`` within the ε-ball ∩ ``[0, 1]``.

    L∞: ``x ← P(x + step_size · sign(∇))``; L2: ``x ← P(x + step_size · ∇ / ||∇||)``. ``step_size``
    defaults to ``2.5 · eps / steps`` (Madry et al.'s choice: enough to cross the ball and back). With
    ``random_start`` the first iterate is uniform in the ball (drawn from ``generator``).

    Returns, per image, the point with the highest loss among the clean image and every iterate (the last
    iterate of sign-gradient ascent can be worse than an earlier one). ``batch_size`` attacks that many
    images at a time; the result does not depend on it.
    """
    check_settings(eps=eps, norm=norm, steps=steps, loss=loss, towards=towards)
    eps = parse_eps(eps)
    step = 2.5 * eps / steps if step_size is None else float(step_size)
    images = images.detach()
    # Drawn for all images before they are split into batches: the batch size does not change the start.
    starts = uniform_in_ball(images, eps, norm, generator) if random_start else images

    def run(orig: torch.Tensor, index: slice) -> torch.Tensor:
        best = _Best(orig, _objective(orig, logits_fn, loss, towards, need_grad=False)[0])
        x = starts[index]
        for t in range(steps + 1):
            values, grad = _objective(x, logits_fn, loss, towards, need_grad=t < steps)
            best.update(x, values)
            if grad is not None:
                x = project(x + step * _ascent_direction(grad, norm), orig, eps, norm)
        return best.x

    return _with_grad_allowed(lambda: _chunked(images, batch_size, run))


# -- APGD ------------------------------------------------------------------------------------------
def apgd_checkpoints(steps: int) -> list[int]:
    """APGD's checkpoints ``w_j = ceil(p_j · steps)`` in ``(0, steps)``: ``p_0 = 0``, ``p_1 = 0.22``,
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``."""
    prev, p, out = 0.0, _P1, []
    while True:
        w = math.ceil(round(p * steps, 9))  # round: 0.22 · 100 is 22.000000000000004 in floats
        if w >= steps:
            return out
        if w > 0 and (not out or w > out[-1]):
            out.append(w)
        prev, p = p, p + max(p - prev - _P_DECAY, _P_MIN)


def apgd(images: torch.Tensor, logits_fn: LogitsFn, *, eps: float, norm: str = "linf", steps: int = 10,
         loss: str = "ce", towards: int = REAL, batch_size: int | None = None) -> torch.Tensor:
    """Auto-PGD (Croce & Hein, ICML 2020, Algorithm 1): gradient ascent with momentum and a step size that
    adapts per image, from the clean images (``x(0)``; no random start, so the result is deterministic).

    * step size ``η`` starts at ``2 · eps``; ``z = P(x(k) + η · d(∇f(x(k))))`` with ``d`` the sign (L∞) or
      the normalised gradient (L2); the first step takes ``z``, later ones
      ``x(k+1) = P(x(k) + α (z - x(k)) + (1 - α)(x(k) - x(k-1)))`` with ``α = 0.75``;
    * at each checkpoint ``w_j`` (:func:`apgd_checkpoints`) an image halves ``η`` and restarts from its best
      point (with that point's gradient) when *condition 1*, fewer than ``ρ = 0.75`` of the steps since
      ``w_{j-1}`` raised the loss, or *condition 2*, ``η`` was not halved at ``w_{j-1}`` and the best loss
      has not risen since, holds.

    Returns the point with the highest loss per image. ``batch_size`` as in :func:`pgd`.
    """
    check_settings(eps=eps, norm=norm, steps=steps, loss=loss, towards=towards)
    eps = parse_eps(eps)
    checkpoints = apgd_checkpoints(steps)
    images = images.detach()

    def run(orig: torch.Tensor, index: slice) -> torch.Tensor:
        x = x_prev = orig
        values, grad = _objective(x, logits_fn, loss, towards)
        best = _Best(x, values, grad)
        history = [values]  # history[k] = f(x(k))
        eta = torch.full((orig.shape[0],), 2.0 * eps, device=orig.device, dtype=orig.dtype)
        last_w, best_at_last = 0, best.values.clone()
        reduced_at_last = torch.ones_like(best.values, dtype=torch.bool)  # the paper's w_0: condition 2 off
        for k in range(steps):
            z = project(x + _per_image(eta, x) * _ascent_direction(grad, norm), orig, eps, norm)
            if k > 0:
                z = project(x + APGD_ALPHA * (z - x) + (1 - APGD_ALPHA) * (x - x_prev), orig, eps, norm)
            x_prev, x = x, z
            values, grad = _objective(x, logits_fn, loss, towards, need_grad=k + 1 < steps)
            best.update(x, values, grad)
            history.append(values)
            if k + 1 in checkpoints:
                w = k + 1
                rises = sum((history[i + 1] > history[i]).to(torch.float32) for i in range(last_w, w))
                condition1 = rises < APGD_RHO * (w - last_w)
                condition2 = ~reduced_at_last & (best.values <= best_at_last)
                reduce = condition1 | condition2
                eta = torch.where(reduce, eta / 2, eta)
                mask = _per_image(reduce, x)
                x = torch.where(mask, best.x, x)
                grad = torch.where(mask, best.grad, grad)
                last_w, best_at_last, reduced_at_last = w, best.values.clone(), reduce
        return best.x

    return _with_grad_allowed(lambda: _chunked(images, batch_size, run))


def _with_grad_allowed(body: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run ``body`` with autograd on, even when the caller is in ``no_grad`` or ``inference_mode``."""
    with torch.inference_mode(False), torch.enable_grad():
        return body()


# -- storing ---------------------------------------------------------------------------------------
def quantize_in_ball(adv: torch.Tensor, orig: torch.Tensor, eps: float, norm: str,
                     *, tries: int = 12) -> torch.Tensor:
    """``adv`` on the 8-bit grid, within the ε-ball around the 8-bit ``orig`` and in ``[0, 1]``.

    Returns ``float32`` multiples of 1/255 (the images contract; ``to_uint8`` stores them exactly). The ball
    is measured around ``round(orig · 255) / 255``, which is ``orig`` itself when ``orig`` is 8-bit.

    * L∞: round, then clip the perturbation to ``±floor(eps · 255)`` grid steps. Where the float
      perturbation was within the ball and ``eps`` is a multiple of 1/255, this is plain rounding.
    * L2: the float perturbation is first projected onto the ball and the box; rounded, it can fall outside
      the ball, so an image outside has its float perturbation shrunk and re-rounded (``tries`` bisection
      steps on the shrink factor); truncation toward zero, always inside since it shrinks every coordinate,
      is the fallback, and the one of the two nearer the float image is kept.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    eps = parse_eps(eps)
    # Grid units in float64: integer deltas make the norms below exact.
    o = torch.round(orig.detach().to(torch.float64) * 255).clamp(0, 255)
    d = adv.detach().to(torch.float64) * 255 - o
    radius = eps * 255
    if norm == "linf":
        k = math.floor(radius + 1e-9)  # 4/255 · 255 may be 3.9999999999999996
        q = (o + torch.round(d).clamp(-k, k)).clamp(0, 255)
    else:
        d = (o + _into_ball(d, radius, "l2")).clamp(0, 255) - o  # shrinking d toward 0 keeps it in the box
        q = o + torch.round(d)
        outside = _l2(q - o) > radius
        if bool(outside.any()):
            q = torch.where(_per_image(outside, q), _shrunk_rounding(d, o, radius, tries), q)
    return (q / 255).to(torch.float32)


def _shrunk_rounding(d: torch.Tensor, o: torch.Tensor, radius: float, tries: int) -> torch.Tensor:
    """``o + round(s · d)`` for the largest ``s`` in ``[0, 1)`` that bisection finds in ``tries`` steps with
    the rounded norm within ``radius``, or ``o + trunc(d)`` (always inside), whichever is nearer ``o + d``.

    Scaling by ``radius / ||round(d)||`` in one go shrinks far too much when most coordinates rounded up.
    """
    best = o + torch.trunc(d)
    lo = torch.zeros(d.shape[0], dtype=d.dtype, device=d.device)
    hi = torch.ones_like(lo)
    for _ in range(tries):
        mid = (lo + hi) / 2
        cand = o + torch.round(d * _per_image(mid, d))
        inside = _l2(cand - o) <= radius
        nearer = inside & (_l2(cand - o - d) < _l2(best - o - d))
        best = torch.where(_per_image(nearer, d), cand, best)
        lo, hi = torch.where(inside, mid, lo), torch.where(inside, hi, mid)
    return best
