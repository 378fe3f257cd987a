"""The ``stig`` refiner end to end on tiny images: training, resume, determinism, persistence, registry."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stigbench.core.imageset import ArrayImageSet
from stigbench.attacks.registry import refiners
from stigbench.attacks.stig import PRESETS, StigRefiner, get_preset
from stigbench.attacks.stig.trainer import (
    CHECKPOINT,
    LOSS_NAMES,
    TRAIN_LOG,
    StigTrainer,
    total_iterations,
)

TINY = {"levels": 2, "width": 4, "d_width": 4, "nce_layers": [0, 1], "nce_patches": 16, "nce_dim": 8,
        "batch_size": 2, "iterations": 4, "checkpoint_every": 2, "refine_batch_size": 3, "precision": "fp32",
        "progress": False}


FIXTURE_0_2 = Path(__file__).parent / "fixtures" / "stig-0.2"

pytestmark = pytest.mark.usefixtures("one_thread")


def _images(n: int, size: int = 32, seed: int = 0) -> ArrayImageSet:
    rng = np.random.default_rng(seed)
    # smooth-ish images: a random low-frequency field plus noise
    base = rng.random((n, 3, -(-size // 4), -(-size // 4)))
    img = np.kron(base, np.ones((4, 4)))[..., :size, :size] * 0.8 + rng.random((n, 3, size, size)) * 0.2
    return ArrayImageSet((img * 255).round().astype(np.uint8))


@pytest.fixture(scope="module")
def data():
    return _images(5, seed=1), _images(7, seed=2), _images(3, seed=3)  # fakes, reals, test


def _weights(tr: StigTrainer) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v for name, net in tr.nets.items() for k, v in net.state_dict().items()}


def test_registry_has_stig():
    reg = refiners()
    assert "stig" in reg
    assert reg.get("stig") is StigRefiner
    assert "arXiv 2403.05093" in reg.meta("stig").paper


def test_presets_and_params_round_trip():
    paper = StigRefiner("paper")
    assert (paper.levels, paper.width, paper.batch_size, paper.epochs, paper.iterations) == (5, 64, 1, 10.0, None)
    assert (paper.nce_layers, paper.w_nce, paper.identity_init, paper.config().seed) == ((0,), 20.0, False, 42)
    assert set(PRESETS) >= {"paper", "cpu"} and StigRefiner().preset == "cpu"
    cpu = StigRefiner()  # the documented departures of the default preset
    assert (cpu.epochs, cpu.iterations, cpu.w_psd, cpu.w_mean, cpu.match_moments, cpu.match_luma) == (13.0, None, 0.0,
                                                                                                    100.0, 2, True)
    assert (cpu.w_spec_identity, cpu.select_fraction, paper.select_fraction, paper.w_mean) == (10.0, 0.15, 0.0, 0.0)
    # overriding iterations replaces the preset's epoch count
    r = StigRefiner("paper", iterations=7, nce_layers=(0, 2))
    assert (r.iterations, r.epochs, r.nce_layers) == (7, None, (0, 2))
    params = json.loads(json.dumps(r.get_params()))
    assert StigRefiner(**params).get_params() == params
    with pytest.raises(ValueError, match="did you mean"):
        get_preset("papr")
    with pytest.raises(ValueError, match="nce_layers"):
        StigRefiner(levels=2, nce_layers=[3]).config()


def test_an_unknown_override_fails_in_check_params_with_a_suggestion():
    r = StigRefiner(levls=4)  # stored as given (scikit-learn style); the plan's check_params says what is wrong
    with pytest.raises(ValueError, match=r"no hyper-parameter 'levls'; did you mean 'levels'\?"):
        r.check_params()
    with pytest.raises(AttributeError):
        r.not_a_field  # noqa: B018


def test_the_constructor_names_only_the_run_settings_and_the_preset():
    """The fields are StigPreset's alone: no second list of them to keep in step."""
    import inspect

    from stigbench.attacks.stig.presets import PARAM_NAMES

    named = [p for p in inspect.signature(StigRefiner.__init__).parameters if p not in ("self", "overrides")]
    assert named == ["preset", "strength", "seed", "device", "precision", "progress"]
    assert set(StigRefiner().get_params()) == {"preset", *PARAM_NAMES, "strength", "device", "precision", "progress"}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_field_of_every_preset_survives_save_and_load(preset, tmp_path, monkeypatch):
    """Each field set to a non-default value of the preset's type must come back from ``params.json``."""
    import dataclasses

    from stigbench.attacks.stig import refiner as refiner_module
    from stigbench.attacks.stig.presets import PARAM_NAMES

    base = get_preset(preset)
    changed = {"levels": base.levels + 1, "width": base.width + 2, "norm": "instance", "upsample": "bilinear",
               "padding": "circular" if base.padding == "zeros" else "zeros",
               # a spectrum normalisation other than min-max needs the identity start
               "identity_init": not base.identity_init,
               "spectrum_norm": "minmax" if base.identity_init else "real-channel", "symmetric": not base.symmetric, "periodic": not base.periodic,
               "d_width": base.d_width + 2, "d_input": "image" if base.d_input == "generator" else "generator",
               "rings": "circular", "profile_scale": "none" if base.profile_scale == "minmax" else "minmax",
               "nce_layers": (1,), "nce_patches": base.nce_patches + 1, "nce_temperature": 0.05,
               "nce_dim": base.nce_dim + 1, "w_gan": 1.5, "w_psd": 0.5, "w_mean": 7.0,
               "match_moments": 3 - base.match_moments, "match_luma": not base.match_luma, "w_nce": 2.5,
               "w_ssim_identity": 1.25, "w_spec_identity": 3.5, "w_ssim_content": 0.75, "w_lf": 0.25,
               "lf_sigma": 4.0, "batch_size": base.batch_size + 1, "iterations": 11, "epochs": None,
               "min_iterations": 5, "lr": 3e-4, "beta1": 0.6, "beta2": 0.99, "constant_lr_fraction": 0.3,
               "ema": 0.9, "select_fraction": 0.2, "select_evals": 3, "seed": 9, "checkpoint_every": 7,
               "refine_batch_size": 5}
    assert set(changed) == set(PARAM_NAMES), "a new StigPreset field needs a value here"
    r = StigRefiner(preset, **changed)
    assert [k for k in changed if getattr(r.config(), k) == getattr(base, k)] == []
    # save() needs a fitted refiner; what it writes about the hyper-parameters is save_params + fit_info.
    r.translator_, r.image_size_, r.fit_info_ = object(), 32, {"image_size": 32}
    monkeypatch.setattr(refiner_module.torch, "save", lambda *a, **k: None)
    monkeypatch.setattr(refiner_module, "build_translator", lambda config, size: _Loaded(config))
    monkeypatch.setattr(refiner_module.torch, "load", lambda *a, **k: {})
    r.translator_ = _Loaded(r.config())
    r.save(tmp_path / "stig")
    loaded = StigRefiner.load(tmp_path / "stig")
    assert dataclasses.replace(loaded.config(), description="") == dataclasses.replace(r.config(), description="")
    assert loaded.preset == preset


