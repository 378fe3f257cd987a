"""The contracts every image set, refiner and detector follows. Written once, here.

* **Images** are ``float32`` RGB in ``[0, 1]``, one item ``(3, H, W)``, a batch ``(N, 3, H, W)``.
* **Labels**: ``0`` = real, ``1`` = fake (generated or refined).
* **Scores**: a detector's :meth:`Detector.score` returns ``P(fake)`` in ``[0, 1]``, shape ``(N,)``.
* **Spectra** follow the single FFT convention of :mod:`stigbench.measures.spectrum`.
* **Seeds and hyper-parameters** reach refiners and detectors as constructor keyword arguments; the
  constructor only stores them (scikit-learn convention), fitting creates state ending in ``_``.
* **Saved state** never needs unpickling: torch ``state_dict`` files loaded with
  ``weights_only=True``, NumPy arrays, JSON, or ``skops`` files for scikit-learn objects.

Plug-ins need not subclass anything: the registries check for the methods below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

REAL: int = 0
FAKE: int = 1


@runtime_checkable
class ImageSetLike(Protocol):
    """An indexable, lazily loaded collection of same-sized RGB images."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> torch.Tensor:
        """Image ``index`` as ``float32`` ``(3, H, W)`` in ``[0, 1]``."""
        ...

    def batches(self, batch_size: int, progress: str | None = None) -> Iterator[torch.Tensor]:
        """All images in order, as ``(B, 3, H, W)`` batches; loads at most one batch at a time."""
        ...


@runtime_checkable
class Refiner(Protocol):
    """Maps fake images to refined fakes (the attack under test).

    ``fit(fake_set, real_set)`` learns from unpaired training fakes and reals and returns ``self``;
    ``refine(image_set)`` returns a new image set of the same length and size; ``save(dir)`` writes
    the fitted state into a folder; the class method ``load(dir)`` rebuilds a fitted refiner.

    Two optional keyword arguments, used when a refiner declares them:

    * ``fit(..., log_dir=folder)``: a folder that survives an interrupted run (the stage's work folder).
      A refiner that takes it keeps its training log and checkpoints there and, called again with a
      folder that holds a checkpoint, continues from it (STIG does); the runner then keeps the work
      folder of a killed attempt instead of starting it afresh.
    * ``refine(..., store=path)``: write the refined images into a memory-mapped ``.npy`` at ``path``
      instead of holding them in memory.

    A class attribute ``data_parallel = True`` says that ``fit`` trains with every torchrun rank
    (:mod:`stigbench.core.distributed`): the runner then calls it on all ranks at once. Without it a
    refiner is fitted by rank 0 alone.

    Two more optional class attributes: ``refine_params`` names constructor parameters that act at
    refine time only (``("strength",)``): they are left out of the fit stage's key, and the runner sets
    them on the loaded refiner before it refines, so a sweep over them fits once. ``param_grids`` maps a
    parameter to the values ``--refiner 'name:param=*'`` expands to.
    """

    def fit(self, fake_set: ImageSetLike, real_set: ImageSetLike) -> Refiner: ...

    def refine(self, image_set: ImageSetLike) -> ImageSetLike: ...

    def save(self, path: str | Path) -> None: ...

    @classmethod
    def load(cls, path: str | Path) -> Refiner: ...


@runtime_checkable
class Detector(Protocol):
    """A real-vs-fake classifier (scikit-learn conventions without subclassing scikit-learn).

    ``fit(train_set, labels, val_set=None, val_labels=None)`` returns ``self``; the validation split
    may be used for early stopping or model selection, never for the final threshold-free scores.
    ``score(image_set)`` returns ``P(fake)`` as a ``float`` array ``(N,)`` in ``[0, 1]``.
    Saving is optional (:class:`PersistentDetector`); a detector without it is simply not cached.
    ``data_parallel = True`` (a class attribute) has ``fit`` run on every torchrun rank, as for refiners.
    """

    def fit(
        self,
        train_set: ImageSetLike,
        labels: np.ndarray,
        val_set: ImageSetLike | None = None,
        val_labels: np.ndarray | None = None,
    ) -> Detector: ...

    def score(self, image_set: ImageSetLike) -> np.ndarray: ...


@runtime_checkable
class PersistentDetector(Detector, Protocol):
    """A :class:`Detector` that can be saved: ``save(dir)`` writes the fitted state into a folder, the
    class method ``load(dir)`` rebuilds the fitted detector."""

    def save(self, path: str | Path) -> None: ...

    @classmethod
    def load(cls, path: str | Path) -> PersistentDetector: ...


@runtime_checkable
class DifferentiableDetector(Detector, Protocol):
    """A fitted :class:`Detector` with a *torch path*: the attacks' only view of a detector (attacks and
    detection are sibling layers that never import each other).

    ``logits(images)`` takes a float batch ``(N, 3, H, W)`` in ``[0, 1]`` (any device; gradients flow
    through the move to the detector's own) and returns ``(N,)`` float logits with
    ``P(fake) = sigmoid(logit)``, equal to :meth:`Detector.score` on the same images (an oracle test holds
    every built-in to 1e-5) and differentiable in ``images``. It never switches the detector to training
    mode and never updates its state.

    Optional as a whole, and per configuration: ``torch_path_unavailable()`` (callable on an *unfitted*
    instance, so that the plan can refuse a white-box attack before any image is read) returns ``None``
    when this configuration has a torch path, else one sentence saying why not (a k-NN classifier has no
    gradient). A detector with ``logits`` but without ``torch_path_unavailable`` always has one.
    """

    def logits(self, images: torch.Tensor) -> torch.Tensor: ...


