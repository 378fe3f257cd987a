"""White-box gradient attacks on a dataset's default detectors (issue #24's targets).

    python benchmarks/bench_gradient_attacks.py [--dataset demo-gan] [--refiners stig] [--write]

1. **A run** with ``--attack 'pgd:eps=*,apgd:eps=4/255'`` (PGD at 1, 2, 4, 8/255 and APGD at 4/255, L∞,
   10 steps, cross-entropy loss) against every default detector, beside ``--refiners`` (default ``stig``),
   FID/KID off: per target, its AUC on the fakes, PGD's and APGD's attack success rate (ASR, with its
   bootstrap interval) and AUC at 4/255; the ASR of PGD at every budget with its PSNR; the deployed
   detector's table of the run (``deployed.csv``).
2. **Crafting cost**, in a fresh process so that its peak memory is its own: PGD at 4/255, 10 steps, for
   the run's test fakes against each of the run's fitted default detectors (loaded from the run folder),
   batch by batch as the attack stage does: seconds per detector, their sum and the process's peak RSS.
3. **Torch-path oracle** on the same real test fakes: ``max |sigmoid(logits) − score|`` per detector.

With ``--write`` the tables are appended to ``benchmarks/RESULTS.md`` with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import append_section

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from stigbench.attacks.white_box import PGD  # noqa: E402
from stigbench.core.config import RunConfig  # noqa: E402
from stigbench.core.contracts import REAL  # noqa: E402
from stigbench.core.imageset import FileImageSet  # noqa: E402
from stigbench.detection.registry import load_detector  # noqa: E402
from stigbench.pipeline.runner import run_benchmark  # noqa: E402
from stigbench.reporting.render.markdown import to_markdown  # noqa: E402
from stigbench.reporting.run.deployed_table import display_deployed  # noqa: E402
from stigbench.reporting.run.metrics_csv import read_metrics  # noqa: E402

#: APGD at 50 steps too: its schedule (step size from 2ε, halved only at checkpoints) is made for ~100 steps.
ATTACKS = "pgd:eps=*,apgd:eps=4/255,apgd:eps=4/255:steps=50"


def _ci(row: pd.Series) -> str:
    if not np.isfinite(row["value"]):
        return "—"
    if np.isfinite(row["ci_low"]):
        return f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    return f"{row['value']:.3f}"


def attack_tables(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per target: AUC on the fakes, PGD/APGD at 4/255 (ASR, AUC after); per budget: PGD's ASR and PSNR."""
    det = metrics[(metrics["detector"] != "") & (metrics["trained_on"] == "fake") & (metrics["perturbation"] == "none")]
    quality = metrics[metrics["detector"] == ""]
    targets = [t for t in dict.fromkeys(metrics["target"]) if t]
    rows, sweep = [], []
    for target in targets:
        mine = det[det["detector"] == target]
        fake = mine[(mine["condition"] == "fake") & (mine["metric"] == "auc")].iloc[0]
        row = {"target": target, "AUC fake": _ci(fake)}
        for attack, label in (("pgd:eps=4/255", "PGD"), ("apgd:eps=4/255", "APGD"),
                              ("apgd:eps=4/255:steps=50", "APGD-50")):
            cut = mine[mine["refiner"] == f"{attack}:target={target}"]
            for metric, what in (("asr", "ASR"), ("auc", "AUC after")):
                hit = cut[cut["metric"] == metric]
                row[f"{label} {what}"] = _ci(hit.iloc[0]) if len(hit) else "—"
        rows.append(row)
        for k in (1, 2, 4, 8):
            name = f"pgd:eps={k}/255:target={target}"
            asr = mine[(mine["refiner"] == name) & (mine["metric"] == "asr")]
            psnr = quality[(quality["refiner"] == name) & (quality["metric"] == "psnr")]
            sweep.append({"target": target, "eps": f"{k}/255", "ASR": _ci(asr.iloc[0]) if len(asr) else "—",
                          "PSNR (dB)": f"{psnr['value'].iloc[0]:.2f}" if len(psnr) else "—"})
    return pd.DataFrame(rows), pd.DataFrame(sweep)


