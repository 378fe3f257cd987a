"""Score images with a detector a run saved (``bench.py detect``).

A run copies each fitted detector into ``RUN/detectors/NAME/`` with a ``threshold.json`` (the
threshold chosen on the validation split, the image size it was trained at). Run folders written
before that have the threshold in ``RUN/thresholds.csv`` or ``RUN/run.json`` and the size in
``RUN/config.json``; :func:`read_threshold` and :func:`detector_settings` look there in turn.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stigbench.core.imageset import Skipped
from stigbench.core.io import read_json
from stigbench.data.specs import input_images
from stigbench.detection.registry import load_detector
from stigbench.pipeline.run_state import checked_scores

THRESHOLD_FILE = "threshold.json"
SKIPPED_FILE = "skipped.csv"
COLUMNS = ["file", "p_fake", "label"]


@dataclass(frozen=True)
class Threshold:
    """A saved detector's decision threshold (``P(fake) >= value`` means fake) and where it came from;
    ``value`` is None when no file of the run records one."""

    value: float | None
    source: str  # "threshold.json", "thresholds.csv", "run.json" or "" (none)
    chosen_on: str = "val"
    metric: str = "max-accuracy"


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
        hit = table[(table.detector == name) & (table.trained_on == "fake") & (table.refiner == "")]
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
        table["label"] = np.where(p_fake >= threshold.value, "fake", "real")
    return DetectResult(table, skipped, size, threshold, settings)


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
