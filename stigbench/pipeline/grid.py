"""``bench.py grid``: the product datasets × seeds, resumable.

Each cell is an ordinary run (:func:`~stigbench.pipeline.runner.run_benchmark`) written under the grid folder.
``grid.json`` records every finished cell and is rewritten atomically after each one, so an
interrupted grid resumes with only the missing cells; inside a cell the stage cache reuses whatever
an interrupted attempt had already computed. A cell that fails (a dataset that cannot be loaded, a
run that raises) is recorded in ``grid.json`` with its error and the other cells still run; the next
run of the grid retries it.

A dataset of a named layout gives one cell per generator (:func:`layout_cells`). The cells run on an
executor (:mod:`~stigbench.pipeline.executors`: this process, Ray or Slurm); whichever it is, this
process alone writes ``grid.json``, as each cell finishes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stigbench.core.config import RunConfig
from stigbench.core.io import read_json, write_json
from stigbench.core.settings import result_settings
from stigbench.pipeline.executors import Cell, CellOutcome, Executor, LocalExecutor
from stigbench.pipeline.runner import RunResult, run_benchmark

MANIFEST = "grid.json"
#: Fields that name a cell; with the replicate fields (seed) and those that never change results
#: (:mod:`stigbench.core.settings`) they may differ when a grid is resumed; everything else must match.
_CELL_FIELDS = frozenset({"dataset", "subset"})


@dataclass
class GridResult:
    out: Path
    run_dirs: dict[str, Path]
    ran: list[str]
    skipped: list[str]
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # cell -> error


def cell_name(dataset: str, seed: int) -> str:
    return f"{dataset}/seed{seed}"


def _grid_settings(config: RunConfig | dict[str, Any]) -> dict[str, Any]:
    data = config.to_dict() if isinstance(config, RunConfig) else config
    return {k: v for k, v in result_settings(data, replicates=False).items() if k not in _CELL_FIELDS}


def layout_cells(base: RunConfig, names: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """The grid's datasets: ``names`` (a layout spec among them expands into its generators) and, when
    ``base`` has a ``layout``, one per generator of it; each maps to the config fields of its cells."""
    from stigbench.data.layouts import escape, generator_specs, layout_spec
    from stigbench.data.specs import datasets

    subset = tuple(p.strip() for p in (base.subset or "").split(",") if p.strip())
    cells: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = datasets(base.spec_dirs).get(name)
        plain = {"dataset": name, "layout": None, "root": None, "real_root": None}
        if not spec.layout:
            cells[name] = {**plain, "subset": None}
            continue
        spec = dataclasses.replace(spec, subset=subset or spec.subset)
        for gen in generator_specs(spec, strict=False):
            cells[gen.name] = {**plain, "subset": escape(gen.generator)}
    if base.layout:
        spec = layout_spec(base.layout, base.root or "", subset, base.real_root)
        for gen in generator_specs(spec, strict=False):
            cells[gen.name] = {"dataset": gen.name, "subset": escape(gen.generator)}
    return cells


def run_grid(datasets: Sequence[str], seeds: Sequence[int], out: str | Path, base: RunConfig,
             run: Callable[[RunConfig], RunResult] = run_benchmark,
             echo: Callable[[str], None] = lambda _msg: None,
             cells: dict[str, dict[str, Any]] | None = None,
             executor: Executor | None = None) -> GridResult:
    """Run every (dataset, seed) cell not yet finished in ``out``; returns what ran, what was reused and
    what failed. ``cells`` maps a dataset of ``datasets`` to its config fields (default ``dataset=name``).
    ``executor`` runs the cells (default: one after another in this process, each through ``run``)."""
    if not datasets or not seeds:
        raise ValueError("a grid needs at least one dataset and one seed")
    if executor is None:
        executor = LocalExecutor(run)
    elif run is not run_benchmark:
        raise ValueError("run= is for the default local executor; pass LocalExecutor(run) as executor instead")
    executor.check()  # a missing package or an unreachable cluster fails before the grid writes anything
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    settings = _grid_settings(base)
    if manifest_path.is_file():
        manifest = read_json(manifest_path)
        # A key missing from an older manifest is a setting added since, which that grid ran at its default.
        old = {**_grid_settings(RunConfig()), **_grid_settings(manifest.get("settings", {}))}
        if old != settings:
            differ = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise ValueError(f"{out} holds a grid with other settings (differ: {', '.join(differ)}); "
                             "use another --out or the same settings")
    else:
        manifest = {"settings": settings, "cells": {}}
        write_json(manifest_path, manifest)
    names = [cell_name(d, s) for d in datasets for s in seeds]
    tag = {name: f"[{k}/{len(names)}] {name}" for k, name in enumerate(names, 1)}
    skipped, run_dirs, todo = [], {}, []
    for dataset in datasets:
        for seed in seeds:
            name = cell_name(dataset, seed)
            done = manifest["cells"].get(name)
            if done and done.get("run_dir") and (out / done["run_dir"] / "metrics.csv").is_file():
                skipped.append(name)
                run_dirs[name] = out / done["run_dir"]
                echo(f"{tag[name]}: done earlier")
                continue
            fields = (cells or {}).get(dataset, {"dataset": dataset})
            todo.append(Cell(name, dataclasses.replace(base, **fields, seed=seed, out=str(out))))
    ran, failed = set(), {}
    for outcome in executor.map(todo, lambda cell, status: echo(f"{tag[cell.name]}: {status}")):
        _record(manifest, outcome)
        write_json(manifest_path, manifest)
        if outcome.error is not None:
            failed[outcome.name] = outcome.error
            echo(f"{tag[outcome.name]}: FAILED: {outcome.error}")
            continue
        ran.add(outcome.name)
        run_dirs[outcome.name] = out / str(outcome.run_dir)
        echo(f"{tag[outcome.name]}: done")
    return GridResult(out=out, run_dirs={n: run_dirs[n] for n in names if n in run_dirs},
                      ran=[n for n in names if n in ran], skipped=skipped,
                      failed={n: failed[n] for n in names if n in failed})


def _record(manifest: dict[str, Any], outcome: CellOutcome) -> None:
    if outcome.error is not None:
        manifest["cells"][outcome.name] = {"run_dir": None, "errors": {}, "error": outcome.error}
    else:
        manifest["cells"][outcome.name] = {"run_dir": outcome.run_dir, "errors": outcome.errors}
