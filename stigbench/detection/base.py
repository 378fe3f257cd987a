"""Base classes that make a detector a 30–60 line file.

:class:`FeatureDetector`: a pure ``features(images) -> (N, D)`` method plus a scikit-learn estimator
from ``make_estimator()``; the base supplies batching, ``fit``, ``score`` (``P(fake)`` from
``predict_proba``'s column for class 1) and pickle-free save/load through ``skops``. A subclass that
writes ``torch_features(images)``, the same features as a differentiable torch tensor (``features``
then defaults to it), gets a *torch path* (:class:`~stigbench.core.contracts.DifferentiableDetector`):
``logits`` runs the fitted estimator re-expressed in torch (:mod:`stigbench.detection.torch_path`) on them.

:class:`LogisticFeatureDetector`: the same with the estimator most detectors use, standardisation
then an L2 logistic regression (``C = c``, ``random_state = seed``); a subclass writes its features only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from stigbench.core.contracts import FAKE, ImageSetLike
from stigbench.core.estimator import Estimator
from stigbench.core.io import scratch_array
from stigbench.detection.out_of_core import fit_on_disk, predict_proba_on_disk
from stigbench.detection.torch_path import estimator_logits, unsupported

ESTIMATOR_FILE = "estimator.skops"
#: Feature vectors at least this long (a full-size spectrum, not a profile of a few hundred values)
#: are collected on disk, memory-mapped (:mod:`stigbench.detection.out_of_core`).
FEATURES_ON_DISK = 1024
CHANNELS = ("grey", "rgb")  # the ``channels`` choices of the spectrum detectors
# skops refuses types it does not know; these prefixes are the ones our pipelines are built from.
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


def save_sklearn(estimator: Any, path: Path) -> None:
    import skops.io as sio

    sio.dump(estimator, path)


def load_sklearn(path: Path) -> Any:
    """Load a skops file, trusting only scikit-learn/NumPy/SciPy types (no arbitrary code)."""
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    bad = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if bad:
        raise ValueError(f"{path} contains types outside scikit-learn/NumPy/SciPy: {bad}")
    return sio.load(path, trusted=untrusted)


def _check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels).astype(np.int64).ravel()
    if labels.size != n:
        raise ValueError(f"{n} images but {labels.size} labels")
    if set(np.unique(labels)) != {0, 1}:
        raise ValueError("training needs both labels: 0 = real and 1 = fake")
    return labels


class FeatureDetector(Estimator):
    """Hand-crafted features + a scikit-learn classifier.

    Subclasses implement :meth:`make_estimator` and their features (pure: a float batch in, ``(N, D)``
    out): :meth:`features` (a NumPy array), or :meth:`torch_features` (a differentiable torch tensor, which
    gives the detector a torch path, :meth:`logits`), or both when ``features`` leaves torch. Their
    constructors store hyper-parameters only.
    """

    batch_size: int = 128

    def features(self, images: torch.Tensor) -> np.ndarray:
        """Features of a float batch, ``(N, D)``; by default :meth:`torch_features` as a NumPy array, so a
        detector whose features are torch code writes them once."""
        return self.torch_features(images).detach().cpu().numpy()

    def make_estimator(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def torch_features(self, images: torch.Tensor) -> torch.Tensor:
        """The differentiable twin of :meth:`features`: the same numbers, in the same dtype, as a torch
        tensor on ``images``' device, with gradients flowing back to ``images`` (white-box attacks need
        them; ``features`` may leave torch, e.g. for SciPy). Without it there is no torch path."""
        raise NotImplementedError(f"{type(self).__name__} implements neither features() nor torch_features()")

    def torch_path_unavailable(self) -> str | None:
        """``None`` when :meth:`logits` works for this configuration (known before fitting: the class
        writes :meth:`torch_features` and :func:`~stigbench.detection.torch_path.unsupported` accepts the
        estimator :meth:`make_estimator` builds), else why not."""
        if type(self).torch_features is FeatureDetector.torch_features:
            return f"{type(self).__name__} has no torch_features() (a differentiable twin of its features)"
        return unsupported(self.make_estimator())

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(N,)`` ``float64`` logits of ``P(fake)`` (:class:`~stigbench.core.contracts.DifferentiableDetector`):
        the fitted estimator in torch on :meth:`torch_features`, which ``extract`` casts to ``float64``
        as here, so ``sigmoid(logits)`` is :meth:`score` up to float rounding."""
        self._check_fitted("estimator_")
        feats = self.torch_features(images)
        return estimator_logits(self.estimator_, feats.reshape(len(feats), -1))

    def extract(self, image_set: ImageSetLike, progress: str | None = None) -> np.ndarray:
        """Features of every image, batch by batch (``float64``, ``(N, D)``), written into one array as
        they come; features of full-image size (``D >= FEATURES_ON_DISK``) into a memory-mapped
        scratch file (:func:`stigbench.core.io.scratch_array`) rather than memory."""
        n = len(image_set)
        out: np.ndarray | None = None
        pos = 0
        with torch.inference_mode():
            for batch in image_set.batches(self.batch_size, progress):
                feats = np.asarray(self.features(batch), dtype=np.float64)
                if len(feats) != len(batch):
                    raise ValueError(f"{type(self).__name__}.features returned {len(feats)} rows for {len(batch)} images")
                if out is None:
                    dims = int(np.prod(feats.shape[1:]))
                    shape = (n, *feats.shape[1:])
                    out = scratch_array(shape) if dims >= FEATURES_ON_DISK else np.empty(shape, np.float64)
                out[pos:pos + len(feats)] = feats
                pos += len(feats)
        if out is None:
            raise ValueError("empty image set")
        return out

    def fit(self, train_set: ImageSetLike, labels: np.ndarray, val_set: ImageSetLike | None = None,
            val_labels: np.ndarray | None = None) -> FeatureDetector:
        labels = _check_labels(labels, len(train_set))
        x = self.extract(train_set, progress=f"{type(self).__name__}: features")
        estimator = self.make_estimator()
        if isinstance(x, np.memmap):
            fit_on_disk(estimator, x, labels)  # x is ours: scaled in place
        else:
            estimator.fit(x, labels)
        self.estimator_ = estimator
        return self

    def score_features(self, x: np.ndarray) -> np.ndarray:
        self._check_fitted("estimator_")
        return self._fake_column(self.estimator_.predict_proba(x))

    def _fake_column(self, proba: np.ndarray) -> np.ndarray:
        column = list(self.estimator_.classes_).index(FAKE)
        return proba[:, column].astype(np.float64)

    def score(self, image_set: ImageSetLike) -> np.ndarray:
        x = self.extract(image_set)
        if isinstance(x, np.memmap):
            self._check_fitted("estimator_")
            return self._fake_column(predict_proba_on_disk(self.estimator_, x))  # x is ours: scaled in place
        return self.score_features(x)

    def save(self, path: str | Path) -> None:
        self._check_fitted("estimator_")
        folder = self.save_params(path)
        save_sklearn(self.estimator_, folder / ESTIMATOR_FILE)

    @classmethod
    def load(cls, path: str | Path) -> FeatureDetector:
        obj = cls.from_params(path)
        obj.estimator_ = load_sklearn(Path(path) / ESTIMATOR_FILE)
        return obj


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raise a ``ValueError`` naming the constructor argument ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


class LogisticFeatureDetector(FeatureDetector):
    """Features + ``StandardScaler`` + ``LogisticRegression(C=c, max_iter=5000, random_state=seed)``.

    A subclass's constructor stores ``c`` and ``seed`` among its hyper-parameters (through
    ``super().__init__(c=c, seed=seed)``) and implements :meth:`features`.
    """

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        self.c = c
        self.seed = seed

    def make_estimator(self) -> Any:
        # Imported here: the CNN detectors import this module too and need no scikit-learn.
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=self.c, max_iter=5000, random_state=self.seed))
