"""``run_benchmark(config) -> RunResult``: the whole benchmark for one dataset and seed.

split → fit each refiner on the training fakes and reals → refine the test fakes → fit each detector
on training reals vs original fakes (threshold from the validation split) → score test reals, test
fakes and every refined set, clean and under each test-time perturbation → optionally retrain each
detector on refined fakes (the adaptive defender) → metrics → a new run folder.

Leakage rules: no image used to train a refiner is ever refined and scored, and no detector is scored
on an image it was trained on. The adaptive defender trains on *validation* fakes refined by the
refiner (which never saw them), never on test images.

``fit_refiners_on="test"`` (``--fit-refiners-on test``) lifts the first rule on purpose, for parity
with the STIG paper, whose refiner is transductive: every refiner is then fitted on the *test* fakes
(with the training reals as its reals) and refines those same fakes, so the scored refined images
are ones the refiner saw while fitting. The reals it sees are still training reals, detectors still
train only on the training split and are never scored on what they saw, and the adaptive
defender's validation fakes stay unseen by the refiner. Reports name the setting, and
comparisons keep such runs apart from the default ones.

Every expensive stage (refiner fit, refined set, perturbed set, detector fit, scores) goes through a
:class:`~stigbench.pipeline.stages.StageStore`, keyed by what determines it, so re-running with an extra
detector or perturbation recomputes only what is new, and an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import logging
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stigbench.attacks.perturbations import Perturbation
from stigbench.core.device import seed_everything
from stigbench.core.imageset import ArrayImageSet, ImageSet, labelled, set_progress
from stigbench.core.io import fresh_dir, read_json, write_json
from stigbench.core.provenance import provenance
from stigbench.data.specs import Dataset, cache_dir, load_dataset
from stigbench.data.split import Split, make_split, split_frame
from stigbench.detection.registry import is_persistent
from stigbench.evaluation.distances import distribution_rows, fidelity_rows, lfd_rows, mean_spectra
from stigbench.evaluation.detection import THRESHOLD_COLUMNS, detection_rows, read_scores, read_thresholds
from stigbench.evaluation.rows import CLEAN, METRIC_COLUMNS
from stigbench.measures import metrics as M
from stigbench.pipeline.plan import Component, Plan, RunConfig, resolve
from stigbench.pipeline.stages import (
    StageStore,
    code_fingerprint,
    digest,
    files_fingerprint,
    owner_is_gone,
    process_owner,
)

log = logging.getLogger("stigbench")

#: ``run.json`` status: written as running when the run folder is made, complete or failed at the end;
#: a later run marks a running folder whose process is gone as interrupted.
RUNNING, COMPLETE, FAILED, INTERRUPTED = "running", "complete", "failed", "interrupted"

@dataclass
class RunResult:
    run_dir: Path
    metrics: pd.DataFrame
    summary: pd.DataFrame
    errors: dict[str, str]
    skipped: int
    stage_hits: int = 0
    stage_misses: int = 0


def _accepts(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _checked_scores(scores: Any, n: int, name: str) -> np.ndarray:
    """Enforce the detector contract: ``(n,)`` finite probabilities in ``[0, 1]``."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"detector {name} returned scores of shape {arr.shape}, expected ({n},)")
    if not np.isfinite(arr).all():
        raise ValueError(f"detector {name} returned NaN or infinite scores")
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"detector {name} returned scores outside [0, 1] ({arr.min():.3g}..{arr.max():.3g})")
    return arr


def _setup_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _save_pngs(image_set: ImageSet, folder: Path, names: list[str], indices: list[int] | None = None) -> None:
    for i in indices if indices is not None else range(len(image_set)):
        image_set.save_png(i, folder / f"{Path(names[i]).stem}.png")


N_EXAMPLES = 6


