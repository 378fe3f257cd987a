"""Gradient attacks in a run (issue #24): the plan's checks, the attack stage, the threat-model columns,
the deployed-detector metrics and how the reports read a white-box attack's own target."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stigbench.core.config import RunConfig
from stigbench.evaluation.rows import METRIC_COLUMNS, THREAT_COLUMNS, with_threat_model
from stigbench.evaluation.sweep import full_strength, sweep_point
from stigbench.attacks.white_box import format_eps
from stigbench.pipeline.attack_specs import resolve_attack_specs
from stigbench.pipeline.plan import PlanError, resolve
from stigbench.pipeline.runner import run_benchmark
from stigbench.reporting.run.detection_table import OVER_CORRECTION, OWN_TARGET, summarize


@pytest.fixture
def base(tiny_dataset, tmp_path) -> RunConfig:
    return RunConfig(real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"), refiners="",
                     detectors="durall,dzanic", n_boot=0, quality=False, out=str(tmp_path / "runs"),
                     cache_dir=str(tmp_path / "stages"), progress=False)


# -- the --attack value and the plan -------------------------------------------------------------------
def test_attack_specs_expand_and_name_canonically():
    specs = resolve_attack_specs("pgd:eps=*, apgd:loss=margin:target=durall, pgd:eps=0.0156862745098")
    assert [s.display() for s in specs] == ["pgd:eps=1/255", "pgd:eps=2/255", "pgd:eps=4/255", "pgd:eps=8/255",
                                            "apgd:loss=margin:target=durall"]
    assert specs[2].params == {"eps": pytest.approx(4 / 255)}
    assert specs[4].target == "durall" and "target" not in specs[4].params
    assert format_eps(0.1, "linf") == "0.1" and format_eps(8 / 255, "linf") == "8/255"


@pytest.mark.parametrize("attack, message", [
    ("pgd:eps=2", "eps"),
    ("pgd:eps=-1/255", "eps"),
    ("pgd:steps=0", "steps"),
    ("pgd:norm=l3", "norm"),
    ("pgd:target=peaks", "not a detector of this run"),
    ("pgd:epss=0.1", "did you mean 'eps'"),
    ("pdg", "pgd"),
])
def test_bad_attacks_fail_in_the_plan(base, attack, message):
    with pytest.raises(PlanError, match=message):
        resolve(dataclasses.replace(base, attacks=attack))


def test_a_white_box_attack_needs_a_torch_path(base):
    knn = dataclasses.replace(base, detector_params={"dzanic": {"classifier": "knn"}})
    with pytest.raises(PlanError, match=r"attack 'pgd:target=dzanic'.*dzanic.*has none: .*k-NN"):
        resolve(dataclasses.replace(knn, attacks="pgd:target=dzanic"))
    plan = resolve(dataclasses.replace(knn, attacks="pgd:eps=*"))
    assert [c.display for c in plan.attacks] == [f"pgd:eps={k}/255:target=durall" for k in (1, 2, 4, 8)]
    assert any("skips the detectors without a torch path: dzanic" in n for n in plan.notes)
    only_knn = dataclasses.replace(knn, detectors="dzanic")
    with pytest.raises(PlanError, match="no detector of this run has a torch path"):
        resolve(dataclasses.replace(only_knn, attacks="pgd"))


def test_the_plan_says_what_the_adaptive_defender_does_with_attacked_sets(base):
    notes = resolve(dataclasses.replace(base, attacks="pgd", perturb="jpeg:75", refiners="blur:1",
                                        adaptive=True)).notes
    assert any("--adaptive retrains on refined fakes only" in n for n in notes)


def test_plan_without_attacks_is_unchanged(base):
    assert resolve(base).attacks == [] and resolve(base).to_dict()["attacks"] == {}


# -- rows and reports (pure) ------------------------------------------------------------------------
def test_threat_model_columns_fill_attack_rows_only():
    rows = pd.DataFrame([{"refiner": "pgd:eps=4/255:target=durall", "metric": "auc"},
                         {"refiner": "stig", "metric": "auc"}, {"refiner": "", "metric": "auc"}])
    attacks = pd.DataFrame([{"refiner": "pgd:eps=4/255:target=durall", "attack": "pgd", "knowledge": "white-box",
                             "target": "durall", "budget": "linf 4/255", "direction": "fake→real"}])
    out = with_threat_model(rows, attacks)
    assert out.loc[0, THREAT_COLUMNS].tolist() == ["white-box", "durall", "linf 4/255", "fake→real"]
    assert (out.loc[1:, THREAT_COLUMNS] == "").all().all()
    assert (with_threat_model(rows, pd.DataFrame(columns=["refiner", *THREAT_COLUMNS]))[THREAT_COLUMNS] == "").all().all()
    assert METRIC_COLUMNS[-4:] == THREAT_COLUMNS


def test_gradient_attacks_sweep_over_their_budget():
    assert sweep_point("pgd:eps=4/255:target=durall") == ("pgd:target=durall", pytest.approx(4 / 255))
    assert sweep_point("apgd:eps=0.03") == ("apgd", pytest.approx(0.03))
    assert sweep_point("stig:strength=0.5") == ("stig", 0.5)
    assert full_strength("refined:pgd:eps=4/255:target=durall") and not full_strength("refined:stig:strength=0.5")


def _auc_rows(auc_of: dict[tuple[str, str], float]) -> pd.DataFrame:
    rows = []
    for (refiner, detector), auc in auc_of.items():
        threat = (["white-box", "durall", "linf 4/255", "fake→real"] if refiner.startswith("pgd")
                  else ["", "", "", ""])
        rows.append({"dataset": "d", "test_dataset": "d", "seed": 0, "refiner": refiner, "detector": detector,
                     "trained_on": "fake", "condition": "refined" if refiner else "fake", "perturbation": "none",
                     "metric": "auc", "value": auc, "ci_low": auc - 0.02, "ci_high": auc + 0.02,
                     **dict(zip(THREAT_COLUMNS, threat))})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def test_white_box_target_below_chance_reads_as_success_not_over_correction():
    attack = "pgd:eps=4/255:target=durall"
    table = summarize(_auc_rows({("", "durall"): 0.9, ("", "peaks"): 0.9, (attack, "durall"): 0.1,
                                 (attack, "peaks"): 0.1, ("stig", "durall"): 0.1}))
    note = dict(zip(zip(table["condition"], table["detector"]), table["note"]))
    assert note[(f"refined:{attack}", "durall")] == OWN_TARGET
    assert OVER_CORRECTION in note[(f"refined:{attack}", "peaks")]  # not its target: the refiners' rule
    assert OVER_CORRECTION in note[("refined:stig", "durall")]


# -- a run -------------------------------------------------------------------------------------------
@pytest.mark.heavy
def test_run_with_pgd_writes_threat_model_and_stored_sets_within_budget(base):
    cfg = dataclasses.replace(base, attacks="pgd:eps=8/255", detectors="durall,spectrum-cnn", perturb="jpeg:90",
                              detector_params={"spectrum-cnn": {"epochs": 2}})
    result = run_benchmark(cfg)
    m, run_dir = result.metrics, result.run_dir
    assert not result.errors
    names = {f"pgd:eps=8/255:target={d}" for d in ("durall", "spectrum-cnn")}
    attacks = pd.read_csv(run_dir / "gradient_attacks.csv", keep_default_na=False)
    assert set(attacks.refiner) == names
    assert set(attacks.budget) == {"linf 8/255"} and set(attacks.direction) == {"fake→real"}
    rows = m[m.refiner.isin(names)]
    assert set(rows.knowledge) == {"white-box"} and set(rows.detector) >= {"durall", "spectrum-cnn"}
    assert (m.loc[~m.refiner.isin(names), THREAT_COLUMNS] == "").all().all()
    # attacked sets go through --perturb like refined ones: does the attack survive JPEG 90?
    assert set(rows[rows.metric == "auc"].perturbation) == {"none", "jpeg:90"}
    assert set(rows[(rows.metric == "lfd")].perturbation) == {"none", "jpeg:90"}
    rows = rows[rows.perturbation == "none"]
    # every detector scores every attacked set; the target gets its ASR
    auc = rows[(rows.metric == "auc")]
    assert len(auc) == 4
    asr = rows[(rows.metric == "asr") & (rows.detector == rows.target)]
    assert len(asr) == 2 and (asr.value > 0.5).all(), asr
    fake_auc = m[(m.metric == "auc") & (m.condition == "fake") & (m.perturbation == "none")].set_index("detector").value
    target_auc = auc[auc.detector == auc.target].set_index("detector").value
    assert (target_auc < fake_auc.loc[target_auc.index]).all()
    # PSNR/SSIM/LFD rows for the attacked sets, the examples, and the run record
    assert {"psnr", "ssim", "lfd"} <= set(m[m.refiner.isin(names) & (m.detector == "") & (m.perturbation == "none")].metric)
    assert (run_dir / "examples" / "refined-pgd_eps=8_255_target=durall").is_dir()
    # the stored attacked images are 8-bit and within the budget around the test fakes
    stages = sorted(Path(cfg.cache_dir).glob("attacked/*/images.npy"))
    assert len(stages) == 2
    split = pd.read_csv(run_dir / "split.csv")
    test_fakes = split[(split.label == "fake") & (split.part == "test")].path.tolist()
    from stigbench.core.imageset import FileImageSet

    fakes = FileImageSet(test_fakes, size=32).to_array().astype(np.int16)
    for stage in stages:
        stored = np.load(stage).astype(np.int16)
        assert stored.shape == fakes.shape
        assert np.abs(stored - fakes).max() <= 8 and np.abs(stored - fakes).max() >= 1
    # deployed metrics: too few validation reals for 1 % FPR here, so no number is printed
    durall = m[(m.detector == "durall") & (m.condition == "fake") & (m.perturbation == "none")].set_index("metric").value
    assert durall["val_reals"] < 100 and math.isnan(durall["tpr_at_fpr1"]) and math.isnan(durall["tpr_at_fpr01"])
    assert {"balanced_acc", "ece", "ece_balanced"} <= set(durall.index)
    # a second run reuses the attacked sets
    again = run_benchmark(cfg)
    assert again.stage_misses == 0
    pd.testing.assert_frame_equal(again.metrics.reset_index(drop=True), m.reset_index(drop=True))


def _deployed_rows(dataset: str, tpr1: float, asr: float) -> pd.DataFrame:
    attack = "pgd:eps=4/255:target=a"
    threat = dict(zip(THREAT_COLUMNS, ["white-box", "a", "linf 4/255", "fake→real"]))
    rows = []
    for refiner, auc in (("", 0.9), (attack, 0.2)):
        values = {"auc": auc, "tpr_at_fpr1": tpr1 if not refiner else tpr1 / 2, "tpr_at_fpr01": math.nan,
                  "balanced_acc": 0.8, "ece": 0.1, "val_reals": 120.0, **({"asr": asr} if refiner else {})}
        for metric, value in values.items():
            rows.append({"dataset": dataset, "test_dataset": dataset, "seed": 0, "refiner": refiner, "detector": "a",
                         "trained_on": "fake", "condition": "refined" if refiner else "fake", "perturbation": "none",
                         "metric": metric, "value": value, "ci_low": value - 0.05 if metric == "auc" else math.nan,
                         "ci_high": value + 0.05 if metric == "auc" else math.nan,
                         **(threat if refiner else dict.fromkeys(THREAT_COLUMNS, ""))})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def test_leaderboard_averages_the_deployed_metrics_and_never_prints_an_unmeasurable_tpr():
    from types import SimpleNamespace

    from stigbench.reporting.compare.leaderboard import NOT_MEASURABLE, attack_detail_table, leaderboard

    runs = [SimpleNamespace(metrics=_deployed_rows("x", 0.8, 1.0)), SimpleNamespace(metrics=_deployed_rows("y", 0.6, 0.8))]
    board = leaderboard(runs, {0: "x", 1: "y"})
    fake = board[board.attack == ""].iloc[0]
    after = board[board.attack != ""].iloc[0]
    assert fake.tpr_at_fpr1 == pytest.approx(0.7) and after.tpr_at_fpr1 == pytest.approx(0.35)
    assert after.asr == pytest.approx(0.9) and math.isnan(after.tpr_at_fpr01)
    detail = attack_detail_table(board)
    assert detail["ASR"].iloc[0].startswith("0.900") and detail["TPR@0.1%FPR(val)"].iloc[0] == NOT_MEASURABLE


def test_the_deployed_table_says_not_measurable_with_the_count():
    from stigbench.reporting.run.deployed_table import deployed_table, display_deployed

    table = deployed_table(_deployed_rows("x", 0.8, 1.0))
    assert list(table.condition) == ["fake", "refined:pgd:eps=4/255:target=a"]
    shown = display_deployed(table)
    assert shown["TPR@0.1%FPR(val)"].tolist() == ["not measurable (120 val reals < 1000)"] * 2
    assert shown["TPR@1%FPR(val)"].tolist() == ["0.800", "0.400"]
    assert "test FPR@0.1%" not in shown  # no row can measure it: the TPR column already says why
    assert shown["target"].tolist() == ["", "a"] and shown["ASR"].tolist() == ["", "1.000"]
    older = table.drop(columns=[c for c in table if c.startswith("false_alarm")])  # deployed.csv of an older run
    assert display_deployed(older).columns.tolist() == shown.columns.tolist()


def test_set_on_an_attack_points_to_its_attack_item():
    from click.testing import CliRunner

    from stigbench.cli import main

    result = CliRunner().invoke(main, ["run", "--dataset", "demo-gan", "--attack", "pgd", "--set", "pgd.steps=20"])
    assert result.exit_code != 0 and "'pgd' is an attack: give its parameters in --attack ('pgd:steps=20')" in result.output


def test_stig_pgd_starts_from_the_runs_stig(base):
    specs = resolve_attack_specs("stig+pgd:eps=2/255, pgd:start=spectral-match")
    assert [(s.display(), s.start) for s in specs] == [("stig+pgd:eps=2/255", "stig"),
                                                       ("pgd:start=spectral-match", "spectral-match")]
    with pytest.raises(PlanError, match="starts from the fakes refined by 'stig', which is not a refiner of this run"):
        resolve(dataclasses.replace(base, attacks="stig+pgd", refiners="spectral-match"))
    plan = resolve(dataclasses.replace(base, attacks="stig+pgd:target=durall", refiners="stig"))
    assert [(c.display, c.start) for c in plan.attacks] == [("stig+pgd:target=durall", "stig")]


@pytest.mark.heavy
def test_an_attack_started_from_a_refiner_is_centred_on_its_output(base):
    cfg = dataclasses.replace(base, refiners="spectral-match", detectors="durall",
                              attacks="pgd:eps=2/255:start=spectral-match")
    result = run_benchmark(cfg)
    assert not result.errors
    name = "pgd:eps=2/255:start=spectral-match:target=durall"
    attacks = pd.read_csv(result.run_dir / "gradient_attacks.csv", keep_default_na=False)
    assert attacks.set_index("refiner").loc[name, "budget"] == "linf 2/255 around spectral-match"
    refined = np.load(next(Path(cfg.cache_dir).glob("refined/spectral-match-test-*/images.npy"))).astype(np.int16)
    attacked = np.load(next(Path(cfg.cache_dir).glob("attacked/*/images.npy"))).astype(np.int16)
    assert 1 <= np.abs(attacked - refined).max() <= 2  # the ball is centred on the refined fakes
    psnr = result.metrics[(result.metrics.metric == "psnr")].set_index("refiner").value
    assert psnr[name] < psnr["spectral-match"]  # measured against the original fakes: both steps' cost


def test_attack_reals_needs_an_attack(base):
    with pytest.raises(PlanError, match="--attack-reals .* give at least one attack"):
        resolve(dataclasses.replace(base, attack_reals=True))


@pytest.mark.heavy
def test_attacks_on_reals_raise_the_false_alarm_rate(base):
    cfg = dataclasses.replace(base, detectors="durall", attacks="pgd:eps=8/255", attack_reals=True)
    result = run_benchmark(cfg)
    assert not result.errors
    m = result.metrics
    reals = m[m.condition == "real-attacked"]
    assert set(reals.refiner) == {"pgd:eps=8/255:target=durall"} and set(reals.direction) == {"real→fake"}
    fakes = m[(m.condition == "refined") & (m.detector == "durall")]
    assert set(fakes.direction) == {"fake→real"}
    far = reals[reals.metric == "false_alarm"].value.iloc[0]
    clean_far = 1 - m[(m.condition == "fake") & (m.metric == "acc_real")].value.iloc[0]
    assert far > clean_far and far >= 0.5, (far, clean_far)
    auc = reals[reals.metric == "auc"].value.iloc[0]
    assert auc < m[(m.condition == "fake") & (m.metric == "auc")].value.iloc[0]
    table = summarize(m)
    assert OWN_TARGET in table.set_index("condition").loc["real-attacked:pgd:eps=8/255:target=durall", "note"]
    cost = reals[reals.detector == ""].set_index("metric").value  # against the reals they were made from
    assert 25 < cost["psnr"] < 60 and 0 < cost["ssim"] < 1


def test_transfer_attacks_name_their_surrogates_and_fail_on_bad_ones(base):
    plan = resolve(dataclasses.replace(base, attacks="pgd:eps=2/255:surrogate=spectrum-cnn+durall"))
    (attack,) = plan.attacks
    assert attack.display == "pgd:eps=2/255:surrogate=spectrum-cnn+durall" and "target" not in attack.params
    assert [(c.name, c.kwargs["seed"]) for c in attack.surrogates] == [("spectrum-cnn", 1000), ("durall", 1000)]
    for bad, message in (("pgd:surrogate=durral", "did you mean 'durall'"), ("pgd:surrogate=+", "empty name"),
                         ("pgd:surrogate=durall:target=durall", "takes no target"),
                         ("pgd:surrogate=durall+durall", "named twice")):
        with pytest.raises(PlanError, match=message):
            resolve(dataclasses.replace(base, attacks=bad))


@pytest.mark.heavy
def test_a_transfer_attack_is_crafted_on_the_attackers_own_fit(base):
    cfg = dataclasses.replace(base, detectors="durall,dzanic", attacks="pgd:eps=8/255:surrogate=durall")
    result = run_benchmark(cfg)
    assert not result.errors
    name = "pgd:eps=8/255:surrogate=durall"
    rows = result.metrics[result.metrics.refiner == name]
    assert set(rows.knowledge) == {"transfer"} and set(rows.target) == {"durall"}
    assert set(rows[rows.metric == "auc"].detector) == {"durall", "dzanic"}  # every detector scores it
    (surrogate,) = Path(cfg.cache_dir).glob("surrogate/*/stage.json")
    assert json.loads(surrogate.read_text())["params"]["seed"] == 1000  # the attacker's seed, never the defender's
    defender = json.loads((result.run_dir / "run.json").read_text())["detectors"]["durall"]
    assert defender["params"]["seed"] == 0
    # durall's AUC falls although the attack never saw the defender's durall
    auc = rows[(rows.metric == "auc") & (rows.detector == "durall")].value.iloc[0]
    fake = result.metrics[(result.metrics.condition == "fake") & (result.metrics.metric == "auc")
                          & (result.metrics.detector == "durall")].value.iloc[0]
    assert auc < fake


@pytest.mark.heavy
def test_query_and_spectral_attacks_run_where_their_knowledge_allows(base):
    knn = {"dzanic": {"classifier": "knn"}}
    cfg = dataclasses.replace(base, detectors="dzanic", detector_params=knn,
                              attacks="square:eps=8/255:queries=60,spectral-pgd:eps=0.2:target=durall")
    with pytest.raises(PlanError, match="not a detector of this run"):
        resolve(cfg)
    cfg = dataclasses.replace(cfg, detectors="dzanic,durall")
    result = run_benchmark(cfg)
    assert not result.errors
    attacks = pd.read_csv(result.run_dir / "gradient_attacks.csv", keep_default_na=False).set_index("refiner")
    # the k-NN dzanic has no gradient, but a query attack reads its scores
    assert attacks.loc["square:eps=8/255:queries=60:target=dzanic", "knowledge"] == "query"
    assert attacks.loc["square:eps=8/255:queries=60:target=dzanic", "budget"] == "linf 8/255, 60 queries"
    assert attacks.loc["spectral-pgd:eps=0.2:target=durall", "budget"] == "log-magnitude linf 0.2"
    record = json.loads((result.run_dir / "run.json").read_text())["attacks"]
    assert 1 <= record["square:eps=8/255:queries=60:target=dzanic"]["mean_queries"] <= 60
    psnr = result.metrics[result.metrics.metric == "psnr"].set_index("refiner").value
    assert psnr["spectral-pgd:eps=0.2:target=durall"] < 60  # the spectral attack changed the images


def test_the_transfer_matrix_has_one_row_per_model_crafted_on(tmp_path):
    from stigbench.reporting.run.transfer import transfer_matrices, transfer_plot, transfer_table

    rows = []
    for refiner, knowledge, target in (("pgd:eps=4/255:target=a", "white-box", "a"),
                                       ("pgd:eps=4/255:target=b", "white-box", "b"),
                                       ("pgd:eps=4/255:surrogate=a+b", "transfer", "a+b"),
                                       ("apgd:eps=4/255:target=a", "white-box", "a")):
        for detector in ("a", "b"):
            own = target == detector and knowledge == "white-box"
            for metric, value in (("asr", 1.0 if own else 0.25), ("auc", 0.1 if own else 0.8)):
                rows.append({"dataset": "d", "test_dataset": "d", "seed": 0, "refiner": refiner, "detector": detector,
                             "trained_on": "fake", "condition": "refined", "perturbation": "none", "metric": metric,
                             "value": value, "ci_low": math.nan, "ci_high": math.nan, "knowledge": knowledge,
                             "target": target, "budget": "linf 4/255", "direction": "fake→real"})
    table = transfer_table(pd.DataFrame(rows, columns=METRIC_COLUMNS))
    matrices = transfer_matrices(table)
    assert list(matrices) == ["pgd:eps=4/255 (linf 4/255)"]  # apgd was crafted on one model only: no matrix
    matrix = matrices["pgd:eps=4/255 (linf 4/255)"]
    assert list(matrix.index) == ["a", "b", "surrogate a+b"] and list(matrix.columns) == ["a", "b"]
    assert np.diag(matrix.to_numpy()[:2]).tolist() == [1.0, 1.0] and matrix.loc["surrogate a+b"].tolist() == [0.25] * 2
    assert transfer_plot(table, tmp_path / "transfer.png") and (tmp_path / "transfer.png").stat().st_size > 0


def test_a_comparison_averages_the_transfer_matrix_over_each_groups_seeds():
    from stigbench.reporting.run.transfer import group_transfer_table, transfer_matrices

    def table(asr: float) -> pd.DataFrame:
        return pd.DataFrame({"family": ["pgd:eps=4/255"] * 4, "budget": ["linf 4/255"] * 4,
                             "knowledge": ["white-box"] * 4, "crafted_on": ["a", "a", "b", "b"],
                             "refiner": ["pgd:eps=4/255:target=a"] * 2 + ["pgd:eps=4/255:target=b"] * 2,
                             "detector": ["a", "b", "a", "b"], "asr": [1.0, asr, asr, 1.0], "auc": [0.0, 0.9, 0.9, 0.0]})

    grouped = group_transfer_table([("x", table(0.2)), ("x", table(0.4)), ("y", table(0.0))])
    matrices = transfer_matrices(grouped)
    assert list(matrices) == ["x: pgd:eps=4/255 (linf 4/255)", "y: pgd:eps=4/255 (linf 4/255)"]
    assert matrices["x: pgd:eps=4/255 (linf 4/255)"].loc["a", "b"] == pytest.approx(0.3)


def test_a_small_budget_is_not_an_inactive_attack():
    from stigbench.evaluation.evidence import inactive_attacks

    def psnr_rows(value: float, knowledge: str) -> pd.DataFrame:
        return pd.DataFrame([{"refiner": "pgd:eps=1/255:target=a", "metric": "psnr", "condition": "refined",
                              "value": value, "knowledge": knowledge}])

    assert inactive_attacks(psnr_rows(50.5, "white-box"), {}) == {}  # 1/255 keeps every image above 48 dB
    assert "unchanged" in inactive_attacks(psnr_rows(120.0, "white-box"), {})["pgd:eps=1/255:target=a"]
    assert "unchanged" in inactive_attacks(psnr_rows(50.5, ""), {})["pgd:eps=1/255:target=a"]  # a refiner's rule


@pytest.mark.parametrize("attack, message", [("spectral-pgd:eps=3", "eps"), ("spectral-pgd:eps=0", "eps"),
                                             ("square:queries=0", "queries"), ("pgd:surrogate=", "expected .pgd:<param>=<value>.")])
def test_bad_part_2_attacks_fail_in_the_plan(base, attack, message):
    with pytest.raises(PlanError, match=message):
        resolve(dataclasses.replace(base, attacks=attack))


def test_the_report_leads_with_the_refiners_and_one_line_for_gradient_attacks():
    from stigbench.evaluation.evidence import moves
    from stigbench.reporting.run.metrics_csv import clean_metrics
    from stigbench.reporting.run.report import _lead

    attack = "pgd:eps=4/255:target=durall"
    m = clean_metrics(_auc_rows({("", "durall"): 0.9, (attack, "durall"): 0.1, ("stig", "durall"): 0.6}))
    asr = m.iloc[[1]].assign(metric="asr", value=1.0)
    m = pd.concat([m, asr], ignore_index=True)
    lead = _lead(m, moves(m), {})
    first, second = lead.split("\n\n")
    assert "stig:" in first and attack not in first
    assert second.startswith("Gradient attacks: 1 attacked set(s) (white-box); ASR on their own targets 1.00–1.00")


def test_own_target_rows_are_white_box_or_query_never_transfer():
    from stigbench.evaluation.rows import on_own_target

    rows = pd.DataFrame({"knowledge": ["white-box", "query", "transfer", "white-box", ""],
                         "target": ["a", "a", "a", "a", ""], "detector": ["a", "a", "a", "b", "a"]})
    assert on_own_target(rows).tolist() == [True, True, False, False, False]
    assert not on_own_target(rows.drop(columns="knowledge")).any()  # an older run's rows
