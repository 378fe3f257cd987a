"""Loading plug-ins: built-in modules once on first use, entry-point groups, and one-off ``.py`` files.

The registries themselves live with their kind (:mod:`stigbench.detection.registry`,
:mod:`stigbench.attacks.registry`, :mod:`stigbench.attacks.perturbations`,
:mod:`stigbench.data.specs`); this module only imports the code whose decorators fill them, so
``import stigbench`` stays cheap.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path


def package_modules(package: str) -> list[str]:
    """The public modules of ``package`` (one file per component: a new file is picked up as it is)."""
    pkg = importlib.import_module(package)
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]


def builtin_loader(modules: Callable[[], Sequence[str]], group: str) -> Callable[[], None]:
    """A function that imports ``modules()`` and the entry points of ``group`` the first time it is
    called (again after a failed attempt, so a broken plug-in is reported every time)."""
    state = {"loaded": False}

    def load() -> None:
        if state["loaded"]:
            return
        state["loaded"] = True
        try:
            for module in modules():
                importlib.import_module(module)
            for ep in entry_points(group=group):
                ep.load()  # importing the module runs its decorators
        except BaseException:
            state["loaded"] = False
            raise

    return load


def load_plugin_file(path: str | Path) -> str:
    """Import a one-off plug-in file (e.g. ``my_detector.py``) so its decorators register it.

    The module gets a name derived from the file's absolute path, so the same file is imported once
    and two files with the same name do not clash. Returns the module name.
    """
    path = Path(path).resolve()
    if not path.is_file() or path.suffix != ".py":
        raise FileNotFoundError(f"plug-in file not found or not a .py file: {path}")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"stigbench_plugin_{path.stem}_{digest}"
    if name in sys.modules:
        return name
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - defensive
        raise ImportError(f"cannot import plug-in {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return name
