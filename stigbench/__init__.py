"""stigbench: how robust are deepfake detectors against STIG spectral refinement?

Plug-ins import their decorators from here::

    from stigbench import register_detector, FeatureDetector
"""

from stigbench.core.contracts import FAKE, REAL, Detector, ImageSetLike, Refiner
from stigbench.data.specs import DatasetSpec, register_builder, register_dataset
from stigbench.detection.base import FeatureDetector
from stigbench.detection.registry import DetectorInfo, register_detector
from stigbench.attacks.registry import RefinerInfo, register_refiner
from stigbench.core.registry import Registry, RegistryError

__version__ = "0.1.0"

__all__ = [
    "FAKE", "REAL", "DatasetSpec", "Detector", "DetectorInfo", "FeatureDetector", "ImageSetLike", "Refiner",
    "RefinerInfo", "Registry", "RegistryError", "register_builder", "register_dataset", "register_detector",
    "register_refiner",
]
