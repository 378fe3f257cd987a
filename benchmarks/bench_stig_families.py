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
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_section  # noqa: E402

from stigbench.measures import metrics as M  # noqa: E402
from stigbench.attacks.registry import load_refiner  # noqa: E402
from stigbench.data.specs import load_dataset  # noqa: E402
from stigbench.evaluation.evidence import WORKING_AUC, adds_evidence, classify_move  # noqa: E402
from stigbench.core.imageset import ArrayImageSet  # noqa: E402
from stigbench.core.io import read_json  # noqa: E402
from stigbench.detection.registry import detectors as detector_registry  # noqa: E402
from stigbench.pipeline.plan import RunConfig, resolve_spec  # noqa: E402
from stigbench.pipeline.runner import run_benchmark  # noqa: E402
from stigbench.data.split import make_split  # noqa: E402

REFINERS = ("stig", "spectral-match")


def classify(fake: tuple[float, float, float], refined: tuple[float, float, float]) -> str:
    """The run report's move (:mod:`stigbench.evaluation.evidence`), with ``away`` for every evidence flag."""
    return "away" if adds_evidence(fake, refined) else classify_move(fake, refined)


def real_oracle(run_dir: Path, dataset: str, seed: int, names: list[str], n_boot: int) -> dict[tuple[str, str], tuple]:
    """AUC (with CI) of real test images vs the same images refined, per (refiner, detector)."""
    spec = resolve_spec(RunConfig(dataset=dataset))
    data = load_dataset(spec, progress=False)
    split = make_split(data, seed=seed)
    reals = data.real.subset(split.indices("real", "test"))
    out = {}
    for refiner_name in REFINERS:
        folder = run_dir / "refiners" / refiner_name
        if not folder.is_dir():
            continue
        refiner = load_refiner(folder)
        if hasattr(refiner, "progress"):
            refiner.progress = False
        refined = refiner.refine(reals)
        refined = ArrayImageSet(refined.to_array()) if hasattr(refined, "to_array") else refined
        for name in names:
            det = detector_registry().get(name).load(run_dir / "detectors" / name)
            s_real, s_ref = det.score(reals), det.score(refined)
            labels = np.r_[np.zeros(len(s_real), np.int64), np.ones(len(s_ref), np.int64)]
            v = M.detection_metrics_with_ci(labels, np.r_[s_real, s_ref], 0.5, n_boot=n_boot, seed=seed)["auc"]
            out[(refiner_name, name)] = v
    return out


def run_cell(dataset: str, seed: int, stig: dict, out: Path, n_boot: int) -> dict:
    t0 = time.perf_counter()
    cfg = RunConfig(dataset=dataset, seed=seed, refiners=",".join(REFINERS), out=str(out), quality=False,
                    progress=False, n_boot=n_boot, refiner_params={"stig": stig} if stig else {})
    result = run_benchmark(cfg)
    if result.errors:
        raise RuntimeError(f"{dataset} seed {seed}: {result.errors}")
    m = result.metrics
    clean = m[(m["perturbation"] == "none") & (m["trained_on"].isin(["", "fake"]))]

    def value(metric: str, condition: str, refiner: str = "", detector: str = "") -> tuple[float, float, float]:
        row = clean[(clean["metric"] == metric) & (clean["condition"] == condition) & (clean["refiner"] == refiner)
                    & (clean["detector"] == detector)]
        if len(row) != 1:
            raise KeyError(f"{metric}/{condition}/{refiner}/{detector}: {len(row)} rows")
        r = row.iloc[0]
        return float(r["value"]), float(r["ci_low"]), float(r["ci_high"])

    names = sorted(clean.loc[clean["metric"] == "auc", "detector"].unique())
    cell = {"dataset": dataset, "seed": seed, "run_dir": str(result.run_dir), "lfd_fake": value("lfd", "fake")[0],
            "detectors": {}, "refiners": {}}
    for ref in REFINERS:
        cell["refiners"][ref] = {"lfd": value("lfd", "refined", ref)[0], "psnr": value("psnr", "refined", ref)[0]}
    for name in names:
        fake = value("auc", "fake", detector=name)
        cell["detectors"][name] = {"fake": fake}
        for ref in REFINERS:
            refined = value("auc", "refined", ref, name)
            cell["detectors"][name][ref] = refined
            cell["detectors"][name][f"{ref}:class"] = classify(fake, refined)
    oracle = real_oracle(result.run_dir, dataset, seed, names, n_boot)
    for (ref, name), v in oracle.items():
        cell["detectors"][name][f"{ref}:real_oracle"] = v
    info = read_json(result.run_dir / "refiners" / "stig" / "fit_info.json")
    cell["stig"] = {"selection": info.get("selection"), "iterations": info.get("iterations"),
                    "train_seconds": info.get("train_seconds")}
    cell["seconds"] = round(time.perf_counter() - t0, 1)
    return cell