def torch_path_unavailable(detector: object) -> str | None:
    """``None`` when ``detector`` (fitted or not) offers a torch path, else why not (see
    :class:`DifferentiableDetector`)."""
    if not callable(getattr(detector, "logits", None)):
        return f"{type(detector).__name__} has no logits() method (no torch path)"
    check = getattr(detector, "torch_path_unavailable", None)
    return check() if callable(check) else None


#: ``trained_on`` of a detector that scores with its authors' released weights (score-only); the
#: reports write it ``released <sha256[:12]>`` (:func:`released_label`).
RELEASED = "released"


@runtime_checkable
class ReleasedDetector(Detector, Protocol):
    """A :class:`Detector` that can score with a checkpoint its authors released instead of being
    trained by the run (*score-only*). Optional, and per configuration.

    ``released_checkpoint()`` (callable on an *unfitted* instance) returns the path of the released
    file this configuration loads, or ``None`` when the run trains it. When it returns a path,
    ``fit`` loads that file (strictly: every key used, none missing; :meth:`load_release`) and trains nothing; the run still
    picks its threshold on the validation split and reports the authors' own beside it.
    ``check_params()``, which the plan calls, fails on a bad path, format or key set. Class
    attributes: ``authors_threshold``, the ``P(fake)`` threshold of the authors' test code (0.5 for
    the built-ins); ``file_params``, the constructor parameters that name files the detector reads
    (released checkpoints, starting weights, a CLIP encoder): the plan makes them absolute and puts
    their SHA-256 into the fit stage's key, so a changed file is a new fit, never a stale cache.
    """

    authors_threshold: float

    def released_checkpoint(self) -> str | None: ...

    def load_release(self) -> ReleasedDetector:
        """Load the released file and return ``self``, fitted, without any image (what ``fit`` does for a
        score-only detector; ``bench.py detect --detector NAME --set checkpoint=F`` calls it directly)."""
        ...


def released_checkpoint(detector: object) -> str | None:
    """The released file ``detector`` (fitted or not) scores with, or ``None`` when the run trains it."""
    method = getattr(detector, "released_checkpoint", None)
    path = method() if callable(method) else None
    return str(path) if path else None


def file_params(cls: object) -> tuple[str, ...]:
    """The constructor parameters of detector class ``cls`` (or an instance's) that name files it reads."""
    return tuple(getattr(cls, "file_params", ()) or ())


def authors_threshold(detector: object) -> float | None:
    """The authors' ``P(fake)`` threshold of a score-only ``detector``; ``None`` when the run trains it."""
    if released_checkpoint(detector) is None:
        return None
    value = getattr(detector, "authors_threshold", None)
    return float(value) if value is not None else None


def released_label(sha256: str) -> str:
    """``trained_on`` of a score-only detector: ``released <first 12 hex digits of its file's SHA-256>``."""
    return f"{RELEASED} {sha256[:12]}"


def is_released(trained_on: str) -> bool:
    """True for the ``trained_on`` of a score-only detector (:func:`released_label`)."""
    return trained_on == RELEASED or trained_on.startswith(RELEASED + " ")


#: What a gradient attack sees of a detector: images ``(N, 3, H, W)`` in ``[0, 1]`` -> logits ``(N,)``.
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@runtime_checkable
class GradientAttack(Protocol):
    """A white-box evasion attack (registered with ``@register_attack``): constructor keyword arguments are
    its hyper-parameters (budget ``eps``, ``norm``, ``steps``...; ``target`` names the detector of the run
    it attacks, ``None`` = each attackable one), stored only.

    ``budget()`` says the budget in words for the ``budget`` column (``"linf 4/255"``).
    ``perturb(images, logits_fn, towards=REAL, generator=...)`` returns adversarial images of the same
    shape, in ``[0, 1]`` and within the budget around ``images``, that push ``logits_fn`` toward the label
    ``towards``: ``REAL`` (lower logits, the fake→real evasion) or ``FAKE`` (higher logits, a false alarm on
    a real image). ``generator`` (a ``torch.Generator``) seeds any random start.
    """

    def perturb(self, images: torch.Tensor, logits_fn: LogitsFn, *, towards: int = REAL,
                generator: torch.Generator | None = None) -> torch.Tensor: ...

    def store(self, adversarial: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """``adversarial`` as it is stored: float multiples of 1/255 in ``[0, 1]`` (attacked sets are 8-bit,
        like every image set), still within the attack's budget around ``images``."""
        ...


REFINER_METHODS = ("fit", "refine", "save", "load")
ATTACK_METHODS = ("perturb", "store", "budget")
DETECTOR_METHODS = ("fit", "score")
DETECTOR_PERSISTENCE_METHODS = ("save", "load")
