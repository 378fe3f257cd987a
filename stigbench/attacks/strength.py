"""Attack strength: how much of a spectral refiner's change is applied, for comparisons at equal image cost.

A refiner with a refine-time ``strength`` in ``[0, 1]`` (0 = the fakes, 1 = the full attack) can be
swept without refitting (``--refiner 'stig:strength=*'``), and attacks can then be compared at the same
PSNR to the original fakes, as watermark-removal benchmarks compare attacks at equal quality cost.
``strength`` is declared in the refiner's ``refine_params`` (never part of its fit stage's key) and
its grid in ``param_grids`` (:mod:`stigbench.pipeline.refiner_specs`).
"""

from __future__ import annotations

import torch

from stigbench.measures.spectrum import from_log_magnitude, log_magnitude, magnitude_phase

#: The grid ``name:strength=*`` expands to: dense at low strength, where PSNR changes fastest.
STRENGTHS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


def check_strength(strength: float) -> None:
    """``ValueError`` unless ``0 <= strength <= 1``."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be a number in [0, 1], got {strength!r}")


def blend_log_magnitude(fakes: torch.Tensor, refined: torch.Tensor, strength: float) -> torch.Tensor:
    """The fakes with their log-magnitude ``log1p|F|`` moved ``strength`` of the way to ``refined``'s.

    ``(1 - s) * log1p|F_fake| + s * log1p|F_refined|`` with the fakes' own phase, the real part of the
    inverse FFT, clamped to ``[0, 1]`` (the reconstruction of STIG itself). Strength 1 returns
    ``refined`` unchanged: a refiner's own output may differ from a rebuild with the fakes' phase (its
    clamping already changed its phase slightly), and the full attack must stay exactly what it was.
    Strength 0 returns the fakes up to float error.
    """
    check_strength(strength)
    if strength == 1.0:
        return refined
    lm_fake, phase = magnitude_phase(fakes)
    lm = torch.lerp(lm_fake, log_magnitude(refined.to(lm_fake.device)), float(strength))
    return from_log_magnitude(lm, phase).clamp(0, 1).to(refined.dtype)


__all__ = ["STRENGTHS", "blend_log_magnitude", "check_strength"]
