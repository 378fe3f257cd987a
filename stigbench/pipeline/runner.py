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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stigbench.measures import metrics as M
from stigbench.data.specs import Dataset, DatasetSpec, adhoc_spec, cache_dir, datasets, load_dataset
from stigbench.core.device import resolve_device, resolve_precision, seed_everything
from stigbench.measures.fidelity import mean_fidelity
from stigbench.core.imageset import ArrayImageSet, ImageSet, labelled, set_progress
from stigbench.core.io import fresh_dir, read_json, write_json
from stigbench.attacks.perturbations import Perturbation, parse_perturbations
from stigbench.detection.registry import detectors as detector_registry
from stigbench.core.plugins import load_plugin_file
from stigbench.attacks.registry import refiners as refiner_registry
from stigbench.core.provenance import provenance
from stigbench.attacks.postprocess import RefinerSpec, resolve_refiner_specs
from stigbench.measures.spectrum import lfd, mean_log_spectrum
from stigbench.data.split import Split, make_split, split_frame
from stigbench.pipeline.stages import StageStore, code_fingerprint, digest, files_fingerprint

log = logging.getLogger("stigbench")

METRIC_COLUMNS = ["dataset", "seed", "refiner", "detector", "trained_on", "condition", "perturbation",
                  "metric", "value", "ci_low", "ci_high"]
CLEAN = "none"
#: Where refiners take their fakes from: the training split (default) or the test split (transductive).
FIT_REFINERS_ON = ("train", "test")


@dataclass
class RunConfig:
    """Everything that defines a run; saved as ``config.json`` and accepted back by ``--config``.

    ``refiners`` is a comma-separated list of names, fnmatch patterns or ``name:value`` short forms
    (``blur:2``); ``detectors`` names or patterns, or ``default`` (the detectors registered with
    ``default=True``). ``refiner_params``/``detector_params`` map a registry name to constructor
    keyword arguments. ``perturb`` lists test-time perturbations (``jpeg:*,blur:2+jpeg:50``).
    ``fit_refiners_on`` is ``train`` or ``test`` (the STIG paper's transductive setting; see the
    module docstring).
    """

    dataset: str = "demo-gan"
    real: str | None = None
    fake: str | None = None
    size: int | None = None
    resize: bool = False
    refiners: str = "stig"
    detectors: str = "default"
    seed: int = 0
    out: str = "reports"
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    n_boot: int = 500
    max_per_class: int | None = None
    save_refined: bool = False
    quality: bool = True
    quality_max_images: int = 200
    fid_weights: str | None = None
    perturb: str = CLEAN
    perturb_quality: bool = False
    adaptive: bool = False
    cache: bool = True
    cache_dir: str | None = None
    refiner_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    detector_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    spec_dirs: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)
    progress: bool = True
    fit_refiners_on: str = "train"

    def __post_init__(self) -> None:
        if self.fit_refiners_on not in FIT_REFINERS_ON:
            raise ValueError(f"fit_refiners_on must be one of {', '.join(FIT_REFINERS_ON)}, "
                             f"got {self.fit_refiners_on!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown config key(s) {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def non_defaults(self) -> list[str]:
        """Names of the fields that differ from the defaults (marked in the saved config)."""
        default = RunConfig()
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(default, f.name)]


@dataclass
class RunResult:
    run_dir: Path
    metrics: pd.DataFrame
    summary: pd.DataFrame
    errors: dict[str, str]
    skipped: int
    stage_hits: int = 0
    stage_misses: int = 0


# -- resolving the configuration -------------------------------------------------------------------
def resolve_spec(config: RunConfig) -> DatasetSpec:
    if config.real or config.fake:
        if not (config.real and config.fake):
            raise ValueError("--real and --fake go together")
        return adhoc_spec(config.real, config.fake, size=config.size, resize=config.resize)
    spec = datasets(config.spec_dirs).get(config.dataset)
    if config.resize and not spec.resize:
        spec = dataclasses.replace(spec, resize=True)
    if config.max_per_class is not None:
        spec = dataclasses.replace(spec, max_per_class=config.max_per_class)
    return spec


