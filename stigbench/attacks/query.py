"""Query-only (score-based) attacks: they see a detector's logits, never its gradients, so every detector
that outputs a score can be attacked.

* ``square``: Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
  adversarial attack via random search", ECCV 2020: the L∞ version (random search with the L∞ sampling
  distribution of squares and the vertical-stripe start).

The search maximises a loss of :data:`~stigbench.attacks.gradient.LOSSES` (``"margin"``: ``-z`` toward
real, ``z`` toward fake; ``"ce"``) of the one logit ``z`` per image, within the L∞ ε-ball ∩ ``[0, 1]``:

1. the start is ``clip(x + ε · stripes)``, one random sign per channel and column (vertical stripes);
2. each iteration proposes, per image, the current point with one square of side ``s`` set to ``x ± ε``,
   one random sign per channel, and keeps it when the loss rises strictly. The side follows the fraction
   ``p`` of pixels changed: ``s = round(sqrt(p · H · W))`` in ``[1, min(H, W) - 1]``, with ``p = p_init``
   halved each time the iteration passes 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of a
   10 000-query run, rescaled to ``queries`` (:func:`square_fraction`; the paper's schedule, as its
   public code implements it);
3. an image stops as soon as it is *done*: its point beats the clean image's loss and the detector
   puts it on the ``towards`` side of its own 0.5 (``z < 0``, P(fake) < 0.5, toward real; ``z ≥ 0``
   toward fake, the benchmark's ``score >= threshold`` convention). Done images are not queried again.

Early stopping uses the detector's own 0.5: the benchmark's success rate uses the threshold fixed on
the validation set, so an image the attack stopped on can still count as detected where that threshold
is below 0.5. Requiring a gain over the clean image before stopping means an image already across 0.5
is still moved (typically within a few queries), so the attack never returns the input unchanged while
it has budget, and never returns a point worse than the input (an attack must not add evidence).

Query accounting, per image: one query for the clean image, one for the stripe start, one per
iteration while the image is not done; at most ``queries`` in all. A proposal that would not change the
image (its square already holds those signs) is redrawn, up to :data:`REDRAWS` times, instead of
spending a query on it; one still unchanged is skipped for that iteration, unqueried.

Differences from the public code: every image draws its square's position as well as its signs (the
code shares one position per iteration across the batch), from its own generator seeded from
``generator``, so that the batch size does not change any image's result; positions cover every
placement ``0 … H - s`` (the code's ``randint(0, h - s)`` leaves out the last row and column); the clean
image is queried, counted and kept as a fallback.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from stigbench.attacks.gradient import LOSSES, _chunked, _per_image, check_settings, parse_eps
from stigbench.attacks.registry import register_attack
from stigbench.attacks.white_box import Attack, _stored_eps, format_eps, is_int
from stigbench.core.contracts import REAL, LogitsFn

#: Iterations (of a 10 000-query run) after which Square Attack halves ``p`` (the paper's schedule; the
#: authors' code rescales it to other budgets, as :func:`square_fraction` does).
P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: How often a proposal that leaves the image unchanged is redrawn before the image skips the iteration.
REDRAWS = 16


def check_square_settings(*, eps: float | str, queries: int, p_init: float, loss: str, towards: int) -> None:
    """Raise ``ValueError`` naming the first invalid setting."""
    parse_eps(eps)
    if not is_int(queries) or queries < 2:
        raise ValueError(f"queries must be an integer >= 2 (the clean image and the start), got {queries!r}")
    if not (isinstance(p_init, (int, float)) and not isinstance(p_init, bool) and 0 < p_init <= 1):
        raise ValueError(f"p_init must be a number in (0, 1], got {p_init!r}")
    # eps, loss and towards as the gradient attacks check them (one step stands in for their steps)
    check_settings(eps=eps, norm="linf", steps=1, loss=loss, towards=towards)


def square_fraction(p_init: float, iteration: int, queries: int) -> float:
    """The fraction ``p`` of pixels a square covers at ``iteration`` (from 0) of a ``queries`` budget:
    ``p_init`` halved once per :data:`P_HALVINGS` entry that ``iteration`` has passed, the iteration
    rescaled to a 10 000-query run as the public code does (``int(iteration / queries · 10000)``)."""
    scaled = int(iteration / queries * 10000)
    return p_init / 2 ** sum(scaled > t for t in P_HALVINGS)


def square_side(p: float, height: int, width: int) -> int:
    """The side of a square covering a fraction ``p`` of an ``height × width`` image: at least 1 and at
    most ``min(height, width) - 1`` (never the whole image)."""
    return min(max(int(round(math.sqrt(p * height * width))), 1), max(min(height, width) - 1, 1))


def _logits(x: torch.Tensor, logits_fn: LogitsFn) -> torch.Tensor:
    """One query per row of ``x``: the logits ``(N,)``, computed without autograd."""
    with torch.no_grad():
        z = logits_fn(x)
    if z.numel() != x.shape[0]:
        raise ValueError(f"logits_fn must return one logit per image, got shape {tuple(z.shape)} "
                         f"for {x.shape[0]} images")
    return z.detach().reshape(-1).to(x.device, torch.float32)  # logits may live on the detector's device


def _crossed(z: torch.Tensor, towards: int) -> torch.Tensor:
    """Whether the detector puts each logit on the ``towards`` side of its 0.5 (``score >= 0.5`` = fake)."""
    return z < 0 if towards == REAL else z >= 0


def _signs(u: torch.Tensor, eps: float) -> torch.Tensor:
    """Uniform draws in ``[0, 1)`` as ``±eps`` with probability 1/2 each."""
    return torch.where(u < 0.5, -eps, eps)


def square_attack(images: torch.Tensor, logits_fn: LogitsFn, *, eps: float | str, queries: int = 1000,
                  p_init: float = 0.05, loss: str = "margin", towards: int = REAL,
                  generator: torch.Generator | None = None,
                  batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The L∞ Square Attack (see the module notes) with at most ``queries`` forward evaluations of
    ``logits_fn`` per image and no gradient.

    Returns the adversarial images (the best point per image, the clean image where nothing beat it) and
    the number of queries each image used, ``(N,)`` int64. ``batch_size`` attacks that many images at a
    time (each call of ``logits_fn`` gets the chunk's images not done yet); the result does not depend on
    it.
    """
    check_square_settings(eps=eps, queries=queries, p_init=p_init, loss=loss, towards=towards)
    eps = parse_eps(eps)
    images = images.detach()
    n = images.shape[0]
    used = torch.zeros(n, dtype=torch.int64)
    # One seed per image, drawn before the images are split into batches: the batch size does not change
    # any image's random stream.
    device = generator.device if generator is not None else torch.device("cpu")
    seeds = torch.randint(0, 2 ** 62, (n,), generator=generator, device=device).tolist()
    if eps == 0:  # nothing to search: the ball is the clean image
        return images.clone(), used

    def run(orig: torch.Tensor, index: slice) -> torch.Tensor:
        adv, used[index] = _search(orig, logits_fn, seeds[index], eps=eps, queries=queries, p_init=p_init,
                                   loss=loss, towards=towards)
        return adv

    return _chunked(images, batch_size, run), used


