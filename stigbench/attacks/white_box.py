"""White-box gradient attacks as registered components: ``pgd`` and ``apgd``.

* ``pgd``: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
* ``apgd``: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
  parameter-free attacks", ICML 2020 (Auto-PGD, the parameter-free strong default).

The classes store hyper-parameters only (scikit-learn convention) and follow the
:class:`~stigbench.core.contracts.GradientAttack` contract; the algorithms are the pure functions of
:mod:`stigbench.attacks.gradient`. ``target`` names the detector of the run to attack (``None``: each
attackable detector); the pipeline reads it, the attack itself never does.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from stigbench.attacks.gradient import apgd, check_settings, parse_eps, pgd, quantize_in_ball
from stigbench.attacks.registry import register_attack
from stigbench.core.contracts import REAL, LogitsFn
from stigbench.core.estimator import Estimator

EPS_GRID = (1 / 255, 2 / 255, 4 / 255, 8 / 255)


def _stored_eps(value: Any) -> Any:
    """``"k/255"`` as its float; anything else as given, for :meth:`check_params` to judge."""
    if isinstance(value, str):
        try:
            return parse_eps(value)
        except ValueError:
            return value
    return value


def format_eps(eps: float, norm: str) -> str:
    """``"4/255"`` for an L∞ budget within 1e-9 of a multiple of 1/255, else the decimal (``"0.5"``)."""
    k = round(eps * 255)
    if norm == "linf" and abs(eps - k / 255) <= 1e-9:
        return f"{k}/255"
    return f"{eps:g}"


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


class Attack(Estimator):
    """Shared body of the registered attacks (:class:`~stigbench.core.contracts.GradientAttack`): parameter
    checks common to all (``target``, ``seed``, ``batch_size``) after the attack's own
    (:meth:`_check_settings`), a generator seeded with ``seed`` when ``perturb`` gets none, and storage on
    the 8-bit grid inside a pixel ε-ball. A subclass supplies ``_check_settings``, ``budget`` and ``_attack``
    (and ``store`` when its budget is not a pixel ball)."""

    param_grids: ClassVar[dict[str, tuple[float, ...]]] = {"eps": EPS_GRID}

    eps: float
    norm: str
    target: str | None
    seed: int
    batch_size: int

    def _check_settings(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_params(self) -> None:
        """Raise ``ValueError`` naming the first invalid hyper-parameter."""
        self._check_settings()
        if self.target is not None and not isinstance(self.target, str):
            raise ValueError(f"target must be a detector name or None, got {self.target!r}")
        if not is_int(self.seed):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")

    def budget(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def store(self, adversarial: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """On the 8-bit grid and back inside the ε-ball (:func:`~stigbench.attacks.gradient.quantize_in_ball`)."""
        return quantize_in_ball(adversarial, images, float(self.eps), self.norm)

    def perturb(self, images: torch.Tensor, logits_fn: LogitsFn, *, towards: int = REAL,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Adversarial images of the shape of ``images``, in ``[0, 1]`` and within the budget, that push
        ``logits_fn`` toward ``towards``; ``generator`` (default: one seeded with ``seed``) seeds any random
        choice."""
        self.check_params()
        if generator is None:
            generator = torch.Generator().manual_seed(int(self.seed))
        return self._attack(images, logits_fn, towards, generator)

    def _attack(self, images: torch.Tensor, logits_fn: LogitsFn, towards: int,
                generator: torch.Generator) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class WhiteBoxAttack(Attack):
    """A gradient attack on pixels within an L∞ or L2 ball (``eps``, ``norm``, ``steps``, ``loss``)."""

    threat: ClassVar[str] = "white-box"
    steps: int
    loss: str

    def _check_settings(self) -> None:
        check_settings(eps=self.eps, norm=self.norm, steps=self.steps, loss=self.loss, towards=REAL)

    def budget(self) -> str:
        """The threat model's budget, e.g. ``"linf 4/255"`` or ``"l2 0.5"``."""
        self.check_params()
        return f"{self.norm} {format_eps(float(self.eps), self.norm)}"


@register_attack("pgd", paper="Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, "
                 "ICLR 2018", description="projected gradient ascent (L∞ sign / L2 normalised steps), "
                 "random start, best iterate")
class PGD(WhiteBoxAttack):
    """Projected gradient descent (:func:`~stigbench.attacks.gradient.pgd`); ``step_size=None`` is
    ``2.5 · eps / steps``."""

    def __init__(self, eps: float | str = 4 / 255, norm: str = "linf", steps: int = 10,
                 step_size: float | None = None, random_start: bool = True, loss: str = "ce",
                 target: str | None = None, seed: int = 0, batch_size: int = 32) -> None:
        self.eps = _stored_eps(eps)
        self.norm = norm
        self.steps = steps
        self.step_size = step_size
        self.random_start = random_start
        self.loss = loss
        self.target = target
        self.seed = seed
        self.batch_size = batch_size

    def _check_settings(self) -> None:
        super()._check_settings()
        if self.step_size is not None and not (isinstance(self.step_size, (int, float))
                                               and not isinstance(self.step_size, bool) and self.step_size > 0):
            raise ValueError(f"step_size must be a positive number or None, got {self.step_size!r}")

    def _attack(self, images: torch.Tensor, logits_fn: LogitsFn, towards: int,
                generator: torch.Generator) -> torch.Tensor:
        return pgd(images, logits_fn, eps=self.eps, norm=self.norm, steps=self.steps, step_size=self.step_size,
                   random_start=bool(self.random_start), loss=self.loss, towards=towards, generator=generator,
                   batch_size=self.batch_size)


@register_attack("apgd", paper="Croce & Hein, Reliable evaluation of adversarial robustness with an ensemble "
                 "of diverse parameter-free attacks, ICML 2020", description="Auto-PGD: momentum, per-image "
                 "step-size halving at checkpoints with restarts from the best point")
class APGD(WhiteBoxAttack):
    """Auto-PGD (:func:`~stigbench.attacks.gradient.apgd`): starts from the clean images and needs no step
    size; deterministic (``seed`` is stored for a uniform interface)."""

    def __init__(self, eps: float | str = 4 / 255, norm: str = "linf", steps: int = 10, loss: str = "ce",
                 target: str | None = None, seed: int = 0, batch_size: int = 32) -> None:
        self.eps = _stored_eps(eps)
        self.norm = norm
        self.steps = steps
        self.loss = loss
        self.target = target
        self.seed = seed
        self.batch_size = batch_size

    def _attack(self, images: torch.Tensor, logits_fn: LogitsFn, towards: int,
                generator: torch.Generator) -> torch.Tensor:
        return apgd(images, logits_fn, eps=self.eps, norm=self.norm, steps=self.steps, loss=self.loss,
                    towards=towards, batch_size=self.batch_size)


@register_attack("stig+pgd", paper="Lee et al., STIG, AAAI 2024, then Madry et al., ICLR 2018 (PGD started from the "
                 "refined image, a published hybrid of spectral refinement and pixel gradients)",
                 description="PGD started from the run's STIG-refined fakes, its ε-ball centred there")
class StigPGD(PGD):
    """:class:`PGD` whose starting images are the fakes refined by the run's ``stig`` refiner: the pipeline
    reads ``start_from`` and gives :meth:`perturb` those images, so the ε-ball is centred on STIG's output
    (the ``budget`` column says ``around stig``; PSNR is measured against the original fakes, the whole
    cost of both steps)."""

    #: The refiner of the run whose refined fakes this attack starts from.
    start_from: ClassVar[str] = "stig"
