"""The gradient-attack stage of a run: after the detectors are fitted, craft each ``--attack`` against its
target detector's torch path, store the attacked test fakes as 8-bit images, and have every detector
score them.

Threat model of this stage (recorded per row by :func:`threat_model`): **white-box** (the attacker has
the fitted detector, its weights and its preprocessing, through ``logits``), the **target** detector
named per attacked set, a **budget** (norm and ε around each 8-bit test fake), and the **fake→real**
direction (test fakes pushed toward "real"). The attacker never sees the test reals or other detectors;
every detector of the run scores every attacked set, so rows whose detector is not the target read as
transfer from that target.

An attacked set is a stage like a refined set: keyed by the attack's parameters, the target's fit
stage and the test fakes, cached and reused by later runs; an interrupted run crafts again only the
sets it had not finished. The crafted images are rounded to 8 bits and re-projected into the ε-ball
(:func:`stigbench.attacks.gradient.quantize_in_ball`), and scored as stored.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from stigbench.attacks.registry import attacks as attack_registry
from stigbench.core.contracts import REAL
from stigbench.core.imageset import ArrayImageSet, ImageSet, map_batches
from stigbench.core.io import read_json, write_json
from stigbench.detection.registry import is_persistent
from stigbench.evaluation.rows import CLEAN, THREAT_COLUMNS
from stigbench.pipeline.attack_stages import perturbed_sets
from stigbench.pipeline.detection_stages import score_conditions
from stigbench.pipeline.isolation import isolated
from stigbench.pipeline.plan import Component
from stigbench.pipeline.run_state import RunState, load_array
from stigbench.pipeline.stages import code_fingerprint

log = logging.getLogger("stigbench")

#: The columns of ``gradient_attacks.csv``, one row per attacked set.
ATTACK_COLUMNS = ["refiner", "attack", *THREAT_COLUMNS]
FAKE_TO_REAL = "fake→real"


def threat_model(component: Component) -> dict[str, str]:
    """The threat-model columns of one attack component (see the module docstring)."""
    attack = component.prototype
    budget = attack.budget() + (f" around {component.start}" if component.start else "")
    return {"refiner": component.display, "attack": component.name,
            "knowledge": attack_registry().meta(component.name).knowledge,
            "target": str(component.params.get("target", "")), "budget": budget, "direction": FAKE_TO_REAL}


def attacked_set(state: RunState, component: Component, refined: dict[str, ImageSet]) -> ArrayImageSet | None:
    """The test fakes (or, for an attack with a ``start``, those fakes refined by that refiner: ``refined``
    by display name) attacked by ``component`` against its target's fitted torch path (a cached stage);
    ``None`` when the target, the starting refiner or crafting failed (the error is recorded)."""
    target = component.params["target"]
    display = component.display
    missing = (f"its target detector {target!r} did not fit" if target not in state.fitted else
               f"its starting refiner {component.start!r} failed" if component.start and component.start not in refined
               else None)
    if missing:
        state.errors[f"attack:{display}"] = missing
        log.warning("attack %s skipped: %s", display, missing)
        return None
    detector, detector_folder = state.fitted[target]
    source = f"refined:{component.start}" if component.start else "fake"
    fakes = refined[component.start] if component.start else state.part("fake", "test")
    attack = component.build()

    def make(folder: Path) -> None:
        t0 = time.perf_counter()
        generator = torch.Generator().manual_seed(int(getattr(attack, "seed", state.ctx.seed)))

        def craft(batch: torch.Tensor) -> torch.Tensor:
            adversarial = attack.perturb(batch, detector.logits, towards=REAL, generator=generator)
            return attack.store(adversarial.detach(), batch)

        progress = f"{display}: crafting" if state.ctx.progress else None
        map_batches(fakes, craft, int(getattr(attack, "batch_size", state.config.batch_size)), progress=progress,
                    store=folder / "images.npy")
        write_json(folder / "info.json", {"craft_seconds": round(time.perf_counter() - t0, 2), "images": len(fakes)})

    payload = {"attack": component.name, "params": component.params, "code": code_fingerprint(component.cls),
               "detector_stage": detector_folder.name, "set": state.identity[(CLEAN, source)], "towards": "real"}
    with isolated(state.errors, f"attack:{display}", "attack %s failed", display) as attempt:
        t0 = time.perf_counter()
        # A detector without save/load is fitted afresh in each run, so its attacked sets are too.
        folder = state.stage("attacked", display, payload, make,
                             cached=is_persistent(state.detector_components[target].cls))
        info = read_json(folder / "info.json")
        state.attack_info[display] = {**threat_model(component), "params": component.params, **info,
                                      "seconds": round(time.perf_counter() - t0, 2)}
        log.info("attack %s ready in %.1fs", display, time.perf_counter() - t0)
    if attempt.error:
        return None
    state.identity[(CLEAN, f"refined:{display}")] = folder.name
    return load_array(folder, fakes.ids)


def run_attacks(state: RunState, perturbed: dict[str, dict[str, ImageSet]],
                refined: dict[str, ImageSet]) -> dict[str, dict[str, ImageSet]]:
    """Craft every attack of the plan and score the attacked sets with every fitted detector, clean and under
    each test-time perturbation (does an attack survive JPEG?); returns ``{perturbation: {set key: images}}``
    of the attacked sets (for the distance, fidelity and quality rows). ``perturbed`` holds each
    perturbation's test reals, already made; ``refined`` the refined test fakes, by refiner."""
    attacked: dict[str, ImageSet] = {}
    for component in state.plan.attacks:
        images = attacked_set(state, component, refined)
        if images is not None:
            attacked[f"refined:{component.display}"] = images
    if not attacked:
        return {}
    out = {p.name: perturbed_sets(state, p, attacked) for p in state.perturbations}
    for name, (detector, folder) in state.fitted.items():
        with isolated(state.errors, f"detector:{name}@attacks", "detector %s failed on the attacked sets", name):
            for pert, sets in out.items():
                score_conditions(state, detector, folder, name, "fake", {"real": perturbed[pert]["real"], **sets},
                                 pert, list(sets))
    return out


def attacks_frame(attack_info: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """``gradient_attacks.csv``: one row per attacked set with its threat model."""
    return pd.DataFrame([{c: info.get(c, "") for c in ATTACK_COLUMNS} for info in attack_info.values()],
                        columns=ATTACK_COLUMNS)