def craft(run_dir: Path, steps: int, eps: float) -> dict:
    """Time PGD on the run's test fakes against each fitted default detector (in this process)."""
    split = pd.read_csv(run_dir / "split.csv")
    size = json.loads((run_dir / "config.json").read_text())["image_size"]
    fakes = FileImageSet(split[(split.label == "fake") & (split.part == "test")].path.tolist(), size=size)
    attack = PGD(eps=eps, steps=steps)
    config = json.loads((run_dir / "config.json").read_text())["config"]
    out: dict = {"images": len(fakes), "size": size, "detectors": {}}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    total = 0.0
    for name in config["detectors"].split(","):
        detector = load_detector(run_dir / "detectors" / name)
        generator = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for batch in fakes.batches(attack.batch_size):
            attack.perturb(batch, detector.logits, towards=REAL, generator=generator)
        seconds = time.perf_counter() - t0
        total += seconds
        # the oracle: the torch path against the fitted model's own scores, on real images
        with torch.no_grad():
            logits = torch.cat([detector.logits(b).double() for b in fakes.batches(64)])
        diff = float(np.abs(torch.sigmoid(logits).numpy() - detector.score(fakes)).max())
        out["detectors"][name] = {"seconds": round(seconds, 2), "oracle_max_abs_diff": diff}
    out["total_seconds"] = round(total, 2)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["peak_rss_at_start_mib"] = round(rss0 / 1024, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="demo-gan")
    ap.add_argument("--refiners", default="stig")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--run-dir", help="reuse this run folder instead of running")
    ap.add_argument("--craft", metavar="RUN_DIR", help=argparse.SUPPRESS)  # the child process of part 2
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if args.craft:
        print(json.dumps(craft(Path(args.craft), args.steps, 4 / 255)))
        return

    t0 = time.perf_counter()
    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        cfg = RunConfig(dataset=args.dataset, refiners=args.refiners, attacks=ATTACKS, quality=False,
                        out=str(Path("reports") / "bench-gradient"))
        run_dir = run_benchmark(cfg).run_dir
    run_seconds = time.perf_counter() - t0
    metrics = read_metrics(run_dir / "metrics.csv")
    record = json.loads((run_dir / "run.json").read_text())
    targets, sweep = attack_tables(metrics)
    deployed = pd.read_csv(run_dir / "deployed.csv").fillna({"knowledge": "", "target": "", "budget": ""})
    # the fakes, the refiners, and each attack at 4/255 on its own target (the full table: deployed.csv)
    keep = (deployed["target"] == "") | ((deployed["target"] == deployed["detector"])
                                         & deployed["condition"].str.contains(":eps=4/255:target="))
    deployed = display_deployed(deployed[keep])
    child = subprocess.run([sys.executable, __file__, "--craft", str(run_dir), "--steps", str(args.steps)],
                           capture_output=True, text=True, check=True)
    cost = json.loads(child.stdout.strip().splitlines()[-1])
    craft_table = pd.DataFrame([{"detector": d, "PGD seconds": v["seconds"], "oracle max |σ(logit) − score|":
                                 f"{v['oracle_max_abs_diff']:.1e}"} for d, v in cost["detectors"].items()])
    stage_seconds = {k: v.get("craft_seconds") for k, v in record.get("attacks", {}).items()}
    body = "\n\n".join([
        f"Run `{run_dir.name}` on **{args.dataset}** (`--refiner {args.refiners} --attack '{ATTACKS}'`, 10 steps "
        f"unless named, L∞, cross-entropy), {run_seconds:.0f} s wall in all; test split: {cost['images']} fakes at "
        f"{cost['size']}².",
        "Per target (its own white-box attack at ε = 4/255; ASR with its bootstrap interval over the flagged fakes):",
        to_markdown(targets),
        "PGD over its budget (ASR on the target; PSNR of the attacked fakes to the originals):",
        to_markdown(sweep),
        f"Crafting PGD (ε = 4/255, {args.steps} steps, batch 32) for the {cost['images']} test fakes against each "
        f"detector, in a fresh process: **{cost['total_seconds']} s in all**, peak RSS {cost['peak_rss_mib']} MiB "
        f"({cost['peak_rss_at_start_mib']} MiB after imports). The torch path against the fitted model's scores on "
        "the same images:",
        to_markdown(craft_table),
        "Crafting seconds of each attacked-set stage in the run (cached stages: from the run that made them): "
        + ", ".join(f"{k} {v}" for k, v in stage_seconds.items()) + ".",
        "The detector as deployed (`deployed.csv` of the run: the fakes, the refiners, each attack at 4/255 on "
        "its own target):",
        to_markdown(deployed),
    ])
    print(body)
    if args.write:
        append_section(f"bench_gradient_attacks.py: white-box PGD/APGD on {args.dataset}", body)


if __name__ == "__main__":
    main()
