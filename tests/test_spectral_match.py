from __future__ import annotations

import numpy as np
import torch

from stigbench.data.specs import DatasetSpec, load_dataset
from stigbench.core.imageset import ArrayImageSet
from stigbench.attacks.registry import refiners
from stigbench.attacks.spectral_match import SpectralMatch
from stigbench.measures.spectrum import lfd, mean_log_spectrum


def test_registered_and_moves_fake_spectrum_onto_real(tiny_dataset):
    assert refiners().get("spectral-match") is SpectralMatch
    ds = load_dataset(DatasetSpec(name="x", root=str(tiny_dataset)), progress=False)
    ref = SpectralMatch().fit(ds.fake, ds.real)
    out = ref.refine(ds.fake)
    assert isinstance(out, ArrayImageSet) and len(out) == len(ds.fake) and out.size == ds.size
    m_real = mean_log_spectrum(ds.real.batches(16))
    before = lfd(m_real, mean_log_spectrum(ds.fake.batches(16)))
    after = lfd(m_real, mean_log_spectrum(out.batches(16)))
    # not to zero: clamping to [0, 1] and 8-bit rounding undo part of the large high-frequency gains
    assert after < 0.6 * before


def test_strength_zero_is_identity_up_to_rounding(tiny_dataset):
    ds = load_dataset(DatasetSpec(name="x", root=str(tiny_dataset)), progress=False)
    ref = SpectralMatch(strength=0.0).fit(ds.fake, ds.real)
    out = ref.refine(ds.fake)
    assert np.abs(out.to_array().astype(int) - ds.fake.to_array().astype(int)).max() <= 1


def test_save_load_round_trip(tmp_path, tiny_dataset):
    ds = load_dataset(DatasetSpec(name="x", root=str(tiny_dataset)), progress=False)
    ref = SpectralMatch(strength=0.7).fit(ds.fake, ds.real)
    ref.save(tmp_path / "sm")
    back = SpectralMatch.load(tmp_path / "sm")
    assert back.strength == 0.7
    x = ds.fake[0][None]
    assert torch.equal(ref.refine_batch(x), back.refine_batch(x))


def test_memmap_store(tmp_path, tiny_dataset):
    ds = load_dataset(DatasetSpec(name="x", root=str(tiny_dataset)), progress=False)
    ref = SpectralMatch().fit(ds.fake, ds.real)
    a = ref.refine(ds.fake)
    b = ref.refine(ds.fake, store=tmp_path / "r.npy")
    assert (tmp_path / "r.npy").is_file()
    assert np.array_equal(a.to_array(), b.to_array())
