"""``durall``: azimuthally averaged spectrum + linear classifier.

Durall, Keuper, Keuper, "Watch your Up-Convolution: CNN Based Generative Deep Neural Networks are
Failing to Reproduce Spectral Distributions", CVPR 2020. Features: the grey image's log-magnitude
spectrum averaged over rings around DC (the 1-D power spectrum), min-max scaled per image as in the
paper's code, so that global brightness and contrast do not count; then a logistic regression or
an SVM (the paper uses both).
"""

from __future__ import annotations

import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from stigbench.detection.base import FeatureDetector, LogisticFeatureDetector
from stigbench.detection.registry import register_detector
from stigbench.measures.spectrum import grey, log_magnitude, minmax_scale, radial_profile

PAPER = "Durall et al., Watch your Up-Convolution, CVPR 2020"


def azimuthal_features(images: torch.Tensor) -> torch.Tensor:
    """Per-image min-max scaled radial profile of the grey log-magnitude spectrum, ``(N, S/2 + 1)``.

    In torch, so differentiable: it is both the features and their torch twin (the torch path that
    white-box attacks take gradients through).
    """
    profile = radial_profile(log_magnitude(grey(images)))
    return minmax_scale(profile, 0.0, 1.0)


@register_detector("durall", family="frequency", domain="spectrum", paper=PAPER,
                   description="radial log-spectrum + logistic regression")
class Durall(LogisticFeatureDetector):
    def torch_features(self, images: torch.Tensor) -> torch.Tensor:
        return azimuthal_features(images)


@register_detector("durall-svm", family="frequency", domain="spectrum", paper=PAPER,
                   description="radial log-spectrum + RBF SVM (sigmoid-calibrated probabilities)")
class DurallSVM(FeatureDetector):
    """Same features as :class:`Durall`; the classifier is an RBF SVM."""

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        self.c = c
        self.seed = seed

    def torch_features(self, images: torch.Tensor) -> torch.Tensor:
        return azimuthal_features(images)

    def make_estimator(self) -> Pipeline:
        # Platt scaling fitted by internal cross-validation turns SVM margins into P(fake).
        svm = SVC(C=self.c, random_state=self.seed)
        return make_pipeline(StandardScaler(), CalibratedClassifierCV(svm, method="sigmoid", ensemble=False))
