"""The README's pictures of ``bench.py report``: ``docs/leaderboard.png`` and ``docs/heatmap_auc.png``.

They are drawn by the library from *synthetic* run folders written here (illustrative numbers, not
results: 12 generators × 6 detectors × 2 attacks × 2 seeds, made up with a fixed seed), so that the
README shows what a comparison at the scale of a benchmark looks like without shipping run outputs.

    python docs/make_figures.py            # rewrites docs/leaderboard.png and docs/heatmap_auc.png
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from stigbench.evaluation.rows import METRIC_COLUMNS, base_row
from stigbench.pipeline.plan import RunConfig
from stigbench.reporting.compare.comparison import compare_runs

GENERATORS = ("progan", "stylegan", "stylegan2", "biggan", "cyclegan", "stargan", "gaugan", "deepfake", "crn", "imle",
              "san", "whichfaceisreal")
#: Made-up detection strength on the fakes and resistance to each attack (0: falls to chance).
DETECTORS = {"cnndetection": (2.2, 0.6), "npr": (2.6, 0.3), "freqnet": (2.0, 0.25), "durall": (1.6, 0.1),
             "dzanic": (1.2, 0.15), "spectrum-cnn": (1.8, 0.05)}
ATTACKS = {"stig": 1.0, "spectral-match": 0.6}
HALF = 0.03


def synthetic_run(folder: Path, dataset: str, seed: int, rng: np.random.Generator, hard: float) -> None:
    """One run folder as the runner leaves it (metrics.csv, config.json, run.json), numbers invented."""
    rows = []

    def add(metric: str, value: float, **kw: object) -> None:
        lo, hi = (max(0.0, value - HALF), min(1.0, value + HALF)) if metric == "auc" else (np.nan, np.nan)
        rows.append({**base_row(dataset, seed, **kw), "metric": metric, "value": value, "ci_low": lo, "ci_high": hi})

    for det, (strength, resist) in DETECTORS.items():
        logit = strength - hard + rng.normal(0, 0.25)
        fake = float(1 / (1 + np.exp(-logit)))
        add("auc", fake, detector=det, trained_on="fake", condition="fake")
        for att, power in ATTACKS.items():
            kept = np.clip(resist + (1 - power) * 0.5 + rng.normal(0, 0.12), -0.4, 1.0)
            add("auc", float(np.clip(0.5 + (fake - 0.5) * kept, 0.02, 0.99)), detector=det, trained_on="fake",
                condition="refined", refiner=att)
    lfd = 1.0 + hard + rng.normal(0, 0.05)
    add("lfd", lfd, condition="fake")
    for att, power in ATTACKS.items():
        add("lfd", lfd * (1 - 0.6 * power), condition="refined", refiner=att)
        add("psnr", 36.0 - 6 * power + rng.normal(0, 0.5), condition="refined", refiner=att)
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=METRIC_COLUMNS).to_csv(folder / "metrics.csv", index=False)
    config = {**RunConfig(dataset=dataset, seed=seed, refiners=",".join(ATTACKS), detectors=",".join(DETECTORS)).to_dict()}
    (folder / "config.json").write_text(json.dumps({"config": config, "non_defaults": [], "dataset_spec": {
        "name": dataset, "size": 256}, "image_size": 256}))
    (folder / "run.json").write_text(json.dumps({"status": "complete", "dataset": {"name": dataset}, "errors": {},
                                                 "provenance": {"date": "2026-01-01T00:00:00+00:00"}}))


def main(out: Path = Path(__file__).parent) -> None:
    rng = np.random.default_rng(2026)
    with tempfile.TemporaryDirectory(prefix="stigbench-docs-") as tmp:
        runs = Path(tmp) / "runs"
        for gen in GENERATORS:
            hard = rng.uniform(-0.3, 1.2)  # some generators are harder to detect than others
            for seed in (0, 1):
                synthetic_run(runs / gen / f"seed{seed}", gen, seed, rng, hard)
        result = compare_runs([runs], Path(tmp) / "report")
        for name in ("leaderboard.png", "heatmap_auc.png"):
            shutil.copyfile(result.out_dir / name, out / name)
            print(out / name)


if __name__ == "__main__":
    main()
