"""Training-free attack baselines: common post-processing applied to every fake.

``blur`` (Gaussian low-pass), ``jpeg`` (re-compression) and ``resample`` (down-and-up resize) are the
laundering operations robustness studies of detectors report (Wang et al., CVPR 2020; Frank et al.,
ICML 2020; Corvi et al., ICASSP 2023): they erase high-frequency generator fingerprints without any
knowledge of the detector. They reuse :mod:`stigbench.attacks.perturbations`, so ``--refiner jpeg:75`` and
``--perturb jpeg:75`` perform the very same operation.

Registry names are plain; the parameter is a constructor argument (``sigma``, ``quality``,
``factor``), named by the class's ``spec_param`` so that the CLI's short form ``name:value``
(``--refiner 'stig,blur:2,jpeg:75'``, parsed by :mod:`stigbench.pipeline.refiner_specs`) can set it.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from stigbench.core.contracts import ImageSetLike
from stigbench.core.estimator import Estimator
from stigbench.core.imageset import ArrayImageSet, map_batches
from stigbench.core.io import read_json, write_json
from stigbench.attacks.perturbations import Blur, Jpeg, Perturbation, Resize
from stigbench.attacks.registry import register_refiner

FIT_INFO_FILE = "fit_info.json"


class PerturbationAttack(Estimator):
    """Shared body: one fixed perturbation applied to every image; nothing to learn.

    ``fit`` validates the parameter and records ``image_size_`` (the size ``bench.py refine`` uses by
    default); ``refine`` works at any size, since nothing was fitted to one. Subclasses set
    ``perturbation_cls`` and ``spec_param`` (the constructor argument the CLI's ``name:value`` sets).
    """

    perturbation_cls: ClassVar[type[Perturbation]]
    spec_param: ClassVar[str]

    def perturbation(self) -> Perturbation:
        """The perturbation this attack applies (validates the parameter)."""
        return self.perturbation_cls.from_value(getattr(self, self.spec_param))

    def fit(self, fake_set: ImageSetLike, real_set: ImageSetLike) -> PerturbationAttack:
        self.perturbation()  # a bad parameter fails here, before any image is touched
        size = getattr(fake_set, "size", None)
        self.image_size_ = int(size) if size is not None else int(fake_set[0].shape[-1])
        self.fit_info_ = {"image_size": self.image_size_, "training_free": True}
        return self

    def refine_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Attack a float batch ``(N, 3, H, W)``; floats in ``[0, 1]``."""
        self._check_fitted("image_size_")
        return self.perturbation()(images)

    def refine(self, image_set: ImageSetLike, store: str | Path | None = None) -> ArrayImageSet:
        self._check_fitted("image_size_")
        p = self.perturbation()
        return map_batches(image_set, p, self.batch_size, progress=f"{p.name}: refine", store=store)

    def save(self, path: str | Path) -> None:
        self._check_fitted("image_size_")
        folder = self.save_params(path)
        write_json(folder / FIT_INFO_FILE, self.fit_info_)

    @classmethod
    def load(cls, path: str | Path) -> PerturbationAttack:
        obj = cls.from_params(path)
        obj.fit_info_ = read_json(Path(path) / FIT_INFO_FILE)
        obj.image_size_ = int(obj.fit_info_["image_size"])
        return obj


@register_refiner("blur", paper="common post-processing baseline: Gaussian blur (as in the robustness "
                  "evaluations of Wang et al., CVPR 2020; Frank et al., ICML 2020)", kind="training-free",
                  description="Gaussian low-pass, sigma in pixels, radius ceil(3 sigma), reflect padding")
class BlurAttack(PerturbationAttack):
    """Gaussian blur with standard deviation ``sigma`` pixels (see :class:`~stigbench.attacks.perturbations.Blur`)."""

    perturbation_cls = Blur
    spec_param = "sigma"

    def __init__(self, sigma: float = 1.0, batch_size: int = 64) -> None:
        self.sigma = sigma
        self.batch_size = batch_size


@register_refiner("jpeg", paper="common post-processing baseline: JPEG re-compression (as in the robustness "
                  "evaluations of Frank et al., ICML 2020; Corvi et al., ICASSP 2023)", kind="training-free",
                  description="Pillow JPEG at the given quality, 4:2:0, optimize off, decoded back")
class JpegAttack(PerturbationAttack):
    """JPEG re-compression at IJG ``quality`` (see :class:`~stigbench.attacks.perturbations.Jpeg`)."""

    perturbation_cls = Jpeg
    spec_param = "quality"

    def __init__(self, quality: int = 75, batch_size: int = 64) -> None:
        self.quality = quality
        self.batch_size = batch_size


@register_refiner("resample", paper="common post-processing baseline: down-and-up resampling (as in the "
                  "robustness evaluations of Frank et al., ICML 2020; Corvi et al., ICASSP 2023)",
                  kind="training-free", description="antialiased bicubic down by factor, bicubic back up")
class ResampleAttack(PerturbationAttack):
    """Resize by ``factor`` and back (see :class:`~stigbench.attacks.perturbations.Resize`)."""

    perturbation_cls = Resize
    spec_param = "factor"

    def __init__(self, factor: float = 0.5, batch_size: int = 64) -> None:
        self.factor = factor
        self.batch_size = batch_size
