"""``run_benchmark(config) -> RunResult``: the whole benchmark for one dataset and seed.

split → fit each refiner on the training fakes and reals → refine the test fakes → fit each detector
on training reals vs original fakes (threshold from the validation split) → score test reals, test
fakes and every refined set → metrics → a new run folder. No image used to train a refiner is ever
refined and scored, and no detector is scored on an image it was trained on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stigbench import metrics as M
from stigbench.data import Dataset, DatasetSpec, adhoc_spec, datasets, load_dataset
from stigbench.device import resolve_device, resolve_precision, seed_everything
from stigbench.imageset import ArrayImageSet, ImageSet, labelled, set_progress, temporary_store
from stigbench.io import fresh_dir, write_json
from stigbench.plugins import detectors as detector_registry
from stigbench.plugins import load_plugin_file
from stigbench.plugins import refiners as refiner_registry
from stigbench.provenance import provenance
from stigbench.spectrum import lfd, mean_log_spectrum
from stigbench.split import Split, make_split, save_split

log = logging.getLogger("stigbench")

METRIC_COLUMNS = ["dataset", "seed", "refiner", "detector", "trained_on", "condition", "perturbation",
                  "metric", "value", "ci_low", "ci_high"]


@dataclass
class RunConfig:
    """Everything that defines a run; saved as ``config.json`` and accepted back by ``--config``.

    ``refiners``/``detectors`` are comma-separated names or fnmatch patterns; ``detectors="default"``
    selects the detectors registered with ``default=True``. ``refiner_params``/``detector_params`` map
    a name to constructor keyword arguments.
    """

    dataset: str = "demo"
    real: str | None = None
    fake: str | None = None
    size: int | None = None
    resize: bool = False
    refiners: str = "spectral-match"
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
    refiner_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    detector_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    spec_dirs: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)
    progress: bool = True

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


# -- helpers -------------------------------------------------------------------------------------
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
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = dict(params)
    for key, value in context.items():
        if key in accepted and key not in kwargs:
            kwargs[key] = value
    check_params(cls, kwargs, cls.__name__)
    return cls(**kwargs)


def _check_selected_params(kind: str, params: dict[str, dict[str, Any]], selected: list[str], registry: Any) -> None:
    """Fail before any work when parameters target an unselected component or do not exist."""
    for name, p in params.items():
        if name not in selected:
            raise ValueError(f"parameters given for {kind} {name!r}, which is not selected ({', '.join(selected) or 'none'})")
        check_params(registry.get(name), p, f"{kind} {name!r}")


def _accepts(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _detection_rows(labels: np.ndarray, scores: np.ndarray, threshold: float, n_boot: int,
                    seed: int, base: dict[str, Any]) -> list[dict[str, Any]]:
    values = M.detection_metrics_with_ci(labels, scores, threshold, n_boot=n_boot, seed=seed)
    return [{**base, "metric": name, "value": v, "ci_low": lo, "ci_high": hi} for name, (v, lo, hi) in values.items()]


def _setup_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _save_pngs(image_set: ImageSet, folder: Path, names: list[str], indices: list[int] | None = None) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in indices if indices is not None else range(len(image_set)):
        arr = image_set._load_uint8(i).transpose(1, 2, 0)
        Image.fromarray(arr).save(folder / f"{Path(names[i]).stem}.png")


N_EXAMPLES = 6


def _save_examples(run_dir: Path, real: ImageSet, fake: ImageSet, refined: dict[str, ImageSet]) -> None:
    """A few test images per condition for the reports; the same fakes before and after refinement."""
    pick = lambda n: np.linspace(0, n - 1, min(N_EXAMPLES, n)).round().astype(int).tolist()  # noqa: E731
    _save_pngs(real, run_dir / "examples" / "real", real.ids, pick(len(real)))
    idx = pick(len(fake))
    _save_pngs(fake, run_dir / "examples" / "fake", fake.ids, idx)
    for name, images in refined.items():
        _save_pngs(images, run_dir / "examples" / f"refined-{name}", fake.ids, idx)


# -- the run -------------------------------------------------------------------------------------
def run_benchmark(config: RunConfig) -> RunResult:
    """Run the benchmark described by ``config`` and write a new run folder (see module docstring)."""
    for plugin in config.plugins:
        load_plugin_file(plugin)
    spec = resolve_spec(config)
    refiner_names = refiner_registry().resolve(config.refiners) if config.refiners.strip() else []
    detector_names = resolve_detectors(config.detectors)
    if not detector_names:
        raise ValueError("no detectors selected")
    _check_selected_params("refiner", config.refiner_params, refiner_names, refiner_registry())
    _check_selected_params("detector", config.detector_params, detector_names, detector_registry())
    set_progress(config.progress)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    seed_everything(config.seed)

    dataset = load_dataset(spec, size=config.size, progress=config.progress)
    split = make_split(dataset, seed=config.seed)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = fresh_dir(Path(config.out) / spec.name, f"{stamp}-seed{config.seed}")
    handler = _setup_log(run_dir)
    work = temporary_store()
    try:
        return _run(config, spec, dataset, split, refiner_names, detector_names, device, precision, run_dir, work)
    finally:
        log.removeHandler(handler)
        handler.close()
        shutil.rmtree(work, ignore_errors=True)


def _run(config: RunConfig, spec: DatasetSpec, dataset: Dataset, split: Split, refiner_names: list[str],
         detector_names: list[str], device: torch.device, precision: str, run_dir: Path, work: Path) -> RunResult:
    t_start = time.perf_counter()
    resolved = config.to_dict()
    resolved.update(refiners=",".join(refiner_names), detectors=",".join(detector_names))
    write_json(run_dir / "config.json", {"config": resolved, "non_defaults": config.non_defaults(),
                                         "dataset_spec": spec.to_dict(), "image_size": dataset.size})
    prov = provenance(device, precision)
    save_split(dataset, split, run_dir / "split.csv")
    if dataset.skipped:
        pd.DataFrame([dataclasses.asdict(s) for s in dataset.skipped]).to_csv(run_dir / "skipped.csv", index=False)
        for s in dataset.skipped:
            log.warning("skipped %s: %s", s.path, s.reason)
    log.info("dataset %s: %d real, %d fake usable (%d skipped), size %d, split %s", spec.name,
             len(dataset.real), len(dataset.fake), len(dataset.skipped), dataset.size, split.counts())

    def part(label: str, name: str) -> ImageSet:
        base = dataset.real if label == "real" else dataset.fake
        return base.subset(split.indices(label, name))

    real_train, fake_train = part("real", "train"), part("fake", "train")
    real_val, fake_val = part("real", "val"), part("fake", "val")
    real_test, fake_test = part("real", "test"), part("fake", "test")

    # -- refiners --------------------------------------------------------------------------------
    refined: dict[str, ArrayImageSet] = {}
    errors: dict[str, str] = {}
    refiner_info: dict[str, Any] = {}
    for name in refiner_names:
        cls = refiner_registry().get(name)
        t0 = time.perf_counter()
        try:
            refiner = construct(cls, config.refiner_params.get(name, {}), seed=config.seed,
                                device=config.device, precision=config.precision)
            folder = run_dir / "refiners" / name
            if _accepts(refiner.fit, "log_dir"):
                refiner.fit(fake_train, real_train, log_dir=folder / "training")
            else:
                refiner.fit(fake_train, real_train)
            t_fit = time.perf_counter() - t0
            refiner.save(folder)
            store = work / f"refined-{name}.npy"
            out = refiner.refine(fake_test, store=store) if _accepts(refiner.refine, "store") else refiner.refine(fake_test)
            if not isinstance(out, ArrayImageSet):
                out = ArrayImageSet(out.to_array(), ids=fake_test.ids)
            if len(out) != len(fake_test) or out.size != fake_test.size:
                raise ValueError(f"refiner {name} returned {len(out)} images of size {out.size}; "
                                 f"expected {len(fake_test)} of size {fake_test.size}")
            refined[name] = out
            refiner_info[name] = {"params": refiner.get_params() if hasattr(refiner, "get_params") else {},
                                  "fit_seconds": round(t_fit, 2),
                                  "refine_seconds": round(time.perf_counter() - t0 - t_fit, 2),
                                  "fit_info": getattr(refiner, "fit_info_", {})}
            if config.save_refined:
                _save_pngs(out, run_dir / "refined" / name, fake_test.ids)
            log.info("refiner %s: fit %.1fs, refined %d test fakes", name, t_fit, len(out))
        except Exception as exc:  # a failing refiner must not take the other results down
            errors[f"refiner:{name}"] = f"{type(exc).__name__}: {exc}"
            log.error("refiner %s failed:\n%s", name, traceback.format_exc())

    _save_examples(run_dir, real_test, fake_test, refined)

    # -- detectors -------------------------------------------------------------------------------
    rows: list[dict[str, Any]] = []
    score_rows: list[pd.DataFrame] = []
    train_set, train_labels = labelled(real_train, fake_train)
    val_set, val_labels = labelled(real_val, fake_val)
    detector_info: dict[str, Any] = {}
    for name in detector_names:
        cls = detector_registry().get(name)
        t0 = time.perf_counter()
        try:
            det = construct(cls, config.detector_params.get(name, {}), seed=config.seed, device=config.device)
            det.fit(train_set, train_labels, val_set, val_labels)
            det.save(run_dir / "detectors" / name)
            threshold = M.best_threshold(val_labels, _checked_scores(det.score(val_set), len(val_set), name))
            s_real = _checked_scores(det.score(real_test), len(real_test), name)
            conditions = {("fake", ""): fake_test, **{("refined", r): s for r, s in refined.items()}}
            for (condition, refiner), fakes in conditions.items():
                s_fake = _checked_scores(det.score(fakes), len(fakes), name)
                labels = np.r_[np.zeros(len(s_real), np.int64), np.ones(len(s_fake), np.int64)]
                scores = np.r_[s_real, s_fake]
                base = {"dataset": spec.name, "seed": config.seed, "refiner": refiner, "detector": name,
                        "trained_on": "fake", "condition": condition, "perturbation": "none"}
                rows += _detection_rows(labels, scores, threshold, config.n_boot, config.seed, base)
                score_rows.append(pd.DataFrame({"detector": name, "condition": condition, "refiner": refiner,
                                                "path": real_test.ids + fakes.ids, "label": labels, "score": scores}))
            detector_info[name] = {"params": det.get_params() if hasattr(det, "get_params") else {},
                                   "threshold": threshold, "seconds": round(time.perf_counter() - t0, 2),
                                   "fit_info": getattr(det, "fit_info_", {})}
            log.info("detector %s done in %.1fs", name, time.perf_counter() - t0)
        except Exception as exc:
            errors[f"detector:{name}"] = f"{type(exc).__name__}: {exc}"
            log.error("detector %s failed:\n%s", name, traceback.format_exc())
            rows = [r for r in rows if r["detector"] != name]
            score_rows = [s for s in score_rows if s["detector"].iloc[0] != name]

    # -- spectral distance -----------------------------------------------------------------------
    from stigbench.report import spectra_plots, write_run_report

    bs = config.batch_size
    spectra = {"real": mean_log_spectrum(real_test.batches(bs, "spectrum: real" if config.progress else None)),
               "fake": mean_log_spectrum(fake_test.batches(bs, "spectrum: fake" if config.progress else None))}
    for r, s in refined.items():
        spectra[f"refined:{r}"] = mean_log_spectrum(s.batches(bs))
    for key, spec_mean in spectra.items():
        if key == "real":
            continue
        condition, _, refiner = key.partition(":")
        rows.append({"dataset": spec.name, "seed": config.seed, "refiner": refiner, "detector": "",
                     "trained_on": "", "condition": condition, "perturbation": "none", "metric": "lfd",
                     "value": lfd(spectra["real"], spec_mean), "ci_low": np.nan, "ci_high": np.nan})

    quality_info: dict[str, Any] = {}
    if config.quality:
        quality_info = _quality_rows(config, spec.name, real_test, fake_test, refined, device, rows)

    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    metrics.to_csv(run_dir / "metrics.csv", index=False)
    if score_rows:
        pd.concat(score_rows, ignore_index=True).to_csv(run_dir / "scores.csv", index=False)
    spectra_plots(spectra, run_dir)
    record = {
        "provenance": prov,
        "dataset": {"name": spec.name, "synthetic": spec.synthetic, "size": dataset.size,
                    "real": len(dataset.real), "fake": len(dataset.fake), "skipped": len(dataset.skipped),
                    "split": split.counts()},
        "refiners": refiner_info,
        "detectors": detector_info,
        "quality": quality_info,
        "errors": errors,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    write_json(run_dir / "run.json", record)
    summary = write_run_report(run_dir, metrics, record)
    return RunResult(run_dir=run_dir, metrics=metrics, summary=summary, errors=errors, skipped=len(dataset.skipped))


def _quality_rows(config: RunConfig, dataset: str, real: ImageSet, fake: ImageSet, refined: dict[str, ImageSet],
                  device: torch.device, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """FID/KID (or their random-network substitutes) of the fakes and each refined set to the reals,
    on images and on spectra; appends rows and returns what was used, for the run record."""
    from stigbench.quality import get_extractor, quality_metrics

    extractor = get_extractor(config.fid_weights, device=device)
    if extractor.notice:
        log.warning("%s", extractor.notice)
    others: dict[str, ImageSet] = {"fake": fake, **{f"refined:{r}": s for r, s in refined.items()}}
    result = quality_metrics(real, others, extractor, max_images=config.quality_max_images,
                             seed=config.seed, progress=config.progress)
    for row in result.rows:
        condition, _, refiner = row["condition_key"].partition(":")
        rows.append({"dataset": dataset, "seed": config.seed, "refiner": refiner, "detector": "",
                     "trained_on": "", "condition": condition, "perturbation": "none", "metric": row["metric"],
                     "value": row["value"], "ci_low": row["ci_low"], "ci_high": row["ci_high"]})
    return result.to_dict() | {"rows": None}


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
