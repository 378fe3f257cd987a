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

Where the parts live: :mod:`~stigbench.pipeline.plan` (what to run, checked), the stage functions in
:mod:`~stigbench.pipeline.attack_stages` and :mod:`~stigbench.pipeline.detection_stages`, the state
they share in :mod:`~stigbench.pipeline.run_state`, and the metric rows in :mod:`stigbench.evaluation`;
this module orders them and writes the run folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stigbench.core import distributed
from stigbench.core.config import RunConfig
from stigbench.core.device import seed_everything
from stigbench.core.imageset import ImageSet, set_progress
from stigbench.core.io import fresh_dir, read_json, write_json
from stigbench.core.memory import limit_heap_growth
from stigbench.core.provenance import provenance
from stigbench.data.specs import cache_dir, load_dataset
from stigbench.data.split import make_split, split_frame
from stigbench.evaluation.distances import distribution_rows, fidelity_rows, lfd_rows, mean_spectra
from stigbench.evaluation.detection import (
    THRESHOLD_COLUMNS,
    detection_rows,
    read_scores,
    read_thresholds,
    success_rows,
)
from stigbench.evaluation.rows import CLEAN, METRIC_COLUMNS, REAL_ATTACKED, with_threat_model
from stigbench.evaluation.sweep import full_strength
from stigbench.pipeline.cross_stages import cross_distance_rows, run_cross
from stigbench.pipeline.attack_stages import fit_refiners, perturbed_sets, refined_set
from stigbench.pipeline.detection_stages import adaptive_defender, evaluate_detector
from stigbench.pipeline.gradient_stages import attacks_frame, run_attacks
from stigbench.pipeline.plan import Plan, resolve
from stigbench.pipeline.run_state import RunState, folder_name, save_pngs
from stigbench.pipeline.isolation import isolated
from stigbench.pipeline.stages import (
    StageStore,
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


def _setup_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


N_EXAMPLES = 6


def _save_examples(run_dir: Path, real: ImageSet, fake: ImageSet, refined: dict[str, ImageSet],
                   fakes_too: bool = True) -> None:
    """A few test images per condition for the reports; the same fakes before and after refinement."""
    pick = lambda n: np.linspace(0, n - 1, min(N_EXAMPLES, n)).round().astype(int).tolist()  # noqa: E731
    idx = pick(len(fake))
    if fakes_too:
        save_pngs(real, run_dir / "examples" / "real", real.ids, pick(len(real)))
        save_pngs(fake, run_dir / "examples" / "fake", fake.ids, idx)
    for name, images in refined.items():
        save_pngs(images, run_dir / "examples" / f"refined-{folder_name(name)}", fake.ids, idx)


# -- the run ---------------------------------------------------------------------------------------
def run_benchmark(config: RunConfig) -> RunResult:
    """Run the benchmark described by ``config`` and write a new run folder (see module docstring)."""
    return execute(resolve(config))


def execute(plan: Plan) -> RunResult:
    """Execute a resolved plan: load the data, run every stage, write the run folder."""
    config, ctx = plan.config, plan.context
    limit_heap_growth()  # else memory creeps up with the number of batches (see stigbench.core.memory)
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
    if distributed.describe() is not None:
        log.info("torchrun: %s", distributed.describe())
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


class _Run(RunState):
    """One run's orchestration: the stages in order, then the quality stage and the run folder."""

    def execute(self) -> RunResult:
        t_start = time.perf_counter()
        cfg = self.config
        resolved = cfg.to_dict()
        resolved.update(refiners=",".join(c.display for c in self.plan.refiners), detectors=",".join(self.detector_names),
                        file_hashes={c.display: {p: f["sha256"] for p, f in c.files.items()}
                                     for c in self.plan.detectors if c.files},
                        # the files as absolute paths: a rerun from this config reads the same ones
                        detector_params={**cfg.detector_params,
                                         **{c.display: c.params for c in self.plan.detectors if c.files}})
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
        refiners = fit_refiners(self, )
        refined = {d: refined_set(self, d, folder, "test") for d, folder in refiners.items()}
        refined = {d: s for d, s in refined.items() if s is not None}
        _save_examples(self.run_dir, real_test, fake_test, refined)

        test_sets = {"real": real_test, "fake": fake_test, **{f"refined:{d}": s for d, s in refined.items()}}
        perturbed = {p.name: perturbed_sets(self, p, test_sets) for p in self.perturbations}
        for name in self.detector_names:
            evaluate_detector(self, name, perturbed)
        # Gradient attacks need the fitted detectors; their sets then count as attacked fakes for the
        # distances, fidelity and quality below (on the clean test sets only).
        attacked = run_attacks(self, perturbed, refined)
        if attacked:
            clean = {key.partition(":")[2]: images for key, images in attacked[CLEAN].items()}
            _save_examples(self.run_dir, real_test, fake_test, clean, fakes_too=False)
            refined = {**refined, **clean}
            for pert, sets in attacked.items():
                perturbed[pert] = {**perturbed[pert], **sets}
        if self.config.adaptive:
            for display, folder in refiners.items():
                if display in refined:
                    adaptive_defender(self, display, folder, refined[display])
        cross = run_cross(self, refiners)

        spectra = self.distance_rows(perturbed)
        self.rows += fidelity_rows(fake_test, refined, dataset=self.spec.name, seed=self.ctx.seed,
                                   batch_size=self.ctx.batch_size)
        # the cost of an attack on reals, against the reals it was made from
        self.rows += fidelity_rows(real_test, self.attacked_reals, dataset=self.spec.name, seed=self.ctx.seed,
                                   batch_size=self.ctx.batch_size, condition=REAL_ATTACKED)
        quality_info: dict[str, Any] = {}
        if cfg.quality:
            for p in self.perturbations:
                if p.name == CLEAN or cfg.perturb_quality:
                    quality_info[p.name] = self.quality_rows(perturbed[p.name], p.name)
        specs = {s.name: s for s in self.plan.test_specs}
        for name, sets in cross.items():  # after the run's own rows, so those keep their order
            self.rows += cross_distance_rows(self, specs[name], sets)
            if cfg.quality:
                quality_info[f"cross:{name}"] = self.quality_rows(sets, CLEAN, test_dataset=name)
        return self.write(spectra, prov, quality_info, t_start)

    def distance_rows(self, perturbed: dict[str, dict[str, ImageSet]]) -> dict[str, torch.Tensor]:
        """LFD of every set to the reals under the same perturbation; returns the clean mean spectra."""
        clean: dict[str, torch.Tensor] = {}
        for pert, sets in perturbed.items():
            spectra = mean_spectra(sets, self.ctx.batch_size)
            self.rows += lfd_rows(spectra, dataset=self.spec.name, seed=self.ctx.seed, perturbation=pert)
            if pert == CLEAN:
                clean = spectra
        return clean

    def quality_rows(self, sets: dict[str, ImageSet], pert: str, test_dataset: str | None = None) -> dict[str, Any]:
        """FID/KID (or their random-network substitutes) of the fakes and each refined set to the
        reals (of ``test_dataset`` for a cross-dataset cell), on images and on spectra."""
        from stigbench.evaluation.quality import get_extractor
        from stigbench.evaluation.quality_rows import quality_metrics

        with isolated(self.errors, f"quality:{test_dataset or pert}", "quality metrics (%s) failed", pert) as attempt:
            extractor = get_extractor(self.config.fid_weights, device=self.device)
            if extractor.notice:
                log.warning("%s", extractor.notice)
            # FID/KID are slow: a strength sweep's points below 1 get PSNR, SSIM and LFD only.
            others = {k: s for k, s in sets.items() if k != "real" and full_strength(k)}
            result = quality_metrics(sets["real"], others, extractor, max_images=self.config.quality_max_images,
                                     seed=self.ctx.seed, progress=self.ctx.progress, cache=self.ctx.cache)
        if attempt.error:
            return {}
        self.rows += distribution_rows(result, dataset=self.spec.name, seed=self.ctx.seed, perturbation=pert,
                                       test_dataset=test_dataset)
        return {**result.to_dict(), "rows": None}

    def inactive_attacks(self, metrics: pd.DataFrame) -> dict[str, str]:
        """``{refiner: reason}`` of the attacks that did nothing (kept their starting point, or left the
        fakes as they were), each also logged as a warning."""
        from stigbench.reporting.run.inactive import inactive_lines, run_inactive

        inactive = run_inactive(metrics, {"refiners": self.refiner_info})
        for line in inactive_lines(inactive):
            log.warning("%s", line)
        return inactive

    def write(self, spectra: dict[str, torch.Tensor], prov: dict[str, Any], quality_info: dict[str, Any],
              t_start: float) -> RunResult:
        from stigbench.reporting.run.figures import save_spectra
        from stigbench.reporting.run.report import write_run_report

        # The metrics stage reads back what the run wrote: scores.csv and thresholds.csv -> detection rows.
        detection: list[dict[str, Any]] = []
        if self.score_frames:
            pd.concat(self.score_frames, ignore_index=True).to_csv(self.run_dir / "scores.csv", index=False)
            pd.DataFrame(self.thresholds, columns=THRESHOLD_COLUMNS).to_csv(self.run_dir / "thresholds.csv", index=False)
            scores, thresholds = read_scores(self.run_dir / "scores.csv"), read_thresholds(self.run_dir / "thresholds.csv")
            kw = {"dataset": self.spec.name, "seed": self.ctx.seed, "n_boot": self.config.n_boot}
            detection = detection_rows(scores, thresholds, **kw) + success_rows(scores, thresholds, **kw)
        attacks = attacks_frame(self.attack_info)
        if self.attack_info:
            attacks.to_csv(self.run_dir / "gradient_attacks.csv", index=False)
        metrics = with_threat_model(pd.DataFrame(detection + self.rows, columns=METRIC_COLUMNS), attacks)
        metrics.to_csv(self.run_dir / "metrics.csv", index=False)
        inactive = self.inactive_attacks(metrics)
        record = {
            "status": COMPLETE,
            "owner": read_json(self.run_dir / "run.json").get("owner"),
            "provenance": prov,
            # Under torchrun: world size, backend and each rank's device (null for a single process).
            "distributed": distributed.describe(),
            "plan": self.plan.to_dict(),
            "dataset": {"name": self.spec.name, "synthetic": self.spec.synthetic, "size": self.dataset.size,
                        "real": len(self.dataset.real), "fake": len(self.dataset.fake),
                        "skipped": len(self.dataset.skipped), "split": self.split.counts()},
            "refiners": self.refiner_info,
            # {refiner: why its attack did nothing} (stigbench.evaluation.evidence.inactive_reason)
            "attack_inactive": inactive,
            # {attacked set: threat model, parameters, crafting time} (stigbench.pipeline.gradient_stages)
            "attacks": self.attack_info,
            "detectors": self.detector_info,
            "perturbations": [p.name for p in self.perturbations],
            "quality": quality_info,
            "stages": {"root": str(self.store.root) if self.store.persistent else None,
                       "reused": len(self.store.hits), "computed": len(self.store.misses),
                       "resumed": len(self.store.resumed)},
            "errors": self.errors,
            "notes": self.notes,
            "cross": self.cross_info,
            "seconds": round(time.perf_counter() - t_start, 1),
        }
        write_json(self.run_dir / "run.json", record)
        save_spectra(self.run_dir, spectra)
        summary = write_run_report(self.run_dir)
        return RunResult(run_dir=self.run_dir, metrics=metrics, summary=summary, errors=self.errors,
                         skipped=len(self.dataset.skipped), stage_hits=len(self.store.hits),
                         stage_misses=len(self.store.misses))
