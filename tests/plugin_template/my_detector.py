"""``my-bands``: a template detector plug-in — copy this file, rename, and change the features.

Load it with ``bench.py run --detector-plugin path/to/my_detector.py --detectors my-bands`` (or
``RunConfig(plugins=[...])``); the contract tests in ``tests/test_detectors.py`` run it like every
built-in detector.

Features after Chandrasegaran, Tran, Cheung, "A Closer Look at Fourier Spectrum Discrepancies for
CNN-generated Images Detection", CVPR 2021, who find the evidence in the highest-frequency bands of
the spectrum: the mean log-magnitude ``log1p|F|`` of each colour channel in ``n_bands`` rings of equal
width from DC to Nyquist, minus the channel's lowest band (so that contrast does not count); then a
logistic regression.
"""

from __future__ import annotations

import numpy as np
import torch

from stigbench import LogisticFeatureDetector, register_detector
from stigbench.measures.spectrum import log_magnitude, radial_profile

PAPER = ("Chandrasegaran, Tran, Cheung, A Closer Look at Fourier Spectrum Discrepancies for CNN-generated "
         "Images Detection, CVPR 2021")


@register_detector("my-bands", family="frequency", domain="spectrum", paper=PAPER, default=False,
                   description="template plug-in: per-channel band energies of the log spectrum")
class MyBands(LogisticFeatureDetector):
    """Standardisation + logistic regression come from the base; for another scikit-learn classifier,
    subclass ``FeatureDetector`` and add ``make_estimator()`` (anything with fit/predict_proba/classes_)."""

    def __init__(self, n_bands: int = 8, c: float = 1.0, seed: int = 0) -> None:
        # Constructor arguments are the hyper-parameters; store them unchanged (params.json rebuilds them).
        super().__init__(c=c, seed=seed)
        self.n_bands = n_bands

    def features(self, images: torch.Tensor) -> np.ndarray:
        """Pure: ``(N, 3, H, W)`` in ``[0, 1]`` → ``(N, 3 · (n_bands - 1))``."""
        profile = radial_profile(log_magnitude(images))  # (N, 3, S/2 + 1), DC first
        bands = torch.stack([b.mean(-1) for b in profile.tensor_split(self.n_bands, dim=-1)], dim=-1)
        return (bands[..., 1:] - bands[..., :1]).flatten(1).cpu().numpy()
