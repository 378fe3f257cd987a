"""Does the STIG refiner work on calibrated fingerprints? The targets of the "real generators" issue.

For each dataset (default: the calibrated ``demo-gan`` and ``demo-diffusion``) and seed, one benchmark
run with the refiners ``stig`` (``cpu`` preset unless ``--set`` says otherwise) and ``spectral-match``
(the training-free baseline) at their defaults, the default detectors, no FID (it is not a target).
Then, from the run folder:

* per detector: AUC on real vs fake and real vs refined with bootstrap CIs, and the move the run
  report shows (:mod:`stigbench.evaluation.evidence`): "away" = the attack added evidence, "past" = over-corrected
  beyond the CI (the "over" column), "toward", "unchanged", or "at chance" (fake CI holds 0.5);
* mean ``|AUC - 0.5|`` over the detectors that work on the fakes (fake AUC >= ``WORKING_AUC``, 0.65), fake and refined;
* LFD of fakes and of each refined set to the test reals, PSNR of each refined set to its fakes;
* the real-image oracle: each refiner applied to the *test reals*, scored against the same reals by
  the detectors of the run (trained on real vs fake): an attack that leaves reals real gives AUC 0.5.

The targets (checked per seed and printed as a table): LFD refined < LFD fake; STIG's LFD <=
spectral-match's at equal or better PSNR; no detector "away"; mean |AUC - 0.5| at least halved; no
"over"; PSNR >= 30 dB; std of ``durall``'s refined AUC over seeds <= 0.05.

    python benchmarks/bench_stig_families.py --seeds 0,1,2 --write
    python benchmarks/bench_stig_families.py --datasets demo-gan --seeds 0 --set stig.w_psd=1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_section  # noqa: E402
from _stig_cells import cell_table, detector_table, run_cell, stig_overrides, summarise  # noqa: E402

from stigbench.core.config import RunConfig  # noqa: E402

REFINERS = ("stig", "spectral-match")


def tables(cells: list[dict]) -> str:
    df = pd.DataFrame([summarise(c, ref) for c in cells for ref in REFINERS])
    lines = cell_table(cells, REFINERS)
    lines += ["", "Per detector (AUC [95 % CI]; fake → stig → spectral-match; class vs fake; real-image oracle of stig):", ""]
    lines += detector_table(cells, *REFINERS)
    lines += ["", "Targets (STIG, per dataset over its seeds):", ""]
    for ds, g in df[df["refiner"] == "stig"].groupby("label"):
        sm = df[(df["refiner"] == "spectral-match") & (df["label"] == ds)].set_index("seed")
        st = g.set_index("seed")
        durall = [c["detectors"]["durall"]["stig"][0] for c in cells if c["label"] == ds and "durall" in c["detectors"]]
        checks = {
            "LFD refined < LFD fake on every seed": bool((st["lfd"] < st["lfd_fake"]).all()),
            "STIG LFD <= spectral-match LFD": bool((st["lfd"] <= sm["lfd"]).all()),
            "... at equal or better PSNR": bool((st["psnr"] >= sm["psnr"]).all()),
            "no detector moved away beyond CI": int(st["away"].sum()) == 0,
            "mean |AUC-0.5| of working detectors at least halved": bool((st["mean_dist_refined"] <= 0.5 * st["mean_dist_fake"]).all()),
            "no over-correction beyond CI": int(st["over"].sum()) == 0,
            "PSNR >= 30 dB": bool((st["psnr"] >= 30).all()),
            "std of durall over seeds <= 0.05": len(durall) > 1 and float(np.std(durall, ddof=1)) <= 0.05,
            "reals left real (oracle) for every detector": bool((st["oracle_off"] == "-").all()),
            "attack active on every seed": bool((st["inactive"] == "").all()),
        }
        spread = f"{np.std(durall, ddof=1):.3f}" if len(durall) > 1 else "n/a"
        lines.append(f"- **{ds}** (durall refined AUC per seed: {', '.join(f'{d:.3f}' for d in durall)}; std {spread}):")
        lines += [f"  - {'met' if ok else 'NOT met'}: {name}" for name, ok in checks.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="demo-gan,demo-diffusion")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--set", action="append", default=[], metavar="stig.PARAM=VALUE",
                    help="STIG hyper-parameter overrides (JSON values)")
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--out", default=None, help="keep the run folders here (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="also write the raw cells to this JSON file")
    ap.add_argument("--write", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    try:
        stig = stig_overrides(args.set)
    except ValueError as exc:
        ap.error(str(exc))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        cells = []
        for ds in args.datasets.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                config = RunConfig(dataset=ds, seed=seed, refiners=",".join(REFINERS), out=str(out),
                                   refiner_params={"stig": stig} if stig else {})
                cell = run_cell(ds, config, oracle=REFINERS, n_boot=args.n_boot)
                print(f"{ds} seed {seed}: {cell['seconds']} s, selection {cell['stig']['selection']}", flush=True)
                cells.append(cell)
        if args.json:
            Path(args.json).write_text(json.dumps(cells, indent=1), encoding="utf-8")
        text = tables(cells)
    print(text)
    if args.write:
        head = (f"`python benchmarks/bench_stig_families.py --datasets {args.datasets} --seeds {args.seeds}"
                + "".join(f" --set {s}" for s in args.set) + "`; one run per cell (stig `cpu` preset"
                + (f" with {stig}" if stig else "") + ", spectral-match at its defaults, default detectors, "
                "no FID). Seconds per cell: " + ", ".join(str(c["seconds"]) for c in cells) + ".\n\n")
        append_section("bench_stig_families: STIG on calibrated fingerprints", head + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
