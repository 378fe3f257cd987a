"""One benchmark run per (dataset, seed) cell and the STIG target tables: what ``bench_stig_families.py``
(the calibrated demo families) and ``bench_stig_real.py`` (real development sets, folder pairs) share.

A *cell* is one :func:`~stigbench.pipeline.runner.run_benchmark` call (default detectors, no FID) read
back into a dict: per detector the AUC with its 95 % interval on real vs fake and on real vs each
refined set and the move the run report shows (:mod:`stigbench.evaluation.evidence`); per refiner LFD,
PSNR, the mean ``|AUC - 0.5|`` over the detectors that work on the fakes (fake AUC >=
:data:`~stigbench.evaluation.evidence.WORKING_AUC`) and whether the run flagged the attack inactive;
STIG's selection record; and, optionally, the real-image oracle (each refiner applied to the *test
reals*, scored against the same reals: an attack that leaves reals real gives AUC 0.5).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stigbench.measures import metrics as M
from stigbench.attacks.registry import load_refiner
from stigbench.data.specs import load_dataset
from stigbench.data.split import make_split
from stigbench.evaluation.evidence import WORKING_AUC, adds_evidence, classify_move
from stigbench.core.imageset import ArrayImageSet
from stigbench.core.io import read_json
from stigbench.detection.registry import detectors as detector_registry
from stigbench.core.config import RunConfig
from stigbench.pipeline.plan import resolve_spec
from stigbench.pipeline.runner import run_benchmark
from stigbench.reporting.run.inactive import run_inactive
from stigbench.reporting.run.selection_plot import read_selection

Triple = tuple[float, float, float]


def classify(fake: Triple, refined: Triple) -> str:
    """The run report's move (:mod:`stigbench.evaluation.evidence`), with ``away`` for every evidence flag."""
    return "away" if adds_evidence(fake, refined) else classify_move(fake, refined)


def evasion(detectors: dict[str, dict], key: str) -> tuple[float, float, int]:
    """``(before, after, n)``: mean ``|AUC - 0.5|`` over the detectors working on the fakes, on the
    fakes and on the refined set ``key``."""
    working = [d for d, v in detectors.items() if v["fake"][0] >= WORKING_AUC and key in v]
    if not working:
        return float("nan"), float("nan"), 0
    return (float(np.mean([abs(detectors[d]["fake"][0] - 0.5) for d in working])),
            float(np.mean([abs(detectors[d][key][0] - 0.5) for d in working])), len(working))


def real_oracle(run_dir: Path, config: RunConfig, refiners: Sequence[str], names: Sequence[str],
                n_boot: int) -> dict[tuple[str, str], Triple]:
    """AUC (with CI) of the real test images vs the same images refined, per (refiner, detector)."""
    data = load_dataset(resolve_spec(config), progress=False)
    split = make_split(data, seed=config.seed)
    reals = data.real.subset(split.indices("real", "test"))
    out = {}
    for refiner_name in refiners:
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
            out[(refiner_name, name)] = M.detection_metrics_with_ci(labels, np.r_[s_real, s_ref], 0.5, n_boot=n_boot,
                                                                   seed=config.seed)["auc"]
    return out


def run_cell(label: str, config: RunConfig, *, oracle: Sequence[str] = (), n_boot: int = 500) -> dict[str, Any]:
    """Run ``config`` (its refiners, default detectors; FID off) and read the cell back. ``label`` names
    the data in the tables; ``oracle`` lists the refiners whose real-image oracle is measured."""
    t0 = time.perf_counter()
    config = dataclasses.replace(config, quality=False, progress=False, n_boot=n_boot)
    result = run_benchmark(config)
    if result.errors:
        raise RuntimeError(f"{label} seed {config.seed}: {result.errors}")
    m = result.metrics
    clean = m[(m["perturbation"] == "none") & (m["trained_on"].isin(["", "fake"]))]

    def value(metric: str, condition: str, refiner: str = "", detector: str = "") -> Triple:
        row = clean[(clean["metric"] == metric) & (clean["condition"] == condition) & (clean["refiner"] == refiner)
                    & (clean["detector"] == detector)]
        if len(row) != 1:
            raise KeyError(f"{metric}/{condition}/{refiner}/{detector}: {len(row)} rows")
        r = row.iloc[0]
        return float(r["value"]), float(r["ci_low"]), float(r["ci_high"])

    refiners = list(dict.fromkeys(clean.loc[clean["condition"] == "refined", "refiner"]))
    names = sorted(clean.loc[clean["metric"] == "auc", "detector"].unique())
    record = read_json(result.run_dir / "run.json")
    cell: dict[str, Any] = {"label": label, "seed": config.seed, "run_dir": str(result.run_dir),
                            "lfd_fake": value("lfd", "fake")[0], "detectors": {}, "refiners": {},
                            "inactive": run_inactive(m, record, result.run_dir), "sizes": _sizes(record)}
    for name in names:
        fake = value("auc", "fake", detector=name)
        cell["detectors"][name] = {"fake": fake}
        for ref in refiners:
            refined = value("auc", "refined", ref, name)
            cell["detectors"][name][ref] = refined
            cell["detectors"][name][f"{ref}:class"] = classify(fake, refined)
    for ref in refiners:
        before, after, n = evasion(cell["detectors"], ref)
        cell["refiners"][ref] = {"lfd": value("lfd", "refined", ref)[0], "psnr": value("psnr", "refined", ref)[0],
                                 "evasion_fake": before, "evasion": after, "n_working": n}
    for (ref, name), v in real_oracle(result.run_dir, config, [r for r in oracle if r in refiners], names,
                                      n_boot).items():
        cell["detectors"][name][f"{ref}:real_oracle"] = v
    info_file = result.run_dir / "refiners" / "stig" / "fit_info.json"
    if info_file.is_file():
        info = read_json(info_file)
        cell["stig"] = {"selection": info.get("selection"), "iterations": info.get("iterations"),
                        "train_seconds": info.get("train_seconds"), "n_fake": info.get("n_fake"),
                        "n_real": info.get("n_real"), "curve": selection_curve(info_file.parent),
                        "precision": info.get("precision"),
                        "overrides": (config.refiner_params or {}).get("stig", {})}
    cell["seconds"] = round(time.perf_counter() - t0, 1)
    return cell


