"""Does STIG act on real generators' fakes at the sizes users have? The targets of issue #22.

For each data set — folder pairs (``--pair NAME=REAL_DIR,FAKE_DIR[,SIZE]``: e.g. real development sets
kept outside the repository) and built datasets cut to a size (``--dataset NAME[:MAX_PER_CLASS]``) — and
each seed, one benchmark run with ``stig`` (``cpu`` preset unless ``--set`` says otherwise) and the
training-free ``spectral-match`` swept over its strength (``spectral-match:strength=*``), the default
detectors, no FID. The stage cache is on, so an interrupted benchmark resumes where it stopped.

Per set and seed: LFD of the fakes and of each refined set to the test reals, PSNR, mean ``|AUC - 0.5|``
over the working detectors (fake AUC >= ``WORKING_AUC``), the moves, whether the run flagged STIG's
attack inactive, STIG's selection (signal, noise floor, kept) and budget, and spectral-match's LFD and
evasion *at STIG's PSNR*, interpolated on its sweep (``outside the sweep`` where STIG's PSNR is not
inside it). Targets, judged on the seed mean (per-seed values shown):

* STIG is never ``attack inactive`` where some default detector has fake AUC >= 0.65;
* LFD refined < LFD fake; no detector moved away from chance beyond its CI;
* mean |AUC - 0.5| over the working detectors at least halved;
* at STIG's PSNR, STIG's LFD and evasion at least spectral-match's (lower or equal).

    python benchmarks/bench_stig_real.py --pair my-gan=path/to/real,path/to/fake,128 \\
        --dataset demo-gan:100 --seeds 0,1,2 --write
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_section  # noqa: E402
from _stig_cells import cell_table, detector_table, flattened, run_cell, selection_curve, stig_overrides  # noqa: E402

from stigbench.evaluation.evidence import WORKING_AUC  # noqa: E402
from stigbench.evaluation.sweep import interpolate_at, sweep_point  # noqa: E402
from stigbench.core.config import RunConfig  # noqa: E402

STIG, BASELINE = "stig", "spectral-match"
REFINERS = f"{STIG},{BASELINE}:strength=*"


def parse_pair(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME=REAL_DIR,FAKE_DIR[,SIZE]`` -> ``(NAME, RunConfig fields)``."""
    name, sep, rest = text.partition("=")
    parts = rest.split(",")
    if not sep or not name or len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"--pair takes NAME=REAL_DIR,FAKE_DIR[,SIZE], got {text!r}")
    for folder in parts[:2]:
        if not Path(folder).is_dir():
            raise argparse.ArgumentTypeError(f"--pair {name}: {folder} is not a folder")
    fields: dict[str, Any] = {"real": str(Path(parts[0]).resolve()), "fake": str(Path(parts[1]).resolve()), "name": name}
    if len(parts) == 3:
        fields["size"] = int(parts[2])
    return name, fields


def parse_dataset(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:MAX_PER_CLASS]`` -> ``(label, RunConfig fields)``."""
    name, sep, cap = text.partition(":")
    if not name or (sep and not cap.isdigit()):
        raise argparse.ArgumentTypeError(f"--dataset takes NAME[:MAX_PER_CLASS], got {text!r}")
    fields: dict[str, Any] = {"dataset": name}
    if cap:
        fields["max_per_class"] = int(cap)
    return (f"{name}:{cap}" if cap else name), fields


def equal_cost(cell: dict[str, Any]) -> dict[str, Any]:
    """STIG's LFD and evasion beside spectral-match's at STIG's PSNR, interpolated on its sweep."""
    stig = cell["refiners"][STIG]
    sweep = {k: v for k, v in cell["refiners"].items() if sweep_point(k)[0] == BASELINE}
    xs = [v["psnr"] for v in sweep.values()]
    return {"psnr": stig["psnr"], "stig_lfd": stig["lfd"], "stig_evasion": stig["evasion"],
            "sm_lfd": interpolate_at(stig["psnr"], xs, [v["lfd"] for v in sweep.values()]),
            "sm_evasion": interpolate_at(stig["psnr"], xs, [v["evasion"] for v in sweep.values()]),
            "sweep_psnr": (min(xs), max(xs)) if xs else None}


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(known)) if known and len(known) == len(values) else None


