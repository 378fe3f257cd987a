"""The state one benchmark run shares between its stages: the plan, the data and split, the stage
stores, and what the stages have produced so far (scores, thresholds, metric rows, errors, notes)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stigbench.core import distributed
from stigbench.core.imageset import ArrayImageSet, ImageSet
from stigbench.data.specs import Dataset
from stigbench.data.split import Split, split_frame
from stigbench.evaluation.rows import CLEAN
from stigbench.pipeline.plan import Component, Plan
from stigbench.pipeline.stages import StageStore, digest, files_fingerprint


def accepts(fn: Any, name: str) -> bool:
    """Whether ``fn`` takes a keyword ``name``: the optional ``log_dir``/``store`` of the refiner contract."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _build_and_fit(cls: type, kwargs: dict[str, Any], args: tuple, fit_kwargs: dict[str, Any]) -> Any:
    obj = cls(**kwargs)
    obj.fit(*args, **fit_kwargs)
    return obj


def fit_component(component: Component, *args: Any, **fit_kwargs: Any) -> Any:
    """A fresh instance of ``component`` fitted on ``args``: under torchrun by every rank together when
    its class is ``data_parallel`` (rank 0's instance is returned), else by this process alone."""
    if getattr(component.cls, "data_parallel", False):
        return distributed.run_on_all(_build_and_fit, component.cls, component.kwargs, args, fit_kwargs)
    return _build_and_fit(component.cls, component.kwargs, args, fit_kwargs)


def fit_key(component: Component) -> dict[str, Any]:
    """What a fit stage's key adds for the distributed setting (``world_size`` of a data-parallel fit)."""
    return distributed.stage_key(getattr(component.cls, "data_parallel", False))


def checked_scores(scores: Any, n: int, name: str) -> np.ndarray:
    """Enforce the detector contract: ``(n,)`` finite probabilities in ``[0, 1]``."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"detector {name} returned scores of shape {arr.shape}, expected ({n},)")
    if not np.isfinite(arr).all():
        raise ValueError(f"detector {name} returned NaN or infinite scores")
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"detector {name} returned scores outside [0, 1] ({arr.min():.3g}..{arr.max():.3g})")
    return arr


def save_pngs(image_set: ImageSet, folder: Path, names: list[str], indices: list[int] | None = None) -> None:
    """Write images ``indices`` (default all) of ``image_set`` as ``folder/<stem of names[i]>.png``."""
    for i in indices if indices is not None else range(len(image_set)):
        image_set.save_png(i, folder / f"{Path(names[i]).stem}.png")


def folder_name(display: str) -> str:
    """``blur:2`` -> ``blur_2``: ':' is not allowed in Windows file names."""
    return display.replace(":", "_").replace("+", "_").replace("/", "_")


def load_array(folder: Path, ids: list[str]) -> ArrayImageSet:
    """The 8-bit images a stage stored in ``folder/images.npy`` (memory-mapped)."""
    return ArrayImageSet(np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False), ids=ids)


class RunState:
    """What the stages of one run read and add to; the stage functions take it as their first argument."""

    def __init__(self, plan: Plan, dataset: Dataset, split: Split, run_dir: Path, store: StageStore,
                 volatile: StageStore) -> None:
        self.plan, self.config, self.ctx, self.spec = plan, plan.config, plan.context, plan.spec
        self.dataset, self.split = dataset, split
        self.detector_names, self.perturbations = plan.detector_names, plan.perturbations
        self.detector_components = {c.display: c for c in plan.detectors}
        self.refiner_components = {c.display: c for c in plan.refiners}
        self.device, self.precision = plan.context.torch_device, plan.context.resolved_precision
        self.run_dir, self.store, self.volatile = run_dir, store, volatile
        self.errors: dict[str, str] = {}
        self.rows: list[dict[str, Any]] = []
        self.score_frames: list[pd.DataFrame] = []
        self.thresholds: list[dict[str, Any]] = []
        self.refiner_info: dict[str, Any] = {}
        self.attack_info: dict[str, Any] = {}  # attacked-set display name -> threat model, timing
        self.surrogates: dict[str, tuple[Any, Path]] = {}  # the attacker's fitted detectors, by name-seed
        self.attacked_reals: dict[str, ImageSet] = {}  # --attack-reals: attacked test reals, by attack display
        self.detector_info: dict[str, Any] = {}
        self.notes: list[str] = list(plan.notes)
        self.fitted: dict[str, tuple[Any, Path]] = {}  # detector name -> (fitted detector, its stage folder)
        self.cross_info: dict[str, dict[str, Any]] = {}
        # (perturbation, set key) -> what determines that set's pixels, for the keys of later stages
        self.identity: dict[tuple[str, str], str] = {(CLEAN, "real"): "real-test", (CLEAN, "fake"): "fake-test",
                                                     (CLEAN, "real-val"): "real-val"}
        frame = split_frame(dataset, split)
        # What every stage depends on: the exact files, their split, the image size and the seed. Not
        # the dataset's name: the files identify the data, so renaming (run --name) reuses every stage.
        self.data_payload = {
            "size": dataset.size, "resize": self.spec.resize,
            "grayscale": self.spec.grayscale, "files": files_fingerprint(frame["path"]),
            "split": digest(frame.to_csv(index=False)), "seed": self.ctx.seed, "device": self.device.type,
            "precision": self.precision,
        }

    def part(self, label: str, name: str) -> ImageSet:
        base = self.dataset.real if label == "real" else self.dataset.fake
        return base.subset(self.split.indices(label, name))

    def stage(self, kind: str, label: str, payload: dict[str, Any], make: Callable[[Path], Any],
              resumable: bool = False, cached: bool = True) -> Path:
        """Stage folder of ``make``; ``cached=False`` keeps it in this run's temporary store only."""
        full = {**self.data_payload, **payload}
        store = self.store if cached else self.volatile
        return store.get_or_make(store.key(kind, label, full), make, full, resumable=resumable)
