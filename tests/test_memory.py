"""Memory flat in dataset size: what streams or lives on disk gives the numbers of the in-memory path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from stigbench.core.imageset import ArrayImageSet
from stigbench.core.io import scratch_array
from stigbench.detection import base, out_of_core
from stigbench.detection.registry import detectors


def _features(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * rng.uniform(0.1, 30, d) + rng.uniform(-50, 50, d)
    x[:, 0] = 3.0  # constant: its scale becomes 1
    x[:, 1] = 1e8 + rng.integers(0, 2, n) * 1e-8  # near-constant: within round-off of a constant
    y = (rng.random(n) < 0.5).astype(np.int64)
    x[y == 1, 2:12] += 0.5
    return x, y


def _on_disk(x: np.ndarray) -> np.memmap:
    out = scratch_array(x.shape)
    out[:] = x
    return out


def test_scratch_array_is_mapped_zeroed_and_nameless() -> None:
    a = scratch_array((5, 3), np.float32)
    assert isinstance(a, np.memmap) and a.dtype == np.float32 and not a.any()
    a[2] = 1.5
    assert a.sum() == 4.5
    if os.name == "posix":
        assert not Path(a.filename).exists()  # unlinked at once: nothing left behind if killed


@pytest.mark.parametrize("n", [2, 37, 101])
def test_fit_on_disk_is_pipeline_fit_bit_for_bit(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out_of_core, "CHUNK_ROWS", 16)  # several chunks, the last one partial
    x, y = _features(n, 40, seed=n)
    y[:2] = [0, 1]
    test, _ = _features(23, 40, seed=n + 1)

    def make() -> object:
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=5000, random_state=0))

    ref = make().fit(x, y)
    ours = make()
    out_of_core.fit_on_disk(ours, _on_disk(x), y)
    ref_scaler, our_scaler = ref.steps[0][1], ours.steps[0][1]
    assert vars(ref_scaler).keys() == vars(our_scaler).keys()
    for key, value in vars(ref_scaler).items():
        assert type(getattr(our_scaler, key)) is type(value), key
        assert np.array_equal(getattr(our_scaler, key), value), key
    assert np.array_equal(ours.steps[1][1].coef_, ref.steps[1][1].coef_)
    assert np.array_equal(ours.steps[1][1].intercept_, ref.steps[1][1].intercept_)
    assert np.array_equal(out_of_core.predict_proba_on_disk(ours, _on_disk(test)), ref.predict_proba(test))


def test_fit_on_disk_leaves_other_estimators_and_bad_values_to_sklearn() -> None:
    x, y = _features(30, 8, seed=0)
    plain = LogisticRegression()
    out_of_core.fit_on_disk(plain, _on_disk(x), y)  # not a scaler pipeline: fitted as it is
    assert np.array_equal(plain.coef_, LogisticRegression().fit(x, y).coef_)
    x[3, 4] = np.inf
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    with pytest.raises(ValueError, match="infinity"):
        out_of_core.fit_on_disk(pipe, _on_disk(x), y)  # scikit-learn's own error


def _images(n: int, seed: int) -> tuple[ArrayImageSet, np.ndarray]:
    gen = torch.Generator().manual_seed(seed)
    real = (torch.rand(n, 3, 32, 32, generator=gen) * 255).round().to(torch.uint8).numpy()
    fake = real.copy()
    fake[:, :, ::2, ::2] = np.clip(fake[:, :, ::2, ::2].astype(np.int64) + 4, 0, 255).astype(np.uint8)
    return ArrayImageSet(np.concatenate([real, fake])), np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)]


def test_full_size_features_go_to_disk_with_the_same_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    """frank-dct's 1,024 log-DCT coefficients per 32² image are collected on disk; the detector fitted
    and scored that way gives exactly the scores of the in-memory path."""
    train, labels = _images(40, seed=0)
    test, _ = _images(15, seed=1)
    cls = detectors().get("frank-dct")
    on_disk = cls(max_side=32).fit(train, labels)
    assert isinstance(on_disk.extract(test), np.memmap)
    monkeypatch.setattr(base, "FEATURES_ON_DISK", 10**9)
    in_memory = cls(max_side=32).fit(train, labels)
    assert not isinstance(in_memory.extract(test), np.memmap)
    assert np.array_equal(on_disk.score(test), in_memory.score(test))
    assert np.array_equal(on_disk.extract(test), in_memory.extract(test))


@pytest.mark.heavy
def test_refined_set_of_a_refiner_without_store_is_streamed_to_a_mapped_array(tiny_dataset, tmp_path) -> None:
    """A plug-in refiner whose ``refine`` takes no ``store``: its output is copied to the stage's
    ``images.npy`` batch by batch and read back memory-mapped, with the numbers of one that writes
    its own store (the same refiner either way)."""
    from stigbench.attacks.registry import REFINERS, register_refiner
    from stigbench.attacks.spectral_match import SpectralMatch
    from stigbench.core.config import RunConfig
    from stigbench.pipeline.run_state import load_array
    from stigbench.pipeline.runner import run_benchmark

    class Unmaterialisable(ArrayImageSet):
        def to_array(self) -> np.ndarray:
            raise AssertionError("the whole refined set was materialised")

    class NoStore(SpectralMatch):
        def refine(self, image_set):  # type: ignore[override]
            out = super().refine(image_set)
            return Unmaterialisable(out.array, out.ids)

    register_refiner("no-store-test", paper="none (test)", kind="training-free")(NoStore)
    try:
        result = run_benchmark(RunConfig(
            real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"), refiners="spectral-match,no-store-test",
            detectors="durall", n_boot=0, quality=False, out=str(tmp_path / "runs"),
            cache_dir=str(tmp_path / "stages"), progress=False))
    finally:
        REFINERS.remove("no-store-test")
    m = result.metrics[result.metrics.refiner != ""]
    values = {r: g.sort_values(["detector", "metric"]).value.to_numpy(float) for r, g in m.groupby("refiner")}
    # equal_nan: a TPR at 1 % FPR is not measurable on 6 validation reals (NaN) for both alike
    np.testing.assert_array_equal(values["no-store-test"], values["spectral-match"])
    assert len(values["spectral-match"]) > 5
    folders = sorted((tmp_path / "stages" / "refined").glob("no-store-test-test-*"))
    assert len(folders) == 1
    stored = load_array(folders[0], ids=[])
    assert isinstance(stored.array, np.memmap) and stored.array.mode == "r"


@pytest.mark.parametrize("n", [1, 2, 3, 8, 9, 17, 64])
def test_chunk_bounds_cover_the_batch_without_a_lone_image(n: int) -> None:
    from stigbench.measures.fidelity import chunk_bounds

    bounds = chunk_bounds(n, 8)
    assert [i for a, b in bounds for i in range(a, b)] == list(range(n))
    assert all(b - a >= 2 for a, b in bounds) or n == 1
    assert all(b - a <= 9 for a, b in bounds)


def test_mean_fidelity_in_chunks_is_the_whole_batch_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """SSIM taken in chunks of a batch (the evaluation's memory bound) gives every image the value of
    the whole batch, so PSNR/SSIM rows do not change; batches of one stay batches of one."""
    from stigbench.measures import fidelity

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(20, 3, 24, 24, generator=gen)
    y = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    pairs = [(x[:11], y[:11]), (x[11:12], y[11:12]), (x[12:], y[12:])]
    whole = fidelity.mean_fidelity(pairs)
    monkeypatch.setattr(fidelity, "SSIM_CHUNK", 2)
    assert fidelity.mean_fidelity(pairs) == whole
    per_image = torch.cat([fidelity.ssim(x[a:b].double(), y[a:b].double()) for a, b in fidelity.chunk_bounds(11, 2)])
    assert torch.equal(per_image, fidelity.ssim(x[:11].double(), y[:11].double()))


# -- heap growth (stigbench.core.memory) ------------------------------------------------------------
_MALLINFO = """
import ctypes, os, sys
import numpy as np
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[1] == "limit":
    from stigbench.core.memory import limit_heap_growth
    print(limit_heap_growth(), limit_heap_growth())
def where(nbytes):
    before = libc.mallinfo2().hblks
    block = np.ones(nbytes, np.uint8)
    return "mapped" if libc.mallinfo2().hblks == before + 1 else "heap"
small = where(2 << 20)  # before any free: above glibc's initial 128 KiB threshold
big = np.ones(40 << 20, np.uint8)  # mapped (above 32 MiB either way)
del big  # glibc would raise its threshold now; a fixed one stays
print(small, where(33 << 20))
"""


def _glibc_with_mallinfo2() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
@pytest.mark.parametrize("mode, env, expected", [
    # glibc's own: 2 MiB blocks start mapped (each a fresh, zeroed mapping: the kernel-time cost)...
    ("plain", {}, ["mapped mapped"]),
    # ...fixed at 32 MiB: reused from the heap; blocks above the threshold keep their own mapping
    ("limit", {}, ["True True", "heap mapped"]),
    ("limit", {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}, ["False False", "mapped mapped"]),  # the user's choice wins
])
def test_limit_heap_growth_fixes_the_mmap_threshold_at_32_mib(mode: str, env: dict[str, str],
                                                              expected: list[str]) -> None:
    import subprocess
    import sys

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _MALLINFO, mode], env={**base_env, **env},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:-1] == expected


_REFAULTS = """
import resource, sys
import numpy as np
from stigbench.core.memory import limit_heap_growth
limit_heap_growth()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):  # 8 MiB blocks allocated and freed at the top of the heap, as batches are
    block = np.ones(8 << 20, np.uint8)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33")
