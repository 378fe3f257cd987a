"""A minimal scikit-learn-style base: ``__init__`` stores hyper-parameters, ``get_params`` reads them.

Refiners and detectors share it so that a fitted object can be saved as ``params.json`` plus plain
arrays/state_dicts, and rebuilt by calling the constructor again (no pickles anywhere).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, TypeVar

from stigbench.core.io import read_json, write_json

E = TypeVar("E", bound="Estimator")

PARAMS_FILE = "params.json"

#: Module prefixes of stigbench 0.1, whose saved ``params.json`` files record classes under them
#: (longest first); 0.2 moved the modules into layer packages (CHANGELOG.md).
MOVED_MODULES = (
    ("stigbench.refiners.attacks.", "stigbench.attacks.postprocess."),
    ("stigbench.refiners.", "stigbench.attacks."),
)


def current_class_path(path: str) -> str:
    """The class path of today's code for a path recorded by any earlier version."""
    for old, new in MOVED_MODULES:
        if path.startswith(old):
            return new + path[len(old):]
    return path


def class_path(cls: type) -> str:
    """``module.QualName``, as recorded in ``params.json``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def accepted_params(cls: type) -> dict[str, inspect.Parameter]:
    """The parameters ``cls(...)`` accepts, by name and in order, ``self`` left out: what the class
    declares through a ``declared_params()`` classmethod (a constructor that takes its hyper-parameters
    as ``**overrides`` names each of them there), else its ``__init__``'s (``**kwargs`` included)."""
    declared = getattr(cls, "declared_params", None)
    params = dict(declared()) if callable(declared) else dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    return params


class Estimator:
    """Hyper-parameters are the constructor's keyword arguments, stored under the same names."""

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p.name for p in accepted_params(cls).values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_fitted(self, attr: str) -> None:
        if not hasattr(self, attr):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit() first")

    def save_params(self, path: str | Path) -> Path:
        """Write ``params.json`` (class and hyper-parameters) into the folder ``path``."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / PARAMS_FILE, {"class": class_path(type(self)),
                                          "params": self.get_params()})
        return folder

    @classmethod
    def from_params(cls: type[E], path: str | Path) -> E:
        """Rebuild an unfitted instance from the ``params.json`` in folder ``path``."""
        folder = Path(path)
        file = folder / PARAMS_FILE
        if not file.is_file():
            raise FileNotFoundError(f"no {PARAMS_FILE} in {folder}: not a saved {cls.__name__}")
        data = read_json(file)
        expected = class_path(cls)
        if current_class_path(str(data.get("class"))) != expected:
            raise ValueError(f"{folder} holds a saved {data.get('class')}, not a {expected}")
        return cls(**data["params"])


def saved_class(folder: str | Path, registry: Any, kind: str) -> tuple[str, type]:
    """The registry name and class of the component saved in ``folder``: ``params.json`` names the
    class (a path written before modules moved is mapped to today's), and ``registry`` (a
    :class:`~stigbench.core.registry.Registry` of classes) must hold it."""
    folder = Path(folder)
    file = folder / PARAMS_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{folder} is not a saved {kind} (no {PARAMS_FILE})")
    wanted = current_class_path(str(read_json(file).get("class")))
    for name in registry.list():
        cls = registry.get(name)
        if class_path(cls) == wanted:
            return name, cls
    raise ValueError(f"{folder} was saved by {wanted}, which is not a registered {kind}")

