"""Named dataset layouts: small trees shaped like the published test sets (ForenSynths, GenImage,
UniversalFakeDetect, Synthbuster, plain folders), their generators, splits, errors, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import pink_noise, upsampled_noise, write_pngs
from stigbench.cli import main
from stigbench.core.config import RunConfig
from stigbench.data.layouts import find_generators, generator_specs, layout_spec, select_generator
from stigbench.data.specs import DatasetError, DatasetSpec, load_dataset, parse_spec
from stigbench.data.split import PARTS, make_split
from stigbench.pipeline.plan import PlanError, resolve_spec

RNG = np.random.default_rng(0)


def reals(folder: Path, n: int = 12, stem: str = "img") -> None:
    write_pngs(folder, [pink_noise(RNG, 16) for _ in range(n)], stem)


def fakes(folder: Path, n: int = 12, stem: str = "img") -> None:
    write_pngs(folder, [upsampled_noise(RNG, 16) for _ in range(n)], stem)


def pair(folder: Path, n: int = 12, real: str = "0_real", fake: str = "1_fake") -> None:
    reals(folder / real, n)
    fakes(folder / fake, n)


@pytest.fixture(scope="module")
def forensynths(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("forensynths")
    pair(root / "biggan")
    for category in ("bedroom", "car"):  # same file names in both categories
        pair(root / "stylegan" / category, 8)
    return root


@pytest.fixture(scope="module")
def ufd(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ufd")
    pair(root / "progan")
    diff = root / "diffusion_datasets"
    reals(diff / "laion" / "0_real", 40)
    reals(diff / "imagenet" / "0_real", 20)
    for gen in ("guided", "ldm_200", "glide_100_27"):
        fakes(diff / gen / "1_fake", 12)
    return root


@pytest.fixture(scope="module")
def synthbuster(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("synthbuster")
    for gen in ("dalle2", "midjourney-v5", "stable-diffusion-xl"):
        fakes(base / "synthbuster" / gen, 12)
    reals(base / "raise" / "a", 20, "r")
    reals(base / "raise" / "b", 20, "r")  # same stems in two sub-folders: different files
    return base / "synthbuster", base / "raise"


@pytest.fixture(scope="module")
def genimage(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("genimage")
    for gen, sub in (("ADM", "imagenet_ai_0508_adm"), ("Midjourney", "imagenet_midjourney")):
        reals(root / gen / sub / "train" / "nature", 16)
        fakes(root / gen / sub / "train" / "ai", 16)
        reals(root / gen / sub / "val" / "nature", 6)
        fakes(root / gen / sub / "val" / "ai", 6)
    return root


def names(gens) -> list[str]:
    return [g.name for g in gens]


# -- generators found ----------------------------------------------------------------------------
def test_forensynths_generators_and_nested_categories(forensynths):
    assert names(find_generators("forensynths", forensynths)) == ["biggan", "stylegan"]
    specs = generator_specs(layout_spec("forensynths", forensynths))
    assert [s.name for s in specs] == ["forensynths-biggan", "forensynths-stylegan"]
    ds = load_dataset(specs[1], progress=False)
    assert len(ds.real) == len(ds.fake) == 16  # both categories
    assert len(set(ds.real_groups)) == 16  # equal file names in two categories stay apart
    assert all(g.startswith(("real:stylegan/bedroom/", "real:stylegan/car/")) for g in ds.real_groups)
    assert make_split(ds, seed=0).counts()["real"] == {"train": 10, "val": 3, "test": 3}


def test_ufd_generators_and_shared_real_pairing(ufd):
    gens = {g.name: g for g in find_generators("ufd", ufd)}
    assert sorted(gens) == ["diffusion_datasets/glide_100_27", "diffusion_datasets/guided",
                            "diffusion_datasets/ldm_200", "progan"]
    diff = ufd.resolve() / "diffusion_datasets"
    assert gens["diffusion_datasets/guided"].real_root == diff / "imagenet" / "0_real"
    assert gens["diffusion_datasets/ldm_200"].real_root == diff / "laion" / "0_real"
    assert gens["progan"].real_root is None
    specs = generator_specs(layout_spec("ufd", ufd, subset=["guided", "ldm*"]))
    assert [s.name for s in specs] == ["ufd-diffusion_datasets-guided", "ufd-diffusion_datasets-ldm_200"]


def test_folders_layout_single_and_nested(tmp_path):
    pair(tmp_path / "one", real="real", fake="fake")
    assert names(find_generators("folders", tmp_path / "one")) == ["one"]
    pair(tmp_path / "many" / "gan" / "a", real="real", fake="fake")
    pair(tmp_path / "many" / "diff", real="0_real", fake="1_fake")
    specs = generator_specs(layout_spec("folders", tmp_path / "many"))
    assert [s.name for s in specs] == ["folders-diff", "folders-gan-a"]


# -- splits ----------------------------------------------------------------------------------------
def test_genimage_own_split_is_honoured(genimage):
    spec = select_generator(layout_spec("genimage", genimage, subset=["ADM"]))
    assert spec.name == "genimage-ADM"
    ds = load_dataset(spec, progress=False)
    split = make_split(ds, seed=0)
    for label, image_set in (("real", ds.real), ("fake", ds.fake)):
        parts = split.real_parts if label == "real" else split.fake_parts
        from_val = np.array(["/val/" in Path(p).as_posix() for p in image_set.ids])
        assert (parts[from_val] == "test").all() and from_val.sum() == 6
        assert set(parts[~from_val]) == {"train", "val"}
        assert (parts[~from_val] == "train").sum() == 12  # 16 train images, 0.6:0.2 renormalised -> 12:4
    assert split.counts()["fake"] == {"train": 12, "val": 4, "test": 6}


def _parts_by_path(spec: DatasetSpec, seed: int) -> dict[str, str]:
    ds = load_dataset(spec, progress=False)
    split = make_split(ds, seed=seed)
    return dict(zip(ds.real.ids, split.real_parts))


@pytest.mark.parametrize("seed", [0, 1])
def test_shared_reals_split_once_across_generators(ufd, synthbuster, seed):
    cases = [generator_specs(layout_spec("ufd", ufd, subset=["ldm_200", "glide_100_27"])),
             generator_specs(layout_spec("synthbuster", synthbuster[0], real_root=synthbuster[1]))]
    for specs in cases:
        assert len(specs) >= 2
        maps = [_parts_by_path(s, seed) for s in specs]
        assert set(maps[0]) == set(maps[1])  # the same shared reals
        for a in maps:
            for b in maps:
                train_a = {p for p, part in a.items() if part == "train"}
                test_b = {p for p, part in b.items() if part in ("test", "val")}
                assert not train_a & test_b  # no real trains one generator's detector and tests another's
        assert all(set(m.values()) == set(PARTS) for m in maps)


def test_shared_real_part_independent_of_the_other_reals(synthbuster):
    fake_root, raise_root = synthbuster
    full = _parts_by_path(select_generator(layout_spec("synthbuster", fake_root, ["dalle2"], raise_root)), 0)
    spec = select_generator(layout_spec("synthbuster", fake_root, ["dalle2"], raise_root))
    capped = _parts_by_path(DatasetSpec(**{**spec.__dict__, "max_per_class": 30}), 0)
    assert all(full[p] == part for p, part in capped.items())


def test_plain_specs_record_and_split_as_before(tiny_dataset):
    spec = DatasetSpec(name="x", root=str(tiny_dataset))
    assert not {"layout", "subset", "real_root", "generator", "test_real", "test_fake"} & set(spec.to_dict())
    ds = load_dataset(spec, progress=False)
    assert ds.real_fixed is None and set(ds.real_groups) == {f"real:img_{i:03d}" for i in range(30)}


# -- errors ----------------------------------------------------------------------------------------
def test_errors_show_the_expected_tree(tmp_path, forensynths, synthbuster):
    with pytest.raises(DatasetError, match=r"unknown layout 'nope'(.|\n)*forensynths:\n  ROOT/\{generator\}"):
        find_generators("nope", tmp_path)
    with pytest.raises(DatasetError, match=r"layout root not found(.|\n)*ROOT/\{generator\}/\[\{category\}/\]"):
        find_generators("forensynths", tmp_path / "missing")
    bad = tmp_path / "bad"
    reals(bad / "progan" / "cat" / "0_real", 3)  # a class folder without its pair: no fakes
    pair(bad / "biggan", 3)
    with pytest.raises(DatasetError, match=r"has 0_real/ but no 1_fake/ \(no fakes\)(.|\n)*expects"):
        find_generators("forensynths", bad)
    assert names(find_generators("forensynths", bad, subset=["biggan"])) == ["biggan"]  # the others still usable
    broken = {g.name: g.error for g in find_generators("forensynths", bad, strict=False)}
    assert "no fakes" in broken["progan"] and not broken["biggan"]
    fakes(bad / "stylegan" / "1_fake", 3)
    with pytest.raises(DatasetError, match=r"has 1_fake/ but no 0_real/ \(no reals\)"):
        find_generators("forensynths", bad, subset=["stylegan"])
    with pytest.raises(DatasetError, match=r"RAISE reals with real_root(.|\n)*REAL_ROOT"):
        find_generators("synthbuster", synthbuster[0])
    (synthbuster[0].parent / "empty" / "nothing").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"nothing: no images \(no fakes\)(.|\n)*ROOT/\{generator\}/\*\.png"):
        find_generators("synthbuster", synthbuster[0].parent / "empty", real_root=synthbuster[1])
    with pytest.raises(DatasetError, match="only for layouts with fakes only"):
        find_generators("forensynths", forensynths, real_root=synthbuster[1])
    with pytest.raises(DatasetError, match="matches no generator(.|\n)*generators found: biggan, stylegan"):
        find_generators("forensynths", forensynths, subset=["progan"])
    with pytest.raises(DatasetError, match="2 generators match \\(biggan, stylegan\\)(.|\n)*--subset"):
        select_generator(layout_spec("forensynths", forensynths))
    with pytest.raises(DatasetError, match="resolve it to one first"):
        load_dataset(layout_spec("forensynths", forensynths), progress=False)


def test_genimage_missing_class_folder(tmp_path):
    root = tmp_path / "gi"
    reals(root / "VQDM" / "sub" / "train" / "nature", 3)
    with pytest.raises(DatasetError, match=r"train/ai/(.|\n)*no fakes(.|\n)*\{train,val\}/\{nature,ai\}"):
        find_generators("genimage", root)


def test_layout_in_spec_files_and_run_config(tmp_path, forensynths):
    spec = parse_spec({"name": "cnndet", "layout": "forensynths", "root": str(forensynths), "subset": "big*"})
    assert select_generator(spec).name == "cnndet-biggan"
    with pytest.raises(DatasetError, match="drop real/fake"):
        parse_spec({"name": "x", "layout": "forensynths", "real": "r", "fake": "f"})
    assert resolve_spec(RunConfig(layout="forensynths", root=str(forensynths), subset="stylegan")).name \
        == "forensynths-stylegan"
    with pytest.raises(PlanError, match="needs --root"):
        resolve_spec(RunConfig(layout="forensynths"))


# -- CLI -------------------------------------------------------------------------------------------
TINY = ["--refiner", "", "--detectors", "durall", "--no-quality", "--n-boot", "0"]


def test_run_with_layout_and_subset(forensynths, tmp_path):
    runner = CliRunner()
    base = ["run", "--layout", "forensynths", "--root", str(forensynths), "--out", str(tmp_path), "--quiet",
            "--cache-dir", str(tmp_path / "stages"), *TINY]
    r = runner.invoke(main, base)
    assert r.exit_code == 2 and "2 generators match (biggan, stylegan)" in r.output
    r = runner.invoke(main, base + ["--subset", "big*"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    run_dir = next((tmp_path / "forensynths-biggan").glob("*"))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["layout"] == "forensynths" and config["dataset_spec"]["generator"] == "biggan"


@pytest.mark.heavy
def test_grid_over_a_layout_one_dataset_per_generator(forensynths, tmp_path):
    import shutil

    root = tmp_path / "fs"
    shutil.copytree(forensynths, root)
    reals(root / "broken" / "0_real", 4)  # a generator without fakes: its cell fails, the others finish
    out = tmp_path / "grid"
    args = ["grid", "--layout", "forensynths", "--root", str(root), "--out", str(out), "--quiet", *TINY]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    assert "2 cell(s) run" in r.output and "1 failed" in r.output and "no fakes" in r.output
    cells = json.loads((out / "grid.json").read_text())["cells"]
    assert sorted(cells) == ["forensynths-biggan/seed0", "forensynths-broken/seed0", "forensynths-stylegan/seed0"]
    assert "no fakes" in cells["forensynths-broken/seed0"]["error"]
    for name in ("forensynths-biggan", "forensynths-stylegan"):
        assert (out / cells[f"{name}/seed0"]["run_dir"] / "metrics.csv").is_file()
    r = CliRunner().invoke(main, args[:-len(TINY)] + TINY + ["--subset", "big*,style*"])
    assert r.exit_code == 0 and "2 reused" in r.output, r.output
