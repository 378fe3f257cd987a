"""Moves against chance (stigbench.evaluation.evidence) on hand-built AUC intervals, and where the reports show them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stigbench.evaluation.evidence import (
    AT_CHANCE, AWAY, DETECTOR_AT_CHANCE, EVIDENCE, NO_INTERVAL, PAST, TOWARD, UNCHANGED, adds_evidence, at_chance,
    classify_move, counts_line, move_counts, moves,
)
from stigbench.reporting.run.detection_table import OVER_CORRECTION, display_summary, summarize
from stigbench.reporting.run.metrics_csv import clean_metrics
from stigbench.evaluation.rows import METRIC_COLUMNS

FAKE = (0.80, 0.72, 0.88)  # a detector that sees the fakes: its interval excludes 0.5

# (name, fake, refined, move, evidence)
CASES = [
    ("toward", FAKE, (0.60, 0.50, 0.70), TOWARD, False),  # reaches chance: success
    ("toward, still above chance", FAKE, (0.62, 0.55, 0.69), TOWARD, False),
    ("away", FAKE, (0.96, 0.92, 0.99), AWAY, True),
    ("past, nearer than before", FAKE, (0.38, 0.30, 0.46), PAST, False),
    ("past, further than before", FAKE, (0.05, 0.02, 0.10), PAST, True),  # |d| 0.40..0.48 > 0.38
    ("overlap above", FAKE, (0.85, 0.80, 0.93), UNCHANGED, False),  # further, but the intervals overlap
    ("overlap below", FAKE, (0.74, 0.66, 0.80), UNCHANGED, False),
    ("touching", FAKE, (0.95, 0.88, 0.99), UNCHANGED, False),  # touching is overlap
    ("crossed, interval contains 0.5", FAKE, (0.45, 0.35, 0.55), TOWARD, False),
    ("at chance", (0.55, 0.45, 0.65), (0.99, 0.97, 1.00), AT_CHANCE, False),
    ("at chance, pushed below", (0.52, 0.40, 0.62), (0.05, 0.01, 0.10), AT_CHANCE, False),
    ("inverted detector, away", (0.20, 0.12, 0.28), (0.05, 0.02, 0.08), AWAY, True),  # mirrored around 0.5
    ("inverted detector, past", (0.20, 0.12, 0.28), (0.70, 0.62, 0.78), PAST, False),
    ("no interval", (0.80, np.nan, np.nan), (0.99, 0.97, 1.00), NO_INTERVAL, False),
]


@pytest.mark.parametrize("name, fake, refined, move, evidence", CASES, ids=[c[0] for c in CASES])
def test_classify_move(name, fake, refined, move, evidence):
    assert classify_move(fake, refined) == move
    assert adds_evidence(fake, refined) is evidence


def test_at_chance_bounds():
    assert at_chance(0.5, 0.7) and at_chance(0.3, 0.5) and not at_chance(0.51, 0.9)
    assert not at_chance(np.nan, 0.9)


def rows(detector: str, fake: tuple[float, float, float], refined: dict[str, tuple[float, float, float]]) -> list[dict]:
    base = {"dataset": "toy", "seed": 0, "detector": detector, "trained_on": "fake", "perturbation": "none",
            "metric": "auc"}
    out = [{**base, "refiner": "", "condition": "fake", "value": fake[0], "ci_low": fake[1], "ci_high": fake[2]}]
    for refiner, (v, lo, hi) in refined.items():
        out.append({**base, "refiner": refiner, "condition": "refined", "value": v, "ci_low": lo, "ci_high": hi})
    return out


def hand_metrics() -> pd.DataFrame:
    """Five detectors against two refiners; ``s`` moves each detector in a different way."""
    r = []
    r += rows("toward", FAKE, {"s": (0.55, 0.48, 0.62), "t": (0.81, 0.74, 0.88)})
    r += rows("away", FAKE, {"s": (0.97, 0.94, 0.99), "t": (0.80, 0.70, 0.90)})
    r += rows("past", FAKE, {"s": (0.30, 0.22, 0.38), "t": (0.60, 0.52, 0.68)})
    r += rows("chance", (0.52, 0.44, 0.60), {"s": (0.30, 0.22, 0.38), "t": (0.97, 0.95, 0.99)})
    r += rows("overlap", FAKE, {"s": (0.84, 0.77, 0.91), "t": (0.78, 0.70, 0.86)})
    return pd.DataFrame(r, columns=METRIC_COLUMNS)


def test_summary_flags_and_move_column():
    s = summarize(hand_metrics()).set_index(["detector", "condition"])
    assert s.loc[("toward", "refined:s"), "move"] == TOWARD and s.loc[("toward", "refined:s"), "note"] == ""
    assert s.loc[("away", "refined:s"), "move"] == AWAY and s.loc[("away", "refined:s"), "note"] == EVIDENCE
    assert s.loc[("past", "refined:s"), "move"] == PAST and s.loc[("past", "refined:s"), "note"] == OVER_CORRECTION
    # at chance: AUC 0.30 below 0.5 is not over-correction, 0.97 not evidence
    assert s.loc[("chance", "refined:s"), "note"] == DETECTOR_AT_CHANCE
    assert s.loc[("chance", "refined:t"), "note"] == DETECTOR_AT_CHANCE
    assert s.loc[("chance", "fake"), "note"] == DETECTOR_AT_CHANCE
    assert s.loc[("chance", "refined:s"), "move"] == AT_CHANCE
    assert s.loc[("overlap", "refined:s"), "move"] == UNCHANGED and s.loc[("overlap", "refined:s"), "note"] == ""
    assert s.loc[("toward", "fake"), "move"] == "" and s.loc[("toward", "fake"), "note"] == ""
    shown, classes = display_summary(summarize(hand_metrics()))
    assert {"move", "note"} <= set(shown.columns)
    assert classes[list(shown.index[(shown.detector == "away") & (shown.condition == "refined:s")])[0]] == "evidence"


def test_evidence_and_over_correction_together():
    m = pd.DataFrame(rows("d", FAKE, {"s": (0.05, 0.02, 0.10)}), columns=METRIC_COLUMNS)
    s = summarize(m).set_index("condition")
    assert s.loc["refined:s", "note"] == f"{EVIDENCE}; {OVER_CORRECTION}"
    assert display_summary(summarize(m))[1][1] == "over"


def test_counts_per_refiner():
    counts = move_counts(moves(clean_metrics(hand_metrics()))).set_index("refiner")
    assert counts.loc["s", [TOWARD, AWAY, PAST, UNCHANGED, AT_CHANCE]].tolist() == [1, 1, 1, 1, 1]
    assert counts.loc["s", "evidence"] == 1 and counts.loc["s", "detectors"] == 5
    assert counts.loc["t", [TOWARD, AWAY, PAST, UNCHANGED, AT_CHANCE]].tolist() == [1, 0, 0, 3, 1]
    line = counts_line(move_counts(moves(clean_metrics(hand_metrics()))))
    assert "s: 1 toward, 1 away (attack adds evidence), 1 past, 1 unchanged, 1 at chance" in line


def test_older_runs_without_intervals_are_not_flagged():
    m = hand_metrics().assign(ci_low=np.nan, ci_high=np.nan)
    s = summarize(m)
    assert set(s.loc[s.condition != "fake", "move"]) == {NO_INTERVAL}
    assert EVIDENCE not in set(s.note) and DETECTOR_AT_CHANCE not in set(s.note)
    assert move_counts(moves(clean_metrics(m)))[NO_INTERVAL].tolist() == [5, 5]


def write_run(folder, seed: int, metrics: pd.DataFrame) -> None:
    import json

    from stigbench.core.config import RunConfig

    folder.mkdir(parents=True)
    metrics.assign(seed=seed).to_csv(folder / "metrics.csv", index=False)
    config = {**RunConfig().to_dict(), "dataset": "toy", "seed": seed}
    (folder / "config.json").write_text(json.dumps({"config": config, "non_defaults": [],
                                                    "dataset_spec": {"name": "toy"}, "image_size": 32}))
    (folder / "run.json").write_text(json.dumps({"provenance": {}, "dataset": {"name": "toy"}, "errors": {}}))


@pytest.mark.heavy
def test_comparison_counts_per_group_mean_and_sample_std(tmp_path):
    from stigbench.reporting.compare.comparison import compare_runs

    m = hand_metrics()
    write_run(tmp_path / "runs" / "s0", 0, m)
    # seed 1: "overlap" is pushed away by s as well, so s has 2 away detectors there
    moved = m.copy()
    moved.loc[(moved.detector == "overlap") & (moved.refiner == "s"), ["value", "ci_low", "ci_high"]] = [0.97, 0.94, 0.99]
    write_run(tmp_path / "runs" / "s1", 1, moved)
    write_run(tmp_path / "runs" / "s2", 2, moved)
    result = compare_runs([tmp_path / "runs"], tmp_path / "cmp")
    away = result.moves.set_index(["refiner", "move"]).loc[("s", AWAY)]
    assert away["mean"] == pytest.approx(5 / 3) and away["n"] == 3
    assert away["std"] == pytest.approx(np.std([1, 2, 2], ddof=1))  # sample std, not np.std's default
    md = (result.out_dir / "comparison.md").read_text(encoding="utf-8")
    assert "## Moves against chance" in md and "| toy | s | 3 | 1.00 ± 0.00 | 1.67 ± 0.58 | 1.00 ± 0.00 |" in md
    assert "Moves against chance" in (result.out_dir / "comparison.html").read_text(encoding="utf-8")
    assert (result.out_dir / "moves.csv").is_file()