def summarise(cell: dict, ref: str) -> dict:
    dets = cell["detectors"]
    working = [d for d, v in dets.items() if v["fake"][0] >= WORKING_AUC]
    before = float(np.mean([abs(dets[d]["fake"][0] - 0.5) for d in working])) if working else float("nan")
    after = float(np.mean([abs(dets[d][ref][0] - 0.5) for d in working])) if working else float("nan")
    classes = [v[f"{ref}:class"] for v in dets.values()]
    oracle = [v.get(f"{ref}:real_oracle") for v in dets.values()]
    oracle_bad = [d for d, v in dets.items() if v.get(f"{ref}:real_oracle") and not v[f"{ref}:real_oracle"][1] <= 0.5
                  <= v[f"{ref}:real_oracle"][2]]
    r = cell["refiners"][ref]
    return {"dataset": cell["dataset"], "seed": cell["seed"], "refiner": ref, "lfd_fake": cell["lfd_fake"],
            "lfd": r["lfd"], "psnr": r["psnr"], "mean_dist_fake": before, "mean_dist_refined": after,
            "n_working": len(working), "away": classes.count("away"), "over": classes.count("past"),
            "toward": classes.count("toward"), "oracle_off": ",".join(oracle_bad) or "-",
            "n_oracle": sum(o is not None for o in oracle)}


def tables(cells: list[dict]) -> str:
    rows = [summarise(c, ref) for c in cells for ref in REFINERS]
    df = pd.DataFrame(rows)
    lines = ["| dataset | seed | refiner | LFD fake → refined | PSNR dB | mean \\|AUC−0.5\\| (working) | toward / away / over "
             "| reals left real? (oracle CI holds 0.5) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['seed']} | {r['refiner']} | {r['lfd_fake']:.4f} → {r['lfd']:.4f} | "
                     f"{r['psnr']:.1f} | {r['mean_dist_fake']:.3f} → {r['mean_dist_refined']:.3f} (n={r['n_working']}) | "
                     f"{r['toward']} / {r['away']} / {r['over']} | "
                     f"{'yes' if r['oracle_off'] == '-' else 'no: ' + r['oracle_off']} |")
    lines += ["", "Per detector (AUC [95 % CI]; fake → stig → spectral-match; class vs fake; real-image oracle of stig):", ""]
    lines += ["| dataset | seed | detector | fake | stig | class | spectral-match | class | oracle (stig) |",
              "|---|---|---|---|---|---|---|---|---|"]

    def fmt(v: tuple | None) -> str:
        return "–" if v is None else f"{v[0]:.3f} [{v[1]:.2f}, {v[2]:.2f}]"

    for c in cells:
        for name, v in c["detectors"].items():
            lines.append(f"| {c['dataset']} | {c['seed']} | {name} | {fmt(v['fake'])} | {fmt(v['stig'])} | "
                         f"{v['stig:class']} | {fmt(v['spectral-match'])} | {v['spectral-match:class']} | "
                         f"{fmt(v.get('stig:real_oracle'))} |")
    lines += ["", "Targets (STIG, per dataset over its seeds):", ""]
    for ds, g in df[df["refiner"] == "stig"].groupby("dataset"):
        sm = df[(df["refiner"] == "spectral-match") & (df["dataset"] == ds)].set_index("seed")
        st = g.set_index("seed")
        durall = [c["detectors"]["durall"]["stig"][0] for c in cells if c["dataset"] == ds and "durall" in c["detectors"]]
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
    stig: dict = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        if not key.startswith("stig."):
            ap.error(f"--set takes stig.PARAM=VALUE, got {item!r}")
        try:
            stig[key[5:]] = json.loads(raw)
        except json.JSONDecodeError:
            stig[key[5:]] = raw
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        cells = []
        for ds in args.datasets.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                cell = run_cell(ds, seed, stig, out, args.n_boot)
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
