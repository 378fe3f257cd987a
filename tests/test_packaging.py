"""The package layout promised by the design card: detectors/ and datasets/ live at the top of the
repository but install under the stigbench namespace, never as bare top-level names."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {"stigbench"}
    for init in (ROOT / "stigbench").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        found.add(".".join(rel.parts))
    for top in ("detectors", "datasets"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(("stigbench",) + init.parent.relative_to(ROOT).parts))
    assert found <= listed, f"not in pyproject packages: {sorted(found - listed)}"
    assert cfg["package-dir"]["stigbench.detectors"] == "detectors"
    assert cfg["package-dir"]["stigbench.datasets"] == "datasets"
    assert not any(p in ("detectors", "datasets") for p in listed)


def test_builtin_specs_and_detectors_import_from_the_namespace():
    from importlib import resources

    import stigbench.datasets
    import stigbench.detectors

    assert Path(stigbench.detectors.__file__).parent.name == "detectors"
    assert resources.files("stigbench.datasets").joinpath("demo.toml").is_file()