def resolve_detectors(spec: str) -> list[str]:
    reg = detector_registry()
    if spec.strip() == "default":
        return [n for n in reg.list() if reg.meta(n).default]
    return reg.resolve(spec)


def check_params(cls: type, params: dict[str, Any], name: str) -> None:
    """Raise ``TypeError`` naming the accepted parameters when ``params`` has one ``cls`` lacks."""
    accepted = inspect.signature(cls.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        return
    unknown = set(params) - set(accepted)
    if unknown:
        raise TypeError(f"{name} has no parameter(s) {sorted(unknown)}; it takes {sorted(set(accepted) - {'self'})}")


def construct(cls: type, params: dict[str, Any], **context: Any) -> Any:
    """Instantiate ``cls(**params)``, adding ``seed``/``device``/``precision`` from the run where the
    constructor takes them and the user did not set them."""
    kwargs = dict(params)
    accepted = inspect.signature(cls.__init__).parameters
    for key, value in context.items():
        if key in accepted and key not in kwargs:
            kwargs[key] = value
    check_params(cls, kwargs, cls.__name__)
    return cls(**kwargs)


def _check_selected_params(kind: str, params: dict[str, dict[str, Any]], selected: set[str], registry: Any) -> None:
    """Fail before any work when parameters target an unselected component or do not exist."""
    for name, p in params.items():
        if name not in selected:
            raise ValueError(f"parameters given for {kind} {name!r}, which is not selected ({', '.join(sorted(selected)) or 'none'})")
        check_params(registry.get(name), p, f"{kind} {name!r}")


def _refiner_params(config: RunConfig, spec: RefinerSpec) -> dict[str, Any]:
    base = dict(config.refiner_params.get(spec.name, {}))
    clash = set(base) & set(spec.params)
    if clash:
        raise ValueError(f"refiner {spec.display!r}: {sorted(clash)} set both by --set and by the short form")
    return {**base, **spec.params}


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
    for plugin in config.plugins:
        load_plugin_file(plugin)
    spec = resolve_spec(config)
    refiner_specs = resolve_refiner_specs(config.refiners)
    detector_names = resolve_detectors(config.detectors)
    if not detector_names:
        raise ValueError("no detectors selected")
    perturbations = parse_perturbations(config.perturb) or parse_perturbations(CLEAN)
    if CLEAN not in [p.name for p in perturbations]:
        perturbations = parse_perturbations(CLEAN) + perturbations  # the clean condition is always scored
    _check_selected_params("refiner", config.refiner_params, {s.name for s in refiner_specs}, refiner_registry())
    _check_selected_params("detector", config.detector_params, set(detector_names), detector_registry())
    for s in refiner_specs:
        check_params(refiner_registry().get(s.name), _refiner_params(config, s), f"refiner {s.display!r}")
    if config.adaptive and not refiner_specs:
        raise ValueError("--adaptive needs at least one refiner")
    set_progress(config.progress)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    seed_everything(config.seed)

    dataset = load_dataset(spec, size=config.size, progress=config.progress)
    split = make_split(dataset, seed=config.seed)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = fresh_dir(Path(config.out) / spec.name, f"{stamp}-seed{config.seed}")
    handler = _setup_log(run_dir)
    store = StageStore((Path(config.cache_dir) if config.cache_dir else cache_dir() / "stages") if config.cache else None)
    try:
        run = _Run(config, spec, dataset, split, refiner_specs, detector_names, perturbations, device, precision,
                   run_dir, store)
        return run.execute()
    finally:
        log.removeHandler(handler)
        handler.close()
        store.close()


class _Run:
    """The state of one benchmark run; methods are its stages, in the order :meth:`execute` calls."""

    def __init__(self, config: RunConfig, spec: DatasetSpec, dataset: Dataset, split: Split,
                 refiner_specs: list[RefinerSpec], detector_names: list[str], perturbations: list[Perturbation],
                 device: torch.device, precision: str, run_dir: Path, store: StageStore) -> None:
        self.config, self.spec, self.dataset, self.split = config, spec, dataset, split
        self.refiner_specs, self.detector_names, self.perturbations = refiner_specs, detector_names, perturbations
        self.device, self.precision, self.run_dir, self.store = device, precision, run_dir, store
        self.errors: dict[str, str] = {}
        self.rows: list[dict[str, Any]] = []
        self.score_frames: list[pd.DataFrame] = []
        self.refiner_info: dict[str, Any] = {}
        self.detector_info: dict[str, Any] = {}
        # (perturbation, set key) -> what determines that set's pixels, for the keys of later stages
        self.identity: dict[tuple[str, str], str] = {(CLEAN, "real"): "real-test", (CLEAN, "fake"): "fake-test"}
        frame = split_frame(dataset, split)
        # What every stage depends on: the exact files, their split, the image size and the seed.
        self.data_payload = {
            "dataset": spec.name, "size": dataset.size, "resize": spec.resize, "grayscale": spec.grayscale,
            "files": files_fingerprint(frame["path"]), "split": digest(frame.to_csv(index=False)),
            "seed": config.seed, "device": device.type, "precision": precision,
        }

    # -- helpers -----------------------------------------------------------------------------------
    def part(self, label: str, name: str) -> ImageSet:
        base = self.dataset.real if label == "real" else self.dataset.fake
        return base.subset(self.split.indices(label, name))

    def base_row(self, **kw: Any) -> dict[str, Any]:
        row = {"dataset": self.spec.name, "seed": self.config.seed, "refiner": "", "detector": "",
               "trained_on": "", "condition": "", "perturbation": CLEAN}
        row.update(kw)
        return row

    def stage(self, kind: str, label: str, payload: dict[str, Any], make: Callable[[Path], Any]) -> Path:
        full = {**self.data_payload, **payload}
        return self.store.get_or_make(self.store.key(kind, label, full), make, full)

    # -- stages ------------------------------------------------------------------------------------
    def execute(self) -> RunResult:
        t_start = time.perf_counter()
        cfg = self.config
        resolved = cfg.to_dict()
        resolved.update(refiners=",".join(s.display for s in self.refiner_specs), detectors=",".join(self.detector_names))
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
        self.fidelity_rows(fake_test, refined)
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
        if fit_on == "test" and self.refiner_specs:
            log.warning("refiners are fitted on the test fakes they refine (transductive, as in the STIG paper)")
        out: dict[str, Path] = {}
        for rs in self.refiner_specs:
            cls = refiner_registry().get(rs.name)
            params = _refiner_params(self.config, rs)
            payload = {"refiner": rs.name, "params": params, "code": code_fingerprint(cls), "fit_fakes": fit_on}

            def make(folder: Path, cls: type = cls, params: dict[str, Any] = params) -> None:
                refiner = construct(cls, params, seed=self.config.seed, device=self.config.device,
                                    precision=self.config.precision)
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
                folder = self.stage("refiner", rs.display, payload, make)
                out[rs.display] = folder
                info = read_json(folder / "info.json")
                info["cached"] = len(self.store.misses) == n_computed
                info["fit_fakes"] = fit_on
                self.refiner_info[rs.display] = info
                shutil.copytree(folder, self.run_dir / "refiners" / _folder_name(rs.display), dirs_exist_ok=False,
                                ignore=shutil.ignore_patterns(".complete", "stage.json"))
                log.info("refiner %s ready in %.1fs%s", rs.display, time.perf_counter() - t0,
                         " (cached)" if info["cached"] else "")
            except Exception as exc:  # a failing refiner must not take the other results down
                self.errors[f"refiner:{rs.display}"] = f"{type(exc).__name__}: {exc}"
                log.error("refiner %s failed:\n%s", rs.display, traceback.format_exc())
        return out

    def refined_set(self, display: str, refiner_folder: Path, part: str) -> ArrayImageSet | None:
        """The ``part`` fakes refined by a fitted refiner (cached as an 8-bit array)."""
        from stigbench.attacks.registry import load_refiner

        fakes = self.part("fake", part)

        def make(folder: Path) -> None:
            refiner = load_refiner(refiner_folder)
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
        cls = detector_registry().get(name)
        params = self.config.detector_params.get(name, {})
        payload = {"detector": name, "params": params, "trained_on": trained_on, "code": code_fingerprint(cls), **extra}

        def make(folder: Path) -> None:
            det = construct(cls, params, seed=self.config.seed, device=self.config.device)
            t0 = time.perf_counter()
            det.fit(train[0], train[1], val[0], val[1])
            threshold = M.best_threshold(val[1], _checked_scores(det.score(val[0]), len(val[0]), name))
            det.save(folder / "detector")
            write_json(folder / "info.json", {
                "params": det.get_params() if hasattr(det, "get_params") else params, "threshold": threshold,
                "fit_seconds": round(time.perf_counter() - t0, 2), "fit_info": getattr(det, "fit_info_", {})})

        folder = self.stage("detector", f"{name}-{trained_on}", payload, make)
        return cls.load(folder / "detector"), folder

    def scores(self, det: Any, det_folder: Path, name: str, key: str, images: ImageSet, pert: str) -> np.ndarray:
        def make(folder: Path) -> None:
            np.save(folder / "scores.npy", _checked_scores(det.score(images), len(images), name), allow_pickle=False)

        folder = self.stage("scores", f"{name}-{key}-{pert}", {"detector_stage": det_folder.name,
                                                                "set": self.identity[(pert, key)]}, make)
        return np.load(folder / "scores.npy", allow_pickle=False)

    def score_conditions(self, det: Any, folder: Path, name: str, threshold: float, trained_on: str,
                         sets: dict[str, ImageSet], pert: str, conditions: list[str]) -> None:
        """Rows for real vs each condition in ``conditions`` (keys of ``sets``)."""
        s_real = self.scores(det, folder, name, "real", sets["real"], pert)
        for key in conditions:
            s_fake = self.scores(det, folder, name, key, sets[key], pert)
            labels = np.r_[np.zeros(len(s_real), np.int64), np.ones(len(s_fake), np.int64)]
            scores = np.r_[s_real, s_fake]
            condition, _, refiner = key.partition(":")
            base = self.base_row(refiner=refiner, detector=name, trained_on=trained_on, condition=condition,
                                 perturbation=pert)
            values = M.detection_metrics_with_ci(labels, scores, threshold, n_boot=self.config.n_boot,
                                                 seed=self.config.seed)
            self.rows += [{**base, "metric": m, "value": v, "ci_low": lo, "ci_high": hi} for m, (v, lo, hi) in values.items()]
            self.score_frames.append(pd.DataFrame({
                "detector": name, "trained_on": trained_on, "condition": condition, "refiner": refiner,
                "perturbation": pert, "path": sets["real"].ids + sets[key].ids, "label": labels, "score": scores}))

    def evaluate_detector(self, name: str, perturbed: dict[str, dict[str, ImageSet]]) -> None:
        """Train on real vs original training fakes, then score every condition and perturbation."""
        t0 = time.perf_counter()
        n_rows, n_frames = len(self.rows), len(self.score_frames)
        try:
            det, folder = self.fit_detector(
                name, labelled(self.part("real", "train"), self.part("fake", "train")),
                labelled(self.part("real", "val"), self.part("fake", "val")), "fake", {})
            info = read_json(folder / "info.json")
            for pert, sets in perturbed.items():
                conditions = [k for k in sets if k != "real"]
                self.score_conditions(det, folder, name, info["threshold"], "fake", sets, pert, conditions)
            shutil.copytree(folder / "detector", self.run_dir / "detectors" / name)
            self.detector_info[name] = {**info, "seconds": round(time.perf_counter() - t0, 2)}
            log.info("detector %s done in %.1fs", name, time.perf_counter() - t0)
        except Exception as exc:
            self.errors[f"detector:{name}"] = f"{type(exc).__name__}: {exc}"
            log.error("detector %s failed:\n%s", name, traceback.format_exc())
            del self.rows[n_rows:], self.score_frames[n_frames:]

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
            n_rows, n_frames = len(self.rows), len(self.score_frames)
            try:
                det, folder = self.fit_detector(name, labelled(real_train, refined_val), labelled(real_val, refined_val),
                                                "refined", {"refiner_stage": refiner_folder.name})
                info = read_json(folder / "info.json")
                self.score_conditions(det, folder, name, info["threshold"], "refined", sets, CLEAN,
                                      [f"refined:{display}"])
                self.detector_info[f"{name}@adaptive:{display}"] = info
                log.info("adaptive %s against %s done", name, display)
            except Exception as exc:
                self.errors[f"detector:{name}@adaptive:{display}"] = f"{type(exc).__name__}: {exc}"
                log.error("adaptive %s vs %s failed:\n%s", name, display, traceback.format_exc())
                del self.rows[n_rows:], self.score_frames[n_frames:]

    def distance_rows(self, perturbed: dict[str, dict[str, ImageSet]]) -> dict[str, torch.Tensor]:
        """LFD of every set to the reals under the same perturbation; returns the clean mean spectra."""
        bs = self.config.batch_size
        clean: dict[str, torch.Tensor] = {}
        for pert, sets in perturbed.items():
            spectra = {k: mean_log_spectrum(s.batches(bs)) for k, s in sets.items()}
            for key, m in spectra.items():
                if key == "real":
                    continue
                condition, _, refiner = key.partition(":")
                self.rows.append({**self.base_row(refiner=refiner, condition=condition, perturbation=pert),
                                  "metric": "lfd", "value": lfd(spectra["real"], m), "ci_low": np.nan, "ci_high": np.nan})
            if pert == CLEAN:
                clean = spectra
        return clean

    def fidelity_rows(self, fake_test: ImageSet, refined: dict[str, ImageSet]) -> None:
        """PSNR and SSIM of each refined test fake to its original: the attack's cost in image quality."""
        bs = self.config.batch_size
        for display, images in refined.items():
            values = mean_fidelity(zip(fake_test.batches(bs), images.batches(bs)))
            _, _, refiner = f"refined:{display}".partition(":")
            for metric, value in values.items():
                self.rows.append({**self.base_row(refiner=refiner, condition="refined"), "metric": metric,
                                  "value": value, "ci_low": np.nan, "ci_high": np.nan})

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
                                     seed=self.config.seed, progress=self.config.progress)
        except Exception as exc:
            self.errors[f"quality:{pert}"] = f"{type(exc).__name__}: {exc}"
            log.error("quality metrics (%s) failed:\n%s", pert, traceback.format_exc())
            return {}
        for row in result.rows:
            condition, _, refiner = row["condition_key"].partition(":")
            self.rows.append({**self.base_row(refiner=refiner, condition=condition, perturbation=pert),
                              "metric": row["metric"], "value": row["value"], "ci_low": row["ci_low"],
                              "ci_high": row["ci_high"]})
        return {**result.to_dict(), "rows": None}

    def write(self, spectra: dict[str, torch.Tensor], prov: dict[str, Any], quality_info: dict[str, Any],
              t_start: float) -> RunResult:
        from stigbench.reporting.run_report import save_spectra, write_run_report

        metrics = pd.DataFrame(self.rows, columns=METRIC_COLUMNS)
        metrics.to_csv(self.run_dir / "metrics.csv", index=False)
        if self.score_frames:
            pd.concat(self.score_frames, ignore_index=True).to_csv(self.run_dir / "scores.csv", index=False)
        record = {
            "provenance": prov,
            "dataset": {"name": self.spec.name, "synthetic": self.spec.synthetic, "size": self.dataset.size,
                        "real": len(self.dataset.real), "fake": len(self.dataset.fake),
                        "skipped": len(self.dataset.skipped), "split": self.split.counts()},
            "refiners": self.refiner_info,
            "detectors": self.detector_info,
            "perturbations": [p.name for p in self.perturbations],
            "quality": quality_info,
            "stages": {"root": str(self.store.root) if self.store.persistent else None,
                       "reused": len(self.store.hits), "computed": len(self.store.misses)},
            "errors": self.errors,
            "seconds": round(time.perf_counter() - t_start, 1),
        }
        write_json(self.run_dir / "run.json", record)
        save_spectra(self.run_dir, spectra)
        summary = write_run_report(self.run_dir)
        return RunResult(run_dir=self.run_dir, metrics=metrics, summary=summary, errors=self.errors,
                         skipped=len(self.dataset.skipped), stage_hits=len(self.store.hits),
                         stage_misses=len(self.store.misses))
