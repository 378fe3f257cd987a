"""stigbench: how robust are deepfake detectors against STIG spectral refinement?

Plug-ins import their decorators from here::

    from stigbench import register_detector, FeatureDetector
"""

from stigbench.contracts import FAKE, REAL, Detector, ImageSetLike, Refiner
from stigbench.data import DatasetSpec, register_builder, register_dataset
from stigbench.detector_base import FeatureDetector
from stigbench.plugins import DetectorInfo, RefinerInfo, register_detector, register_refiner
from stigbench.registry import Registry, RegistryError

__version__ = "0.1.0"

__all__ = [
    "FAKE", "REAL", "DatasetSpec", "Detector", "DetectorInfo", "FeatureDetector", "ImageSetLike", "Refiner",
    "RefinerInfo", "Registry", "RegistryError", "register_builder", "register_dataset", "register_detector",
    "register_refiner",
]
