"""Shared fixtures. Tests never download: timm is told the hub is offline, and the stigbench cache
(built datasets, feature statistics) lives in a per-session temporary folder."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "STIGBENCH_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="stigbench-test-cache-")
    os.environ["STIGBENCH_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


def pink_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """An RGB image in [0, 1] with a roughly 1/f^2 power spectrum (natural-image-like)."""
    x = rng.standard_normal((size, size, 3))
    f = np.fft.fft2(x, axes=(0, 1))
    u = np.fft.fftfreq(size)[:, None]
    v = np.fft.fftfreq(size)[None, :]
    f /= (np.sqrt(u**2 + v**2) + 1.0 / size)[..., None]
    img = np.real(np.fft.ifft2(f, axes=(0, 1)))
    img = (img - img.mean()) / (img.std() * 6) + 0.5
    return np.clip(img, 0, 1)


def upsampled_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """A "fake": 1/f noise at half resolution, up-sampled by pixel replication (periodic artefacts)."""
    small = pink_noise(rng, size // 2)
    return small.repeat(2, axis=0).repeat(2, axis=1)


def write_pngs(folder: Path, images: list[np.ndarray], stem: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        p = folder / f"{stem}_{i:03d}.png"
        Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(p)
        paths.append(p)
    return paths


def make_tiny_dataset(root: Path, n_real: int = 30, n_fake: int = 30, size: int = 32, seed: int = 0) -> Path:
    """``root/real`` and ``root/fake`` with easy-to-separate synthetic images."""
    rng = np.random.default_rng(seed)
    write_pngs(root / "real", [pink_noise(rng, size) for _ in range(n_real)])
    write_pngs(root / "fake", [upsampled_noise(rng, size) for _ in range(n_fake)])
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only tiny dataset shared by the whole session (copy it before modifying)."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module: tiny convolutions gain nothing from threads, and on a busy
    machine OpenMP's spinning threads make them many times slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `-m "not heavy"` replaces pyproject's `-m "not slow and not gpu"`: slow and GPU tests are heavy too,
    # so the quick loop leaves them out as the default run does.
    for item in items:
        if item.get_closest_marker("slow") or item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.heavy)
