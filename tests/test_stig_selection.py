"""STIG's checkpoint selection on a held-out part of the training images, and the identity oracle."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import torch

from stigbench.core.imageset import ArrayImageSet
from stigbench.attacks.stig import StigRefiner
from stigbench.attacks.stig.selection import (
    FLOOR_DRAWS,
    MIN_SELECTION,
    IndexedSet,
    Selection,
    SpectrumMoments,
    carve,
    profile_distance,
    quantise,
    reals_and_floor,
    standardised_distance,
)
from stigbench.attacks.stig.trainer import CHECKPOINT, TRAIN_LOG, StigTrainer, build_translator
from stigbench.measures.spectrum import lfd, log_magnitude, mean_log_spectrum

from test_stig_refiner import TINY, _images

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = {"device": torch.device("cpu"), "precision": "fp32", "progress": False}


def _fingerprinted(n: int, seed: int) -> ArrayImageSet:
    """Images like :func:`_images` through a [1, 2, 1] / 4 blur: the high-frequency deficit of a
    diffusion model's output, spread over most of the spectrum (like real fingerprints)."""
    x = _images(n, seed=seed).array.astype(np.float64)
    for axis in (-2, -1):
        x = (np.roll(x, 1, axis) + 2 * x + np.roll(x, -1, axis)) / 4
    return ArrayImageSet(x.round().astype(np.uint8))


@pytest.fixture(scope="module")
def pools():
    return _fingerprinted(20, seed=11), _images(20, seed=12)  # fakes, reals: 40 % of 20 fakes = 8 held out


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


def _moments(x: np.ndarray) -> SpectrumMoments:
    t = torch.from_numpy(x)
    return SpectrumMoments(t.mean(0), t.var(0, unbiased=True), len(t))


def test_standardised_distance_by_hand_and_its_bias_correction():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 2.0, (10, 3, 4, 4)), rng.normal(0.0, 1.5, (40, 3, 4, 4))
    ma, mb = _moments(a), _moments(b)
    va, vb = a.var(0, ddof=1), b.var(0, ddof=1)
    by_hand = (((a.mean(0) - b.mean(0)) ** 2 - va / 10 - vb / 40) / vb).mean()
    assert standardised_distance(ma, mb) == pytest.approx(by_hand, rel=1e-12)
    # Two samples of one distribution: the uncorrected distance is positive on average, the corrected
    # one is 0 on average whatever the sizes; a mean shift of d standard deviations reads d^2.
    same = [standardised_distance(_moments(rng.normal(0, 1, (8, 3, 8, 8))), _moments(rng.normal(0, 1, (60, 3, 8, 8))))
            for _ in range(300)]
    shifted = [standardised_distance(_moments(rng.normal(0.5, 1, (8, 3, 8, 8))), _moments(rng.normal(0, 1, (60, 3, 8, 8))))
               for _ in range(300)]
    assert abs(np.mean(same)) < 0.01 and np.mean(shifted) == pytest.approx(0.25, abs=0.02)
    with pytest.raises(ValueError, match="differ in shape"):
        standardised_distance(ma, _moments(b[..., :2]))


