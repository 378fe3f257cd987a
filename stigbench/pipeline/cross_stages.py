"""Cross-dataset scoring: the run's detectors on other datasets' test splits, unrefined and refined.

For each test dataset B (``--test-datasets``), B is loaded at the run's image size (larger images are
centre-cropped to it, as in a run; smaller ones fail B's cell with a message), split with the run's
seed exactly as B's own run would split it, and its test fakes are refined by the run's refiners
fitted on B's training split (the same stages B's own run computes, shared through the cache) or,
with ``--attack-from`` naming the run's dataset, by the refiners fitted on it. The detectors trained
on the run's dataset score B's test reals against B's test fakes and each refined set, at their own
thresholds; LFD, PSNR/SSIM and FID/KID are measured against B's reals. Perturbations and the
adaptive defender are not crossed. A failing cell records its error and the run goes on.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from stigbench.core.imageset import ImageSet
from stigbench.data.specs import DatasetError, DatasetSpec, load_dataset
from stigbench.data.split import make_split
from stigbench.evaluation.distances import fidelity_rows, lfd_rows, mean_spectra
from stigbench.evaluation.rows import CLEAN
from stigbench.pipeline.attack_stages import fit_refiners, refined_set
from stigbench.pipeline.detection_stages import score_conditions
from stigbench.pipeline.isolation import isolated
from stigbench.pipeline.run_state import RunState

log = logging.getLogger("stigbench")

SMALLER = "smaller than the benchmark size"


def test_state(state: RunState, spec: DatasetSpec) -> RunState:
    """A state for test dataset ``spec`` that shares the run's stores, folder and components."""
    size = state.dataset.size
    advice = "larger images are centre-cropped, smaller ones cannot be scored"
    try:
        dataset = load_dataset(spec, size=size, progress=state.ctx.progress)
    except DatasetError as exc:
        if SMALLER in str(exc):
            raise ValueError(f"the images of {spec.name} are smaller than the {size}-px images the detectors were "
                             f"trained on ({exc}); {advice}") from exc
        raise
    small = [s for s in dataset.skipped if SMALLER in s.reason]
    if small:
        raise ValueError(f"{len(small)} image(s) of {spec.name} are smaller than the {size}-px images the "
                         f"detectors were trained on (e.g. {small[0].path}); {advice}")
    config = dataclasses.replace(state.config, save_refined=False)
    plan = dataclasses.replace(state.plan, spec=spec, config=config)
    return RunState(plan, dataset, make_split(dataset, seed=state.ctx.seed), state.run_dir, state.store,
                    state.volatile)


def cross_dataset(state: RunState, spec: DatasetSpec, own_refiners: dict[str, Path]) -> tuple[
        dict[str, ImageSet], dict[str, Any]]:
    """Score the fitted detectors of ``state`` on ``spec``'s test split; the score frames go into
    ``state`` (tagged with ``test_dataset``). Returns the test sets (for the quality rows) and the
    cell's record for ``run.json``."""
    sub = test_state(state, spec)
    record: dict[str, Any] = {"attack_from": state.spec.name if state.plan.attack_from_own else spec.name,
                              "image_size": sub.dataset.size, "split": sub.split.counts(), "error": None}
    folders = own_refiners if state.plan.attack_from_own else fit_refiners(sub, keep_in_run=False)
    refined = {d: refined_set(sub, d, f, "test") for d, f in folders.items()}
    sets: dict[str, ImageSet] = {"real": sub.part("real", "test"), "fake": sub.part("fake", "test"),
                                 **{f"refined:{d}": s for d, s in refined.items() if s is not None}}
    record["refiners"] = {d: {"fit_seconds": i["fit_seconds"], "cached": i["cached"]}  # those fitted on the test set
                          for d, i in sub.refiner_info.items() if "fit_seconds" in i}
    for name, (det, folder) in state.fitted.items():
        score_conditions(sub, det, folder, name, state.detector_components[name].trained_on, sets, CLEAN,
                         [k for k in sets if k != "real"])
    state.score_frames += sub.score_frames
    for key, message in sub.errors.items():
        state.errors[f"cross:{spec.name}:{key}"] = message
    return sets, record


def cross_distance_rows(state: RunState, spec: DatasetSpec, sets: dict[str, ImageSet]) -> list[dict[str, Any]]:
    """LFD and PSNR/SSIM rows of a test dataset's sets, against its own reals and fakes."""
    kw = {"dataset": state.spec.name, "seed": state.ctx.seed, "test_dataset": spec.name}
    rows = lfd_rows(mean_spectra(sets, state.ctx.batch_size), perturbation=CLEAN, **kw)
    refined = {k.partition(":")[2]: s for k, s in sets.items() if k.startswith("refined:")}
    return rows + fidelity_rows(sets["fake"], refined, batch_size=state.ctx.batch_size, **kw)


def run_cross(state: RunState, own_refiners: dict[str, Path]) -> dict[str, dict[str, ImageSet]]:
    """Every test dataset of the plan: its scores go into ``state``, its test sets are returned (by
    dataset name) for the quality rows; a failing one is recorded in ``state.cross_info`` and skipped."""
    out = {}
    for spec in state.plan.test_specs:
        # one test dataset must not take the others down
        with isolated(state.errors, f"cross:{spec.name}", "cross-dataset %s failed", spec.name) as attempt:
            sets, record = cross_dataset(state, spec, own_refiners)
            out[spec.name] = sets
            log.info("cross-dataset %s -> %s done", state.spec.name, spec.name)
        if attempt.error:
            record = {"attack_from": None, "error": attempt.error}
        state.cross_info[spec.name] = record
    return out
