"""Runner features beyond the basic run: attacks, perturbations, the adaptive defender, the stage
cache and resumable grids."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from stigbench.pipeline.grid import run_grid
from stigbench.core.config import RunConfig
from stigbench.pipeline.runner import run_benchmark


@pytest.fixture
def base(tiny_dataset, tmp_path) -> RunConfig:
    return RunConfig(real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"), refiners="spectral-match",
                     detectors="durall", n_boot=0, quality=False, out=str(tmp_path / "runs"),
                     cache_dir=str(tmp_path / "stages"), progress=False)


@pytest.mark.heavy
def test_attacks_perturbations_and_fidelity_rows(base):
    cfg = dataclasses.replace(base, refiners="spectral-match,blur:1", perturb="jpeg:75,blur:1+jpeg:50")
    m = run_benchmark(cfg).metrics
    det = m[m.detector == "durall"]
    assert set(det.perturbation) == {"none", "jpeg:75", "blur:1+jpeg:50"}
    assert set(det.refiner) == {"", "spectral-match", "blur:1"}
    # every perturbation is scored for every condition
    auc = det[det.metric == "auc"]
    assert len(auc) == 3 * 3
    lfd = m[m.metric == "lfd"]
    assert set(lfd.perturbation) == {"none", "jpeg:75", "blur:1+jpeg:50"}
    fid = m[m.metric.isin(["psnr", "ssim"])]
    assert set(fid.refiner) == {"spectral-match", "blur:1"}
    psnr_blur = float(fid[(fid.refiner == "blur:1") & (fid.metric == "psnr")].value.iloc[0])
    assert 15 < psnr_blur < 60
    # perturbations reach the detector: the same test images score differently after JPEG
    scores = pd.read_csv(next(Path(cfg.out).glob("*/*")) / "scores.csv", keep_default_na=False)
    assert set(scores.perturbation) == {"none", "jpeg:75", "blur:1+jpeg:50"}
    fake = scores[(scores.condition == "fake")]
    clean = fake[fake.perturbation == "none"].set_index("path").score
    jpeg = fake[fake.perturbation == "jpeg:75"].set_index("path").score
    assert (clean - jpeg.loc[clean.index]).abs().max() > 1e-3


@pytest.mark.heavy
def test_adaptive_defender_rows(base):
    m = run_benchmark(dataclasses.replace(base, adaptive=True)).metrics
    ad = m[(m.trained_on == "refined")]
    assert set(ad.detector) == {"durall"} and set(ad.condition) == {"refined"}
    assert set(ad.refiner) == {"spectral-match"} and set(ad.perturbation) == {"none"}
    assert {"auc", "acc"} <= set(ad.metric)


@pytest.mark.heavy
def test_stage_cache_recomputes_only_what_is_new(base):
    first = run_benchmark(base)
    assert first.stage_hits == 0 and first.stage_misses > 0
    again = run_benchmark(dataclasses.replace(base, detectors="durall,durall-svm"))
    # refiner fit, refined set, durall fit and its scores are reused; only durall-svm is new
    assert again.stage_hits == first.stage_misses
    assert again.stage_misses > 0
    m1, m2 = first.metrics, again.metrics
    pd.testing.assert_frame_equal(m1[m1.detector == "durall"].reset_index(drop=True),
                                  m2[m2.detector == "durall"].reset_index(drop=True))
    changed = run_benchmark(dataclasses.replace(base, refiner_params={"spectral-match": {"strength": 0.5}}))
    # a new refiner parameter invalidates the refiner and everything downstream of it, not durall's fit
    assert changed.stage_hits >= 2  # the detector fit and its scores on the unrefined sets


@pytest.mark.heavy
def test_no_cache_leaves_nothing_behind(base, tmp_path):
    cfg = dataclasses.replace(base, cache=False, cache_dir=str(tmp_path / "unused"))
    res = run_benchmark(cfg)
    assert res.stage_hits == 0 and not (tmp_path / "unused").exists()


@pytest.mark.heavy
def test_grid_interrupted_and_resumed(base, tiny_dataset, tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("tinya", "tinyb"):
        (specs / f"{name}.toml").write_text(f'name = "{name}"\nroot = "{tiny_dataset}"\n')
    cfg = dataclasses.replace(base, real=None, fake=None, spec_dirs=[str(specs)])
    calls: list[tuple[str, int]] = []

    def flaky(c: RunConfig):
        calls.append((c.dataset, c.seed))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the second cell
        return run_benchmark(c)

    out = tmp_path / "grid"
    with pytest.raises(KeyboardInterrupt):
        run_grid(["tinya", "tinyb"], [0], out, cfg, run=flaky)
    calls.clear()
    result = run_grid(["tinya", "tinyb"], [0], out, cfg, run=lambda c: calls.append((c.dataset, c.seed)) or run_benchmark(c))
    assert calls == [("tinyb", 0)]
    assert result.skipped == ["tinya/seed0"] and result.ran == ["tinyb/seed0"]
    assert all((d / "metrics.csv").is_file() for d in result.run_dirs.values())
    with pytest.raises(ValueError, match="other settings"):
        run_grid(["tinya"], [0], out, dataclasses.replace(cfg, detectors="durall-svm"))


@pytest.mark.heavy
def test_failing_refiner_is_reported_and_others_kept(base, tmp_path):
    plugin = tmp_path / "bad_refiner.py"
    plugin.write_text('''
from stigbench import register_refiner

@register_refiner("broken-test-refiner", paper="none (test)", kind="training-free")
class Broken:
    def fit(self, fake_set, real_set):
        raise RuntimeError("boom")
    def refine(self, image_set):
        raise RuntimeError("boom")
    def save(self, path):
        pass
    @classmethod
    def load(cls, path):
        return cls()
''')
    from stigbench.attacks.registry import REFINERS
    from stigbench.core.plugins import load_plugin_file

    load_plugin_file(plugin)
    try:
        res = run_benchmark(dataclasses.replace(base, refiners="spectral-match,broken-test-refiner"))
        assert "refiner:broken-test-refiner" in res.errors and "boom" in res.errors["refiner:broken-test-refiner"]
        assert set(res.metrics.refiner) == {"", "spectral-match"}
    finally:
        REFINERS.remove("broken-test-refiner")


def test_bad_config_fails_before_work(base, tmp_path):
    with pytest.raises(ValueError, match="jpeg"):
        run_benchmark(dataclasses.replace(base, perturb="jpeg:500"))
    with pytest.raises(KeyError, match="did you mean"):
        run_benchmark(dataclasses.replace(base, perturb="jpge:50"))
    with pytest.raises(ValueError, match="both by --set and by the short form"):
        run_benchmark(dataclasses.replace(base, refiners="blur:2", refiner_params={"blur": {"sigma": 1.0}}))
    with pytest.raises(ValueError, match="needs at least one refiner"):
        run_benchmark(dataclasses.replace(base, refiners="", adaptive=True))
    assert not (Path(base.out)).exists()


@pytest.mark.heavy
def test_fit_refiners_on_test_is_transductive(base, tmp_path):
    """--fit-refiners-on test: a recording refiner is fitted on the test fakes (and training reals) and
    refines those same fakes; the setting is part of the refiner stage's key, config and reports."""
    from stigbench.attacks.registry import REFINERS, register_refiner
    from stigbench.attacks.spectral_match import SpectralMatch

    seen: dict[str, list[list[str]]] = {"fit_fake": [], "fit_real": [], "refine": []}

    class FitRecorder(SpectralMatch):
        def fit(self, fake_set, real_set):
            seen["fit_fake"].append(list(fake_set.ids))
            seen["fit_real"].append(list(real_set.ids))
            return super().fit(fake_set, real_set)

        def refine(self, image_set, store=None):
            seen["refine"].append(list(image_set.ids))
            return super().refine(image_set, store=store)

    register_refiner("fit-recorder-test", paper="none (test)", kind="training-free")(FitRecorder)
    try:
        cfg = dataclasses.replace(base, refiners="fit-recorder-test")
        train = run_benchmark(cfg)
        test = run_benchmark(dataclasses.replace(cfg, fit_refiners_on="test"))
    finally:
        REFINERS.remove("fit-recorder-test")
    split = pd.read_csv(test.run_dir / "split.csv", keep_default_na=False)
    ids = {(label, part): sorted(g.path) for (label, part), g in split.groupby(["label", "part"])}
    assert len(seen["fit_fake"]) == 2  # a new stage: the setting is in the refiner stage's key
    assert sorted(seen["fit_fake"][0]) == ids[("fake", "train")]
    assert sorted(seen["fit_fake"][1]) == ids[("fake", "test")] == sorted(seen["refine"][1])
    assert sorted(seen["fit_real"][1]) == ids[("real", "train")]  # the reals stay the training reals
    assert train.metrics.value.tolist() != test.metrics.value.tolist()
    config = json.loads((test.run_dir / "config.json").read_text())
    assert config["config"]["fit_refiners_on"] == "test" and "fit_refiners_on" in config["non_defaults"]
    assert json.loads((test.run_dir / "run.json").read_text())["refiners"]["fit-recorder-test"]["fit_fakes"] == "test"
    assert "refiners fitted on: TEST fakes + training reals (transductive" in (test.run_dir / "summary.md").read_text()
    assert "refiners fitted on: training fakes" in (train.run_dir / "summary.md").read_text()
    assert "TEST fakes + training reals" in (test.run_dir / "report.html").read_text()
    # a comparison never mixes the two settings in one group, and says why
    from stigbench.reporting.compare.comparison import compare_runs

    result = compare_runs([Path(base.out)], tmp_path / "cmp")
    assert sorted(result.groups["fit_refiners_on"]) == ["test", "train"]
    assert any("TEST fakes" in w for w in result.warnings)


