"""The run folders of a comparison: finding them, reading each one back, and saying why one is left out.

``collect_runs(folders) -> Collected`` walks the given folders (a run folder or any parent of run
folders), reads every run it finds and keeps a one-line message for each folder it cannot use: a folder
with no run in it, an unfinished run (``run.json`` status), a folder of an older or foreign format
(``metrics.json`` or ``metrics.csv`` without ``config.json``), a ``metrics.csv`` without metric rows or
with unreadable JSON beside it. The comparison reports the rest. Runs whose detectors failed are read
(their other rows count); :mod:`stigbench.reporting.compare.grouping` names the failures.

Names: a run's dataset is called what it recorded, except runs made with ``--real/--fake`` before
datasets were named after their folders: they recorded the generic ``<real>-vs-<fake>`` of the two
folder names (``real-vs-fake``), and are shown under :func:`stigbench.data.specs.folder_dataset_name`
(``progan`` for ``.../progan/real`` and ``.../progan/fake``) with the recorded name kept in ``runs.csv``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stigbench.core.settings import result_settings
from stigbench.data.specs import folder_dataset_name
from stigbench.reporting.run.inactive import run_inactive
from stigbench.reporting.run.metrics_csv import clean_metrics

#: Dataset-spec fields that only document the data.
DOC_SPEC_KEYS = frozenset({"name", "description", "source", "licence", "spec_path"})
#: The columns a ``metrics.csv`` must have to be read as one.
REQUIRED_COLUMNS = ("metric", "value", "condition", "detector")


class RunFolderError(ValueError):
    """A folder that cannot be compared, with the reason as its message."""


def is_run_dir(path: Path) -> bool:
    return (path / "metrics.csv").is_file() and (path / "config.json").is_file()


def find_runs(folder: str | Path) -> list[Path]:
    """``folder`` itself if it is a run folder, else every run folder below it (sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    if is_run_dir(folder):
        return [folder]
    return sorted(p.parent for p in folder.rglob("metrics.csv") if is_run_dir(p.parent))


def shorten_paths(paths: Sequence[str | Path]) -> list[str]:
    """``paths`` without the folders they all share (one path: its last two parts)."""
    parts = [Path(p).parts for p in paths]
    if not parts:
        return []
    if len(parts) == 1:
        return [str(Path(*parts[0][-2:]))]
    n = 0
    while all(len(p) > n + 1 and p[n] == parts[0][n] for p in parts):
        n += 1
    return [str(Path(*p[n:])) for p in parts]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):  # an empty dict adds no key: {} and "not given" are the same setting
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_settings(config_json: dict[str, Any]) -> dict[str, Any]:
    """The flattened settings that define a run's result (``detector_params.durall.c``, ...)."""
    cfg = result_settings(config_json.get("config", {}), replicates=False)  # seeds are aggregated over
    spec = {k: v for k, v in config_json.get("dataset_spec", {}).items() if k not in DOC_SPEC_KEYS}
    out = _flatten(cfg)
    out.update(_flatten(spec, "dataset_spec."))
    if "image_size" in config_json:
        out["image_size"] = config_json["image_size"]
    return out


def canon(value: Any) -> str:
    """``value`` as canonical JSON (sorted keys): how settings are compared and hashed."""
    return json.dumps(value, sort_keys=True, default=str)


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha1(canon(settings).encode("utf-8")).hexdigest()[:8]


def display_name(config_json: dict[str, Any], recorded: str) -> str:
    """The name a report gives a run's dataset: ``recorded``, or for a ``--real/--fake`` run that
    recorded the old generic ``<real>-vs-<fake>`` name, the name its folders give it today."""
    cfg = config_json.get("config", {})
    real, fake = cfg.get("real"), cfg.get("fake")
    if cfg.get("name") or not (real and fake):
        return recorded
    legacy = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{Path(real).name}-vs-{Path(fake).name}").lstrip("._-") or "adhoc"
    return folder_dataset_name(real, fake) if recorded == legacy else recorded


@dataclass
class RunInfo:
    """One run folder, read back; ``dataset`` is its display name, ``recorded_name`` what it recorded."""

    path: Path
    dataset: str
    seed: Any
    settings: dict[str, Any]
    settings_hash: str
    metrics: pd.DataFrame
    record: dict[str, Any]
    recorded_name: str = ""
    #: ``{refiner: reason}`` of its attacks that did nothing (:mod:`stigbench.reporting.run.inactive`)
    inactive: dict[str, str] = field(default_factory=dict)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path.name} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path.name} is not a JSON object")
    return data


