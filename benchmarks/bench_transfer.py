"""Transfer, attacks on reals and the spectral/hybrid gradient attacks (issue #25's targets).

    python benchmarks/bench_transfer.py [--dataset demo-gan] [--real DIR --fake DIR --name NAME] [--write]

One run per dataset (the run's report folder holds every figure):

* ``--attack`` white-box PGD at ε = 4/255 on each default detector, and two transfer attacks crafted on
  the attacker's own fits (seed + 1000): one surrogate (``spectrum-cnn``) and an ensemble
  (``spectrum-cnn+durall+dzanic``). The transfer matrix: the white-box diagonal against the off-diagonal
  transfer, and single against ensemble surrogate.
* ``--attack-reals``: the real test images pushed toward "fake" by each white-box attack: the false-alarm
  rate at the validation threshold before (clean reals) and after, and the AUC with attacked reals.
* With ``--hybrid`` (default on the built-in dataset): ``stig``, ``pgd``, ``spectral-pgd`` and ``stig+pgd``
  against the spectrum CNN, swept over their budgets, on one evasion-vs-PSNR plot (``sweeps.png``), and a
  query-only ``square`` attack on each detector (its queries per image).

The cost of each attacked set is its crafting time (``run.json``), stated per attack and detector.
A real development set (a folder pair of real and generated images you have, kept outside the repository)
is passed as ``--real/--fake``; never in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import append_section

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from stigbench.core.config import RunConfig  # noqa: E402
from stigbench.pipeline.runner import run_benchmark  # noqa: E402
from stigbench.reporting.render.markdown import to_markdown  # noqa: E402
from stigbench.reporting.run.metrics_csv import read_metrics  # noqa: E402
from stigbench.reporting.run.report import write_run_report  # noqa: E402
from stigbench.reporting.run.transfer import transfer_matrices, transfer_table  # noqa: E402

TRANSFER = "pgd:eps=4/255,pgd:eps=4/255:surrogate=spectrum-cnn,pgd:eps=4/255:surrogate=spectrum-cnn+durall+dzanic"
HYBRID = ("pgd:eps=*:target=spectrum-cnn,spectral-pgd:eps=*:target=spectrum-cnn,stig+pgd:eps=*:target=spectrum-cnn,"
          "square:eps=4/255:queries=300")


def _matrix_text(metrics: pd.DataFrame) -> str:
    matrices = transfer_matrices(transfer_table(metrics), "asr")
    name = next((n for n in matrices if n.startswith("pgd:eps=4/255 ")), None)
    if name is None:
        return "no transfer matrix"
    m = matrices[name]
    auc = transfer_matrices(transfer_table(metrics), "auc")[name].reindex_like(m)
    cells = m.map(lambda v: f"{v:.2f}") + " / " + auc.map(lambda v: f"{v:.2f}")
    diagonal = [m.loc[d, d] for d in m.columns if d in m.index]
    off = [m.loc[r, c] for r in m.index if not r.startswith("surrogate") for c in m.columns if r != c]
    lines = [f"`{name}`, cells ASR / AUC (rows: crafted on; columns: scoring detector):", "",
             to_markdown(cells.reset_index().rename(columns={"crafted_on": "crafted on"})), "",
             "An ASR of `nan`: the detector flags none of the clean test fakes at its validation threshold, so no "
             "attack has anything to evade there (left out of the means below).", "",
             f"White-box diagonal: mean ASR {np.nanmean(diagonal):.3f} over {np.isfinite(diagonal).sum()} detectors; "
             f"off-diagonal (white-box on A, scored by B ≠ A): mean ASR {np.nanmean(off):.3f} over "
             f"{np.isfinite(off).sum()} cells."]
    for row in (r for r in m.index if r.startswith("surrogate")):
        lines.append(f"Transfer from `{row}`: mean ASR {m.loc[row].mean():.3f} over the {m.loc[row].notna().sum()} "
                     f"detectors with flagged fakes (min {m.loc[row].min():.3f}, max {m.loc[row].max():.3f}).")
    return "\n".join(lines)


def _reals_text(metrics: pd.DataFrame) -> str:
    det = metrics[(metrics["detector"] != "") & (metrics["perturbation"] == "none") & (metrics["trained_on"] == "fake")]
    clean = det[(det["condition"] == "fake") & (det["metric"] == "acc_real")].set_index("detector")["value"]
    clean_auc = det[(det["condition"] == "fake") & (det["metric"] == "auc")].set_index("detector")["value"]
    rows = []
    reals = det[det["condition"] == "real-attacked"]
    for (refiner, detector), g in reals.groupby(["refiner", "detector"], sort=False):
        own = g["target"].iloc[0] == detector and g["knowledge"].iloc[0] in ("white-box", "query")
        if not own or not (refiner.startswith("square") or refiner.startswith("pgd:eps=4/255:")):
            continue  # PGD at 4/255 and square on reals, each read on its own target
        far = g[g["metric"] == "false_alarm"].iloc[0]
        auc = g[g["metric"] == "auc"]["value"].iloc[0]
        rows.append({"detector": detector, "attack": refiner, "false alarms before": f"{1 - clean[detector]:.3f}",
                     "after": f"{far['value']:.3f} [{far['ci_low']:.3f}, {far['ci_high']:.3f}]",
                     "AUC before": f"{clean_auc[detector]:.3f}", "AUC with attacked reals": f"{auc:.3f}"})
    return to_markdown(pd.DataFrame(rows)) if rows else "no attacks on reals"


def _cost_text(record: dict) -> str:
    rows = [{"attacked set": k, "seconds (fakes)": v.get("craft_seconds", ""), "seconds (reals)": v.get("craft_seconds_reals", ""),
             "mean queries": v.get("mean_queries", "")} for k, v in record.get("attacks", {}).items()]
    return to_markdown(pd.DataFrame(rows))


def _sweep_text(run_dir: Path) -> str:
    path = run_dir / "sweeps.csv"
    if not path.is_file():
        return "no sweep"
    t = pd.read_csv(path)
    t = t[t["attack"].str.contains("spectrum-cnn") | (t["attack"] == "stig")]
    cols = ["attack", "strength", "psnr", "asr", "lfd"]
    return to_markdown(t[cols].round(4))


def run_one(args: argparse.Namespace, real: str | None, fake: str | None, name: str | None, hybrid: bool) -> str:
    attacks = TRANSFER + ("," + HYBRID if hybrid else "")
    cfg = RunConfig(dataset=args.dataset, real=real, fake=fake, name=name, refiners="stig" if hybrid else "",
                    attacks=attacks, attack_reals=True, quality=False, out=str(Path("reports") / "bench-transfer"))
    t0 = time.perf_counter()
    if args.run_dir:  # a run this script made: its report is rebuilt from its files, nothing is recomputed
        run_dir = Path(args.run_dir)
        write_run_report(run_dir)
        seconds = json.loads((run_dir / "run.json").read_text())["seconds"]
    else:
        run_dir = run_benchmark(cfg).run_dir
        seconds = time.perf_counter() - t0
    metrics = read_metrics(run_dir / "metrics.csv")
    record = json.loads((run_dir / "run.json").read_text())
    title = name or args.dataset
    refiners = cfg.refiners or "''"
    parts = [f"### {title}", "",
             f"Run `{run_dir.name}` ({seconds:.0f} s wall; `--refiner {refiners} --attack '{attacks}' "
             f"--attack-reals`; test split {record['dataset']['split']['fake']['test']} fakes, "
             f"{record['dataset']['split']['real']['test']} reals at {record['dataset']['size']}²).", "",
             _matrix_text(metrics), "",
             "Attacks on reals (white-box PGD at 4/255 and, with --hybrid, the query-only square attack, pushing the "
             "test reals toward fake, each read on its target; false alarms = share of reals flagged at the "
             "validation threshold):", "", _reals_text(metrics), ""]
    if hybrid:
        parts += ["Against spectrum-cnn, over each attack's budget (ε in pixels for pgd/stig+pgd, in nats of "
                  "log-magnitude for spectral-pgd; STIG at strength 1; figure: the run's `sweeps.png`):", "",
                  _sweep_text(run_dir), ""]
    parts += ["Cost of each attacked set (crafting seconds, cached stages from the run that made them):", "",
              _cost_text(record), ""]
    return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="demo-gan")
    ap.add_argument("--real", help="real folder of a folder-pair dataset (the fakes: --fake)")
    ap.add_argument("--fake")
    ap.add_argument("--name")
    ap.add_argument("--hybrid", action=argparse.BooleanOptionalAction, default=None,
                    help="also the stig/pgd/spectral-pgd/stig+pgd sweep and square (default: on the built-in dataset)")
    ap.add_argument("--run-dir", help="rebuild the tables from this run folder (made by this script) instead of running")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    hybrid = args.hybrid if args.hybrid is not None else not args.real
    body = run_one(args, args.real, args.fake, args.name, hybrid)
    print(body)
    if args.write:
        append_section(f"bench_transfer.py: transfer, attacks on reals, hybrids on {args.name or args.dataset}", body)


if __name__ == "__main__":
    main()
