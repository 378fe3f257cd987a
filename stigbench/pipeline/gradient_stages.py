"""The gradient-attack stage of a run: after the detectors are fitted, craft each ``--attack``, store the
attacked sets as 8-bit images, and have every detector score them, clean and under each perturbation.

Threat model (recorded per row by :func:`threat_model`):

* **knowledge** — ``white-box``: the attacker has the fitted target, its weights and preprocessing, through
  its torch path (``logits``); ``query``: he may submit images and read the target's P(fake) only
  (:func:`query_logits`; any detector); ``transfer``: he crafts on detectors he fitted himself, with his
  own seed, on the training split (:func:`fit_surrogate`; several form a mean-logit ensemble) and never
  touches the defender's;
* **target** — the detector crafted against (for a transfer attack: its surrogates);
* **budget** — the attack's own words (``linf 4/255``, ``log-magnitude linf 0.1``, ``linf 4/255, 1000
  queries``; ``around stig`` for an attack started from a refiner's output);
* **direction** — ``fake→real`` for the test fakes; with ``--attack-reals`` also ``real→fake`` for the
  test reals (``condition = real-attacked``, scored against the clean test fakes).

Every detector of the run scores every attacked set, so rows whose detector is not the target read as
transfer from that target (:mod:`stigbench.reporting.run.transfer` draws the matrix).

An attacked set is a stage like a refined set: keyed by the attack's parameters, the model it was crafted
on (the target's or surrogates' fit stages) and its source images, cached and reused by later runs; an
interrupted run crafts again only the sets it had not finished. The attack's ``store`` puts the crafted
images on the 8-bit grid within its budget (a pixel ball: :func:`stigbench.attacks.gradient.quantize_in_ball`),
and they are scored as stored.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stigbench.attacks.registry import attacks as attack_registry
from stigbench.core.contracts import FAKE, REAL, LogitsFn
from stigbench.core.imageset import ArrayImageSet, ImageSet, labelled, map_batches
from stigbench.core.io import read_json, write_json
from stigbench.detection.registry import is_persistent
from stigbench.evaluation.rows import CLEAN, FAKE_TO_REAL, REAL_ATTACKED, THREAT_COLUMNS, TRANSFER
from stigbench.pipeline.attack_stages import perturbed_sets
from stigbench.pipeline.detection_stages import score_conditions, score_set
from stigbench.pipeline.isolation import isolated
from stigbench.pipeline.plan import Component
from stigbench.pipeline.run_state import RunState, load_array
from stigbench.pipeline.stages import code_fingerprint

log = logging.getLogger("stigbench")

#: The columns of ``gradient_attacks.csv``, one row per attacked set.
ATTACK_COLUMNS = ["refiner", "attack", *THREAT_COLUMNS]


def threat_model(component: Component) -> dict[str, str]:
    """The threat-model columns of one attack component (see the module docstring)."""
    attack = component.prototype
    budget = attack.budget() + (f" around {component.start}" if component.start else "")
    target = "+".join(c.name for c in component.surrogates) or str(component.params.get("target") or "")
    return {"refiner": component.display, "attack": component.name, "knowledge": knowledge_of(component),
            "target": target, "budget": budget, "direction": FAKE_TO_REAL}


def knowledge_of(component: Component) -> str:
    """``transfer`` for an attack crafted on surrogates, else its registry entry's (``white-box``, ``query``)."""
    return TRANSFER if component.surrogates else attack_registry().meta(component.name).knowledge


def fit_surrogate(state: RunState, component: Component) -> tuple[Any, Path]:
    """The attacker's own detector ``component`` (his seed), fitted on the training split with the validation
    split for early stopping, as a defender's would be — a cached stage of kind ``surrogate``, never the
    defender's fitted object. Fitted once per run for all the transfer attacks that use it."""
    key = f"{component.name}-seed{component.kwargs.get('seed')}"
    if key in state.surrogates:
        return state.surrogates[key]
    persistent = is_persistent(component.cls)
    fitted: dict[str, Any] = {}

    def make(folder: Path) -> None:
        t0 = time.perf_counter()
        train = labelled(state.part("real", "train"), state.part("fake", "train"))
        val = labelled(state.part("real", "val"), state.part("fake", "val"))
        detector = component.build().fit(*train, *val)
        if persistent:
            detector.save(folder / "detector")
        fitted["detector"] = detector
        write_json(folder / "info.json", {"fit_seconds": round(time.perf_counter() - t0, 2)})

    payload = {"surrogate": component.name, "params": component.kwargs, "code": code_fingerprint(component.cls)}
    folder = state.stage("surrogate", key, payload, make, cached=persistent)
    detector = component.cls.load(folder / "detector") if persistent else fitted["detector"]
    state.surrogates[key] = (detector, folder)
    return detector, folder