@pytest.mark.parametrize("env, most, least", [
    ({}, 2_000, 0),  # the trim threshold raised with the mmap threshold: the top of the heap is kept
    # an mmap threshold fixed alone leaves the trim threshold at 128 KiB: every block is faulted in anew
    ({"MALLOC_MMAP_THRESHOLD_": str(32 << 20)}, None, 10_000),
])
def test_blocks_freed_at_the_top_of_the_heap_are_not_faulted_in_again(env, most, least) -> None:
    import subprocess
    import sys

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _REFAULTS], env={**base_env, **env}, capture_output=True,
                         text=True, check=True)
    faults = int(out.stdout)
    assert faults >= least and (most is None or faults <= most), faults


_HOLES = """
import ctypes, sys
from stigbench.core.memory import limit_heap_growth, release_free_memory
def anon_kib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
limit_heap_growth()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
big, pins = [], []
for _ in range(100):  # 1 MiB blocks on the heap, each followed by a small block that outlives it
    p = libc.malloc(1 << 20)
    ctypes.memset(p, 1, 1 << 20)
    big.append(p)
    pins.append(libc.malloc(64))
for p in big:
    libc.free(p)  # 100 MiB of holes the heap cannot give back by shrinking (the pins sit above them)
before = anon_kib()
released = release_free_memory()
print(released, (before - anon_kib()) // 1024)
"""


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33")
def test_release_free_memory_gives_the_heaps_holes_back() -> None:
    import subprocess
    import sys

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _HOLES], env=base_env, capture_output=True, text=True, check=True)
    released, mib = out.stdout.split()
    assert released == "True" and int(mib) >= 90, out.stdout