def stig_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``--set stig.PARAM=VALUE`` items (JSON values, else strings) -> ``{PARAM: value}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        if not key.startswith("stig."):
            raise ValueError(f"--set takes stig.PARAM=VALUE, got {item!r}")
        try:
            out[key[5:]] = json.loads(raw)
        except json.JSONDecodeError:
            out[key[5:]] = raw
    return out


def selection_curve(folder: Path) -> list[tuple[int, float]]:
    """STIG's logged selection criterion ``[(iteration, value), ...]`` (empty without one)."""
    curve = read_selection(folder)
    if curve is None or "select_sd" not in curve.curve:
        return []
    return [(int(i), float(v)) for i, v in curve.curve[["iteration", "select_sd"]].dropna().values]


def flattened(curve: Sequence[tuple[int, float]], floor: float | None) -> str:
    """Whether a selection curve has flattened (issue #22): its best value is not in the last quarter of
    the evaluations, or that quarter varies by less than the noise floor. ``yes``/``no`` with the reason."""
    if len(curve) < 4:
        return "–"
    values = [v for _, v in curve]
    tail = values[(3 * len(values)) // 4:]
    best = min(range(len(values)), key=lambda k: (values[k], k))
    if best < (3 * len(values)) // 4:
        return "yes (best before the last quarter)"
    spread = max(tail) - min(tail)
    if floor is not None and spread < floor:
        return f"yes (last quarter within {spread:.4f} < floor)"
    return f"no (last quarter moves {spread:.4f})"


def _sizes(record: dict[str, Any]) -> dict[str, Any]:
    """Image counts per split and class and the image size, from ``run.json`` (what it has of them)."""
    data = record.get("dataset") or {}
    return {k: data[k] for k in ("size", "real", "fake", "split") if k in data}


def summarise(cell: dict[str, Any], ref: str) -> dict[str, Any]:
    """One table row: LFD, PSNR, evasion and move counts of refiner ``ref`` in ``cell``."""
    dets = cell["detectors"]
    classes = [v[f"{ref}:class"] for v in dets.values() if f"{ref}:class" in v]
    oracle_bad = [d for d, v in dets.items() if v.get(f"{ref}:real_oracle") and not v[f"{ref}:real_oracle"][1] <= 0.5
                  <= v[f"{ref}:real_oracle"][2]]
    r = cell["refiners"][ref]
    return {"label": cell["label"], "seed": cell["seed"], "refiner": ref, "lfd_fake": cell["lfd_fake"],
            "lfd": r["lfd"], "psnr": r["psnr"], "mean_dist_fake": r["evasion_fake"], "mean_dist_refined": r["evasion"],
            "n_working": r["n_working"], "away": classes.count("away"), "over": classes.count("past"),
            "toward": classes.count("toward"), "oracle_off": ",".join(oracle_bad) or "-",
            "n_oracle": sum(v.get(f"{ref}:real_oracle") is not None for v in dets.values()),
            "inactive": cell.get("inactive", {}).get(ref, "")}


def _fmt(v: Triple | None) -> str:
    return "–" if v is None else f"{v[0]:.3f} [{v[1]:.2f}, {v[2]:.2f}]"


def cell_table(cells: Sequence[dict[str, Any]], refiners: Sequence[str]) -> list[str]:
    """The per-seed table: one row per cell and refiner."""
    lines = ["| data | seed | refiner | LFD fake → refined | PSNR dB | mean \\|AUC−0.5\\| (working) | toward / away / over "
             "| reals left real? (oracle CI holds 0.5) | attack inactive |", "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        for ref in refiners:
            if ref not in c["refiners"]:
                continue
            r = summarise(c, ref)
            oracle = "–" if not r["n_oracle"] else ("yes" if r["oracle_off"] == "-" else "no: " + r["oracle_off"])
            lines.append(f"| {r['label']} | {r['seed']} | {ref} | {r['lfd_fake']:.4f} → {r['lfd']:.4f} | {r['psnr']:.1f} | "
                         f"{r['mean_dist_fake']:.3f} → {r['mean_dist_refined']:.3f} (n={r['n_working']}) | "
                         f"{r['toward']} / {r['away']} / {r['over']} | {oracle} | {r['inactive'] or 'no'} |")
    return lines


def detector_table(cells: Sequence[dict[str, Any]], first: str, second: str) -> list[str]:
    """Per detector: AUC [95 % CI] on the fakes, after ``first`` and after ``second``, with the moves."""
    lines = [f"| data | seed | detector | fake | {first} | class | {second} | class | oracle ({first}) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        for name, v in c["detectors"].items():
            lines.append(f"| {c['label']} | {c['seed']} | {name} | {_fmt(v['fake'])} | {_fmt(v.get(first))} | "
                         f"{v.get(f'{first}:class', '–')} | {_fmt(v.get(second))} | {v.get(f'{second}:class', '–')} | "
                         f"{_fmt(v.get(f'{first}:real_oracle'))} |")
    return lines


__all__ = ["cell_table", "classify", "detector_table", "evasion", "flattened", "real_oracle", "run_cell",
           "selection_curve", "stig_overrides", "summarise"]