def load_run(run_dir: str | Path) -> RunInfo:
    """Read a run folder; :class:`RunFolderError` (a ``ValueError``) says why one cannot be compared."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise FileNotFoundError(f"{run_dir} is not a run folder (needs metrics.csv and config.json)")
    config = _read_json(run_dir / "config.json")
    record = _read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
    status = record.get("status")
    if status not in (None, "complete"):  # None: a 0.1 run folder, which has no status
        raise RunFolderError(f"its run is {status} (run.json)")
    try:
        raw = pd.read_csv(run_dir / "metrics.csv", keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"metrics.csv is unreadable ({type(exc).__name__}: {exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise RunFolderError(f"metrics.csv has no {', '.join(missing)} column(s): not a stigbench metrics file")
    metrics = clean_metrics(raw)
    if metrics["value"].notna().sum() == 0:
        raise RunFolderError("metrics.csv holds no values (every component failed?)")
    recorded = str(config.get("dataset_spec", {}).get("name") or record.get("dataset", {}).get("name")
                   or metrics["dataset"].iloc[0] or run_dir.name)
    seed = config.get("config", {}).get("seed", metrics["seed"].iloc[0])
    settings = run_settings(config)
    return RunInfo(run_dir, display_name(config, recorded), seed, settings, settings_hash(settings), metrics, record,
                   recorded, run_inactive(metrics, record, run_dir))


@dataclass
class Collected:
    """The runs of a comparison and a message for every folder left out."""

    runs: list[RunInfo] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _not_runs(folder: Path) -> list[tuple[Path, str]]:
    """Folders under ``folder`` that look like runs but cannot be read as one, with the reason."""
    out = []
    seen: set[Path] = set()
    for name in ("run.json", "metrics.csv", "metrics.json"):
        for f in sorted(folder.rglob(name)) if folder.is_dir() else []:
            d = f.parent
            if d in seen or is_run_dir(d):
                continue
            seen.add(d)
            if (d / "run.json").is_file():
                try:
                    status = json.loads((d / "run.json").read_text(encoding="utf-8")).get("status")
                except (OSError, ValueError, AttributeError):
                    status = "unreadable"
                if status not in (None, "complete"):
                    out.append((d, f"its run is {status} (run.json), so it has no results yet"))
                    continue
            if (d / "metrics.csv").is_file():
                out.append((d, "metrics.csv without config.json: not a stigbench run folder, or one copied in part"))
            elif (d / "metrics.json").is_file():
                out.append((d, "metrics.json without metrics.csv: a format older than stigbench 0.1"))
            else:
                out.append((d, "run.json without metrics.csv: the run wrote no results"))
    return out


def collect_runs(folders: Sequence[str | Path]) -> Collected:
    """Every readable run in or under ``folders`` (once each) and a message per folder left out;
    ``FileNotFoundError`` when not a single run can be read."""
    found: dict[Path, None] = {}
    problems: list[tuple[Path, str]] = []
    for folder in map(Path, folders):
        runs = find_runs(folder)
        found.update((p.resolve(), None) for p in runs)
        bad = _not_runs(folder)
        problems += bad
        if not runs and not bad:
            problems.append((folder, "no run folder (metrics.csv + config.json) in or under it"))
    runs: list[RunInfo] = []
    for path in found:
        try:
            runs.append(load_run(path))
        except RunFolderError as exc:
            problems.append((path, str(exc)))
    problems = list(dict((p.resolve(), r) for p, r in problems).items())
    short = shorten_paths([p for p, _ in problems] + list(found))
    skipped = [f"{s}: not compared, {reason}" for s, (_, reason) in zip(short, problems)]
    if not runs:
        raise FileNotFoundError("no run folder to compare (metrics.csv + config.json) in "
                                + ", ".join(map(str, folders)) + (": " + "; ".join(skipped) if skipped else ""))
    runs.sort(key=lambda r: (r.dataset, str(r.seed), str(r.path)))
    return Collected(runs, skipped)


__all__ = [
    "Collected", "RunFolderError", "RunInfo", "canon", "collect_runs", "display_name", "find_runs", "is_run_dir",
    "load_run", "run_settings", "settings_hash", "shorten_paths",
]
