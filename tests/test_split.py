from __future__ import annotations

import numpy as np
import pytest

from stigbench.data.specs import DatasetError, DatasetSpec, SplitFractions, load_dataset
from stigbench.data.split import PARTS, assign_groups, make_split, split_frame

F = SplitFractions(0.6, 0.2, 0.2)


def test_singleton_groups_match_fractions():
    groups = np.array([f"g{i}" for i in range(100)])
    parts = assign_groups(groups, F, seed=0, label="real")
    counts = {p: int((parts == p).sum()) for p in PARTS}
    assert counts == {"train": 60, "val": 20, "test": 20}


def test_deterministic_and_seed_dependent_and_order_free():
    groups = np.array([f"g{i}" for i in range(50)])
    a = assign_groups(groups, F, 0, "real")
    assert np.array_equal(a, assign_groups(groups, F, 0, "real"))
    assert not np.array_equal(a, assign_groups(groups, F, 1, "real"))
    perm = np.random.default_rng(0).permutation(50)
    b = assign_groups(groups[perm], F, 0, "real")
    assert np.array_equal(a[perm], b)  # a function of the group names, not of file order


def test_groups_stay_together():
    rng = np.random.default_rng(0)
    groups = np.array([f"photo{rng.integers(0, 12)}" for _ in range(200)] + [f"leaf{i}" for i in range(100)])
    parts = assign_groups(groups, F, 3, "real")
    for g in np.unique(groups):
        assert len(set(parts[groups == g])) == 1
    frac = (parts == "train").mean()
    assert 0.5 < frac < 0.7


def test_split_of_dataset_is_stratified_and_saved(tiny_dataset):
    ds = load_dataset(DatasetSpec(name="x", root=str(tiny_dataset)), progress=False)
    split = make_split(ds, seed=0)
    assert split.counts() == {"real": {"train": 18, "val": 6, "test": 6}, "fake": {"train": 18, "val": 6, "test": 6}}
    frame = split_frame(ds, split)
    assert list(frame.columns) == ["path", "label", "group", "part"] and len(frame) == 60
    all_idx = np.concatenate([split.indices("real", p) for p in PARTS])
    assert sorted(all_idx) == list(range(30))


def test_unequal_counts_fine_and_too_few_raises(tmp_path):
    from conftest import make_tiny_dataset

    root = make_tiny_dataset(tmp_path / "u", n_real=20, n_fake=11, size=16)
    ds = load_dataset(DatasetSpec(name="x", root=str(root)), progress=False)
    c = make_split(ds, seed=0).counts()
    assert sum(c["real"].values()) == 20 and sum(c["fake"].values()) == 11
    small = make_tiny_dataset(tmp_path / "s", n_real=20, n_fake=5, size=16)
    with pytest.raises(DatasetError, match="too few fake images"):
        make_split(load_dataset(DatasetSpec(name="x", root=str(small)), progress=False), seed=0)
    one_group = load_dataset(DatasetSpec(name="x", root=str(root), group_pattern=r"^(?P<group>img)_\d+$"),
                             progress=False)
    with pytest.raises(DatasetError, match="1 source groups"):
        make_split(one_group, seed=0)