def _model(state: RunState, component: Component) -> tuple[LogitsFn, str, bool]:
    """What ``component`` crafts on: its logits function, the stage folders that identify that model (for the
    attacked set's key) and whether the result may be cached (every model it uses can be saved)."""
    if component.surrogates:
        models = [fit_surrogate(state, c) for c in component.surrogates]
        detectors = [d for d, _ in models]

        def ensemble(images: torch.Tensor) -> torch.Tensor:  # the logit ensemble (mean logit)
            return torch.stack([d.logits(images) for d in detectors]).mean(dim=0)

        return ensemble, "+".join(f.name for _, f in models), all(is_persistent(c.cls) for c in component.surrogates)
    target = component.params["target"]
    detector, folder = state.fitted[target]
    logits_fn = query_logits(detector) if knowledge_of(component) == "query" else detector.logits
    return logits_fn, folder.name, is_persistent(state.detector_components[target].cls)


def query_logits(detector: Any) -> LogitsFn:
    """Logits from the detector's *scores* only, as an attacker who may submit images and read P(fake)
    sees it: each query is rounded to 8 bits (an image file), scored, and ``log(p / (1 - p))`` returned
    (``p`` clipped to [1e-7, 1 - 1e-7]); no gradient exists."""
    def logits(images: torch.Tensor) -> torch.Tensor:
        scores = detector.score(ArrayImageSet.from_float(images.detach().cpu()))
        p = np.clip(np.asarray(scores, dtype=np.float64), 1e-7, 1 - 1e-7)
        return torch.from_numpy(np.log(p / (1 - p))).to(torch.float32)

    return logits


def _craft(state: RunState, component: Component, images: ImageSet, source: str, towards: int) -> ArrayImageSet | None:
    """``images`` (the set keyed ``source`` in ``state.identity``) attacked by ``component`` toward the label
    ``towards`` against its target (a cached stage, ``attacked/<display>[-reals]``); ``None`` on failure (the
    error is recorded)."""
    label = component.display + ("-reals" if towards == FAKE else "")
    attack = component.build()
    logits_fn, model_key, cached = _model(state, component)

    def make(folder: Path) -> None:
        t0 = time.perf_counter()
        generator = torch.Generator().manual_seed(int(getattr(attack, "seed", state.ctx.seed)))
        queries: list[float] = []

        def craft(batch: torch.Tensor) -> torch.Tensor:
            adversarial = attack.perturb(batch, logits_fn, towards=towards, generator=generator)
            queries.extend(np.asarray(getattr(attack, "queries_used_", []), dtype=float).ravel().tolist())
            return attack.store(adversarial.detach(), batch)

        progress = f"{label}: crafting" if state.ctx.progress else None
        map_batches(images, craft, int(getattr(attack, "batch_size", state.config.batch_size)), progress=progress,
                    store=folder / "images.npy")
        write_json(folder / "info.json", {"craft_seconds": round(time.perf_counter() - t0, 2), "images": len(images),
                                          **({"mean_queries": round(float(np.mean(queries)), 1)} if queries else {})})

    payload = {"attack": component.name, "params": component.params, "code": code_fingerprint(component.cls),
               "detector_stage": model_key, "set": state.identity[(CLEAN, source)],
               "towards": "real" if towards == REAL else "fake"}
    with isolated(state.errors, f"attack:{label}", "attack %s failed", label) as attempt:
        t0 = time.perf_counter()
        # A detector without save/load is fitted afresh in each run, so its attacked sets are too.
        folder = state.stage("attacked", label, payload, make, cached=cached)
        info = read_json(folder / "info.json")
        record = state.attack_info.setdefault(component.display, {**threat_model(component),
                                                                  "params": component.params})
        record.update({f"{k}{'_reals' if towards == FAKE else ''}": v for k, v in info.items()})
        log.info("attack %s ready in %.1fs", label, time.perf_counter() - t0)
    if attempt.error:
        return None
    state.identity[(CLEAN, _key(component, towards))] = folder.name
    return load_array(folder, images.ids)


