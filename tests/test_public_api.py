"""The public API stays put: what ``stigbench`` exports exists, every stigbench name the README, the docs
pages and the plug-in template use resolves, ``import stigbench`` stays cheap, and the version is the package's."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import stigbench

ROOT = Path(__file__).resolve().parents[1]
# the README's sections moved to docs/ (issue #23): the names and paths they show are checked there
README = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
CHANGELOG = ROOT / "CHANGELOG.md"
TEMPLATES = sorted((ROOT / "tests" / "plugin_template").rglob("*.py"))

# what the README and plug-ins import from the top level (issue #12); removing one is a breaking change
PROMISED = {
    "register_detector", "register_refiner", "register_dataset", "register_builder", "DetectorInfo",
    "RefinerInfo", "FeatureDetector", "CNNDetector", "Registry", "RegistryError", "FAKE", "REAL", "Detector",
    "Refiner", "ImageSetLike", "DatasetSpec", "load_refiner", "refiners",
}


def resolve(dotted: str) -> object:
    """``stigbench.a.b.Name`` → the object: import the longest module prefix, then read attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as err:
            if err.name is not None and not ".".join(parts[:i]).startswith(err.name):
                raise  # a module that exists failed to import: a real error, not a wrong name
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def _readme_code() -> list[str]:
    """Fenced code blocks, indented code blocks and inline code spans of the README and the docs pages."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", README, flags=re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", README, flags=re.S | re.M)
    indented = re.findall(r"(?:^(?: {4}|\t)[^\n]*\n)+", prose, flags=re.M)
    inline = re.findall(r"`([^`\n]+)`", prose)
    return fenced + indented + inline


def _readme_names() -> set[str]:
    names = set()
    for code in _readme_code():
        for module, imported in re.findall(r"from\s+(stigbench(?:\.\w+)*)\s+import\s+([\w ,]+)", code):
            names.update(f"{module}.{n.strip()}" for n in imported.split(",") if n.strip())
        names.update(m for m in re.findall(r"\bstigbench(?:\.\w+)+", code))
    return names


def _template_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "stigbench":
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "stigbench")
        elif isinstance(node, ast.Attribute):
            chain = []
            cur: ast.AST = node
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "stigbench":
                names.add(".".join(["stigbench", *reversed(chain)]))
    return names


@pytest.mark.parametrize("name", sorted(stigbench.__all__))
def test_every_exported_name_exists(name):
    assert getattr(stigbench, name) is not None


def test_the_promised_names_are_exported_and_documented():
    assert PROMISED <= set(stigbench.__all__), sorted(PROMISED - set(stigbench.__all__))
    assert set(stigbench.__all__) <= set(dir(stigbench))
    for name in stigbench.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(stigbench, name)
        if isinstance(obj, type) or callable(obj):
            assert (obj.__doc__ or "").strip(), f"stigbench.{name} has no docstring"
    assert "from stigbench import" in (stigbench.__doc__ or "")


def test_exports_are_the_defining_objects():
    """One object per name: the top level re-exports, it never defines a second copy."""
    from stigbench.attacks.registry import load_refiner, refiners, register_refiner
    from stigbench.core.contracts import FAKE, REAL
    from stigbench.detection.base import FeatureDetector
    from stigbench.detection.cnn import CNNDetector
    from stigbench.detection.registry import register_detector

    assert (stigbench.FAKE, stigbench.REAL) == (FAKE, REAL) == (1, 0)
    for ours, theirs in [(stigbench.FeatureDetector, FeatureDetector), (stigbench.CNNDetector, CNNDetector),
                         (stigbench.register_detector, register_detector), (stigbench.refiners, refiners),
                         (stigbench.register_refiner, register_refiner), (stigbench.load_refiner, load_refiner)]:
        assert ours is theirs


def test_detectors_is_the_builtin_package():
    """``stigbench.detectors`` is the package of built-in detectors (installed from detectors/), so the
    registry accessor is not re-exported under that name: importing the package would rebind it."""
    assert "detectors" not in stigbench.__all__
    package = importlib.import_module("stigbench.detectors")
    assert stigbench.detectors is package and Path(package.__file__).parent.name == "detectors"
    from stigbench.detection.registry import detectors

    assert "durall" in detectors()


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        stigbench.not_a_name  # noqa: B018
    assert not hasattr(stigbench, "plugins")  # 0.1's stigbench.plugins is gone (CHANGELOG.md)


def test_readme_names_resolve():
    names = _readme_names()
    assert "stigbench.FeatureDetector" in names  # the scan sees the README's names at all
    missing = []
    for name in sorted(names):
        try:
            resolve(name)
        except (ImportError, AttributeError) as err:
            missing.append(f"{name}: {err}")
    assert not missing, "README names that do not resolve:\n" + "\n".join(missing)


def test_readme_source_paths_exist():
    """Paths into the package the README and docs point to (``stigbench/x/y.py``) exist after the move."""
    paths = set(re.findall(r"(?<![\w/.~])stigbench/[\w/]+(?:\.py)?", README))
    assert paths
    missing = [p for p in sorted(paths) if not (ROOT / p).exists()]
    assert not missing, f"README points to paths that do not exist: {missing}"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_plugin_template_names_resolve(path):
    names = _template_names(path)
    assert names
    for name in sorted(names):
        resolve(name)


def test_changelog_new_paths_resolve():
    """Every new module path in the CHANGELOG's table of moves exists."""
    text = CHANGELOG.read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*`stigbench[^|]*\|\s*(.+?)\s*\|\s*$", text, flags=re.M)
    assert len(rows) >= 30
    for new in rows:
        for path in re.findall(r"`(stigbench[\w.]*)`", new):
            resolve(path)


def test_version_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert stigbench.__version__ == project["version"]
    assert f"## [{stigbench.__version__}]" in CHANGELOG.read_text(encoding="utf-8")


def test_import_is_cheap():
    """``import stigbench`` loads no subpackage and no torch; names are imported on first use."""
    code = ("import sys, stigbench; "
            "print(sorted(m for m in sys.modules if m.startswith(('stigbench.', 'torch', 'numpy'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