def _save_examples(run_dir: Path, real: ImageSet, fake: ImageSet, refined: dict[str, ImageSet]) -> None:
    """A few test images per condition for the reports; the same fakes before and after refinement."""
    pick = lambda n: np.linspace(0, n - 1, min(N_EXAMPLES, n)).round().astype(int).tolist()  # noqa: E731
    _save_pngs(real, run_dir / "examples" / "real", real.ids, pick(len(real)))
    idx = pick(len(fake))
    _save_pngs(fake, run_dir / "examples" / "fake", fake.ids, idx)
    for name, images in refined.items():
        _save_pngs(images, run_dir / "examples" / f"refined-{_folder_name(name)}", fake.ids, idx)


def _folder_name(display: str) -> str:
    """``blur:2`` -> ``blur_2``: ':' is not allowed in Windows file names."""
    return display.replace(":", "_").replace("+", "_")


def _load_array(folder: Path, ids: list[str]) -> ArrayImageSet:
    return ArrayImageSet(np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False), ids=ids)


# -- the run ---------------------------------------------------------------------------------------
def run_benchmark(config: RunConfig) -> RunResult:
    """Run the benchmark described by ``config`` and write a new run folder (see module docstring)."""
    return execute(resolve(config))


def execute(plan: Plan) -> RunResult:
    """Execute a resolved plan: load the data, run every stage, write the run folder."""
    config, ctx = plan.config, plan.context
    set_progress(ctx.progress)
    seed_everything(ctx.seed)
    dataset = load_dataset(plan.spec, size=config.size, progress=ctx.progress)
    plan.check_image_size(dataset.size)
    split = make_split(dataset, seed=ctx.seed)

    parent = Path(config.out) / plan.spec.name
    _name_interrupted_runs(parent)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = fresh_dir(parent, f"{stamp}-seed{ctx.seed}")
    write_json(run_dir / "run.json", {"status": RUNNING, "owner": process_owner(),
                                      "started": dt.datetime.now().isoformat(timespec="seconds")})
    handler = _setup_log(run_dir)
    for note in plan.notes:
        log.info("%s", note)
    store = StageStore((ctx.cache_dir or cache_dir() / "stages") if ctx.cache else None)
    volatile = StageStore(None)  # stages of components that cannot be cached (no save/load)
    try:
        return _Run(plan, dataset, split, run_dir, store, volatile).execute()
    except BaseException as exc:
        record = read_json(run_dir / "run.json")
        write_json(run_dir / "run.json", {**record, "status": FAILED, "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        log.removeHandler(handler)
        handler.close()
        store.close()
        volatile.close()


def _name_interrupted_runs(parent: Path) -> None:
    """Mark run folders whose process died mid-run (``kill -9``, power loss) as interrupted, and say so."""
    for record_file in sorted(parent.glob("*/run.json")):
        try:
            record = read_json(record_file)
        except (OSError, ValueError):
            continue
        if record.get("status") == RUNNING and owner_is_gone(record.get("owner", {})):
            write_json(record_file, {**record, "status": INTERRUPTED})
            log.warning("run folder %s did not finish (its process is gone); marked interrupted. This run "
                        "reuses its completed stages and continues its unfinished refiner training.",
                        record_file.parent)


class _Run:
    """The state of one benchmark run; methods are its stages, in the order :meth:`execute` calls."""

    def __init__(self, plan: Plan, dataset: Dataset, split: Split, run_dir: Path, store: StageStore,
                 volatile: StageStore) -> None:
        self.plan, self.config, self.ctx, self.spec = plan, plan.config, plan.context, plan.spec
        self.dataset, self.split = dataset, split
        self.detector_names, self.perturbations = plan.detector_names, plan.perturbations
        self.detector_components = {c.name: c for c in plan.detectors}
        self.refiner_components = {c.display: c for c in plan.refiners}
        self.device, self.precision = plan.context.torch_device, plan.context.resolved_precision
        self.run_dir, self.store, self.volatile = run_dir, store, volatile
        self.errors: dict[str, str] = {}
        self.rows: list[dict[str, Any]] = []
        self.score_frames: list[pd.DataFrame] = []
        self.thresholds: list[dict[str, Any]] = []
        self.refiner_info: dict[str, Any] = {}
        self.detector_info: dict[str, Any] = {}
        self.notes: list[str] = list(plan.notes)
        # (perturbation, set key) -> what determines that set's pixels, for the keys of later stages
        self.identity: dict[tuple[str, str], str] = {(CLEAN, "real"): "real-test", (CLEAN, "fake"): "fake-test"}
        frame = split_frame(dataset, split)
        # What every stage depends on: the exact files, their split, the image size and the seed.
        self.data_payload = {
            "dataset": self.spec.name, "size": dataset.size, "resize": self.spec.resize,
            "grayscale": self.spec.grayscale, "files": files_fingerprint(frame["path"]),
            "split": digest(frame.to_csv(index=False)), "seed": self.ctx.seed, "device": self.device.type,
            "precision": self.precision,
        }

    # -- helpers -----------------------------------------------------------------------------------
    def part(self, label: str, name: str) -> ImageSet:
        base = self.dataset.real if label == "real" else self.dataset.fake
        return base.subset(self.split.indices(label, name))

    def stage(self, kind: str, label: str, payload: dict[str, Any], make: Callable[[Path], Any],
              resumable: bool = False, cached: bool = True) -> Path:
        """Stage folder of ``make``; ``cached=False`` keeps it in this run's temporary store only."""
        full = {**self.data_payload, **payload}
        store = self.store if cached else self.volatile
        return store.get_or_make(store.key(kind, label, full), make, full, resumable=resumable)

    # -- stages ------------------------------------------------------------------------------------
    def execute(self) -> RunResult:
        t_start = time.perf_counter()
        cfg = self.config
        resolved = cfg.to_dict()
        resolved.update(refiners=",".join(c.display for c in self.plan.refiners), detectors=",".join(self.detector_names))
        write_json(self.run_dir / "config.json", {"config": resolved, "non_defaults": cfg.non_defaults(),
                                                  "dataset_spec": self.spec.to_dict(), "image_size": self.dataset.size})
        prov = provenance(self.device, self.precision)
        split_frame(self.dataset, self.split).to_csv(self.run_dir / "split.csv", index=False)
        if self.dataset.skipped:
            pd.DataFrame([dataclasses.asdict(s) for s in self.dataset.skipped]).to_csv(self.run_dir / "skipped.csv", index=False)
            for s in self.dataset.skipped:
                log.warning("skipped %s: %s", s.path, s.reason)
        log.info("dataset %s: %d real, %d fake usable (%d skipped), size %d, split %s", self.spec.name,
                 len(self.dataset.real), len(self.dataset.fake), len(self.dataset.skipped), self.dataset.size,
                 self.split.counts())

        real_test, fake_test = self.part("real", "test"), self.part("fake", "test")
        refiners = self.fit_refiners()
        refined = {d: self.refined_set(d, folder, "test") for d, folder in refiners.items()}
        refined = {d: s for d, s in refined.items() if s is not None}
        _save_examples(self.run_dir, real_test, fake_test, refined)

        test_sets = {"real": real_test, "fake": fake_test, **{f"refined:{d}": s for d, s in refined.items()}}
        perturbed = {p.name: self.perturbed_sets(p, test_sets) for p in self.perturbations}
        for name in self.detector_names:
            self.evaluate_detector(name, perturbed)
        if self.config.adaptive:
            for display, folder in refiners.items():
                if display in refined:
                    self.adaptive_defender(display, folder, refined[display])

        spectra = self.distance_rows(perturbed)
        self.rows += fidelity_rows(fake_test, refined, dataset=self.spec.name, seed=self.ctx.seed,
                                   batch_size=self.ctx.batch_size)
        quality_info: dict[str, Any] = {}
        if cfg.quality:
            for p in self.perturbations:
                if p.name == CLEAN or cfg.perturb_quality:
                    quality_info[p.name] = self.quality_rows(perturbed[p.name], p.name)
        return self.write(spectra, prov, quality_info, t_start)

    def fit_refiners(self) -> dict[str, Path]:
        """Fit (or reuse) every refiner on the training reals and the fakes of the split part named by
        ``fit_refiners_on`` (training fakes by default); returns stage folders."""
        fit_on = self.config.fit_refiners_on
        fake_fit, real_train = self.part("fake", fit_on), self.part("real", "train")
        if fit_on == "test" and self.plan.refiners:
            log.warning("refiners are fitted on the test fakes they refine (transductive, as in the STIG paper)")
        out: dict[str, Path] = {}
        for rs in self.plan.refiners:
            cls, params = rs.cls, rs.params
            payload = {"refiner": rs.name, "params": params, "code": code_fingerprint(cls), "fit_fakes": fit_on}

            def make(folder: Path, rs: Component = rs, params: dict[str, Any] = params) -> None:
                refiner = rs.build()
                t0 = time.perf_counter()
                if _accepts(refiner.fit, "log_dir"):
                    refiner.fit(fake_fit, real_train, log_dir=folder / "training")
                else:
                    refiner.fit(fake_fit, real_train)
                refiner.save(folder)
                write_json(folder / "info.json", {
                    "params": refiner.get_params() if hasattr(refiner, "get_params") else params,
                    "fit_seconds": round(time.perf_counter() - t0, 2),
                    "fit_info": getattr(refiner, "fit_info_", {})})

            try:
                t0 = time.perf_counter()
                n_computed = len(self.store.misses)
                # A refiner that checkpoints into log_dir continues an interrupted fit from its work folder.
                folder = self.stage("refiner", rs.display, payload, make, resumable=_accepts(cls.fit, "log_dir"))
                out[rs.display] = folder
                info = read_json(folder / "info.json")
                info["cached"] = len(self.store.misses) == n_computed
                info["fit_fakes"] = fit_on
                self.refiner_info[rs.display] = info
                shutil.copytree(folder, self.run_dir / "refiners" / _folder_name(rs.display), dirs_exist_ok=False,
                                ignore=shutil.ignore_patterns(".complete", "stage.json", "manifest.json"))
                log.info("refiner %s ready in %.1fs%s", rs.display, time.perf_counter() - t0,
                         " (cached)" if info["cached"] else "")
            except Exception as exc:  # a failing refiner must not take the other results down
                self.errors[f"refiner:{rs.display}"] = f"{type(exc).__name__}: {exc}"
                log.error("refiner %s failed:\n%s", rs.display, traceback.format_exc())
        return out

    def refined_set(self, display: str, refiner_folder: Path, part: str) -> ArrayImageSet | None:
        """The ``part`` fakes refined by a fitted refiner (cached as an 8-bit array)."""
        fakes = self.part("fake", part)

        def make(folder: Path) -> None:
            refiner = self.refiner_components[display].cls.load(refiner_folder)  # by registry entry, not class path
            t0 = time.perf_counter()
            if _accepts(refiner.refine, "store"):
                out = refiner.refine(fakes, store=folder / "images.npy")
            else:
                out = refiner.refine(fakes)
                np.save(folder / "images.npy", out.to_array(), allow_pickle=False)
            if len(out) != len(fakes) or out.size != fakes.size:
                raise ValueError(f"refiner {display} returned {len(out)} images of size {out.size}; "
                                 f"expected {len(fakes)} of size {fakes.size}")
            write_json(folder / "info.json", {"refine_seconds": round(time.perf_counter() - t0, 2)})

        try:
            folder = self.stage("refined", f"{display}-{part}", {"refiner_stage": refiner_folder.name, "part": part}, make)
        except Exception as exc:
            self.errors[f"refiner:{display}"] = f"{type(exc).__name__}: {exc}"
            log.error("refining with %s failed:\n%s", display, traceback.format_exc())
            return None
        images = _load_array(folder, fakes.ids)
        if part == "test":
            self.identity[(CLEAN, f"refined:{display}")] = folder.name
            self.refiner_info.setdefault(display, {})["refine_seconds"] = read_json(folder / "info.json")["refine_seconds"]
            if self.config.save_refined:
                _save_pngs(images, self.run_dir / "refined" / _folder_name(display), fakes.ids)
        return images

    def perturbed_sets(self, p: Perturbation, sets: dict[str, ImageSet]) -> dict[str, ImageSet]:
        if p.name == CLEAN:
            return dict(sets)
        out: dict[str, ImageSet] = {}
        for key, images in sets.items():
            def make(folder: Path, images: ImageSet = images) -> None:
                p.apply(images, self.config.batch_size, store=folder / "images.npy", seed=self.config.seed)

            folder = self.stage("perturbed", f"{key}-{p.name}", {"source": self.identity[(CLEAN, key)],
                                                                 "perturbation": p.name}, make)
            self.identity[(p.name, key)] = folder.name
            out[key] = _load_array(folder, images.ids)
        return out

    def fit_detector(self, name: str, train: tuple[ImageSet, np.ndarray], val: tuple[ImageSet, np.ndarray],
                     trained_on: str, extra: dict[str, Any]) -> tuple[Any, Path]:
        """Fit (or reuse) detector ``name``; the stage holds its state and its validation threshold."""
        component = self.detector_components[name]
        cls, params = component.cls, component.params
        persistent = is_persistent(cls)
        payload = {"detector": name, "params": params, "trained_on": trained_on, "code": code_fingerprint(cls), **extra}
        fitted: dict[str, Any] = {}

        def make(folder: Path) -> None:
            det = component.build()
            t0 = time.perf_counter()
            det.fit(train[0], train[1], val[0], val[1])
            threshold = M.best_threshold(val[1], _checked_scores(det.score(val[0]), len(val[0]), name))
            if persistent:
                det.save(folder / "detector")
            fitted["detector"] = det
            write_json(folder / "info.json", {
                "params": det.get_params() if hasattr(det, "get_params") else params, "threshold": threshold,
                "fit_seconds": round(time.perf_counter() - t0, 2), "fit_info": getattr(det, "fit_info_", {})})

        if not persistent:
            note = f"detector {name!r} has no save/load: fitted and scored afresh in this run, never cached"
            if note not in self.notes:
                self.notes.append(note)
                log.info("%s", note)
        folder = self.stage("detector", f"{name}-{trained_on}", payload, make, cached=persistent)
        return (cls.load(folder / "detector") if persistent else fitted["detector"]), folder

    def scores(self, det: Any, det_folder: Path, name: str, key: str, images: ImageSet, pert: str) -> np.ndarray:
        def make(folder: Path) -> None:
            np.save(folder / "scores.npy", _checked_scores(det.score(images), len(images), name), allow_pickle=False)

        folder = self.stage("scores", f"{name}-{key}-{pert}", {"detector_stage": det_folder.name,
                                                                "set": self.identity[(pert, key)]}, make,
                            cached=is_persistent(self.detector_components[name].cls))
        return np.load(folder / "scores.npy", allow_pickle=False)

    def score_conditions(self, det: Any, folder: Path, name: str, trained_on: str,
                         sets: dict[str, ImageSet], pert: str, conditions: list[str]) -> None:
        """Scores of the test reals and of each condition in ``conditions`` (keys of ``sets``); the
        metrics stage turns them into rows."""
        s_real = self.scores(det, folder, name, "real", sets["real"], pert)
        for key in conditions:
            s_fake = self.scores(det, folder, name, key, sets[key], pert)
            labels = np.r_[np.zeros(len(s_real), np.int64), np.ones(len(s_fake), np.int64)]
            scores = np.r_[s_real, s_fake]
            condition, _, refiner = key.partition(":")
            self.score_frames.append(pd.DataFrame({
                "detector": name, "trained_on": trained_on, "condition": condition, "refiner": refiner,
                "perturbation": pert, "path": sets["real"].ids + sets[key].ids, "label": labels, "score": scores}))

    def evaluate_detector(self, name: str, perturbed: dict[str, dict[str, ImageSet]]) -> None:
        """Train on real vs original training fakes, then score every condition and perturbation."""
        t0 = time.perf_counter()
        n_frames, n_thresholds = len(self.score_frames), len(self.thresholds)
        try:
            det, folder = self.fit_detector(
                name, labelled(self.part("real", "train"), self.part("fake", "train")),
                labelled(self.part("real", "val"), self.part("fake", "val")), "fake", {})
            info = read_json(folder / "info.json")
            self.thresholds.append({"detector": name, "trained_on": "fake", "refiner": "", "threshold": info["threshold"]})
            for pert, sets in perturbed.items():
                conditions = [k for k in sets if k != "real"]
                self.score_conditions(det, folder, name, "fake", sets, pert, conditions)
            if (folder / "detector").is_dir():
                shutil.copytree(folder / "detector", self.run_dir / "detectors" / name)
            self.detector_info[name] = {**info, "seconds": round(time.perf_counter() - t0, 2)}
            log.info("detector %s done in %.1fs", name, time.perf_counter() - t0)
        except Exception as exc:
            self.errors[f"detector:{name}"] = f"{type(exc).__name__}: {exc}"
            log.error("detector %s failed:\n%s", name, traceback.format_exc())
            del self.score_frames[n_frames:], self.thresholds[n_thresholds:]

    def adaptive_defender(self, display: str, refiner_folder: Path, refined_test: ImageSet) -> None:
        """Retrain each detector on real vs refined fakes and score the refined test fakes again.

        The refined training fakes are the *validation* fakes refined by the refiner, which never saw
        them: the defender meets refinement as it would in the wild. They serve for training and for
        the threshold (no other refined images are free of leakage), with as many training reals,
        evenly spaced over the training split.
        """
        refined_val = self.refined_set(display, refiner_folder, "val")
        if refined_val is None:
            return
        real_train, real_val = self.part("real", "train"), self.part("real", "val")
        if len(real_train) > len(refined_val):
            # Balanced classes: against 3x more reals, a CNN defender settled on "real" and never learned.
            keep = np.linspace(0, len(real_train) - 1, len(refined_val)).round().astype(np.int64)
            real_train = real_train.subset(keep)
        sets = {"real": self.part("real", "test"), f"refined:{display}": refined_test}
        for name in self.detector_names:
            n_frames, n_thresholds = len(self.score_frames), len(self.thresholds)
            try:
                det, folder = self.fit_detector(name, labelled(real_train, refined_val), labelled(real_val, refined_val),
                                                "refined", {"refiner_stage": refiner_folder.name})
                info = read_json(folder / "info.json")
                self.thresholds.append({"detector": name, "trained_on": "refined", "refiner": display,
                                        "threshold": info["threshold"]})
                self.score_conditions(det, folder, name, "refined", sets, CLEAN, [f"refined:{display}"])
                self.detector_info[f"{name}@adaptive:{display}"] = info
                log.info("adaptive %s against %s done", name, display)
            except Exception as exc:
                self.errors[f"detector:{name}@adaptive:{display}"] = f"{type(exc).__name__}: {exc}"
                log.error("adaptive %s vs %s failed:\n%s", name, display, traceback.format_exc())
                del self.score_frames[n_frames:], self.thresholds[n_thresholds:]

    def distance_rows(self, perturbed: dict[str, dict[str, ImageSet]]) -> dict[str, torch.Tensor]:
        """LFD of every set to the reals under the same perturbation; returns the clean mean spectra."""
        clean: dict[str, torch.Tensor] = {}
        for pert, sets in perturbed.items():
            spectra = mean_spectra(sets, self.ctx.batch_size)
            self.rows += lfd_rows(spectra, dataset=self.spec.name, seed=self.ctx.seed, perturbation=pert)
            if pert == CLEAN:
                clean = spectra
        return clean

    def quality_rows(self, sets: dict[str, ImageSet], pert: str) -> dict[str, Any]:
        """FID/KID (or their random-network substitutes) of the fakes and each refined set to the
        reals, on images and on spectra."""
        from stigbench.evaluation.quality import get_extractor
        from stigbench.evaluation.quality_rows import quality_metrics

        try:
            extractor = get_extractor(self.config.fid_weights, device=self.device)
            if extractor.notice:
                log.warning("%s", extractor.notice)
            others = {k: s for k, s in sets.items() if k != "real"}
            result = quality_metrics(sets["real"], others, extractor, max_images=self.config.quality_max_images,
                                     seed=self.ctx.seed, progress=self.ctx.progress, cache=self.ctx.cache)
        except Exception as exc:
            self.errors[f"quality:{pert}"] = f"{type(exc).__name__}: {exc}"
            log.error("quality metrics (%s) failed:\n%s", pert, traceback.format_exc())
            return {}
        self.rows += distribution_rows(result, dataset=self.spec.name, seed=self.ctx.seed, perturbation=pert)
        return {**result.to_dict(), "rows": None}

    def write(self, spectra: dict[str, torch.Tensor], prov: dict[str, Any], quality_info: dict[str, Any],
              t_start: float) -> RunResult:
        from stigbench.reporting.run_report import save_spectra, write_run_report

        # The metrics stage reads back what the run wrote: scores.csv and thresholds.csv -> detection rows.
        detection: list[dict[str, Any]] = []
        if self.score_frames:
            pd.concat(self.score_frames, ignore_index=True).to_csv(self.run_dir / "scores.csv", index=False)
            pd.DataFrame(self.thresholds, columns=THRESHOLD_COLUMNS).to_csv(self.run_dir / "thresholds.csv", index=False)
            detection = detection_rows(read_scores(self.run_dir / "scores.csv"),
                                       read_thresholds(self.run_dir / "thresholds.csv"), dataset=self.spec.name,
                                       seed=self.ctx.seed, n_boot=self.config.n_boot)
        metrics = pd.DataFrame(detection + self.rows, columns=METRIC_COLUMNS)
        metrics.to_csv(self.run_dir / "metrics.csv", index=False)
        record = {
            "status": COMPLETE,
            "owner": read_json(self.run_dir / "run.json").get("owner"),
            "provenance": prov,
            "plan": self.plan.to_dict(),
            "dataset": {"name": self.spec.name, "synthetic": self.spec.synthetic, "size": self.dataset.size,
                        "real": len(self.dataset.real), "fake": len(self.dataset.fake),
                        "skipped": len(self.dataset.skipped), "split": self.split.counts()},
            "refiners": self.refiner_info,
            "detectors": self.detector_info,
            "perturbations": [p.name for p in self.perturbations],
            "quality": quality_info,
            "stages": {"root": str(self.store.root) if self.store.persistent else None,
                       "reused": len(self.store.hits), "computed": len(self.store.misses),
                       "resumed": len(self.store.resumed)},
            "errors": self.errors,
            "notes": self.notes,
            "seconds": round(time.perf_counter() - t_start, 1),
        }
        write_json(self.run_dir / "run.json", record)
        save_spectra(self.run_dir, spectra)
        summary = write_run_report(self.run_dir)
        return RunResult(run_dir=self.run_dir, metrics=metrics, summary=summary, errors=self.errors,
                         skipped=len(self.dataset.skipped), stage_hits=len(self.store.hits),
                         stage_misses=len(self.store.misses))