class _Loaded(torch.nn.Module):
    """Stands in for the translator: the test is about the hyper-parameters, not the weights."""

    def __init__(self, config):
        super().__init__()
        self.config = config

    def load_state_dict(self, state, strict=True):  # noqa: ARG002
        return None


def test_a_field_missing_from_an_old_params_json_takes_its_old_default(tmp_path):
    import shutil

    folder = shutil.copytree(FIXTURE_0_2, tmp_path / "stig")
    params = json.loads((folder / "params.json").read_text())
    del params["params"]["symmetric"], params["params"]["min_iterations"]
    (folder / "params.json").write_text(json.dumps(params))
    loaded = StigRefiner.load(folder)
    # the dataclass defaults (the behaviour of code before the field), not the cpu preset's 600
    assert (loaded.symmetric, loaded.min_iterations) == (False, 0)


def test_a_refiner_saved_by_0_2_loads_and_refines_as_it_did():
    """``tests/fixtures/stig-0.2``: a tiny refiner saved by the code before the typed configuration."""
    import hashlib

    from test_compat import _images

    saved = json.loads((FIXTURE_0_2 / "params.json").read_text())["params"]
    loaded = StigRefiner.load(FIXTURE_0_2)
    assert loaded.get_params() == saved
    out = loaded.refine(_images()).to_array()
    expected = json.loads((FIXTURE_0_2 / "expected.json").read_text())["refined_sha256"]
    assert hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest() == expected


