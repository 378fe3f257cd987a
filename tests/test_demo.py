"""The embedded demo dataset: layout, determinism, atomic caching, and the spectral facts it exists for.

One 64x64 build with the default generator training (96 reals, 96 fakes) is shared by the spectral
tests; determinism and replacement use tiny builds with a shortened training, so the whole file stays
well under a minute on two idle CPU cores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import stigbench.data.demo as demo
from stigbench.data.demo import DATASET_ID, DEMO_VERSION, GROUP_PATTERN, PHOTOS, build_demo
from stigbench.measures.spectrum import log_magnitude, radial_profile

SIZE, N_REAL, N_FAKE = 64, 96, 96


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("demo") / "demo"
    return root, build_demo(root, seed=0, size=SIZE, n_real=N_REAL, n_fake=N_FAKE, progress=False)


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def _load(folder: Path) -> torch.Tensor:
    """All PNGs of a folder as float64 ``(N, 3, H, W)`` in [0, 1]."""
    arr = np.stack([np.asarray(Image.open(p)) for p in _pngs(folder)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).double() / 255


@pytest.fixture(scope="module")
def images(built: tuple[Path, dict]) -> tuple[torch.Tensor, torch.Tensor]:
    root, _ = built
    return _load(root / "real"), _load(root / "fake")


# -- layout and manifest ---------------------------------------------------------------------------
@pytest.mark.heavy
def test_counts_and_group_names(built: tuple[Path, dict]) -> None:
    root, manifest = built
    real, fake = _pngs(root / "real"), _pngs(root / "fake")
    assert (len(real), len(fake)) == (N_REAL, N_FAKE)
    pattern = re.compile(GROUP_PATTERN)
    groups = {p: pattern.fullmatch(p.stem).group("group") for p in real + fake}  # type: ignore[union-attr]
    photo_groups = {groups[p] for p in real if not groups[p].startswith("leaves")}
    assert photo_groups <= {f"{ph.name}-q{q}" for ph in PHOTOS for q in range(4)} and len(photo_groups) >= 8
    leaves = [groups[p] for p in real if groups[p].startswith("leaves")]
    fakes = [groups[p] for p in fake]
    assert len(set(leaves)) == len(leaves) and len(set(fakes)) == len(fakes)  # each its own group
    n_photo = N_REAL - len(leaves)
    assert abs(n_photo - N_REAL / 3) <= 1  # about a third photo crops
    assert manifest["counts"]["real_photo_crops"] == n_photo
    assert sum(manifest["counts"]["photo_crops_per_source"].values()) == n_photo


def test_manifest(built: tuple[Path, dict]) -> None:
    root, manifest = built
    assert json.loads((root / "manifest.json").read_text()) == manifest
    assert manifest["dataset"] == DATASET_ID and manifest["version"] == DEMO_VERSION
    assert (manifest["seed"], manifest["size"], manifest["n_real"], manifest["n_fake"]) == (0, SIZE, N_REAL, N_FAKE)
    assert manifest["synthetic"] is True and "not a real GAN" in manifest["statement"]
    licences = {s["name"]: s["licence"] for s in manifest["sources"]}
    assert set(licences) == {p.name for p in PHOTOS} | {"leaves"} and all(licences.values())
    training = manifest["generator"]["training"]
    assert training["iterations"] > 0 and 0 < training["final_batch_loss"] < 0.2
    assert manifest["timings_s"]["total"] > 0


def test_pngs_are_8bit_rgb_of_the_size(built: tuple[Path, dict]) -> None:
    root, _ = built
    for path in _pngs(root / "real") + _pngs(root / "fake"):
        with Image.open(path) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (SIZE, SIZE)), path.name


def test_no_temporary_folder_left(built: tuple[Path, dict]) -> None:
    root, _ = built
    assert sorted(p.name for p in root.parent.iterdir()) == [root.name]


def test_matching_build_is_reused(built: tuple[Path, dict]) -> None:
    root, manifest = built
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    again = build_demo(root, seed=0, size=SIZE, n_real=N_REAL, n_fake=N_FAKE, progress=False)
    assert again == manifest
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


# -- determinism and atomic replacement (tiny builds) -----------------------------------------------
@pytest.fixture
def short_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Determinism and file handling do not depend on how long the generator trains."""
    monkeypatch.setattr(demo, "_TRAIN_STEPS", 20)


def _tiny(root: Path, seed: int) -> dict:
    return build_demo(root, seed=seed, size=32, n_real=12, n_fake=12, progress=False)


def _bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.mark.heavy
@pytest.mark.usefixtures("short_training")
def test_same_seed_is_byte_identical_other_seed_differs(tmp_path: Path) -> None:
    torch.manual_seed(1234)
    rng_before = torch.random.get_rng_state()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    _tiny(tmp_path / "a", 0)
    # The caller's torch RNG stream and determinism setting are left as they were.
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert torch.are_deterministic_algorithms_enabled() == deterministic_before
    _tiny(tmp_path / "b", 0)
    _tiny(tmp_path / "c", 1)
    a, b, c = _bytes(tmp_path / "a"), _bytes(tmp_path / "b"), _bytes(tmp_path / "c")
    assert len(a) == 24 and a == b
    fakes_a = [v for k, v in a.items() if k.startswith("fake")]
    fakes_c = [v for k, v in c.items() if k.startswith("fake")]
    assert all(x != y for x, y in zip(fakes_a, fakes_c))


