"""The detection stages of a run: fit each detector (or reuse it), score every test set, and the
adaptive defender that retrains each detector on refined fakes."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stigbench.core.imageset import ImageSet, labelled
from stigbench.core.io import read_json, write_json
from stigbench.detection.registry import is_persistent
from stigbench.core.contracts import authors_threshold
from stigbench.evaluation.rows import CLEAN, TRAINED_ON_FAKE
from stigbench.measures import metrics as M
from stigbench.pipeline.attack_stages import refined_set
from stigbench.pipeline.isolation import isolated
from stigbench.pipeline.refiner_specs import refine_time_params
from stigbench.pipeline.run_state import RunState, checked_scores, fit_component, fit_key, folder_name
from stigbench.pipeline.stages import code_fingerprint

log = logging.getLogger("stigbench")


def fit_detector(state: RunState, name: str, train: tuple[ImageSet, np.ndarray], val: tuple[ImageSet, np.ndarray],
                 trained_on: str, extra: dict[str, Any]) -> tuple[Any, Path]:
    """Fit (or reuse) detector ``name``; the stage holds its state and its validation threshold."""
    component = state.detector_components[name]
    cls, params = component.cls, component.params
    persistent = is_persistent(cls)
    # Files by path (the saved detector reads its files from there) and by content (a changed file is a new fit).
    files = {"files": {k: f["sha256"] for k, f in component.files.items()}} if component.files else {}
    payload = {"detector": name, "params": params, **files, "trained_on": trained_on,
               "code": code_fingerprint(cls), **extra, **fit_key(component)}
    fitted: dict[str, Any] = {}

    def make(folder: Path) -> None:
        t0 = time.perf_counter()
        det = fit_component(component, train[0], train[1], val[0], val[1])
        threshold = M.best_threshold(val[1], checked_scores(det.score(val[0]), len(val[0]), name))
        if persistent:
            det.save(folder / "detector")
        fitted["detector"] = det
        write_json(folder / "info.json", {
            "params": det.get_params() if hasattr(det, "get_params") else params, "threshold": threshold,
            "fit_seconds": round(time.perf_counter() - t0, 2), "fit_info": getattr(det, "fit_info_", {})})

    if not persistent:
        note = f"detector {name!r} has no save/load: fitted and scored afresh in this run, never cached"
        if note not in state.notes:
            state.notes.append(note)
            log.info("%s", note)
    folder = state.stage("detector", f"{name}-{trained_on}".replace(" ", "-"), payload, make, cached=persistent)
    return (cls.load(folder / "detector") if persistent else fitted["detector"]), folder


def score_set(state: RunState, det: Any, det_folder: Path, name: str, key: str, images: ImageSet, pert: str) -> np.ndarray:
    def make(folder: Path) -> None:
        np.save(folder / "scores.npy", checked_scores(det.score(images), len(images), name), allow_pickle=False)

    folder = state.stage("scores", f"{name}-{key}-{pert}", {"detector_stage": det_folder.name,
                                                            "set": state.identity[(pert, key)]}, make,
                        cached=is_persistent(state.detector_components[name].cls))
    return np.load(folder / "scores.npy", allow_pickle=False)


def deployed_thresholds(state: RunState, det: Any, det_folder: Path, name: str) -> dict[str, Any]:
    """The thresholds of a deployed detector: fixed on the scores of the clean *validation reals* for
    each target false-positive rate (:func:`stigbench.measures.metrics.deployed_thresholds`; NaN where
    there are too few reals), with their number. The scores are a cached stage of their own, so fit
    stages cached before these thresholds existed serve as they are."""
    reals = state.part("real", "val")
    scores = score_set(state, det, det_folder, name, "real-val", reals, CLEAN)
    return {"val_reals": len(reals),
            **{f"threshold_fpr{k}": v for k, v in M.deployed_thresholds(scores).items()}}


def score_conditions(state: RunState, det: Any, folder: Path, name: str, trained_on: str,
                     sets: dict[str, ImageSet], pert: str, conditions: list[str]) -> None:
    """Scores of the test reals and of each condition in ``conditions`` (keys of ``sets``); the
    metrics stage turns them into rows."""
    s_real = score_set(state, det, folder, name, "real", sets["real"], pert)
    for key in conditions:
        s_fake = score_set(state, det, folder, name, key, sets[key], pert)
        labels = np.r_[np.zeros(len(s_real), np.int64), np.ones(len(s_fake), np.int64)]
        scores = np.r_[s_real, s_fake]
        condition, _, refiner = key.partition(":")
        state.score_frames.append(pd.DataFrame({
            "test_dataset": state.spec.name, "detector": name, "trained_on": trained_on, "condition": condition,
            "refiner": refiner, "perturbation": pert, "path": sets["real"].ids + sets[key].ids, "label": labels, "score": scores}))


def evaluate_detector(state: RunState, name: str, perturbed: dict[str, dict[str, ImageSet]]) -> None:
    """Train on real vs original training fakes, then score every condition and perturbation."""
    t0 = time.perf_counter()
    n_frames, n_thresholds = len(state.score_frames), len(state.thresholds)
    component = state.detector_components[name]
    trained_on = component.trained_on  # "fake", or "released <sha>" for a score-only detector
    with isolated(state.errors, f"detector:{name}", "detector %s failed", name) as attempt:
        det, folder = fit_detector(
            state, name, labelled(state.part("real", "train"), state.part("fake", "train")),
            labelled(state.part("real", "val"), state.part("fake", "val")), trained_on, {})
        info = read_json(folder / "info.json")
        state.fitted[name] = (det, folder)
        authors = authors_threshold(det)
        state.thresholds.append({"detector": name, "trained_on": trained_on, "refiner": "", "threshold": info["threshold"],
                                 **deployed_thresholds(state, det, folder, name),
                                 "authors_threshold": float("nan") if authors is None else authors})
        for pert, sets in perturbed.items():
            conditions = [k for k in sets if k != "real"]
            score_conditions(state, det, folder, name, trained_on, sets, pert, conditions)
        if (folder / "detector").is_dir():
            shutil.copytree(folder / "detector", state.run_dir / "detectors" / folder_name(name))
            # The saved detector carries its threshold and image size: `bench.py detect` needs both.
            write_json(state.run_dir / "detectors" / folder_name(name) / "threshold.json", {
                "threshold": info["threshold"], "chosen_on": "val", "metric": "max-accuracy",
                "image_size": state.dataset.size,
                **({"trained_on": trained_on, "authors_threshold": authors} if authors is not None else {})})
        state.detector_info[name] = {**info, "seconds": round(time.perf_counter() - t0, 2)}
        log.info("detector %s done in %.1fs", name, time.perf_counter() - t0)
    if attempt.error:
        del state.score_frames[n_frames:], state.thresholds[n_thresholds:]


def adaptive_defender(state: RunState, display: str, refiner_folder: Path, refined_test: ImageSet) -> None:
    """Retrain each detector on real vs refined fakes and score the refined test fakes again.

    The refined training fakes are the *validation* fakes refined by the refiner, which never saw
    them: the defender meets refinement as it would in the wild. They serve for training and for
    the threshold (no other refined images are free of leakage), with as many training reals,
    evenly spaced over the training split.
    """
    refined_val = refined_set(state, display, refiner_folder, "val")
    if refined_val is None:
        return
    real_train, real_val = state.part("real", "train"), state.part("real", "val")
    if len(real_train) > len(refined_val):
        # Balanced classes: against 3x more reals, a CNN defender settled on "real" and never learned.
        keep = np.linspace(0, len(real_train) - 1, len(refined_val)).round().astype(np.int64)
        real_train = real_train.subset(keep)
    sets = {"real": state.part("real", "test"), f"refined:{display}": refined_test}
    component = state.refiner_components[display]
    # The points of a strength sweep share their refiner's fit stage but not their refined fakes.
    later = refine_time_params(component.cls, component.params)
    extra = {"refiner_stage": refiner_folder.name, **({"refine_params": later} if later else {})}
    for name in state.detector_names:
        if state.detector_components[name].trained_on != TRAINED_ON_FAKE:
            note = (f"--adaptive skips detector {name!r}: it scores with its authors' released weights "
                    f"({state.detector_components[name].trained_on}) and is never trained by the run")
            if note not in state.notes:
                state.notes.append(note)
                log.info("%s", note)
            continue
        n_frames, n_thresholds = len(state.score_frames), len(state.thresholds)
        with isolated(state.errors, f"detector:{name}@adaptive:{display}", "adaptive %s vs %s failed", name,
                      display) as attempt:
            det, folder = fit_detector(state, name, labelled(real_train, refined_val), labelled(real_val, refined_val),
                                            "refined", extra)
            info = read_json(folder / "info.json")
            state.thresholds.append({"detector": name, "trained_on": "refined", "refiner": display,
                                     "threshold": info["threshold"], **deployed_thresholds(state, det, folder, name),
                                     "authors_threshold": float("nan")})
            score_conditions(state, det, folder, name, "refined", sets, CLEAN, [f"refined:{display}"])
            state.detector_info[f"{name}@adaptive:{display}"] = info
            log.info("adaptive %s against %s done", name, display)
        if attempt.error:
            del state.score_frames[n_frames:], state.thresholds[n_thresholds:]
