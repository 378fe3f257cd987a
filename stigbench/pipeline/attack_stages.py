"""The attack stages of a run: fit every refiner, refine a split part's fakes, perturb the test sets."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from stigbench.attacks.perturbations import Perturbation
from stigbench.core.imageset import ArrayImageSet, ImageSet, map_batches
from stigbench.core.io import read_json, write_json
from stigbench.evaluation.rows import CLEAN
from stigbench.pipeline.plan import Component
from stigbench.pipeline.isolation import isolated
from stigbench.pipeline.refiner_specs import refine_time_params
from stigbench.pipeline.run_state import RunState, accepts, fit_component, fit_key, folder_name, load_array, save_pngs
from stigbench.pipeline.stages import code_fingerprint

log = logging.getLogger("stigbench")


def fit_component_of(rs: Component) -> Component:
    """``rs`` without its refine-time parameters (``strength``): what its fit stage builds and is keyed
    by, so every point of a sweep shares one fit. Named by the display name without them."""
    later = refine_time_params(rs.cls, rs.params)
    if not later:
        return rs
    display = ":".join(part for part in rs.display.split(":") if part.partition("=")[0] not in later)
    params = {k: v for k, v in rs.params.items() if k not in later}
    kwargs = {k: v for k, v in rs.kwargs.items() if k not in later}
    return dataclasses.replace(rs, display=display, params=params, kwargs=kwargs)


def fit_refiners(state: RunState, keep_in_run: bool = True) -> dict[str, Path]:
    """Fit (or reuse) every refiner on the training reals and the fakes of the split part named by
    ``fit_refiners_on`` (training fakes by default); returns stage folders by display name. Refiners
    that differ only in refine-time parameters (a strength sweep) share one fit stage and folder.
    ``keep_in_run`` copies each fitted refiner into the run folder once, under its fit's display name
    (not for the refiners of a cross-dataset test set)."""
    fit_on = state.config.fit_refiners_on
    fake_fit, real_train = state.part("fake", fit_on), state.part("real", "train")
    if fit_on == "test" and state.plan.refiners:
        log.warning("refiners are fitted on the test fakes they refine (transductive, as in the STIG paper)")
    out: dict[str, Path] = {}
    failed: dict[str, str] = {}  # fit display name -> error: a sweep's other points do not fit it again
    for swept in state.plan.refiners:
        rs = fit_component_of(swept)
        if rs.display in failed:
            state.errors[f"refiner:{swept.display}"] = failed[rs.display]
            continue
        cls, params = rs.cls, rs.params
        payload = {"refiner": rs.name, "params": params, "code": code_fingerprint(cls), "fit_fakes": fit_on,
                   **fit_key(rs)}

        def make(folder: Path, rs: Component = rs, params: dict[str, Any] = params) -> None:
            t0 = time.perf_counter()
            if accepts(rs.cls.fit, "log_dir"):
                refiner = fit_component(rs, fake_fit, real_train, log_dir=folder / "training")
            else:
                refiner = fit_component(rs, fake_fit, real_train)
            refiner.save(folder)
            write_json(folder / "info.json", {
                "params": refiner.get_params() if hasattr(refiner, "get_params") else params,
                "fit_seconds": round(time.perf_counter() - t0, 2),
                "fit_info": getattr(refiner, "fit_info_", {})})

        # a failing refiner must not take the other results down
        with isolated(state.errors, f"refiner:{swept.display}", "refiner %s failed", swept.display) as attempt:
            t0 = time.perf_counter()
            n_computed = len(state.store.misses)
            # A refiner that checkpoints into log_dir continues an interrupted fit from its work folder.
            folder = state.stage("refiner", rs.display, payload, make, resumable=accepts(cls.fit, "log_dir"))
            out[swept.display] = folder
            info = read_json(folder / "info.json")
            info["cached"] = len(state.store.misses) == n_computed
            info["fit_fakes"] = fit_on
            later = refine_time_params(swept.cls, swept.params)
            if later:  # a sweep point: the shared fit's record, with the point's own refine-time parameters
                info.update(params={**info.get("params", {}), **later}, refine_params=later, fitted_as=rs.display)
            state.refiner_info[swept.display] = info
            kept = state.run_dir / "refiners" / folder_name(rs.display)
            if keep_in_run and not kept.exists():  # a sweep's points share their fit's copy
                shutil.copytree(folder, kept, ignore=shutil.ignore_patterns(".complete", "stage.json", "manifest.json"))
            log.info("refiner %s ready in %.1fs%s", swept.display, time.perf_counter() - t0,
                     " (cached)" if info["cached"] else "")
        if attempt.error:
            failed[rs.display] = attempt.error
    return out


def refined_set(state: RunState, display: str, refiner_folder: Path, part: str) -> ArrayImageSet | None:
    """The ``part`` fakes refined by a fitted refiner (cached as an 8-bit array)."""
    fakes = state.part("fake", part)

    component = state.refiner_components[display]
    later = refine_time_params(component.cls, component.params)

    def make(folder: Path) -> None:
        refiner = component.cls.load(refiner_folder)  # by registry entry, not class path
        for name, value in later.items():  # a sweep point: its fit is shared, its strength is its own
            setattr(refiner, name, value)
        t0 = time.perf_counter()
        if accepts(refiner.refine, "store"):
            out = refiner.refine(fakes, store=folder / "images.npy")
        else:
            out = refiner.refine(fakes)
            # Copied batch by batch (8-bit values survive the float round trip exactly), never whole.
            map_batches(out, lambda batch: batch, state.config.batch_size, store=folder / "images.npy")
        if len(out) != len(fakes) or out.size != fakes.size:
            raise ValueError(f"refiner {display} returned {len(out)} images of size {out.size}; "
                             f"expected {len(fakes)} of size {fakes.size}")
        write_json(folder / "info.json", {"refine_seconds": round(time.perf_counter() - t0, 2)})

    with isolated(state.errors, f"refiner:{display}", "refining with %s failed", display) as attempt:
        key = {"refiner_stage": refiner_folder.name, "part": part, **({"refine_params": later} if later else {})}
        folder = state.stage("refined", f"{display}-{part}", key, make)
    if attempt.error:
        return None
    images = load_array(folder, fakes.ids)
    if part == "test":
        state.identity[(CLEAN, f"refined:{display}")] = folder.name
        state.refiner_info.setdefault(display, {})["refine_seconds"] = read_json(folder / "info.json")["refine_seconds"]
        if state.config.save_refined:
            save_pngs(images, state.run_dir / "refined" / folder_name(display), fakes.ids)
    return images


def perturbed_sets(state: RunState, p: Perturbation, sets: dict[str, ImageSet]) -> dict[str, ImageSet]:
    if p.name == CLEAN:
        return dict(sets)
    out: dict[str, ImageSet] = {}
    for key, images in sets.items():
        def make(folder: Path, images: ImageSet = images) -> None:
            p.apply(images, state.config.batch_size, store=folder / "images.npy", seed=state.config.seed)

        folder = state.stage("perturbed", f"{key}-{p.name}", {"source": state.identity[(CLEAN, key)],
                                                             "perturbation": p.name}, make)
        state.identity[(p.name, key)] = folder.name
        out[key] = load_array(folder, images.ids)
    return out
