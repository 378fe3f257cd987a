"""Deterministic, stratified, group-aware train/val/test split.

* stratified: reals and fakes are split separately, each by the same fractions, so unequal class
  counts are fine;
* grouped: all images cut from one source picture (same group) land in the same part, otherwise a
  detector could be tested on crops of pictures it was trained on;
* deterministic: a function of the seed and the sorted group names only, not of file order.

A dataset of a named layout (:mod:`stigbench.data.layouts`) adds two rules: images of the source's own
test split (its ``test_real``/``test_fake``: genimage's ``val``) all go to ``test`` and the rest is
split into ``train``/``val`` by the fractions renormalised; reals shared with other generators (a spec
with ``real_root``) are split per group by a seeded hash of its path relative to ``real_root``, so the
part of a shared real never depends on which generator's dataset it is in. Other datasets split
exactly as before layouts existed.

The benchmark's leakage rule builds on it: refiners and detectors train on ``train``, thresholds and
early stopping use ``val``, and only ``test`` images are refined and scored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stigbench.data.specs import Dataset, DatasetError, SplitFractions

PARTS = ("train", "val", "test")
MIN_PER_PART = 2  # per class: AUC and thresholds need at least a couple of each


def _seed_for(seed: int, label: str) -> int:
    digest = hashlib.sha256(f"{seed}:{label}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def assign_groups(groups: np.ndarray, fractions: SplitFractions, seed: int, label: str) -> np.ndarray:
    """Part name per item, keeping groups whole and matching the fractions as closely as possible.

    Groups are visited largest first (ties in a seeded random order) and each goes to the part
    furthest below its target count. With one image per group this reproduces the fractions to
    within one image.
    """
    return _assign(groups, (fractions.train, fractions.val, fractions.test), PARTS, seed, label)


def _assign(groups: np.ndarray, weights: tuple[float, ...], parts: tuple[str, ...], seed: int,
            label: str) -> np.ndarray:
    groups = np.asarray(groups)
    n = len(groups)
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(_seed_for(seed, label))
    order = rng.permutation(len(names))
    # Big groups first (stable w.r.t. the shuffle), so they cannot overshoot a small part at the end.
    order = order[np.argsort(-counts[order], kind="stable")]
    targets = np.array(weights) * n
    filled = np.zeros(len(parts))
    part_of_group = np.empty(len(names), dtype=np.int64)
    for g in order:
        k = int(np.argmax(targets - filled))
        part_of_group[g] = k
        filled[k] += counts[g]
    return np.asarray(parts, dtype=object)[part_of_group[inverse]]


def hashed_parts(groups: np.ndarray, fractions: SplitFractions, seed: int, label: str) -> np.ndarray:
    """Part per item from a seeded hash of its group alone: an item's part does not depend on which
    other items are split with it (shared reals of several generators' datasets)."""
    bounds = np.cumsum([fractions.train, fractions.val])
    out = []
    for g in np.asarray(groups):
        u = _seed_for(seed, f"{label}:{g}") / 2.0**64
        out.append(PARTS[int(np.searchsorted(bounds, u, side="right"))])
    return np.asarray(out, dtype=object)


def _layout_parts(groups: np.ndarray, fixed: np.ndarray | None, shared: bool, fractions: SplitFractions,
                  seed: int, label: str) -> np.ndarray:
    if shared:
        return hashed_parts(groups, fractions, seed, label)
    if fixed is None or not (fixed == "test").any():
        return assign_groups(groups, fractions, seed, label)
    parts = np.full(len(groups), "test", dtype=object)
    own = fixed != "test"
    if own.any():
        trainval = fractions.train + fractions.val  # the source's train images: our train + val, renormalised
        parts[own] = _assign(np.asarray(groups)[own], (fractions.train / trainval, fractions.val / trainval),
                             PARTS[:2], seed, label)
    return parts


@dataclass(frozen=True)
class Split:
    """Part (``train``/``val``/``test``) of every real and fake image of a dataset."""

    real_parts: np.ndarray
    fake_parts: np.ndarray
    seed: int

    def indices(self, label: str, part: str) -> np.ndarray:
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; use one of {PARTS}")
        parts = {"real": self.real_parts, "fake": self.fake_parts}[label]
        return np.flatnonzero(parts == part)

    def counts(self) -> dict[str, dict[str, int]]:
        return {label: {p: int(len(self.indices(label, p))) for p in PARTS} for label in ("real", "fake")}


def make_split(dataset: Dataset, fractions: SplitFractions | None = None, seed: int = 0) -> Split:
    """Split ``dataset``; raises :class:`DatasetError` when a part would get too few images."""
    fractions = fractions or dataset.spec.split
    if dataset.spec.layout:
        split = Split(
            real_parts=_layout_parts(dataset.real_groups, dataset.real_fixed, bool(dataset.spec.real_root),
                                     fractions, seed, "real"),
            fake_parts=_layout_parts(dataset.fake_groups, dataset.fake_fixed, False, fractions, seed, "fake"),
            seed=seed,
        )
    else:
        split = Split(
            real_parts=assign_groups(dataset.real_groups, fractions, seed, "real"),
            fake_parts=assign_groups(dataset.fake_groups, fractions, seed, "fake"),
            seed=seed,
        )
    for label, per_part in split.counts().items():
        short = [p for p, c in per_part.items() if c < MIN_PER_PART]
        if short:
            n_groups = len(np.unique(dataset.real_groups if label == "real" else dataset.fake_groups))
            raise DatasetError(
                f"dataset {dataset.spec.name}: too few {label} images for the split "
                f"({sum(per_part.values())} images in {n_groups} source groups give {per_part}); "
                f"each part needs at least {MIN_PER_PART}"
            )
    return split


def split_frame(dataset: Dataset, split: Split) -> pd.DataFrame:
    """The split as a table (``path, label, group, part``), as saved with every run."""
    rows = []
    for label, image_set, groups, parts in (
        ("real", dataset.real, dataset.real_groups, split.real_parts),
        ("fake", dataset.fake, dataset.fake_groups, split.fake_parts),
    ):
        for path, group, part in zip(image_set.ids, groups, parts):
            rows.append({"path": path, "label": label, "group": group, "part": part})
    return pd.DataFrame(rows, columns=["path", "label", "group", "part"])


def save_split(dataset: Dataset, split: Split, path: str | Path) -> Path:
    path = Path(path)
    split_frame(dataset, split).to_csv(path, index=False)
    return path