def test_schedule_in_iterations(data):
    fakes, reals, _ = data
    assert total_iterations(StigRefiner("paper", batch_size=2).config(), n_fake=5) == 25  # ceil(10 * 5 / 2)
    assert total_iterations(StigRefiner("paper", epochs=0.5, batch_size=2).config(), n_fake=5) == 2
    tr = StigTrainer(StigRefiner(**{**TINY, "iterations": 10}).config(), fakes, reals, device=torch.device("cpu"),
                     precision="fp32", progress=False)
    factor = tr.sched_G.lr_lambdas[0]
    # constant for the first 20 % of the iterations, then linear to 0, whatever the batch size
    assert [factor(k) for k in range(10)] == pytest.approx([1, 1, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])


def test_fit_refine_and_fit_info(data, tmp_path):
    fakes, reals, test = data
    r = StigRefiner(**TINY).fit(fakes, reals, log_dir=tmp_path)
    out = r.refine(test)
    assert len(out) == len(test) and out.size == 32
    info = r.fit_info_
    for key in ("preset", "params", "variant", "device", "precision", "iterations", "train_seconds",
                "final_losses"):
        assert key in info
    assert info["iterations"] == 4 and info["precision"] == "fp32" and info["device"] == "cpu"
    assert info["variant"]["identity_init"] is True
    assert set(info["final_losses"]) == set(LOSS_NAMES)
    weights = info["profile_discriminator_weights"]  # one per ring of the 32² profile, DC to N/2
    assert len(weights) == 32 // 2 + 1 and all(np.isfinite(weights)) and any(w != 0 for w in weights)
    assert all(np.isfinite(v) for v in info["final_losses"].values())
    json.dumps(info)  # the run record stores it as JSON
    with (tmp_path / TRAIN_LOG).open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(row["iteration"]) for row in rows] == [1, 2, 3, 4]
    assert (tmp_path / CHECKPOINT).is_file()
    with pytest.raises(ValueError, match="trained on"):
        r.refine(_images(2, size=64))


@pytest.mark.parametrize(("levels", "size"), [(2, 34), (3, 48), (4, 64)])
def test_other_sizes_train_and_refine(levels, size):
    r = StigRefiner(**{**TINY, "levels": levels, "nce_layers": [0, levels - 1], "iterations": 2})
    images = _images(3, size=size)
    out = r.fit(images, images).refine(images)
    assert out.array.shape == (3, 3, size, size)


def test_bad_image_size_raises(data):
    with pytest.raises(ValueError, match="multiples of 4"):
        StigRefiner(**{**TINY, "levels": 3}).fit(_images(2, size=34), _images(2, size=34))
    with pytest.raises(ValueError, match="at least 32"):
        StigRefiner(**TINY).fit(_images(2, size=16), _images(2, size=16))