def _f(v: float | None, digits: int = 4) -> str:
    return "outside the sweep" if v is None else f"{v:.{digits}f}"


def targets(label: str, cells: list[dict[str, Any]]) -> list[str]:
    """The target lines of one data set, judged on the seed mean (per-seed values in the tables)."""
    st = [c["refiners"][STIG] for c in cells]
    eq = [equal_cost(c) for c in cells]
    working = [any(v["fake"][0] >= WORKING_AUC for v in c["detectors"].values()) for c in cells]
    inactive = [c["inactive"].get(STIG, "") for c in cells]
    away = sum(v.get(f"{STIG}:class") == "away" for c in cells for v in c["detectors"].values())
    lfd_fake, lfd = np.mean([c["lfd_fake"] for c in cells]), np.mean([s["lfd"] for s in st])
    # Evasion is defined only on seeds where some detector works: averaged over those seeds.
    scored = [i for i, s in enumerate(st) if s["n_working"]]
    ev_fake, ev = _mean([st[i]["evasion_fake"] for i in scored]), _mean([st[i]["evasion"] for i in scored])
    sm_lfd, sm_ev = _mean([e["sm_lfd"] for e in eq]), _mean([eq[i]["sm_evasion"] for i in scored])
    none = "n/a: no detector works on the fakes (fake AUC >= 0.65)"
    over = "" if len(scored) == len(cells) else f", over the {len(scored)} of {len(cells)} seeds where one works"
    checks = [
        ("never attack inactive where a detector works (fake AUC >= 0.65)",
         not any(w and i for w, i in zip(working, inactive)), f"inactive on {sum(bool(i) for i in inactive)} of {len(cells)} seeds"),
        ("LFD refined < LFD fake (seed mean)", lfd < lfd_fake, f"{lfd_fake:.4f} → {lfd:.4f}"),
        ("no detector moved away beyond its CI", away == 0, f"{away} away over all seeds"),
        ("mean |AUC−0.5| over working detectors at least halved (seed mean)",
         None if ev is None or ev_fake is None else ev <= 0.5 * ev_fake,
         none if ev is None else f"{ev_fake:.3f} → {ev:.3f}{over}"),
        ("at STIG's PSNR, STIG's LFD <= spectral-match's (interpolated)", sm_lfd is not None and lfd <= sm_lfd,
         f"{lfd:.4f} vs {_f(sm_lfd)}"),
        ("at STIG's PSNR, STIG's evasion <= spectral-match's (mean |AUC−0.5|, interpolated)",
         None if ev is None else (sm_ev is not None and ev <= sm_ev), none if ev is None else f"{ev:.3f} vs {_f(sm_ev, 3)}{over}"),
    ]
    status = {True: "met", False: "NOT met", None: "n/a"}
    return [f"- **{label}**:"] + [f"  - {status[ok]}: {name} ({why})" for name, ok, why in checks]


def verdicts(cells: list[dict[str, Any]], others: list[dict[str, Any]]) -> str:
    """Per set and seed: do two runs of the same cells (another precision, another CPU) reach the same
    verdicts on STIG — attack inactive or not, and each detector's move (toward / away / past / unchanged)?"""
    theirs = {(c["label"], c["seed"]): c for c in others}
    lines = ["| data | seed | inactive (these / those) | detectors' moves that differ | LFD refined | PSNR | evasion |",
             "|---|---|---|---|---|---|---|"]
    same = total = 0
    for c in cells:
        o = theirs.get((c["label"], c["seed"]))
        if o is None:
            continue
        total += 1
        moves = [f"{d}: {c['detectors'][d][STIG + ':class']} / {o['detectors'][d][STIG + ':class']}"
                 for d in sorted(c["detectors"]) if d in o["detectors"]
                 and c["detectors"][d][STIG + ":class"] != o["detectors"][d][STIG + ":class"]]
        inactive = (bool((c.get("inactive") or {}).get(STIG)), bool((o.get("inactive") or {}).get(STIG)))
        same += not moves and inactive[0] == inactive[1]
        a, b = c["refiners"][STIG], o["refiners"][STIG]
        lines.append(f"| {c['label']} | {c['seed']} | {'yes' if inactive[0] else 'no'} / {'yes' if inactive[1] else 'no'} | "
                     f"{'; '.join(moves) or 'none'} | {a['lfd']:.4f} / {b['lfd']:.4f} | {a['psnr']:.1f} / {b['psnr']:.1f} | "
                     f"{_f(a['evasion'], 3)} / {_f(b['evasion'], 3)} |")
    return "\n".join([f"Same verdicts on {same} of {total} cells.", "", *lines])


