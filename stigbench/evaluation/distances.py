"""The quality stage: how far each set of test images is from the reals, and what an attack costs.

* LFD (the STIG paper's log frequency distance) of every set's mean log-spectrum to the reals' under
  the same perturbation;
* PSNR and SSIM of each refined test fake to its original (:mod:`stigbench.measures.fidelity`);
* FID/KID (or their random-network substitutes) on images and spectra, via
  :func:`stigbench.evaluation.quality_rows.quality_metrics`.

Each function returns rows with the columns of ``metrics.csv``; sets are keyed ``"real"``, ``"fake"``
and ``"refined:<refiner>"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

import numpy as np
import torch

from stigbench.core.imageset import ImageSet
from stigbench.core.memory import release_free_memory
from stigbench.evaluation.quality_rows import QualityResult
from stigbench.evaluation.rows import base_row
from stigbench.measures.fidelity import mean_fidelity
from stigbench.measures.spectrum import lfd, mean_log_spectrum

T = TypeVar("T")


def _row(dataset: str, seed: int, key: str, metric: str, value: float, perturbation: str,
         ci: tuple[float, float] = (np.nan, np.nan), test_dataset: str | None = None) -> dict[str, Any]:
    condition, _, refiner = key.partition(":")
    return {**base_row(dataset, seed, test_dataset, refiner=refiner, condition=condition, perturbation=perturbation),
            "metric": metric, "value": value, "ci_low": ci[0], "ci_high": ci[1]}


def mean_spectra(sets: Mapping[str, ImageSet], batch_size: int) -> dict[str, torch.Tensor]:
    """The mean log-magnitude spectrum of each set."""
    return {k: mean_log_spectrum(s.batches(batch_size)) for k, s in sets.items()}


def lfd_rows(spectra: Mapping[str, torch.Tensor], *, dataset: str, seed: int, perturbation: str,
             test_dataset: str | None = None) -> list[dict[str, Any]]:
    """LFD of every set's mean spectrum to the reals' (``spectra["real"]``, of ``test_dataset``)."""
    return [_row(dataset, seed, key, "lfd", lfd(spectra["real"], m), perturbation, test_dataset=test_dataset)
            for key, m in spectra.items() if key != "real"]


def _released_after_each(items: Iterable[T]) -> Iterator[T]:
    """``items``, giving the heap's free pages back after each: SSIM's float64 temporaries of one batch
    leave holes that the next batch's do not fill, and memory grew with the number of batches
    (:mod:`stigbench.core.memory`)."""
    for item in items:
        yield item
        release_free_memory()


def fidelity_rows(fakes: ImageSet, refined: Mapping[str, ImageSet], *, dataset: str, seed: int,
                  batch_size: int, test_dataset: str | None = None, condition: str = "refined") -> list[dict[str, Any]]:
    """PSNR and SSIM of each refined set to the fakes it was made from (same order); ``condition`` names the
    sets (``real-attacked``: attacked reals against the reals they were made from)."""
    rows = []
    for display, images in refined.items():
        values = mean_fidelity(_released_after_each(zip(fakes.batches(batch_size), images.batches(batch_size))))
        rows += [_row(dataset, seed, f"{condition}:{display}", metric, value, "none", test_dataset=test_dataset)
                 for metric, value in values.items()]
    return rows


def distribution_rows(result: QualityResult, *, dataset: str, seed: int, perturbation: str,
                      test_dataset: str | None = None) -> list[dict[str, Any]]:
    """FID/KID rows of a :class:`~stigbench.evaluation.quality_rows.QualityResult`."""
    return [_row(dataset, seed, r["condition_key"], r["metric"], r["value"], perturbation, (r["ci_low"], r["ci_high"]),
                 test_dataset) for r in result.rows]
