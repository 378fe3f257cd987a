"""Score images with a detector a run saved, or with a released checkpoint (``bench.py detect``).

A run copies each fitted detector into ``RUN/detectors/NAME/`` with a ``threshold.json`` (the
threshold chosen on the validation split, the image size it was trained at). Run folders written
before that have the threshold in ``RUN/thresholds.csv`` or ``RUN/run.json`` and the size in
``RUN/config.json``; :func:`read_threshold` and :func:`detector_settings` look there in turn.

:func:`score_released` needs no run: a registered detector with ``checkpoint=PATH`` loads its authors'
released file (:class:`~stigbench.core.contracts.ReleasedDetector`) and labels at the authors' own
threshold (``P(fake) > 0.5`` for the built-ins). A released detector a run saved gets both labels:
``label`` at the run's validation threshold, ``label_authors`` at the authors'.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stigbench.core.imageset import Skipped
from stigbench.core.io import read_json
from stigbench.data.specs import input_images
from stigbench.core.contracts import authors_threshold, file_params, released_checkpoint
from stigbench.detection.registry import detectors, load_detector
from stigbench.evaluation.rows import is_baseline
from stigbench.pipeline.run_state import checked_scores

THRESHOLD_FILE = "threshold.json"
SKIPPED_FILE = "skipped.csv"
COLUMNS = ["file", "p_fake", "label"]


@dataclass(frozen=True)
class Threshold:
    """A saved detector's decision threshold (``P(fake) >= value`` means fake) and where it came from;
    ``value`` is None when no file of the run records one."""

    value: float | None
    source: str  # "threshold.json", "thresholds.csv", "run.json", "authors" or "" (none)
    chosen_on: str = "val"
    metric: str = "max-accuracy"
    #: ``P(fake) >= value`` is fake when True; the authors' test code of the released detectors uses ``>``.
    inclusive: bool = True

    def labels(self, p_fake: np.ndarray) -> np.ndarray:
        """``"fake"``/``"real"`` per score (needs a value)."""
        assert self.value is not None
        fake = p_fake >= self.value if self.inclusive else p_fake > self.value
        return np.where(fake, "fake", "real")

    def with_value(self, value: float) -> Threshold:
        return dataclasses.replace(self, value=float(value))

    def rule(self) -> str:
        """``P(fake) >= 0.73`` or ``P(fake) > 0.5``."""
        return f"P(fake) {'>=' if self.inclusive else '>'} {self.value:.6g}"


@dataclass(frozen=True)
class DetectorSettings:
    """How the run fed images to the detector: ``image_size`` is None when no file records it."""

    image_size: int | None
    resize: bool = False
    grayscale: str = "skip"


@dataclass
class DetectResult:
    scores: pd.DataFrame  # COLUMNS, or "file", "p_fake" when the threshold is unknown
    skipped: list[Skipped]
    size: int
    threshold: Threshold
    settings: DetectorSettings


def run_folder_of(detector_dir: str | Path) -> Path | None:
    """The run folder holding ``RUN/detectors/NAME``, or None for a detector folder kept elsewhere."""
    folder = Path(detector_dir).resolve()
    run = folder.parent.parent
    if folder.parent.name == "detectors" and ((run / "run.json").is_file() or (run / "config.json").is_file()):
        return run
    return None


def _json(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _finite(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_threshold(detector_dir: str | Path) -> Threshold:
    """The threshold saved with the detector, else the run's ``thresholds.csv`` (the row of the
    detector trained on the original fakes), else ``run.json``'s ``detectors.NAME.threshold``."""
    folder = Path(detector_dir)
    saved = _json(folder / THRESHOLD_FILE)
    value = _finite(saved.get("threshold"))
    if value is not None:
        return Threshold(value, THRESHOLD_FILE, str(saved.get("chosen_on", "val")), str(saved.get("metric", "max-accuracy")))
    run, name = run_folder_of(folder), folder.resolve().name
    if run is None:
        return Threshold(None, "")
    if (run / "thresholds.csv").is_file():
        from stigbench.evaluation.detection import read_thresholds

        table = read_thresholds(run / "thresholds.csv")
        hit = table[(table.detector == name) & table.trained_on.map(is_baseline) & (table.refiner == "")]
        if len(hit) and _finite(hit.threshold.iloc[0]) is not None:
            return Threshold(float(hit.threshold.iloc[0]), "thresholds.csv")
    value = _finite(_json(run / "run.json").get("detectors", {}).get(name, {}).get("threshold"))
    if value is not None:
        return Threshold(value, "run.json")
    return Threshold(None, "")


def detector_settings(detector_dir: str | Path) -> DetectorSettings:
    """The image size the detector was trained at (``threshold.json``, else the run's
    ``config.json``) and the run's resize and grayscale settings."""
    folder = Path(detector_dir)
    size = _json(folder / THRESHOLD_FILE).get("image_size")
    run = run_folder_of(folder)
    config = _json(run / "config.json") if run is not None else {}
    spec = config.get("dataset_spec") or {}
    size = size or config.get("image_size")
    return DetectorSettings(int(size) if size else None, bool(spec.get("resize", False)),
                            str(spec.get("grayscale", "skip")))


