"""Dataset specs, loading and every bad-input case of the foundation issue."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stigbench.data.specs import (DatasetError, DatasetSpec, adhoc_spec, add_spec_dir, datasets, default_size,
                            input_images, load_dataset, load_spec_file, parse_spec)
from stigbench.core.imageset import BadImage, FileImageSet, load_image, scan_images



def rgb(size=(40, 40), seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "files"
    d.mkdir()
    files = {}
    rgb().save(files.setdefault("ok", d / "ok.png"))
    full = d / "full.png"
    rgb(seed=1).save(full)
    data = full.read_bytes()
    (files.setdefault("truncated", d / "truncated.png")).write_bytes(data[: len(data) // 2])
    (files.setdefault("text", d / "notes.txt")).write_text("hello")
    (files.setdefault("fake_png", d / "fake.png")).write_text("not really a png")
    rgb().convert("L").save(files.setdefault("grey", d / "grey.png"))
    Image.fromarray(np.full((40, 40), 40000, np.uint16)).save(files.setdefault("grey16", d / "grey16.png"))
    rgba = rgb().convert("RGBA")
    rgba.save(files.setdefault("rgba_opaque", d / "rgba_opaque.png"))
    arr = np.array(rgba)
    arr[0, 0, 3] = 0
    Image.fromarray(arr).save(files.setdefault("rgba_transparent", d / "rgba_transparent.png"))
    rgb().convert("CMYK").save(files.setdefault("cmyk", d / "cmyk.jpg"))
    rgb().convert("P").save(files.setdefault("palette", d / "palette.png"))
    rgb((20, 50)).save(files.setdefault("small", d / "small.png"))
    full.unlink()
    return files


def test_bad_files_are_skipped_with_reasons(bad_files):
    good, skipped, min_side = scan_images(bad_files.values(), size=32)
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert {p.name for p in good} == {"ok.png", "rgba_opaque.png", "cmyk.jpg", "palette.png"}
    assert "cannot decode" in reasons["truncated.png"]
    assert "not an image file suffix" in reasons["notes.txt"]
    assert "cannot decode" in reasons["fake.png"]
    assert "grayscale" in reasons["grey.png"]
    assert "high-bit-depth" in reasons["grey16.png"]
    assert "transparent" in reasons["rgba_transparent.png"]
    assert "smaller than the benchmark size 32" in reasons["small.png"]
    assert min_side == 40


def test_grayscale_convert_option(bad_files):
    arr = load_image(bad_files["grey"], 32, grayscale="convert")
    assert arr.shape == (3, 32, 32) and (arr[0] == arr[1]).all()
    arr16 = load_image(bad_files["grey16"], 32, grayscale="convert")
    assert arr16.dtype == np.uint8 and arr16.max() == round(40000 / 65535 * 255)
    with pytest.raises(BadImage):
        load_image(bad_files["grey"], 32)


def test_centre_crop_at_native_resolution_and_resize(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    crop = load_image(tmp_path / "a.png", 32)
    assert np.array_equal(crop.transpose(1, 2, 0), img[9:41, 19:51])
    resized = load_image(tmp_path / "a.png", 32, resize=True)
    assert resized.shape == (3, 32, 32)
    assert load_image(tmp_path / "a.png", 64, resize=True).shape == (3, 64, 64)  # upscaling when asked


def test_file_image_set_contract(tiny_dataset):
    paths = sorted((tiny_dataset / "real").glob("*.png"))
    s = FileImageSet(paths, 32)
    x = s[0]
    assert x.dtype.is_floating_point and x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1
    batches = list(s.batches(7))
    assert [len(b) for b in batches] == [7, 7, 7, 7, 2]
    assert all(b.shape[1:] == (3, 32, 32) for b in batches)
    assert np.allclose(batches[1][0].numpy(), s[7].numpy())
    sub = s.subset([3, 1])
    assert sub.ids == [str(paths[3]), str(paths[1])]
    with pytest.raises(IndexError):
        s[len(s)]


def test_layouts_real_fake_and_cnndetection(tmp_path, tiny_dataset):
    a = tmp_path / "a"
    shutil.copytree(tiny_dataset, a)
    b = tmp_path / "b"
    shutil.copytree(tiny_dataset / "real", b / "0_real")
    shutil.copytree(tiny_dataset / "fake", b / "1_fake")
    for root in (a, b):
        ds = load_dataset(DatasetSpec(name="x", root=str(root)), progress=False)
        assert len(ds.real) == 30 and len(ds.fake) == 30 and ds.size == 32


def test_missing_empty_and_unusable_folders(tmp_path, tiny_dataset):
    with pytest.raises(DatasetError, match="neither real/"):
        load_dataset(DatasetSpec(name="x", root=str(tmp_path)), progress=False)
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(DatasetSpec(name="x", real=("nope",), fake=("fake",), root=str(tiny_dataset)), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no fake files"):
        load_dataset(DatasetSpec(name="x", real=(str(tiny_dataset / "real"),), fake=(str(tmp_path / "empty"),)),
                     progress=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match="none of the 1 fake files is usable"):
        load_dataset(DatasetSpec(name="x", real=(str(tiny_dataset / "real"),), fake=(str(tmp_path / "junk"),)),
                     progress=False)


def test_bad_file_in_a_dataset_is_skipped_not_fatal(tmp_path, tiny_dataset):
    root = tmp_path / "d"
    shutil.copytree(tiny_dataset, root)
    (root / "fake" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    ds = load_dataset(DatasetSpec(name="x", root=str(root)), progress=False)
    assert len(ds.fake) == 30 and len(ds.skipped) == 1
    assert ds.skipped[0].path.endswith("broken.png")


@pytest.mark.parametrize("entry", ["fake", "fake/*.png"])
def test_a_dangling_symlink_is_named_with_its_missing_target(tmp_path, tiny_dataset, entry):
    """Folder listings and globs alike: a broken link is a skipped file with a reason, not a silent gap."""
    root = tmp_path / "d"
    shutil.copytree(tiny_dataset, root)
    (root / "fake" / "gone.png").symlink_to(tmp_path / "elsewhere" / "gone.png")
    ds = load_dataset(DatasetSpec(name="x", real=("real",), fake=(entry,), root=str(root)), progress=False)
    assert len(ds.fake) == 30 and [Path(s.path).name for s in ds.skipped] == ["gone.png"]
    assert ds.skipped[0].reason == (f"dangling symbolic link: its target {tmp_path / 'elsewhere' / 'gone.png'} "
                                    "does not exist")
    _, skipped = input_images(root / "fake", progress=False)
    assert [Path(s.path).name for s in skipped] == ["gone.png"]


def test_globs_groups_and_max_per_class(tmp_path, tiny_dataset):
    spec = DatasetSpec(name="x", real=("real/img_00*.png",), fake=("fake",), root=str(tiny_dataset),
                       group_pattern=r"^(?P<group>img)_\d+$", max_per_class=5)
    ds = load_dataset(spec, progress=False)
    assert len(ds.real) == 5 and len(ds.fake) == 5
    assert set(ds.real_groups) == {"real:img"}


def test_default_size():
    assert default_size(40) == 32
    assert default_size(64) == 64
    assert default_size(1000) == 256
    with pytest.raises(DatasetError):
        default_size(5)


def test_adhoc_spec_default_size(tmp_path):
    for label, side in (("real", 90), ("fake", 70)):
        (tmp_path / label).mkdir()
        for i in range(3):
            rgb((side + i, side + 10), seed=i).save(tmp_path / label / f"{i}.png")
    ds = load_dataset(adhoc_spec(tmp_path / "real", tmp_path / "fake"), progress=False)
    assert ds.size == 64
    with pytest.raises(DatasetError):
        adhoc_spec(tmp_path / "nope", tmp_path / "fake")


def test_spec_parsing_rejects_unknown_keys(tmp_path):
    with pytest.raises(DatasetError, match="unknown key"):
        parse_spec({"name": "x", "colour": "blue"})
    with pytest.raises(DatasetError, match="no 'name'"):
        parse_spec({"real": "a"})
    with pytest.raises(DatasetError, match="sum to 1"):
        parse_spec({"name": "x", "split": {"train": 0.5, "val": 0.2, "test": 0.2}})
    with pytest.raises(DatasetError, match="unknown split key"):
        parse_spec({"name": "x", "split": {"train": 0.6, "val": 0.2, "tst": 0.2}})
    with pytest.raises(DatasetError, match="named group"):
        parse_spec({"name": "x", "group_pattern": "(.*)"})
    with pytest.raises(DatasetError, match="invalid dataset name"):
        parse_spec({"name": "../x"})
    bad = tmp_path / "bad.toml"
    bad.write_text("name = ")
    with pytest.raises(DatasetError, match="cannot parse"):
        load_spec_file(bad)


def test_spec_dirs_and_env(tmp_path, tiny_dataset, monkeypatch):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "mine.toml").write_text(f'name = "mine-{tmp_path.name}"\nroot = "{tiny_dataset}"\nsize = 32\n')
    monkeypatch.setenv("STIGBENCH_DATASETS", str(specs))
    reg = datasets()
    spec = reg.get(f"mine-{tmp_path.name}")
    assert spec.size == 32 and Path(spec.spec_path).name == "mine.toml"
    assert add_spec_dir(specs) == []  # idempotent
    assert "demo" in reg and reg.get("demo").synthetic


def test_relative_root_resolves_against_spec_file(tmp_path, tiny_dataset):
    shutil.copytree(tiny_dataset, tmp_path / "data")
    (tmp_path / "rel.toml").write_text('name = "rel"\nroot = "data"\n')
    spec = load_spec_file(tmp_path / "rel.toml")
    assert spec.base_dir() == tmp_path / "data"
    assert len(load_dataset(spec, progress=False).real) == 30