# -- training sets drawn by index: in memory when small, memory-mapped when large ------------------
def _png_folder(tmp_path: Path, n: int, size: int = 24) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(5)
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def test_random_access_array_in_memory_mapped_or_as_is(tmp_path: Path) -> None:
    from stigbench.attacks.stig.selection import IndexedSet
    from stigbench.core.imageset import FileImageSet, random_access_array, to_uint8

    files = FileImageSet(_png_folder(tmp_path, 7), 24)
    small = random_access_array(files, in_memory_limit=1 << 30, batch_size=3)
    large = random_access_array(files, in_memory_limit=0, batch_size=3)
    assert not isinstance(small, np.memmap) and isinstance(large, np.memmap)
    assert np.array_equal(small, files.to_array()) and np.array_equal(large, files.to_array())
    held = ArrayImageSet(files.to_array())
    assert random_access_array(held, 0) is held.array  # already an array: no copy
    # any ImageSetLike (here float images not on the 8-bit grid) is rounded as a saved PNG would be
    floats = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    like = IndexedSet(type("Floats", (), {"__getitem__": lambda self, i: floats[i], "__len__": lambda self: 5})(),
                      np.arange(5))
    assert np.array_equal(random_access_array(like, 0, batch_size=2), to_uint8(floats))


def _stig_training(fakes, reals, monkeypatch: pytest.MonkeyPatch, cache_bytes: int, log_dir: Path) -> list[dict]:
    """Every logged loss of a short STIG training (the seconds column aside), and the kept weights."""
    import csv

    from stigbench.attacks.stig import StigRefiner, trainer

    from test_stig_refiner import TINY

    monkeypatch.setattr(trainer, "_CACHE_BYTES", cache_bytes)
    refiner = StigRefiner(**{**TINY, "iterations": 6, "checkpoint_every": 1, "select_fraction": 0.4})
    refiner.fit(fakes, reals, log_dir=log_dir)
    with open(log_dir / trainer.TRAIN_LOG, newline="") as f:
        rows = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
    return [*rows, {k: v.clone() for k, v in refiner.translator_.state_dict().items()}]