@pytest.mark.parametrize("variant", [{}, {"ema": 0.9, "d_input": "image", "symmetric": True}])
def test_checkpoint_resume_gives_the_same_next_steps(data, tmp_path, variant):
    fakes, reals, _ = data
    config = StigRefiner(**TINY, **variant).config()
    kw = {"device": torch.device("cpu"), "precision": "fp32", "progress": False}
    straight = StigTrainer(config, fakes, reals, **kw)
    straight.train()

    first = StigTrainer(config, fakes, reals, log_dir=tmp_path, **kw)
    first.train(steps=2)
    assert first.iteration == 2 and (tmp_path / CHECKPOINT).is_file()
    resumed = StigTrainer(config, fakes, reals, log_dir=tmp_path, **kw)
    assert resumed.resume() and resumed.iteration == 2
    resumed.train()
    assert resumed.iteration == 4
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with (tmp_path / TRAIN_LOG).open() as fh:
        assert [int(row["iteration"]) for row in csv.DictReader(fh)] == [1, 2, 3, 4]

    # the refiner resumes from its log_dir too (here: nothing left to do) and refuses other settings
    r = StigRefiner(**TINY, **variant).fit(fakes, reals, log_dir=tmp_path)
    assert r.fit_info_["resumed_from_iteration"] == 4
    with pytest.raises(ValueError, match="other hyper-parameters"):
        StigRefiner(**{**TINY, **variant, "lr": 5e-4}).fit(fakes, reals, log_dir=tmp_path)


def test_ema_is_the_running_average_of_g_and_is_what_refines(data):
    fakes, reals, test = data
    decay = 0.75
    config = StigRefiner(**{**TINY, "ema": decay, "iterations": 3}).config()
    tr = StigTrainer(config, fakes, reals, device=torch.device("cpu"), precision="fp32", progress=False)
    tr._prepare()
    expected = [p.detach().clone() for p in tr.translator.parameters()]
    for _ in range(3):
        tr.step()
        expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, tr.translator.parameters())]
    got = list(tr.ema.parameters())
    assert any(not torch.equal(g, p) for g, p in zip(got, tr.translator.parameters()))  # not a copy of G
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(tr.ema.mean, tr.translator.mean)  # the spectrum statistics are shared
    assert tr.refiner is tr.ema

    # BatchNorm's running moments follow G's (they are statistics, not weights to average)
    config = StigRefiner(**{**TINY, "ema": decay, "iterations": 2, "norm": "batch"}).config()
    tr = StigTrainer(config, fakes, reals, device=torch.device("cpu"), precision="fp32", progress=False)
    tr.train()
    running = [(n, b) for n, b in tr.translator.named_buffers() if "running_mean" in n]
    assert running and any(b.abs().sum() > 0 for _, b in running)
    ema_buffers = dict(tr.ema.named_buffers())
    for n, b in running:
        assert torch.equal(ema_buffers[n], b), n

    r = StigRefiner(**{**TINY, "ema": decay}).fit(fakes, reals)
    plain = StigRefiner(**{**TINY, "ema": 0.0}).fit(fakes, reals)  # same G steps: only the kept weights differ
    assert r.fit_info_["variant"]["ema"] == decay
    batch = torch.from_numpy(test.array).float() / 255
    assert not torch.allclose(r.refine_batch(batch), plain.refine_batch(batch))


@pytest.mark.parametrize(("name", "value"), [("ema", 1.0), ("ema", -0.1), ("d_input", "spectrum"),
                                            ("profile_scale", "log")])
def test_bad_stabiliser_settings_raise(name, value):
    with pytest.raises(ValueError, match=name):
        StigRefiner(**{**TINY, name: value}).config()


def test_generator_losses_drop_on_a_fixed_batch(data):
    fakes, reals, _ = data
    # No identity start (so the content terms start high), no adversarial terms, one fixed batch.
    r = StigRefiner(**{**TINY, "identity_init": False, "spectrum_norm": "minmax", "w_gan": 0.0, "w_psd": 0.0,
                       "w_mean": 0.0, "w_spec_identity": 0.0,
                       "lr": 2e-3, "batch_size": 2, "constant_lr_fraction": 1.0, "iterations": 30})
    fixed = ArrayImageSet(fakes.array[:2])
    tr = StigTrainer(r.config(), fixed, ArrayImageSet(reals.array[:2]), device=torch.device("cpu"),
                     precision="fp32", progress=False)
    tr.train()
    first, last = tr.history[0], tr.history[-1]
    for name in ("nce_fake", "ssim_identity", "ssim_content", "lf_fake", "lf_real"):
        assert last[name] < first[name], name