def test_fit_refiners_on_is_validated(base):
    with pytest.raises(ValueError, match="fit_refiners_on must be one of train, test"):
        dataclasses.replace(base, fit_refiners_on="val")
    with pytest.raises(ValueError, match="fit_refiners_on"):
        RunConfig.from_dict({"fit_refiners_on": "all"})


def test_bad_component_values_fail_in_the_plan_naming_component_and_parameter(base):
    from stigbench.pipeline.plan import PlanError, resolve

    with pytest.raises(PlanError, match=r"refiner 'stig'.*norm"):
        resolve(dataclasses.replace(base, refiners="stig", refiner_params={"stig": {"norm": "foo"}}))
    with pytest.raises(PlanError, match=r"detector 'durall'.*no parameter\(s\) \['nope'\]"):
        resolve(dataclasses.replace(base, detector_params={"durall": {"nope": 1}}))
    with pytest.raises(PlanError, match=r"refiner 'stig' at 16x16 px.*at least 32"):
        resolve(dataclasses.replace(base, refiners="stig", size=16))
    with pytest.raises(ValueError, match="precision"):
        resolve(dataclasses.replace(base, precision="fp8"))


def test_the_plan_passes_run_settings_to_the_constructors_that_declare_them(base):
    from stigbench.pipeline.plan import resolve

    plan = resolve(dataclasses.replace(base, refiners="stig,blur:1", detectors="durall,spectrum-cnn", seed=7,
                                       precision="bf16", refiner_params={"stig": {"seed": 3}}))
    stig, blur = plan.refiners
    assert stig.kwargs["seed"] == 3 and "seed" not in stig.from_context  # --set wins over --seed
    assert stig.kwargs["precision"] == "bf16" and "seed" not in blur.kwargs
    cnn = next(d for d in plan.detectors if d.name == "spectrum-cnn")
    assert cnn.kwargs["precision"] == "bf16" and cnn.build().precision == "bf16"  # --precision reaches CNNs
    assert any("seed 3" in n for n in plan.notes)
    preset_seed = resolve(dataclasses.replace(base, refiners="stig", refiner_params={"stig": {"preset": "paper"}}))
    assert preset_seed.refiners[0].kwargs["seed"] == base.seed  # the run's seed drives every component...
    assert any("replaces the seed 42 of preset 'paper'" in n for n in preset_seed.notes)  # ...and says so