def _search(orig: torch.Tensor, logits_fn: LogitsFn, seeds: list[int], *, eps: float, queries: int,
            p_init: float, loss: str, towards: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Square Attack on one chunk of images; returns the best points and the queries each used."""
    n, c, h, w = orig.shape
    dev = orig.device
    iterations = max(queries - 2, 0)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    # Each image's stream: its stripes, then one row per iteration (row, column, one sign per channel),
    # then any redraws.
    stripes = torch.stack([torch.rand((c, 1, w), generator=g) for g in generators]).to(dev)
    draws = torch.stack([torch.rand((iterations, 2 + c), generator=g) for g in generators]).to(dev)
    objective = LOSSES[loss]

    clean = objective(_logits(orig, logits_fn), towards)
    x = (orig + _signs(stripes, eps)).clamp(0.0, 1.0)
    z = _logits(x, logits_fn)
    value = objective(z, towards)
    used = torch.full((n,), 2, dtype=torch.int64)  # the clean image and the start
    rows = torch.arange(h, device=dev).view(1, 1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, 1, w)
    for t in range(iterations):
        active = torch.nonzero(~((value > clean) & _crossed(z, towards))).flatten()
        if active.numel() == 0:
            break
        s = square_side(square_fraction(p_init, t, queries), h, w)
        u = draws[active, t]
        top = (u[:, 0] * (h - s + 1)).floor().clamp(max=h - s).long().view(-1, 1, 1, 1)
        left = (u[:, 1] * (w - s + 1)).floor().clamp(max=w - s).long().view(-1, 1, 1, 1)
        square = (rows >= top) & (rows < top + s) & (cols >= left) & (cols < left + s)
        base, current = orig[active], x[active]
        delta = current - base
        colours = _signs(u[:, 2:], eps)

        def propose(colours: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            candidate = (base + torch.where(square, colours.view(-1, c, 1, 1), delta)).clamp(0.0, 1.0)
            return candidate, ((candidate - current).abs() < 1e-7).flatten(1).all(1)

        candidate, same = propose(colours)
        for _ in range(REDRAWS):
            if not bool(same.any()):
                break
            again = torch.nonzero(same).flatten()
            fresh = torch.stack([torch.rand(c, generator=generators[i]) for i in active[again].tolist()])
            colours = colours.clone()
            colours[again] = _signs(fresh.to(dev), eps)
            candidate, same = propose(colours)
        ask = ~same  # a proposal that still changes nothing is skipped, not queried
        if not bool(ask.any()):
            continue
        asked = active[ask]
        z_new = _logits(candidate[ask], logits_fn)
        v_new = objective(z_new, towards)
        used[asked.cpu()] += 1
        better = v_new > value[asked]
        keep = asked[better]
        x[keep] = candidate[ask][better]
        z[keep], value[keep] = z_new[better], v_new[better]
    return torch.where(_per_image(value > clean, x), x, orig), used


@register_attack("square", knowledge="query",
                 paper="Andriushchenko, Croce, Flammarion & Hein, Square Attack: a query-efficient black-box "
                       "adversarial attack via random search, ECCV 2020",
                 description="score-based random search (L∞): vertical-stripe start, random ±ε squares of a "
                             "shrinking side, per-image early stop at the detector's 0.5")
class Square(Attack):
    """Square Attack, L∞ (:func:`square_attack`): needs only the detector's logits, never its gradient.

    ``queries`` is the budget per image; after :meth:`perturb`, ``queries_used_`` holds the queries each
    image of the last call used (an int64 array).
    """

    threat: ClassVar[str] = "query"
    norm: ClassVar[str] = "linf"

    def __init__(self, eps: float | str = 4 / 255, queries: int = 1000, p_init: float = 0.05,
                 loss: str = "margin", target: str | None = None, seed: int = 0, batch_size: int = 32) -> None:
        self.eps = _stored_eps(eps)
        self.queries = queries
        self.p_init = p_init
        self.loss = loss
        self.target = target
        self.seed = seed
        self.batch_size = batch_size

    def _check_settings(self) -> None:
        check_square_settings(eps=self.eps, queries=self.queries, p_init=self.p_init, loss=self.loss,
                              towards=REAL)

    def budget(self) -> str:
        """The threat model's budget, e.g. ``"linf 4/255, 1000 queries"``."""
        self.check_params()
        return f"{self.norm} {format_eps(float(self.eps), self.norm)}, {self.queries} queries"

    def _attack(self, images: torch.Tensor, logits_fn: LogitsFn, towards: int,
                generator: torch.Generator) -> torch.Tensor:
        """Forward evaluations only; sets ``queries_used_``."""
        adversarial, used = square_attack(images, logits_fn, eps=self.eps, queries=self.queries,
                                          p_init=float(self.p_init), loss=self.loss, towards=towards,
                                          generator=generator, batch_size=self.batch_size)
        self.queries_used_ = used.numpy()
        return adversarial