def test_same_seed_same_refinement_and_save_load(data, tmp_path):
    fakes, reals, test = data
    kw = {**TINY, "identity_init": False, "spectrum_norm": "minmax", "seed": 3}
    a = StigRefiner(**kw).fit(fakes, reals)
    b = StigRefiner(**kw).fit(fakes, reals)
    other = StigRefiner(**{**kw, "seed": 4}).fit(fakes, reals)
    ra, rb = a.refine(test).array, b.refine(test).array
    np.testing.assert_array_equal(ra, rb)
    assert not np.array_equal(ra, other.refine(test).array)

    a.save(tmp_path / "stig")
    loaded = StigRefiner.load(tmp_path / "stig")
    assert loaded.get_params() == a.get_params()
    assert loaded.fit_info_ == json.loads(json.dumps(a.fit_info_))
    np.testing.assert_array_equal(loaded.refine(test).array, ra)


def test_a_refiner_saved_before_an_option_existed_loads_with_the_option_off(data, tmp_path):
    fakes, reals, test = data
    r = StigRefiner(**{**TINY, "padding": "zeros"}).fit(fakes, reals)
    r.save(tmp_path / "stig")
    params = json.loads((tmp_path / "stig" / "params.json").read_text())
    del params["params"]["padding"]  # as written by the code before the option
    (tmp_path / "stig" / "params.json").write_text(json.dumps(params))
    assert StigRefiner().padding == "circular"  # today's preset...
    loaded = StigRefiner.load(tmp_path / "stig")
    assert loaded.padding == "zeros"  # ...but the refiner keeps the behaviour it was trained with
    np.testing.assert_array_equal(loaded.refine(test).array, r.refine(test).array)


def test_bf16_step_is_finite(data):
    fakes, reals, _ = data
    r = StigRefiner(**{**TINY, "precision": "bf16", "iterations": 2}).fit(fakes, reals)
    assert r.fit_info_["precision"] == "bf16"
    assert all(np.isfinite(v) for v in r.fit_info_["final_losses"].values())


def test_moment_matching_with_luma_standardises_the_luma_channel(data):
    fakes, reals, _ = data
    config = StigRefiner(**{**TINY, "w_mean": 10.0, "match_moments": 2, "match_luma": True}).config()
    tr = StigTrainer(config, fakes, reals, device=torch.device("cpu"), precision="fp32", progress=False)
    tr.train()
    mm = tr.mean_match
    assert mm.fake_mean.shape == (2, 4, 32, 32) and int(mm.count) == 4
    # channels 0-2 arrive standardised already; the luma channel is standardised by the reals' statistics
    assert torch.equal(mm.shift[:3], torch.zeros(3, 32, 32)) and torch.equal(mm.scale[:3], torch.ones(3, 32, 32))
    assert mm.shift[3].abs().sum() > 0 and (mm.scale[3] > 0).all()
    assert all(np.isfinite(v) for v in tr.final_losses().values()) and tr.final_losses()["mean"] > 0


def test_a_misspelt_stig_parameter_fails_the_plan_with_a_suggestion(tmp_path):
    from click.testing import CliRunner

    from stigbench.cli import main

    result = CliRunner().invoke(main, ["run", "--dataset", "demo", "--refiner", "stig", "--detectors", "durall",
                                       "--set", "stig.levls=3", "--out", str(tmp_path / "runs"),
                                       "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "did you mean 'levels'?" in result.output
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_the_logged_g_loss_is_the_weighted_sum_of_its_named_terms(data):
    from stigbench.attacks.stig.trainer import G_TERMS

    fakes, reals, _ = data
    config = StigRefiner(**{**TINY, "w_psd": 2.0, "w_gan": 1.5}).config()
    tr = StigTrainer(config, fakes, reals, device=torch.device("cpu"), precision="fp32", progress=False)
    tr._prepare()
    losses = tr.step()
    assert list(losses) == list(LOSS_NAMES) == ["D", "D_s", "G", *G_TERMS]
    expected = sum(getattr(config, weight) * losses[name] for name, weight in G_TERMS.items())
    assert losses["G"] == pytest.approx(expected, rel=1e-5)
    assert all(hasattr(config, weight) for weight in G_TERMS.values())
