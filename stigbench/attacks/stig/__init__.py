"""STIG refiner (Lee, Jung, Seo, "Spectrum Translation for Refinement of Image Generation (STIG)",
AAAI 2024, arXiv 2403.05093): networks, losses, trainer, presets and the registered ``stig`` refiner."""

from .presets import PRESETS, StigPreset, get_preset
from .refiner import StigRefiner

__all__ = ["PRESETS", "StigPreset", "StigRefiner", "get_preset"]
