"""FID/KID rows of image sets against the reals: the stages of :mod:`stigbench.evaluation.quality`
put together, with features going through the on-disk cache of :mod:`stigbench.evaluation.quality_cache`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stigbench.core.imageset import ImageSet
from stigbench.evaluation.quality import (
    DOMAINS,
    ExtractorInfo,
    FeatureExtractor,
    check_domain,
    extract_features,
    get_extractor,
)
from stigbench.evaluation.quality_cache import cached_features
from stigbench.measures.feature_distances import feature_stats, frechet_distance, frechet_distance_features, kid


@dataclass
class QualityResult:
    """Long-form metric rows plus the extractor that produced them (for the run's provenance)."""

    rows: list[dict[str, Any]]
    extractor: ExtractorInfo
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "extractor": self.extractor.to_dict(), "settings": self.settings}


def quality_metrics(
    real_set: ImageSet,
    other_sets: Mapping[str, ImageSet],
    extractor: FeatureExtractor | None = None,
    domains: Sequence[str] = DOMAINS,
    max_images: int | None = 500,
    batch_size: int = 32,
    cache: bool = True,
    cache_root: str | Path | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> QualityResult:
    """Fréchet distance and KID of each set in ``other_sets`` to ``real_set``, per domain.

    Rows: ``{"condition_key", "metric", "value", "ci_low", "ci_high", "std", "n_real", "n_other"}``;
    ``ci_low``/``ci_high`` are NaN (no interval is computed), ``std`` is KID's spread over subsets
    (NaN for Fréchet rows). Every condition uses the same KID subsets seed (common random numbers,
    so differences between conditions are less noisy). With ``cache`` the features go through
    :func:`stigbench.evaluation.quality_cache.cached_features`, so the reals are embedded once per dataset.
    """
    if extractor is None:
        extractor = get_extractor()
    for d in domains:
        check_domain(d)

    def features(image_set: ImageSet, domain: str, label: str) -> np.ndarray:
        desc = f"{extractor.metric_prefix} {domain}: {label}" if progress else None
        if cache:
            return cached_features(image_set, extractor, domain=domain, max_images=max_images,
                                   batch_size=batch_size, progress=desc, root=cache_root)
        return extract_features(image_set, extractor, batch_size, domain, max_images, desc)

    rows: list[dict[str, Any]] = []
    nan = float("nan")
    for domain in domains:
        fd_name, kd_name = extractor.metric_names(domain)
        real_f = features(real_set, domain, "real")
        real_stats: tuple[np.ndarray, np.ndarray] | None = None
        for key, other in other_sets.items():
            other_f = features(other, domain, key)
            if len(real_f) * len(other_f) <= real_f.shape[1] ** 2:  # fewer images than dimensions
                fd = frechet_distance_features(real_f, other_f)
            else:
                real_stats = real_stats or feature_stats(real_f)
                fd = frechet_distance(*real_stats, *feature_stats(other_f))
            k_mean, k_std = kid(real_f, other_f, kid_subsets, kid_subset_size, seed)
            common = {"ci_low": nan, "ci_high": nan, "n_real": len(real_f), "n_other": len(other_f)}
            rows.append({"condition_key": key, "metric": fd_name, "value": fd, "std": nan, **common})
            rows.append({"condition_key": key, "metric": kd_name, "value": k_mean, "std": k_std, **common})
    settings = {"domains": list(domains), "max_images": max_images, "kid_subsets": kid_subsets,
                "kid_subset_size": kid_subset_size, "seed": seed}
    return QualityResult(rows, extractor.info(), settings)
