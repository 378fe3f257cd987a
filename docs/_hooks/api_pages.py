"""MkDocs hook: one API reference page per module, found by walking the packages at build time.

Modules move between releases (CHANGELOG.md lists the moves), so the reference is never a hand-kept
list: whatever ``.py`` files exist under the walked folders when ``mkdocs build`` runs get a page, and
the "API reference" entry of ``nav`` is filled with them.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
NAV_TITLE = "API reference"
OUT = "reference"
# (folder in this repository, the name griffe finds it under with `paths: [.]`, the name it is
# imported by once installed: detectors/ is mapped to stigbench.detectors by pyproject.toml)
PACKAGES = [("stigbench", "stigbench", "stigbench"), ("detectors", "detectors", "stigbench.detectors")]

_pages: dict[str, tuple[str, str]] = {}  # page -> (griffe path, title)


def _modules(folder: Path, dotted: str) -> list[tuple[str, ...]]:
    parts = []
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder).with_suffix("")
        names = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if any(n.startswith("_") for n in names) or "__pycache__" in path.parts:
            continue  # private modules are not part of what a reader can rely on
        if not (path.parent / "__init__.py").exists():
            continue  # a stray script beside the package, not an importable module
        parts.append((dotted, *names))
    return sorted(set(parts))


def _tree(modules: list[tuple[str, ...]], installed: str) -> list:
    """Nested nav entries: a package is a section whose first page is its own ``__init__``."""
    nodes: dict[tuple[str, ...], list] = {}
    top: list = []
    for mod in modules:
        page = f"{OUT}/{'/'.join(mod)}.md"
        title = ".".join((installed, *mod[1:]))
        _pages[page] = (".".join(mod), title)
        children: list = [page] if any(m[: len(mod)] == mod and m != mod for m in modules) else []
        entry = {title: children or page}
        nodes[mod] = children
        parent = nodes.get(mod[:-1])
        (parent if parent is not None else top).append(entry)
    return top


def on_config(config, **kwargs):
    _pages.clear()
    tree = []
    for folder, dotted, installed in PACKAGES:
        tree += _tree(_modules(ROOT / folder, dotted), installed)
    for i, entry in enumerate(config["nav"] or []):
        if isinstance(entry, dict) and NAV_TITLE in entry:
            config["nav"][i] = {NAV_TITLE: [entry[NAV_TITLE], *tree]}
    return config


def on_files(files, config, **kwargs):
    for page, (module, title) in _pages.items():
        files.append(File.generated(config, page, content=f"# `{title}`\n\n::: {module}\n"))
    return files