@pytest.mark.usefixtures("short_training")
def test_outdated_demo_build_is_replaced(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    (root / "real").mkdir(parents=True)
    (root / "real" / "stale_000.png").write_bytes(b"old")
    (root / "manifest.json").write_text(json.dumps({"dataset": DATASET_ID, "version": "outdated"}))
    manifest = build_demo(root, seed=0, size=16, n_real=4, n_fake=2, progress=False)
    assert manifest["version"] == DEMO_VERSION
    assert not (root / "real" / "stale_000.png").exists()
    assert len(_pngs(root / "real")) == 4 and len(_pngs(root / "fake")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no .tmp-/.old- folder left


@pytest.mark.usefixtures("short_training")
def test_build_with_missing_files_is_rebuilt(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    build_demo(root, seed=0, size=16, n_real=4, n_fake=2, progress=False)
    _pngs(root / "fake")[0].unlink()
    build_demo(root, seed=0, size=16, n_real=4, n_fake=2, progress=False)
    assert len(_pngs(root / "fake")) == 2


def test_foreign_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        build_demo(tmp_path, size=16, n_real=4, n_fake=2, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("kwargs", [{"size": 20}, {"size": 8}, {"n_real": 1}, {"n_fake": 0}, {"seed": -1}])
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        build_demo(tmp_path / "demo", progress=False, **kwargs)


# -- the spectral facts the dataset is for ----------------------------------------------------------
def _contrast(d: np.ndarray) -> np.ndarray:
    """Each frequency minus the mean of its 8 (periodic) neighbours: isolates narrow peaks."""
    neighbours = sum(np.roll(d, (a, b), (0, 1)) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0))
    return d - neighbours / 8


def test_reals_have_a_power_law_spectrum_near_1_over_f2(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    real, _ = images
    grey = real.mean(dim=1)
    grey = grey - grey.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fftshift(torch.fft.fft2(grey), dim=(-2, -1)).abs() ** 2
    profile = radial_profile(power).mean(dim=0).numpy()
    # From the lowest rings (edge effects of the crop) up to 3/8 of the sampling rate (beyond it the
    # camera-like box anti-aliasing of dead leaves and the photos' own optics steepen the fall-off).
    r = np.arange(2, 3 * SIZE // 8 + 1)
    slope = np.polyfit(np.log(r), np.log(profile[r]), 1)[0]
    assert -3.0 < slope < -1.5, slope  # measured: -2.26


def test_fakes_carry_the_upsampling_peaks(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    real, fake = images
    d = (log_magnitude(fake).mean(dim=(0, 1)) - log_magnitude(real).mean(dim=(0, 1))).numpy()
    contrast = _contrast(d)
    u = np.arange(SIZE) - SIZE // 2
    uu, vv = np.meshgrid(u, u, indexing="ij")
    # The axes carry the cross of the image border's discontinuity; leave them out.
    off_axis = (uu != 0) & (vv != 0)
    # Checkerboard replicas of two stride-2 stages sit on the N/4 grid: (+-N/4, +-N/4), the Nyquist
    # edge at (-N/2, +-N/4) and the Nyquist corner (-N/2, -N/2).
    peaks = off_axis & (uu % (SIZE // 4) == 0) & (vv % (SIZE // 4) == 0)
    elsewhere = off_axis & ~((uu % (SIZE // 8) == 0) & (vv % (SIZE // 8) == 0))
    assert peaks.sum() == 9
    assert (contrast[peaks] > 0).all(), contrast[peaks]  # measured: >= 0.31
    assert contrast[peaks].mean() > 0.2  # measured: 0.42
    assert abs(contrast[elsewhere].mean()) < 0.05  # measured: -0.005
    assert contrast[0, 0] > np.percentile(contrast[elsewhere], 99)  # Nyquist corner; measured 0.48 vs 0.13


def test_fakes_lack_high_frequencies_but_match_colour(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    real, fake = images
    prof_real = radial_profile(log_magnitude(real).mean(dim=1)).mean(dim=0)
    prof_fake = radial_profile(log_magnitude(fake).mean(dim=1)).mean(dim=0)
    high = slice(SIZE // 4, None)
    assert (prof_real[high] - prof_fake[high]).min() > 0.3  # measured: > 0.7
    assert (real.mean(dim=(0, 2, 3)) - fake.mean(dim=(0, 2, 3))).abs().max() < 0.08  # measured: 0.03
    assert fake.std(dim=(2, 3)).mean() > 0.05  # blurry images, not flat ones


def test_fakes_are_generated_not_copies(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    real, fake = images
    rms = torch.cdist(fake.flatten(1), real.flatten(1)) / real[0].numel() ** 0.5
    assert rms.min() > 0.03  # RMS difference to the closest real; measured: 0.07


def test_radial_profile_logistic_regression_separates(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    real, fake = images
    x = radial_profile(log_magnitude(torch.cat([real, fake])).mean(dim=1)).numpy()
    y = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)
    assert clf.score(x, y) > 0.9  # measured: 0.995