def test_floor_streams_the_reals_as_a_direct_computation_would():
    reals = _images(23, seed=4)
    moments, draws = reals_and_floor(reals, 6, seed=7, batch_size=5)
    lm = log_magnitude(torch.cat(list(reals.batches(23))).double())
    direct = SpectrumMoments(lm.mean(0), lm.var(0, unbiased=True), 23)
    torch.testing.assert_close(moments.mean, direct.mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(moments.var, direct.var, rtol=1e-9, atol=1e-12)
    # the same draws, taken directly: 6 reals against the other 17
    rng = np.random.default_rng(np.random.SeedSequence([7, 6]))
    for value in draws:
        inside = np.isin(np.arange(23), rng.choice(23, 6, replace=False))
        expect = standardised_distance(SpectrumMoments(lm[inside].mean(0), lm[inside].var(0, unbiased=True), 6),
                                       SpectrumMoments(lm[~inside].mean(0), lm[~inside].var(0, unbiased=True), 17))
        assert value == pytest.approx(expect, rel=1e-7, abs=1e-9)
    assert len(draws) == FLOOR_DRAWS and len(set(draws)) == FLOOR_DRAWS
    assert reals_and_floor(reals, 6, seed=7, batch_size=23)[1] == pytest.approx(draws, rel=1e-9, abs=1e-12)
    assert reals_and_floor(_images(9, seed=4), 8, seed=7)[1] == []  # one real left: no floor


def test_criteria_by_hand():
    reals, fakes = _images(30, seed=1), _fingerprinted(9, seed=2)
    sel = Selection(fakes, reals, seed=3)
    got = sel.evaluate(lambda x: x)  # identity: the criteria of the unrefined fakes
    mean_fake, mean_real = mean_log_spectrum(fakes.batches(4)), mean_log_spectrum(reals.batches(4))
    assert got["select_lfd"] == pytest.approx(lfd(mean_real, mean_fake), rel=1e-9)
    assert got["select_profile"] == pytest.approx(profile_distance(mean_real, mean_fake), rel=1e-9)
    assert got["select_sd"] == pytest.approx(standardised_distance(SpectrumMoments.of(fakes.batches(4)),
                                                                   SpectrumMoments.of(reals.batches(7))), rel=1e-9)
    assert sel.floor is not None and sel.sees(got["select_sd"]) and got["select_sd"] > 10 * sel.floor
    # fakes that are reals: the criterion reads within the floor, so the selection cannot see them
    blind = Selection(IndexedSet(reals, np.arange(9)), reals, seed=3)
    assert not blind.sees(blind.evaluate(lambda x: x)["select_sd"])
    # the refined images are judged on the 8-bit grid they are stored on
    x = torch.tensor([0.5 / 255, 1.49 / 255, 1.51 / 255, 1.2, -0.1])
    assert torch.equal(quantise(x) * 255, torch.tensor([0.0, 1.0, 2.0, 255.0, 0.0]))
    with pytest.raises(ValueError, match=f"at least {MIN_SELECTION}"):
        Selection(ArrayImageSet(fakes.array[:MIN_SELECTION - 1]), reals)


def _log_rows(folder) -> list[dict]:
    with (folder / TRAIN_LOG).open() as fh:
        return list(csv.DictReader(fh))


def test_selection_keeps_the_best_logged_refiner(pools, tmp_path):
    fakes, reals = pools
    # A strong adversary on tiny data moves the spectra a lot: some checkpoints are worse than others.
    kw = {**TINY, "iterations": 6, "select_fraction": 0.4, "select_evals": 3, "lr": 3e-3, "ema": 0.0}
    r = StigRefiner(**kw).fit(fakes, reals, log_dir=tmp_path)
    info = r.fit_info_["selection"]
    assert info["kept"] == "best" and info["every"] == 2 and (info["n_fake"], info["n_real"]) == (8, 20)
    assert info["signal"] > info["noise_floor"] and "above the noise floor" in info["reason"]
    assert r.fit_info_["n_fake"] == 12 and r.fit_info_["n_real"] == 20  # the selection fakes held out; every real trains
    rows = _log_rows(tmp_path)
    assert [int(x["iteration"]) for x in rows] == [0, 1, 2, 3, 4, 5, 6]
    logged = {int(x["iteration"]): float(x["select_sd"]) for x in rows if x["select_sd"]}
    others = {int(x["iteration"]): (float(x["select_lfd"]), float(x["select_profile"])) for x in rows if x["select_sd"]}
    assert sorted(logged) == [0, 2, 4, 6]  # before the first step, then every 2
    assert rows[0]["D"] == "" and all(x["select_sd"] == "" for x in rows if int(x["iteration"]) % 2)
    best_it = min(logged, key=lambda k: (logged[k], k))
    assert info["best_iteration"] == best_it and info["best_value"] == pytest.approx(logged[best_it], abs=1e-6)
    assert info["signal"] == pytest.approx(logged[0], abs=1e-6)

    # the refiner kept reproduces its logged criteria on the selection set
    tr = StigTrainer(r.config(), fakes, reals, **CPU)
    assert tr.selection.evaluate(r.translator_) == pytest.approx(
        {"select_sd": logged[best_it], "select_lfd": others[best_it][0], "select_profile": others[best_it][1]})
    assert len(set(logged.values())) == len(logged)  # the refiner moved: the choice was a real one


def test_a_selection_that_cannot_see_keeps_the_last_refiner(tmp_path):
    """Fakes drawn like the reals: the unrefined selection fakes read within the noise floor, so the
    minimum of the curve would be chosen by chance; the last refiner is kept and the run says why."""
    fakes, reals = _images(20, seed=21), _images(20, seed=22)
    kw = {**TINY, "iterations": 6, "select_fraction": 0.4, "select_evals": 3, "lr": 3e-3, "ema": 0.0}
    r = StigRefiner(**kw).fit(fakes, reals, log_dir=tmp_path)
    info = r.fit_info_["selection"]
    assert info["signal"] <= info["noise_floor"] and info["kept"] == "last"
    assert "cannot see" in info["reason"] and "kept the last refiner" in info["reason"]
    last = StigTrainer(r.config(), fakes, reals, **CPU)
    last.train()
    for k, v in last.refiner.state_dict().items():
        assert torch.equal(v, r.translator_.state_dict()[k]), k
    assert info["best_iteration"] is not None  # the curve is still logged and its minimum recorded


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
    assert resumed.best[:2] == straight.best[:2] and resumed.signal == straight.signal
    assert resumed.selection_info() == straight.selection_info()
    for k, v in straight.best[2].items():
        assert torch.equal(v, resumed.best[2][k]), k
    assert [int(x["iteration"]) for x in _log_rows(tmp_path)] == [0, 1, 2, 3, 4, 5, 6]


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
    assert any("too few fakes for a selection set" in rec.getMessage() for rec in records)
    off = StigRefiner(**{**TINY, "select_fraction": 0.0}).fit(fakes, reals)
    assert off.fit_info_["selection"]["kept"] == "last" and "off" in off.fit_info_["selection"]["reason"]


def test_budget_floor_applies_to_the_preset_epochs_only():
    from stigbench.attacks.stig.trainer import total_iterations
    preset = StigRefiner(min_iterations=500, **{k: v for k, v in TINY.items() if k != "iterations"}, epochs=2.0)
    assert total_iterations(preset.config(), 10) == 500  # 2 epochs of 10 fakes at batch 2 = 10, floored
    assert total_iterations(preset.config(), 1000) == 1000
    # an explicit budget is honoured as given (the preset's floor is turned off with it)
    assert StigRefiner("cpu", iterations=7).config().min_iterations == 0
    assert StigRefiner("cpu", epochs=1.0).config().min_iterations == 0
    assert total_iterations(StigRefiner("cpu", epochs=1.0).config(), 8) == 2
    assert StigRefiner("cpu").config().min_iterations > 0
    with pytest.raises(ValueError, match="min_iterations"):
        StigRefiner("cpu", min_iterations=-1).config()


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


def test_the_report_reads_the_selection_and_its_floor(tmp_path):
    """selection.png draws the criterion beside its noise floor (older logs without select_sd still
    plot), and summary.md's line says what was kept and why."""
    import pandas as pd

    from stigbench.reporting.run.selection_plot import read_selection, selection_plot, selection_text

    folder = tmp_path / "stig"
    (folder / "training").mkdir(parents=True)
    log = pd.DataFrame({"iteration": range(9), "D": [np.nan, *range(8)]})
    for col, values in (("select_sd", [0.3, 0.2, 0.1]), ("select_lfd", [0.05, 0.04, 0.03]), ("select_profile", [1, 2, 3])):
        log[col] = np.nan
        log.loc[[0, 4, 8], col] = values
    log.to_csv(folder / "training" / "train_log.csv", index=False)
    info = {"criterion": "select_sd", "kept": "last", "best_iteration": 8, "noise_floor": 0.5,
            "noise_floor_median": 0.01, "reason": "the selection set cannot see these fakes"}
    (folder / "fit_info.json").write_text(json.dumps({"selection": info}))
    curve = read_selection(folder)
    assert curve.curve.columns.tolist() == ["iteration", "select_sd", "select_lfd", "select_profile"]
    assert curve.kept_iteration == 8 and selection_plot([curve], tmp_path / "selection.png")
    old = tmp_path / "old"
    (old / "training").mkdir(parents=True)
    log.drop(columns="select_sd").to_csv(old / "training" / "train_log.csv", index=False)
    assert read_selection(old).curve.columns.tolist() == ["iteration", "select_lfd", "select_profile"]
    assert selection_plot([curve, read_selection(old)], tmp_path / "both.png")
    record = {"refiners": {"stig": {"fit_info": {"selection": info}}, "blur:2": {"fit_info": {}}}}
    assert selection_text(record) == "stig: kept the last refiner: the selection set cannot see these fakes"
    info.update(kept="best", reason="kept the refiner with the lowest select_sd")
    assert selection_text(record) == "stig: kept the best refiner (iteration 8): kept the refiner with the lowest select_sd"
    assert selection_text({"refiners": {"blur:2": {}}}) == ""