def _key(component: Component, towards: int) -> str:
    """The set key of an attacked set: ``refined:<display>`` (fakes) or ``real-attacked:<display>`` (reals)."""
    return f"{REAL_ATTACKED if towards == FAKE else 'refined'}:{component.display}"


def _missing(state: RunState, component: Component, refined: dict[str, ImageSet]) -> str | None:
    target = component.params.get("target")
    if target is not None and target not in state.fitted:
        return f"its target detector {target!r} did not fit"
    if component.start and component.start not in refined:
        return f"its starting refiner {component.start!r} failed"
    return None


def run_attacks(state: RunState, perturbed: dict[str, dict[str, ImageSet]],
                refined: dict[str, ImageSet]) -> dict[str, dict[str, ImageSet]]:
    """Craft every attack of the plan and score the attacked sets with every fitted detector, clean and under
    each test-time perturbation (does an attack survive JPEG?); returns ``{perturbation: {set key: images}}``
    of the attacked fakes (for the distance, fidelity and quality rows). ``perturbed`` holds each
    perturbation's test reals, already made; ``refined`` the refined test fakes, by refiner.

    With ``--attack-reals`` each attack (but those that start from a refiner's fakes) also pushes the clean
    test reals toward "fake"; every detector scores them against the clean test fakes
    (``condition = real-attacked``, ``direction = real→fake``)."""
    attacked: dict[str, ImageSet] = {}
    reals: dict[str, ImageSet] = {}
    for component in state.plan.attacks:
        missing = _missing(state, component, refined)
        if missing:
            state.errors[f"attack:{component.display}"] = missing
            log.warning("attack %s skipped: %s", component.display, missing)
            continue
        source = f"refined:{component.start}" if component.start else "fake"
        fakes = refined[component.start] if component.start else state.part("fake", "test")
        images = _craft(state, component, fakes, source, REAL)
        if images is not None:
            attacked[_key(component, REAL)] = images
        if state.config.attack_reals and not component.start:
            images = _craft(state, component, state.part("real", "test"), "real", FAKE)
            if images is not None:
                reals[_key(component, FAKE)] = images
    state.attacked_reals = {key.partition(":")[2]: images for key, images in reals.items()}
    if not attacked and not reals:
        return {}
    out = {p.name: perturbed_sets(state, p, attacked) for p in state.perturbations}
    fakes = state.part("fake", "test")
    for name, (detector, folder) in state.fitted.items():
        with isolated(state.errors, f"detector:{name}@attacks", "detector %s failed on the attacked sets", name):
            for pert, sets in out.items():
                score_conditions(state, detector, folder, name, state.detector_components[name].trained_on,
                                 {"real": perturbed[pert]["real"], **sets},
                                 pert, list(sets))
            for key, images in reals.items():
                score_attacked_reals(state, detector, folder, name, key, images, fakes)
    return out


def score_attacked_reals(state: RunState, detector: Any, folder: Path, name: str, key: str, reals: ImageSet,
                         fakes: ImageSet) -> None:
    """Scores of attacked test reals (label 0) against the clean test fakes (label 1): one scored group."""
    s_real = score_set(state, detector, folder, name, key, reals, CLEAN)
    s_fake = score_set(state, detector, folder, name, "fake", fakes, CLEAN)
    condition, _, display = key.partition(":")
    state.score_frames.append(pd.DataFrame({
        "test_dataset": state.spec.name, "detector": name, "trained_on": state.detector_components[name].trained_on,
        "condition": condition,
        "refiner": display, "perturbation": CLEAN, "path": reals.ids + fakes.ids,
        "label": np.r_[np.zeros(len(s_real), np.int64), np.ones(len(s_fake), np.int64)],
        "score": np.r_[s_real, s_fake]}))


def attacks_frame(attack_info: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """``gradient_attacks.csv``: one row per attacked set with its threat model."""
    return pd.DataFrame([{c: info.get(c, "") for c in ATTACK_COLUMNS} for info in attack_info.values()],
                        columns=ATTACK_COLUMNS)
