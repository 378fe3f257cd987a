"""Strength sweeps (issue #22, item 5): the ``name:param=value`` / ``name:param=*`` syntax, checks in
the plan, refine-time strength for ``stig`` and ``spectral-match``, one fit per sweep, ASR rows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from stigbench.attacks.spectral_match import SpectralMatch
from stigbench.attacks.stig import StigRefiner
from stigbench.attacks.strength import STRENGTHS, blend_log_magnitude
from stigbench.core.config import RunConfig
from stigbench.core.registry import RegistryError
from stigbench.data.specs import DatasetSpec, load_dataset
from stigbench.evaluation.sweep import interpolate_at
from stigbench.measures.metrics import attack_success_rate
from stigbench.measures.spectrum import lfd, mean_log_spectrum
from stigbench.pipeline.plan import PlanError, resolve
from stigbench.pipeline.refiner_specs import (
    RefinerSpec,
    refiner_display_name,
    resolve_refiner_spec,
    resolve_refiner_specs,
)
from stigbench.reporting.run.sweeps import equal_cost_lines, equal_cost_table
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
    ("spectral-match", {"spectral-match": {"strength": 2.0}}, r"refiner 'spectral-match:strength=2': strength must"),
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


# -- end to end: a 2-point sweep on a tiny dataset -------------------------------------------------------
@pytest.fixture(scope="module")
def sweep_run(tiny_dataset, tmp_path_factory, one_thread):
    tmp = tmp_path_factory.mktemp("sweep")
    cfg = RunConfig(real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"),
                    refiners="stig:strength=0.5,stig,spectral-match:strength=0.5,spectral-match,blur:1",
                    # not started at the identity, so that four iterations change the images
                    refiner_params={"stig": {**TINY_STIG, "identity_init": False, "spectrum_norm": "minmax"}},
                    detectors="durall,peaks", n_boot=20, quality_max_images=16, out=str(tmp / "runs"),
                    cache_dir=str(tmp / "stages"), progress=False)
    from stigbench.pipeline.runner import run_benchmark

    return cfg, run_benchmark(cfg)


@pytest.mark.heavy
def test_one_fit_serves_a_sweep(sweep_run):
    cfg, result = sweep_run
    stages = Path(cfg.cache_dir)
    fits = sorted(p.name.rsplit("-", 1)[0] for p in (stages / "refiner").iterdir() if not p.name.startswith("."))
    assert fits == ["blur_1", "spectral-match", "stig"]  # one fit per refiner, whatever its strengths
    refined = [p.name for p in (stages / "refined").iterdir() if not p.name.startswith(".")]
    assert len(refined) == 5  # ... and one refined set per point
    assert sorted(p.name for p in (result.run_dir / "refiners").iterdir()) == ["blur_1", "spectral-match", "stig"]
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["refiners"]["stig:strength=0.5"]["refine_params"] == {"strength": 0.5}
    assert record["refiners"]["stig:strength=0.5"]["fitted_as"] == "stig"
    # a rerun with another point reuses the fit: only the new point's stages are computed
    from stigbench.pipeline.runner import run_benchmark

    again = run_benchmark(dataclasses.replace(cfg, refiners="spectral-match:strength=0.2", detectors="durall",
                                              refiner_params={}, quality=False))
    assert again.stage_misses > 0 and (again.run_dir / "refiners" / "spectral-match").is_dir()
    assert sorted(p.name.rsplit("-", 1)[0] for p in (stages / "refiner").iterdir()
                  if not p.name.startswith(".")) == fits  # no new fit


def test_sweep_rows_and_images(sweep_run):
    _, result = sweep_run
    m = result.metrics
    q = m[m.detector.isna() | (m.detector == "")]
    for display in ("stig:strength=0.5", "spectral-match:strength=0.5"):
        assert {"psnr", "ssim", "lfd"} <= set(q[q.refiner == display].metric)
        assert not any(str(x).startswith(("fid", "kid", "fd_")) for x in q[q.refiner == display].metric)
    assert any(str(x).startswith(("fid", "fd_")) for x in q[q.refiner == "spectral-match"].metric)
    psnr = q[q.metric == "psnr"].set_index("refiner").value
    assert psnr["spectral-match:strength=0.5"] > psnr["spectral-match"]  # half the change costs less
    asr = m[m.metric == "asr"]
    assert set(asr.trained_on) == {"fake"} and set(asr.condition) == {"refined"}
    assert asr.value.between(0, 1).all()


def test_sweep_curves_are_drawn_and_listed(sweep_run):
    _, result = sweep_run
    run = result.run_dir
    assert (run / "sweeps.png").is_file() and (run / "sweeps.csv").is_file()
    table = pd.read_csv(run / "sweeps.csv")
    assert set(table.attack) == {"stig", "spectral-match", "blur:1"}
    assert sorted(table[table.attack == "stig"].strength) == [0.5, 1.0]
    equal = pd.read_csv(run / "equal_cost.csv", keep_default_na=False)
    assert ("stig", "spectral-match") in set(zip(equal.attack, equal.against))
    summary = (run / "summary.md").read_text()
    assert "## Strength sweeps: attacks at equal image cost" in summary and "`sweeps.png`" in summary
    assert 'id="sweeps"' in (run / "report.html").read_text()


@pytest.mark.heavy
def test_bench_report_draws_the_sweeps(sweep_run, tmp_path):
    from stigbench.reporting.compare.comparison import compare_runs

    _, result = sweep_run
    cmp = compare_runs([result.run_dir], tmp_path / "cmp")
    assert {"sweeps.png", "sweeps.csv", "equal_cost.csv"} <= {f.name for f in cmp.files}
    table = pd.read_csv(cmp.out_dir / "sweeps.csv")
    assert set(table.refiner) >= {"stig:strength=0.5", "stig", "spectral-match:strength=0.5", "spectral-match"}
    assert (table.n == 1).all()
    assert "## Strength sweeps" in (cmp.out_dir / "comparison.md").read_text()
    assert 'id="sweeps"' in (cmp.out_dir / "comparison.html").read_text()


# -- comparisons at equal image cost -------------------------------------------------------------------
def test_interpolate_at_never_extrapolates():
    xs, ys = [27.0, 35.0, 45.0], [0.1, 0.3, 0.4]
    assert interpolate_at(30.0, xs, ys) == pytest.approx(0.1 + 3 / 8 * 0.2)
    assert interpolate_at(45.0, xs[::-1], ys[::-1]) == pytest.approx(0.4)  # unsorted input, at an end
    assert interpolate_at(26.9, xs, ys) is None and interpolate_at(45.1, xs, ys) is None
    assert interpolate_at(30.0, [27.0, float("nan"), 35.0], [0.1, 0.2, 0.3]) == pytest.approx(0.1 + 3 / 8 * 0.2)
    assert interpolate_at(30.0, [30.0], [1.0]) is None  # one point is no sweep


def test_equal_cost_table_interpolates_or_says_outside():
    rows = [("stig", 0.5, 40.0, 0.02, 0.30, 0.2), ("stig", 1.0, 32.0, 0.01, 0.10, 0.6),
            ("spectral-match", 0.2, 45.0, 0.09, 0.45, 0.0), ("spectral-match", 0.5, 35.0, 0.05, 0.40, 0.1),
            ("spectral-match", 1.0, 27.0, 0.03, 0.30, 0.3)]
    table = pd.DataFrame([{"attack": a, "strength": s, "refiner": a if s == 1 else f"{a}:strength={s:g}", "psnr": p,
                           "ssim": 0.9, "lfd": lfd_, "evasion": e, "asr": asr, "working": 3}
                          for a, s, p, lfd_, e, asr in rows])
    equal = equal_cost_table(table).set_index(["attack", "against"])
    hit = equal.loc[("stig", "spectral-match")]
    assert hit["lfd_against"] == pytest.approx(0.03 + 5 / 8 * 0.02)  # 32 dB between 27 and 35 dB
    assert hit["evasion_against"] == pytest.approx(0.30 + 5 / 8 * 0.10) and hit["lfd"] == 0.01 and hit["note"] == ""
    out = equal.loc[("spectral-match", "stig")]  # 27 dB: below stig's sweep (32-40 dB)
    assert np.isnan(out["lfd_against"]) and out["note"] == "outside the sweep (32.0–40.0 dB)"
    lines = equal_cost_lines(equal_cost_table(table))
    assert lines[0].startswith("At stig's PSNR (32.0 dB): spectral-match (interpolated on its sweep) evasion 0.363")
    assert "outside the sweep (32.0–40.0 dB), not extrapolated" in lines[1]


def test_set_strength_is_carried_in_the_display_name(tiny_dataset, tmp_path):
    cfg = RunConfig(real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"), refiners="spectral-match,blur:2",
                    refiner_params={"spectral-match": {"strength": 0.5}}, detectors="durall", out=str(tmp_path))
    plan = resolve(cfg)
    assert [c.display for c in plan.refiners] == ["spectral-match:strength=0.5", "blur:2"]
    # the saved configuration (refiners by display name, the --set value kept) resolves again
    saved = dataclasses.replace(cfg, refiners=",".join(c.display for c in plan.refiners))
    assert [c.display for c in resolve(saved).refiners] == ["spectral-match:strength=0.5", "blur:2"]
    with pytest.raises(ValueError, match="set both"):
        resolve(dataclasses.replace(saved, refiner_params={"spectral-match": {"strength": 0.2}}))


@pytest.mark.heavy
def test_a_failing_fit_is_tried_once_per_sweep(tiny_dataset, tmp_path):
    from stigbench.attacks.registry import REFINERS, register_refiner
    from stigbench.pipeline.runner import run_benchmark

    calls = []

    @register_refiner("broken-sweep-test", paper="none (test)", kind="training-free")
    class Broken:
        refine_params = ("strength",)
        param_grids = {"strength": (0.5, 1.0)}

        def __init__(self, strength: float = 1.0) -> None:
            self.strength = strength

        def fit(self, fake_set, real_set):
            calls.append(self.strength)
            raise RuntimeError("boom")

        def refine(self, image_set):
            return image_set

        def save(self, path):
            pass

        @classmethod
        def load(cls, path):
            return cls()

    try:
        res = run_benchmark(RunConfig(real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"),
                                      refiners="broken-sweep-test:strength=*", detectors="durall", n_boot=0,
                                      quality=False, out=str(tmp_path / "runs"), cache_dir=str(tmp_path / "stages"),
                                      progress=False))
    finally:
        REFINERS.remove("broken-sweep-test")
    assert calls == [1.0]  # fitted at the default strength, once for both points
    assert set(res.errors) == {"refiner:broken-sweep-test:strength=0.5", "refiner:broken-sweep-test"}


def test_a_sweep_gets_one_seed_note(tiny_dataset, tmp_path):
    cfg = RunConfig(real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"), refiners="stig:strength=*",
                    detectors="durall", out=str(tmp_path))
    assert len([n for n in resolve(cfg).notes if "replaces the seed" in n]) == 1