def _overrides(params: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((params or {}).items()) if k != "precision")


def report(cells: list[dict[str, Any]]) -> str:
    labels = list(dict.fromkeys(c["label"] for c in cells))
    lines = ["Data (per class; train/val/test split of the first seed):", ""]
    for label in labels:
        c = next(c for c in cells if c["label"] == label)
        s = c["sizes"]
        split = s.get("split", {})
        lines.append(f"- {label}: {s.get('real', '?')} real + {s.get('fake', '?')} fake at {s.get('size', '?')}², "
                     f"split real {split.get('real', '?')}, fake {split.get('fake', '?')}")
    lines += ["", "Per set and seed (spectral-match at strength 1):", ""]
    lines += cell_table(cells, [STIG, BASELINE])
    lines += ["", "STIG's budget and selection, and spectral-match's sweep at STIG's PSNR:", "",
              "| data | seed | STIG iterations (precision, overrides) | train s | selection fakes | signal | noise floor (median, p90) | kept "
              "| curve flattened? | PSNR | STIG LFD | s-m LFD at PSNR | STIG evasion | s-m evasion at PSNR | s-m sweep PSNR |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        sel = (c.get("stig") or {}).get("selection") or {}
        e = equal_cost(c)
        span = "–" if e["sweep_psnr"] is None else f"{e['sweep_psnr'][0]:.1f}–{e['sweep_psnr'][1]:.1f}"
        floor = (f"{sel['noise_floor_median']:.4f}, {sel['noise_floor']:.4f}" if sel.get("noise_floor") is not None
                 else "–")
        kept = sel.get("kept", "–") + (f" @{sel['best_iteration']}" if sel.get("kept") == "best" else "")
        curve = c["stig"].get("curve")
        if curve is None:  # a cell saved before the curve was recorded
            curve = selection_curve(Path(c["run_dir"]) / "refiners" / STIG)
        # Cells saved before precision and overrides were recorded show the iterations alone.
        budget = " ".join(str(v) for v in (c["stig"].get("iterations"), c["stig"].get("precision"),
                                           _overrides(c["stig"].get("overrides"))) if v)
        lines.append(f"| {c['label']} | {c['seed']} | {budget} | {c['stig'].get('train_seconds')} | "
                     f"{sel.get('n_fake', 0)} | {_f(sel.get('signal'))} | {floor} | {kept} | "
                     f"{flattened(curve, sel.get('noise_floor'))} | {e['psnr']:.1f} | "
                     f"{e['stig_lfd']:.4f} | {_f(e['sm_lfd'])} | {_f(e['stig_evasion'], 3)} | {_f(e['sm_evasion'], 3)} | "
                     f"{span} |")
    lines += ["", "STIG's selection curves (`select_sd` of the refined selection fakes at 0, 25, 50, 75 and 100 % of the "
              "budget) against their noise floor (p90 of reals against reals):", "",
              "| data | seed | floor | 0 % | 25 % | 50 % | 75 % | 100 % | kept |", "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        sel = (c.get("stig") or {}).get("selection") or {}
        curve = c["stig"].get("curve") or selection_curve(Path(c["run_dir"]) / "refiners" / STIG) or []
        if not curve:
            continue
        points = [curve[round(q * (len(curve) - 1))] for q in (0, 0.25, 0.5, 0.75, 1)]
        kept = sel.get("kept", "–") + (f" @{sel['best_iteration']}" if sel.get("kept") == "best" else "")
        lines.append(f"| {c['label']} | {c['seed']} | {_f(sel.get('noise_floor'))} | "
                     + " | ".join(f"{v:.4f} (@{i})" for i, v in points) + f" | {kept} |")
    lines += ["", "Per detector (AUC [95 % CI]; fake → stig → spectral-match at strength 1; class vs fake; real-image "
              "oracle of stig):", ""]
    lines += detector_table(cells, STIG, BASELINE)
    lines += ["", "Targets (STIG, judged on the seed mean):", ""]
    for label in labels:
        lines += targets(label, [c for c in cells if c["label"] == label])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pair", action="append", default=[], type=parse_pair, metavar="NAME=REAL_DIR,FAKE_DIR[,SIZE]")
    ap.add_argument("--dataset", action="append", default=[], type=parse_dataset, metavar="NAME[:MAX_PER_CLASS]")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--set", action="append", default=[], metavar="stig.PARAM=VALUE",
                    help="STIG hyper-parameter overrides (JSON values)")
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--out", default="reports/bench_stig_real", help="run folders (one per cell, never overwritten)")
    ap.add_argument("--cache-dir", default=None, help="stage cache (default: the user cache; resumes across calls)")
    ap.add_argument("--json", default=None, help="also write the raw cells to this JSON file")
    ap.add_argument("--cells", nargs="+", default=[], metavar="JSON",
                    help="report on cells saved by earlier calls (--json) instead of running any")
    ap.add_argument("--versus", nargs="+", default=[], metavar="JSON",
                    help="with --cells: compare STIG's verdicts with these cells' (another precision or CPU)")
    ap.add_argument("--write", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    if not args.pair and not args.dataset and not args.cells:
        ap.error("give at least one --pair or --dataset (or --cells)")
    try:
        stig = stig_overrides(args.set)
    except ValueError as exc:
        ap.error(str(exc))
    cells = [c for file in args.cells for c in json.loads(Path(file).read_text(encoding="utf-8"))]
    t0 = time.perf_counter()
    for seed in ([] if args.cells else (int(s) for s in args.seeds.split(","))):
        for label, fields in [*args.pair, *args.dataset]:
            config = RunConfig(**fields, seed=seed, refiners=REFINERS, out=args.out, cache_dir=args.cache_dir,
                               refiner_params={"stig": stig} if stig else {})
            cell = run_cell(label, config, oracle=(STIG,), n_boot=args.n_boot)
            sel = (cell.get("stig") or {}).get("selection") or {}
            print(f"{label} seed {seed}: {cell['seconds']} s, STIG {cell['stig'].get('iterations')} iterations, "
                  f"kept {sel.get('kept')} ({sel.get('reason')})", flush=True)
            cells.append(cell)
            if args.json:  # after every cell, so an interrupted benchmark keeps what it measured
                Path(args.json).write_text(json.dumps(cells, indent=1), encoding="utf-8")
    cells.sort(key=lambda c: (c["label"], c["seed"]))
    text = report(cells)
    if args.versus:
        others = [c for file in args.versus for c in json.loads(Path(file).read_text(encoding="utf-8"))]
        text += "\n\nSTIG's verdicts against the cells of " + ", ".join(args.versus) + ":\n\n" + verdicts(cells, others)
    print(text)
    if args.write:
        cmd = " ".join(["python benchmarks/bench_stig_real.py", *(sys.argv[1:] if argv is None else argv)])
        head = (f"`{cmd}`; one run per cell (stig `cpu` preset" + (f" with {stig}" if stig else "")
                + f", `{BASELINE}:strength=*`, default detectors, no FID). "
                + ("Re-reported from saved cells; " if args.cells else f"Wall time {time.perf_counter() - t0:.0f} s; ")
                + "seconds per cell: " + ", ".join(str(c["seconds"]) for c in cells) + ".\n\n")
        append_section("bench_stig_real: STIG on real generators at the sizes users have", head + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
