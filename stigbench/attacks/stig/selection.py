"""Checkpoint selection for STIG on a held-out part of the *training* split.

A GAN's refiner does not converge to the reals' spectrum and stop: on held-out DDPM fakes the log
frequency distance went 0.0147 -> 0.0124 after 100 iterations and back up to 0.0300 after 800, the
game passing through the reals' spectrum and overshooting it. So the trainer carves a small
*selection set* (fakes and reals, ``select_fraction`` of each, seeded) out of the images it is given,
never trains on it, and every ``ceil(total / select_evals)`` iterations refines the selection fakes
and measures how far their spectrum is from the selection reals'. The refiner kept is the one with
the lowest criterion; iteration 0 (before any update) is a candidate too, so when training never
brings the spectra closer the refiner kept is the starting point (the identity, for the residual
generator) rather than a step away from the reals.

Criteria are *spectral only*: no detector the benchmark reports is ever consulted, so the attack is
not tuned against its own judges. Both are measured on refined images rounded to 8 bits, as the
benchmark stores them:

* ``select_lfd`` (the criterion): the benchmark's LFD, ``ln(1 + mean_{c,u,v}(M_real - M_refined)^2)``
  between dataset-mean log-magnitude spectra (:func:`stigbench.measures.spectrum.lfd`);
* ``select_profile`` (logged, not used to choose): the root-mean-square difference of the two sets'
  mean azimuthal profiles of the channel-mean log-magnitude (circular rings), which weighs every
  ring equally instead of every frequency (outer rings hold most frequencies).

The runner's validation split is not touched: the adaptive defender trains on it, so the refiner
must never have seen it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from stigbench.core.contracts import ImageSetLike
from stigbench.measures.spectrum import lfd, mean_log_spectrum, radial_profile

MIN_SELECTION = 8  # fewer selection fakes (or reals) than this give a criterion too noisy to choose by
CRITERION = "select_lfd"
COLUMNS = ("select_lfd", "select_profile")


class IndexedSet:
    """The images ``indices`` of an :class:`~stigbench.core.contracts.ImageSetLike`, itself one."""

    def __init__(self, images: ImageSetLike, indices: np.ndarray) -> None:
        self.images, self.indices = images, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[int(self.indices[index])]

    def batches(self, batch_size: int, progress: str | None = None) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), batch_size):
            yield torch.stack([self[i] for i in range(start, min(len(self), start + batch_size))])


def carve(n: int, fraction: float, seed: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, select)`` index arrays: a seeded ``round(fraction * n)`` of ``range(n)`` is held out
    (sorted, so the training order does not depend on how the selection was drawn)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"select_fraction must be in [0, 1), got {fraction}")
    k = int(round(fraction * n))
    if k >= n:  # never leave the trainer without images
        k = n - 1
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)])).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def mean_profile(mean_log_spec: torch.Tensor) -> torch.Tensor:
    """Circular azimuthal profile of a dataset-mean log-magnitude spectrum ``(C, H, W)``, channel mean."""
    return radial_profile(mean_log_spec.mean(0), kind="circular")


def profile_distance(mean_a: torch.Tensor, mean_b: torch.Tensor) -> float:
    """RMS difference of the mean azimuthal profiles of two dataset-mean log-magnitude spectra."""
    d = mean_profile(mean_a.double()) - mean_profile(mean_b.double())
    return float(d.square().mean().sqrt())


def quantise(images: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid the benchmark stores refined sets on (clamped to ``[0, 1]``)."""
    return images.float().clamp(0, 1).mul(255).round().div(255)


class Selection:
    """The selection fakes (held in memory) and the selection reals' mean spectrum.

    ``evaluate(refine)`` refines the fakes with ``refine`` (a batch function) and returns
    ``{"select_lfd": ..., "select_profile": ...}``.
    """

    def __init__(self, fakes: ImageSetLike, reals: ImageSetLike, batch_size: int = 64) -> None:
        if len(fakes) < MIN_SELECTION or len(reals) < MIN_SELECTION:
            raise ValueError(f"a selection set needs at least {MIN_SELECTION} fakes and reals, "
                             f"got {len(fakes)} and {len(reals)}")
        self.batch_size = batch_size
        self.fakes = torch.cat(list(fakes.batches(batch_size)))
        self.real_mean = mean_log_spectrum(reals.batches(batch_size))
        self.n_fake, self.n_real = len(fakes), len(reals)

    def distances(self, mean_spec: torch.Tensor) -> dict[str, float]:
        return {"select_lfd": lfd(self.real_mean, mean_spec),
                "select_profile": profile_distance(self.real_mean, mean_spec)}

    @torch.no_grad()
    def evaluate(self, refine: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
        refined = (quantise(refine(batch)).cpu() for batch in self.fakes.split(self.batch_size))
        return self.distances(mean_log_spectrum(refined))


__all__ = ["COLUMNS", "CRITERION", "MIN_SELECTION", "IndexedSet", "Selection", "carve", "mean_profile",
           "profile_distance", "quantise"]