@pytest.mark.heavy
def test_a_detector_without_save_and_load_runs_uncached_with_a_note(base):
    from stigbench.detection.registry import DETECTORS, register_detector, detectors

    class FitScoreOnly:
        """Scores by mean brightness (a test double)."""

        def fit(self, train_set, labels, val_set=None, val_labels=None):
            return self

        def score(self, image_set):
            import numpy as np

            return np.array([float(x.mean()) for x in image_set.batches(8) for x in x])

    register_detector("fit-score-only-run", family="other", domain="other", paper="none (test)")(FitScoreOnly)
    try:
        detectors()
        cfg = dataclasses.replace(base, detectors="durall,fit-score-only-run")
        first, again = run_benchmark(cfg), run_benchmark(cfg)
    finally:
        DETECTORS.remove("fit-score-only-run")
    assert not first.errors and set(first.metrics.detector) >= {"durall", "fit-score-only-run"}
    record = json.loads((again.run_dir / "run.json").read_text())
    assert any("fit-score-only-run" in n and "never cached" in n for n in record["notes"])
    assert not (again.run_dir / "detectors" / "fit-score-only-run").exists()
    assert not list(Path(base.cache_dir).rglob("fit-score-only-run*"))  # nothing of it in the shared cache
    pd.testing.assert_frame_equal(first.metrics, again.metrics)


