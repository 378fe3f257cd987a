"""The package's layers: an import only goes down, and no two modules import each other in a circle.

Bottom to top: ``core`` → ``measures`` → ``data`` | ``attacks`` | ``detection`` (siblings, which do
not import each other) → the built-in detector plug-ins → ``evaluation`` → ``reporting`` →
``pipeline`` → ``cli``. Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "core": 0, "measures": 1, "data": 2, "attacks": 2, "detection": 2, "detectors": 3, "datasets": 3,
    "evaluation": 4, "reporting": 5, "pipeline": 6, "cli": 7, "": 8,
}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in (ROOT / "stigbench").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts).removesuffix(".__init__")] = path
    for top in ("detectors", "datasets"):
        for path in (ROOT / top).rglob("*.py"):
            parts = ("stigbench",) + path.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts).removesuffix(".__init__")] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The stigbench modules ``name`` imports (the longest known module of each imported name)."""
    out = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[: len(name.split(".")) - node.level + is_pkg]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for t in targets:
            if t in MODULES and t != name:
                out.add(t)
                break
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_subpackage_has_a_layer():
    assert {layer_of(m) for m in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down(module):
    mine = layer_of(module)
    for target in GRAPH[module]:
        theirs = layer_of(target)
        if theirs == mine:
            continue
        assert LAYERS[theirs] < LAYERS[mine], f"{module} ({mine}) imports {target} ({theirs}): not a lower layer"


def test_no_import_cycles():
    seen: set[str] = set()
    stack: list[str] = []

    def visit(u: str) -> None:
        seen.add(u)
        stack.append(u)
        for v in GRAPH[u]:
            # a package's __init__ re-exporting its own children is not a cycle
            if v in stack and not u.startswith(v + "."):
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(v):] + [v]))
            if v not in seen:
                visit(v)
        stack.pop()

    for m in sorted(GRAPH):
        if m not in seen:
            visit(m)


def test_the_checker_sees_a_violation():
    """The rule is not vacuous: the pipeline does import lower layers, and a made-up upward edge fails."""
    assert any(layer_of(t) == "data" for t in GRAPH["stigbench.pipeline.runner"])
    assert LAYERS[layer_of("stigbench.reporting.run.report")] > LAYERS[layer_of("stigbench.core.io")]
