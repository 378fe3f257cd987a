"""STIG's checkpoint selection on a held-out part of the training images, and the identity oracle."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
import torch

from stigbench.core.imageset import ArrayImageSet
from stigbench.attacks.stig import StigRefiner
from stigbench.attacks.stig.selection import (
    MIN_SELECTION,
    Selection,
    carve,
    profile_distance,
    quantise,
)
from stigbench.attacks.stig.trainer import CHECKPOINT, TRAIN_LOG, StigTrainer, build_translator
from stigbench.measures.spectrum import lfd, mean_log_spectrum

from test_stig_refiner import TINY, _images

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = {"device": torch.device("cpu"), "precision": "fp32", "progress": False}


@pytest.fixture(scope="module")
def pools():
    return _images(20, seed=11), _images(20, seed=12)  # fakes, reals: 40 % of 20 = 8 held out


def test_carve_is_a_seeded_partition():
    train, select = carve(20, 0.15, seed=3, stream=4)
    assert len(select) == 3 and len(train) == 17
    assert sorted([*train, *select]) == list(range(20))
    again = carve(20, 0.15, seed=3, stream=4)
    assert all(np.array_equal(a, b) for a, b in zip((train, select), again))
    assert not np.array_equal(select, carve(20, 0.15, seed=4, stream=4)[1])
    assert len(carve(2, 0.9, 0, 0)[0]) == 1  # never leaves nothing to train on
    with pytest.raises(ValueError, match="select_fraction"):
        carve(10, 1.0, 0, 0)


def test_criteria_by_hand():
    reals, fakes = _images(9, seed=1), _images(9, seed=2)
    sel = Selection(fakes, reals)
    got = sel.evaluate(lambda x: x)  # identity: the criteria of the unrefined fakes
    mean_fake = mean_log_spectrum(fakes.batches(4))
    mean_real = mean_log_spectrum(reals.batches(4))
    assert got["select_lfd"] == pytest.approx(lfd(mean_real, mean_fake), rel=1e-9)
    assert got["select_profile"] == pytest.approx(profile_distance(mean_real, mean_fake), rel=1e-9)
    assert sel.distances(mean_real) == pytest.approx({"select_lfd": 0.0, "select_profile": 0.0}, abs=1e-12)
    # the refined images are judged on the 8-bit grid they are stored on
    x = torch.tensor([0.5 / 255, 1.49 / 255, 1.51 / 255, 1.2, -0.1])
    assert torch.equal(quantise(x) * 255, torch.tensor([0.0, 1.0, 2.0, 255.0, 0.0]))
    with pytest.raises(ValueError, match=f"at least {MIN_SELECTION}"):
        Selection(ArrayImageSet(fakes.array[:MIN_SELECTION - 1]), reals)


def test_selection_keeps_the_best_logged_refiner(pools, tmp_path):
    fakes, reals = pools
    # A strong adversary on tiny data moves the spectra a lot: some checkpoints are worse than others.
    kw = {**TINY, "iterations": 6, "select_fraction": 0.4, "select_evals": 3, "lr": 3e-3, "ema": 0.0}
    r = StigRefiner(**kw).fit(fakes, reals, log_dir=tmp_path)
    info = r.fit_info_["selection"]
    assert info["kept"] == "best" and info["every"] == 2 and (info["n_fake"], info["n_real"]) == (8, 8)
    assert r.fit_info_["n_fake"] == 12 and r.fit_info_["n_real"] == 12  # trained on the rest only
    with (tmp_path / TRAIN_LOG).open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(x["iteration"]) for x in rows] == [0, 1, 2, 3, 4, 5, 6]
    logged = {int(x["iteration"]): float(x["select_lfd"]) for x in rows if x["select_lfd"]}
    profiles = {int(x["iteration"]): float(x["select_profile"]) for x in rows if x["select_profile"]}
    assert sorted(logged) == [0, 2, 4, 6]  # before the first step, then every 2
    assert rows[0]["D"] == "" and all(x["select_lfd"] == "" for x in rows if int(x["iteration"]) % 2)
    best_it = min(logged, key=lambda k: (logged[k], k))
    assert info["best_iteration"] == best_it and info["best_value"] == pytest.approx(logged[best_it], abs=1e-6)

    # the refiner kept reproduces its logged criterion on the selection set
    tr = StigTrainer(r.config(), fakes, reals, **CPU)
    assert tr.selection.evaluate(r.translator_) == pytest.approx({"select_lfd": logged[best_it],
                                                                  "select_profile": profiles[best_it]})
    assert len(set(logged.values())) == len(logged)  # the refiner moved: the choice was a real one


def test_selection_survives_a_resume(pools, tmp_path):
    fakes, reals = pools
    config = StigRefiner(**{**TINY, "iterations": 6, "checkpoint_every": 3, "select_fraction": 0.4,
                            "select_evals": 3, "lr": 3e-3, "ema": 0.0}).config()
    straight = StigTrainer(config, fakes, reals, **CPU)
    straight.train()
    first = StigTrainer(config, fakes, reals, log_dir=tmp_path, **CPU)
    first.train(steps=3)
    assert (tmp_path / CHECKPOINT).is_file()
    resumed = StigTrainer(config, fakes, reals, log_dir=tmp_path, **CPU)
    assert resumed.resume() and resumed.best is not None
    resumed.train()
    assert resumed.best[:2] == straight.best[:2]
    for k, v in straight.best[2].items():
        assert torch.equal(v, resumed.best[2][k]), k
    with (tmp_path / TRAIN_LOG).open() as fh:
        assert [int(x["iteration"]) for x in csv.DictReader(fh)] == [0, 1, 2, 3, 4, 5, 6]


def test_too_small_for_selection_falls_back_to_the_last_refiner():
    fakes, reals = _images(6, seed=1), _images(6, seed=2)
    # The CLI's console handler stops propagation on the "stigbench" logger, so listen on it directly.
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("stigbench")
    logger.addHandler(handler)
    try:
        r = StigRefiner(**TINY).fit(fakes, reals)  # 15 % of 6 is one image: too few
    finally:
        logger.removeHandler(handler)
    info = r.fit_info_["selection"]
    assert info["kept"] == "last" and info["best_iteration"] is None and "too few" in info["reason"]
    assert r.fit_info_["n_fake"] == 6  # nothing held out
    assert any("too few images for the selection criterion" in rec.getMessage() for rec in records)
    off = StigRefiner(**{**TINY, "select_fraction": 0.0}).fit(fakes, reals)
    assert off.fit_info_["selection"]["kept"] == "last" and "off" in off.fit_info_["selection"]["reason"]


@pytest.mark.parametrize("variant", [{"spectrum_norm": "real-frequency"}, {"spectrum_norm": "real-channel"},
                                     {"spectrum_norm": "minmax"}, {"symmetric": True}, {"periodic": True}])
def test_identity_generator_leaves_every_pixel(variant):
    """Oracle: the identity generator's refinement, stored on the 8-bit grid, is the input image, so no
    detector's score can change (any change a trained refiner makes is its own)."""
    fakes, reals = _images(6, size=64, seed=5), _images(6, size=64, seed=6)
    config = StigRefiner(**{**TINY, **variant}).config()
    translator = build_translator(config, 64).eval()
    tr = StigTrainer(config, fakes, reals, **CPU)
    tr._prepare()  # real-set statistics, as after training
    translator.load_state_dict(tr.translator.state_dict())
    x = torch.from_numpy(fakes.array).float() / 255
    with torch.no_grad():
        out = translator(x)
    np.testing.assert_array_equal((quantise(out) * 255).round().byte().numpy(), fakes.array)