@pytest.mark.heavy
def test_the_metrics_stage_reproduces_a_runs_detection_rows_from_its_files(base):
    from stigbench.evaluation.detection import detection_rows, read_scores, read_thresholds, success_rows
    from stigbench.evaluation.rows import METRIC_COLUMNS, with_threat_model
    from stigbench.reporting.run.metrics_csv import clean_metrics, read_metrics

    res = run_benchmark(dataclasses.replace(base, n_boot=30, adaptive=True, perturb="jpeg:75"))
    scores, thresholds = read_scores(res.run_dir / "scores.csv"), read_thresholds(res.run_dir / "thresholds.csv")
    kw = {"dataset": res.metrics.dataset.iloc[0], "seed": base.seed, "n_boot": 30}
    rows = detection_rows(scores, thresholds, **kw) + success_rows(scores, thresholds, **kw)
    written = read_metrics(res.run_dir / "metrics.csv")
    written = written[written.detector != ""].reset_index(drop=True)
    # no gradient attack here (gradient_attacks.csv would fill the threat columns of their rows)
    again = clean_metrics(with_threat_model(pd.DataFrame(rows, columns=METRIC_COLUMNS), pd.DataFrame(columns=["refiner"])))
    pd.testing.assert_frame_equal(again, written)


@pytest.mark.heavy
def test_settings_declared_result_free_do_not_change_stage_keys(base, tmp_path):
    """core.settings.NON_RESULT_SETTINGS and the stage keys agree: a rerun that changes only such
    settings (the cache's own location aside) reuses every stage and writes the same metrics."""
    from stigbench.core.settings import NON_RESULT_SETTINGS

    first = run_benchmark(base)
    changed = {"out": str(tmp_path / "elsewhere"), "progress": True, "spec_dirs": [str(tmp_path)], "plugins": [],
               # hashes a saved config recorded: the stage keys hold the files' own hashes, never these
               "file_hashes": {"durall": {"weights": "0" * 64}}}
    # name: a --real/--fake dataset's display name; its rows carry it (tests/test_compare_names.py)
    assert set(changed) | {"cache", "cache_dir", "name"} == NON_RESULT_SETTINGS
    again = run_benchmark(dataclasses.replace(base, **changed))
    assert again.stage_misses == 0 and again.stage_hits == first.stage_misses
    pd.testing.assert_frame_equal(first.metrics, again.metrics)