def score_images(detector_dir: str | Path, input_path: str | Path, size: int | None = None,
                 resize: bool | None = None, batch_size: int | None = None, progress: bool = True) -> DetectResult:
    """P(fake) of every usable image at ``input_path`` (a file or a folder), labelled at the run's
    threshold when one is recorded.

    ``size`` defaults to the size the detector was trained at and ``resize`` to the run's setting, so
    images the run scored get the same scores. Unusable files are skipped with a reason, as in a run.
    """
    folder = Path(detector_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"detector folder not found: {folder}")
    settings = detector_settings(folder)
    threshold = read_threshold(folder)
    detector = load_detector(folder)
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError("--batch-size must be >= 1")
        if hasattr(detector, "batch_size"):
            detector.batch_size = batch_size  # type: ignore[attr-defined]
    resize = settings.resize if resize is None else resize
    images, skipped = input_images(input_path, size or settings.image_size, resize, settings.grayscale, progress)
    size = images.size
    p_fake = checked_scores(detector.score(images), len(images), folder.name)
    table = pd.DataFrame({"file": [str(p) for p in images.paths], "p_fake": p_fake})
    if threshold.value is not None:
        table["label"] = threshold.labels(p_fake)
    authors = _finite(_json(folder / THRESHOLD_FILE).get("authors_threshold"))
    if authors is not None:  # a released detector the run saved: the authors' reading beside the run's
        table["label_authors"] = AUTHORS.with_value(authors).labels(p_fake)
    return DetectResult(table, skipped, size, threshold, settings)


#: The threshold of a released detector's own test code (value filled in from the detector).
AUTHORS = Threshold(None, "authors", chosen_on="the authors' test code", metric="as published", inclusive=False)


def released_detector(name: str, params: dict[str, Any]) -> Any:
    """Registered detector ``name`` built with ``params`` (file parameters made absolute, checked as a
    run's plan checks them) and its released checkpoint loaded; a configuration the run would train
    is refused (scoring needs a fitted detector: a run's saved folder, or a released file)."""
    from stigbench.pipeline.plan import absolute_file_params, construct

    cls = detectors().get(name)
    try:
        detector = construct(cls, absolute_file_params(cls, params))
        validate = getattr(detector, "check_params", None)
        if callable(validate):
            validate()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"detector {name!r}: {exc}") from exc
    if released_checkpoint(detector) is None:
        if "checkpoint" in file_params(cls):
            raise ValueError(f"detector {name!r} without checkpoint= is trained by a run: give its released file "
                             f"(--set checkpoint=PATH) or a run's saved detector folder (RUN/detectors/{name})")
        raise ValueError(f"detector {name!r} loads no released checkpoint (a run trains it): give a run's saved "
                         f"detector folder (RUN/detectors/{name})")
    return detector.load_release()


def score_released(name: str, params: dict[str, Any], input_path: str | Path, size: int | None = None,
                   resize: bool = False, batch_size: int | None = None, progress: bool = True) -> DetectResult:
    """P(fake) of every usable image at ``input_path`` from detector ``name``'s released checkpoint
    (``params`` must name it, e.g. ``{"checkpoint": "blur_jpg_prob0.5.pth", "backbone": "resnet50"}``
    for ``wang2020``), labelled at the authors' threshold. Images are centre-cropped (or, with
    ``resize``, resized) to ``size``, by default the largest power of two <= the smallest side (max 256)."""
    detector = released_detector(name, params)
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError("--batch-size must be >= 1")
        detector.batch_size = batch_size
    images, skipped = input_images(input_path, size, resize, "skip", progress)
    p_fake = checked_scores(detector.score(images), len(images), name)
    table = pd.DataFrame({"file": [str(p) for p in images.paths], "p_fake": p_fake})
    threshold = AUTHORS.with_value(float(authors_threshold(detector)))
    table["label"] = threshold.labels(p_fake)
    return DetectResult(table, skipped, images.size, threshold, DetectorSettings(None, resize))


def check_out(out: str | Path) -> None:
    """Refuse an ``--out`` that exists (nothing is ever overwritten)."""
    path = Path(out)
    if path.exists():
        raise FileExistsError(f"{path} already exists; choose another --out (scores are never overwritten)")


def write_result(result: DetectResult, out: str | Path) -> list[Path]:
    """Write the scores to ``out`` and any skipped files to ``skipped.csv`` beside it; neither file
    may exist already. Returns the files written."""
    path = Path(out)
    check_out(path)
    skipped_path = path.parent / SKIPPED_FILE
    if result.skipped and skipped_path.exists():
        raise FileExistsError(f"{skipped_path} already exists; choose another folder for --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8", newline="") as fh:
        result.scores.to_csv(fh, index=False)
    written = [path]
    if result.skipped:
        with skipped_path.open("x", encoding="utf-8", newline="") as fh:
            pd.DataFrame([asdict(s) for s in result.skipped], columns=["path", "reason"]).to_csv(fh, index=False)
        written.append(skipped_path)
    return written