@pytest.mark.heavy
def test_stig_pools_give_the_same_training_in_memory_mapped_or_read_per_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stigbench.attacks.stig.selection import IndexedSet
    from stigbench.core.imageset import FileImageSet

    from test_stig_refiner import _images

    fakes = FileImageSet(_png_folder(tmp_path, 20, size=32), 32)
    reals = _images(20, seed=12)
    ref = _stig_training(fakes, reals, monkeypatch, 256 << 20, tmp_path / "ref")  # uint8 in memory
    variants = {
        "uint8, memory-mapped": (fakes, reals, 0),
        "float32 in memory (not an ImageSet)": (IndexedSet(fakes, np.arange(20)), IndexedSet(reals, np.arange(20)), 1 << 30),
        "read per image (not an ImageSet)": (IndexedSet(fakes, np.arange(20)), IndexedSet(reals, np.arange(20)), 0),
    }
    for name, (f, r, limit) in variants.items():
        got = _stig_training(f, r, monkeypatch, limit, tmp_path / name)
        assert got[:-1] == ref[:-1] and len(ref) > 5, name
        assert all(torch.equal(ref[-1][k], got[-1][k]) for k in ref[-1]), name


def test_cnn_training_set_memory_mapped_gives_the_same_detector(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from stigbench.core.imageset import ConcatImageSet, FileImageSet
    from stigbench.detection import cnn

    from test_stig_refiner import _images

    train = ConcatImageSet([FileImageSet(_png_folder(tmp_path, 12, size=32), 32), _images(12, seed=3)])
    labels = np.r_[np.zeros(12, int), np.ones(12, int)]
    scores = {}
    for limit in (1 << 30, 0):
        monkeypatch.setattr(cnn, "IN_MEMORY_LIMIT", limit)
        det = detectors().get("spectrum-cnn")(epochs=2, batch_size=8, seed=0, device="cpu")
        scores[limit] = det.fit(train, labels).score(_images(6, seed=4))
    assert np.array_equal(scores[1 << 30], scores[0])
