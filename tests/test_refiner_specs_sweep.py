"""Strength sweeps (issue #22, item 5): the ``name:param=value`` / ``name:param=*`` syntax, checks in
the plan, refine-time strength for ``stig`` and ``spectral-match``, one fit per sweep, ASR rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stigbench.attacks.spectral_match import SpectralMatch
from stigbench.attacks.stig import StigRefiner
from stigbench.attacks.strength import STRENGTHS, blend_log_magnitude
from stigbench.core.registry import RegistryError
from stigbench.data.specs import DatasetSpec, load_dataset
from stigbench.measures.metrics import attack_success_rate
from stigbench.measures.spectrum import lfd, mean_log_spectrum
from stigbench.pipeline.plan import PlanError, RunConfig, resolve
from stigbench.pipeline.refiner_specs import (
    RefinerSpec,
    refiner_display_name,
    resolve_refiner_spec,
    resolve_refiner_specs,
)
from test_stig_refiner import TINY as TINY_STIG
from test_stig_refiner import _images


# -- the syntax --------------------------------------------------------------------------------------
def test_named_parameter_and_canonical_display_names():
    assert resolve_refiner_spec("stig:strength=0.5") == ("stig", {"strength": 0.5})
    assert resolve_refiner_spec("spectral-match:strength=1") == ("spectral-match", {})  # the default: the full attack
    assert resolve_refiner_spec("blur:sigma=2") == ("blur", {"sigma": 2.0})
    assert refiner_display_name("stig", {"strength": 0.5}) == "stig:strength=0.5"
    assert refiner_display_name("stig", {"strength": 1.0}) == "stig"
    assert refiner_display_name("blur", {"sigma": 2.0}) == "blur:2"  # today's short form stays
    assert refiner_display_name("stig", {"epochs": 2, "strength": 0.1}) == "stig:epochs=2:strength=0.1"
    assert isinstance(resolve_refiner_spec("stig:strength=1")[1].get("strength", 1.0), float)
    # one condition whichever way it is written: the duplicates go
    assert resolve_refiner_specs("stig,stig:strength=1,blur:2,blur:sigma=2") == [
        RefinerSpec("stig", "stig", {}), RefinerSpec("blur:2", "blur", {"sigma": 2.0})]


def test_star_expands_to_the_declared_grid():
    specs = resolve_refiner_specs("stig:strength=*,spectral-match:strength=*")
    assert [s.display for s in specs[:len(STRENGTHS)]] == [
        "stig:strength=0.05", "stig:strength=0.1", "stig:strength=0.2", "stig:strength=0.35", "stig:strength=0.5",
        "stig:strength=0.75", "stig"]
    assert len(specs) == 2 * len(STRENGTHS) and specs[-1] == RefinerSpec("spectral-match", "spectral-match", {})
    assert specs[0].params == {"strength": 0.05}
    assert [s.display for s in resolve_refiner_specs("blur:sigma=*")] == ["blur:1", "blur:2", "blur:4"]


@pytest.mark.parametrize("spec, error, match", [
    ("stig:strenght=0.5", ValueError, r"refiner 'stig' has no parameter 'strenght'; did you mean 'strength'\?"),
    ("spectral-match:gain=*", ValueError, r"refiner 'spectral-match' has no parameter 'gain'.*strength"),
    ("stig:epochs=*", ValueError, r"refiner 'stig' has no default grid for its parameter 'epochs'"),
    ("stig:strength", ValueError, "stig:<param>=<value>"),
    ("stig:strength=0.5:strength=1", ValueError, "twice"),
    ("stgi:strength=0.5", RegistryError, "did you mean 'stig'"),
])
def test_bad_named_parameters(spec: str, error: type, match: str):
    with pytest.raises(error, match=match):
        resolve_refiner_specs(spec)


@pytest.mark.parametrize("refiners, overrides, match", [
    ("stig:strength=1.5", {}, r"refiner 'stig:strength=1.5': strength must be a number in \[0, 1\], got 1.5"),
    ("spectral-match:strength=-0.1", {}, r"refiner 'spectral-match:strength=-0.1': strength must be"),
    ("spectral-match", {"spectral-match": {"strength": 2.0}}, r"refiner 'spectral-match': strength must be"),
    ("stig:strenght=0.5", {}, r"refiner 'stig' has no parameter 'strenght'"),
])
def test_bad_strength_fails_in_the_plan_and_writes_nothing(tmp_path, tiny_dataset, refiners, overrides, match):
    out = tmp_path / "runs"
    cfg = RunConfig(real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"), refiners=refiners,
                    refiner_params=overrides, detectors="durall", out=str(out), progress=False)
    with pytest.raises(ValueError, match=match):
        resolve(cfg)
    from stigbench.cli import main
    from click.testing import CliRunner

    args = ["run", "--real", cfg.real, "--fake", cfg.fake, "--refiner", refiners, "--detectors", "durall",
            "--out", str(out), *[f"--set={n}.{k}={v}" for n, p in overrides.items() for k, v in p.items()]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and ("strength" in result.output or "strenght" in result.output)
    assert not out.exists()  # nothing written, nothing overwritten


def test_plan_error_is_a_plan_error(tiny_dataset, tmp_path):
    cfg = RunConfig(real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"), refiners="stig:strength=2",
                    detectors="durall", out=str(tmp_path))
    with pytest.raises(PlanError):
        resolve(cfg)


# -- strength at refine time -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stig(one_thread):
    return StigRefiner(**TINY_STIG).fit(_images(6, seed=1), _images(8, seed=2))


def test_stig_strength_one_is_the_translator_output_and_zero_the_fakes(stig):
    x = torch.stack([_images(4, seed=3)[i] for i in range(4)])
    with torch.inference_mode():
        old = stig.translator_(x).float().cpu()  # what refine_batch returned before strength existed
    stig.strength = 1.0
    assert torch.equal(stig.refine_batch(x), old)
    stig.strength = 0.0
    zero = stig.refine_batch(x)
    assert (zero * 255).round().sub(x * 255).abs().max() <= 1  # the fakes, up to 8-bit rounding
    stig.strength = 0.5
    half = stig.refine_batch(x)
    assert half.shape == x.shape and half.min() >= 0 and half.max() <= 1
    stig.strength = 1.0


def test_stig_strength_survives_save_load(stig, tmp_path):
    stig.strength = 0.35
    stig.save(tmp_path / "s")
    back = StigRefiner.load(tmp_path / "s")
    stig.strength = 1.0
    assert back.strength == 0.35


def test_blend_interpolates_the_log_magnitude_with_the_fakes_phase():
    rng = torch.Generator().manual_seed(0)
    fakes, refined = torch.rand(2, 3, 16, 16, generator=rng), torch.rand(2, 3, 16, 16, generator=rng)
    assert torch.equal(blend_log_magnitude(fakes, refined, 1.0), refined)
    assert torch.allclose(blend_log_magnitude(fakes, refined, 0.0), fakes, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blend_log_magnitude(fakes, refined, 1.2)


def test_spectral_match_lfd_falls_with_strength(tiny_dataset):
    ds = load_dataset(DatasetSpec(name="x", root=str(tiny_dataset)), progress=False)
    sm = SpectralMatch().fit(ds.fake, ds.real)
    m_real = mean_log_spectrum(ds.real.batches(16))
    lfds = []
    for s in (0.0, *STRENGTHS):
        sm.strength = s
        lfds.append(lfd(m_real, mean_log_spectrum(sm.refine(ds.fake).batches(16))))
    assert all(b < a for a, b in zip(lfds, lfds[1:])), lfds


def test_spectral_match_checks_strength_in_fit():
    with pytest.raises(ValueError, match=r"strength must be a number in \[0, 1\]"):
        SpectralMatch(strength=1.5).fit(_images(2), _images(2))


def test_attack_success_rate_by_hand():
    fake = np.array([0.9, 0.8, 0.7, 0.2])  # three flagged at 0.5
    refined = np.array([0.4, 0.6, 0.1, 0.9])  # two of them no longer flagged; the unflagged one does not count
    assert attack_success_rate(fake, refined, 0.5) == pytest.approx(2 / 3)
    assert np.isnan(attack_success_rate(np.array([0.1]), np.array([0.9]), 0.5))
