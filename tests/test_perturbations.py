from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image, JpegImagePlugin

from stigbench.core.imageset import ArrayImageSet, to_uint8
from stigbench.attacks.perturbations import (
    PERTURBATIONS,
    Blur,
    Chain,
    Crop,
    Identity,
    Jpeg,
    Noise,
    Perturbation,
    Resize,
    describe_perturbations,
    jpeg_bytes,
    list_perturbations,
    parse_perturbation,
    parse_perturbations,
    register_perturbation,
)
from stigbench.core.registry import RegistryError
from stigbench.measures.spectrum import fft_shifted, log_magnitude, radial_profile


def smooth_images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """8-bit-exact, natural-looking test images: 1/f^2-amplitude luminance with a colour tint."""
    rng = np.random.default_rng(seed)
    u, v = np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :]
    amp = 1.0 / (np.sqrt(u**2 + v**2) + 2.0 / size) ** 2
    out = []
    for _ in range(n):
        luma = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * amp))
        luma = (luma - luma.mean()) / (luma.std() * 6)
        tint = rng.uniform(0.8, 1.2, 3)[:, None, None]
        out.append(np.clip(0.5 + tint * luma[None], 0, 1))
    return torch.from_numpy(to_uint8(torch.from_numpy(np.stack(out)))).float() / 255.0


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a - b) ** 2).mean()))


def band_energy(x: torch.Tensor, above: float) -> float:
    """Spectral power at radial frequencies above ``above`` cycles/pixel (mean removed)."""
    h = x.shape[-1]
    f = torch.arange(h) - h // 2
    r = torch.sqrt(f[:, None] ** 2.0 + f[None, :] ** 2.0) / h
    # A Hann window stops the (non-periodic) image borders from leaking into every frequency.
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(h, periodic=False))
    power = fft_shifted((x - x.mean(dim=(-2, -1), keepdim=True)) * window).abs() ** 2
    return float(power[..., r > above].sum())


def outer_rings(x: torch.Tensor) -> float:
    """Mean log-magnitude over the outer half of the rings (above 1/4 cycles/pixel)."""
    profile = radial_profile(log_magnitude(x))
    return float(profile[..., profile.shape[-1] // 2 + 1:].mean())


X = smooth_images(5)
# Every registered family over its whole grid (a parameter-free one as itself), from the registry.
ALL = parse_perturbations(",".join(f"{n}:*" if PERTURBATIONS.meta(n).param else n for n in list_perturbations()))


def test_registry_and_grids():
    assert {"blur", "crop", "jpeg", "noise", "none", "resize"} <= set(list_perturbations())
    assert {"noise", "none"} <= set(list_perturbations("n*")) and all(n[0] == "n" for n in list_perturbations("n*"))
    rows = {r["name"]: r for r in describe_perturbations()}
    assert rows["jpeg"]["param"] == "quality" and rows["jpeg"]["grid"] == "95,90,75,50,30" and rows["none"]["grid"] == ""
    assert [p.name for p in parse_perturbations("none,jpeg:*,blur:*,resize:*,noise:*,crop:*")] == [
        "none", "jpeg:95", "jpeg:90", "jpeg:75", "jpeg:50", "jpeg:30", "blur:1", "blur:2", "blur:4", "resize:0.5",
        "resize:0.25", "noise:0.01", "noise:0.02", "noise:0.05", "crop:0.9", "crop:0.8"]
    assert len(ALL) == sum(len(PERTURBATIONS.meta(n).grid) or 1 for n in list_perturbations())
    assert {n: PERTURBATIONS.meta(n).stochastic for n in ("none", "jpeg", "blur", "resize", "noise", "crop")} == {
        "none": False, "jpeg": False, "blur": False, "resize": False, "noise": True, "crop": False}


@pytest.mark.parametrize("p", ALL, ids=lambda p: p.name)
def test_contract(p: Perturbation):
    out = p(X, seed=3)
    assert out.shape == X.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out, p(X, seed=3))  # deterministic
    assert parse_perturbation(p.name) == p  # the canonical name round-trips
    if isinstance(p, Identity):
        assert torch.equal(out, X)
    else:
        assert 10.0 < psnr(X, out) < 60.0, "changes the image, by a plausible amount"
    # apply: 8-bit set, same size, independent of the batch size
    images = ArrayImageSet.from_float(X)
    a, b = p.apply(images, batch_size=2, seed=3), p.apply(images, batch_size=5, seed=3)
    assert isinstance(a, ArrayImageSet) and len(a) == len(X) and a.size == images.size
    assert np.array_equal(a.to_array(), b.to_array())
    assert np.array_equal(a.to_array(), to_uint8(out))


def test_jpeg_quality_really_differs():
    img = to_uint8(X[0])
    sizes = [len(jpeg_bytes(img, q)) for q in (95, 90, 75, 50, 30)]
    assert all(s1 > s2 for s1, s2 in zip(sizes, sizes[1:])), sizes  # would be equal if quality were ignored
    outs = {q: Jpeg(q)(X) for q in (95, 90, 75, 50, 30)}
    scores = [psnr(X, outs[q]) for q in (95, 90, 75, 50, 30)]
    assert all(s1 > s2 for s1, s2 in zip(scores, scores[1:])), scores
    assert scores[0] > 35 and scores[-1] < 32
    with Image.open(io.BytesIO(jpeg_bytes(img, 50))) as im:
        assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0
        q50 = im.quantization
    with Image.open(io.BytesIO(jpeg_bytes(img, 95))) as im:
        assert sum(im.quantization[0]) < sum(q50[0])  # finer quantisation at higher quality


def test_jpeg_rounds_to_8_bits_first():
    jitter = (torch.rand(X.shape, generator=torch.Generator().manual_seed(0)) - 0.5) * 0.9 / 255
    assert torch.equal(Jpeg(75)(X), Jpeg(75)((X + jitter).clamp(0, 1)))


def test_blur_matches_torchvision_and_removes_high_frequencies():
    for sigma in (1.0, 2.0, 4.0):
        radius = math.ceil(3 * sigma)
        ref = TF.gaussian_blur(X, kernel_size=2 * radius + 1, sigma=sigma)
        assert torch.allclose(Blur(sigma)(X), ref, atol=1e-5)
    rings = [outer_rings(X)] + [outer_rings(Blur(s)(X)) for s in (1, 2, 4)]
    # the drop flattens at large sigma: the image borders (not periodic) leak into every frequency
    assert rings[1] < 0.5 * rings[0] and all(r2 < 0.9 * r1 for r1, r2 in zip(rings[1:], rings[2:])), rings
    const = torch.full((2, 3, 32, 32), 0.3)
    assert torch.allclose(Blur(4)(const), const, atol=1e-6)
    with pytest.raises(ValueError, match="kernel radius"):
        Blur(4)(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("factor", [0.5, 0.25])
def test_resize_removes_frequencies_above_new_nyquist(factor: float):
    out = Resize(factor)(X)
    assert out.shape == X.shape
    nyquist = factor / 2  # cycles/pixel of the original grid (1/4 for 0.5x)
    assert band_energy(out, nyquist) < 0.1 * band_energy(X, nyquist)
    low = factor / 4  # well below the cut: mostly kept
    lost = band_energy(X, 0) - band_energy(X, low)
    kept = band_energy(out, 0) - band_energy(out, low)
    assert kept > 0.7 * lost


def test_noise_std_seeding_and_batch_independence():
    grey = torch.full((4, 3, 64, 64), 0.5)
    for sigma in (0.01, 0.02, 0.05):
        diff = Noise(sigma)(grey, seed=1) - grey
        assert abs(float(diff.std()) / sigma - 1) < 0.03 and abs(float(diff.mean())) < sigma / 20
    n = Noise(0.05)
    a = n(grey, seed=1)
    assert torch.equal(a, n(grey, seed=1)) and not torch.equal(a, n(grey, seed=2))
    assert not torch.equal(a[0], a[1])  # each image its own draw
    # image i draws from (seed, start + i): cutting the batch differently changes nothing
    assert torch.equal(torch.cat([n(grey[:1], seed=1), n(grey[1:], seed=1, start=1)]), a)
    with pytest.raises(ValueError, match="seed"):
        n(grey, seed=-1)


def test_crop_magnifies_the_centre():
    img = torch.zeros(1, 3, 64, 64)
    img[..., 24:40, 24:40] = 1.0  # a 16-pixel square in the centre
    out = Crop(0.5)(img)
    assert out.shape == img.shape
    area = float((out[0, 0] > 0.5).sum())
    assert abs(area - 32 * 32) <= 2 * 32  # 2x magnified: a 32-pixel square
    assert float(out[0, 0, 32, 32]) == pytest.approx(1.0, abs=1e-3)
    # the same as a manual centre crop (64 * 0.8 = 51 px, offset 6) and bicubic resize
    manual = F.interpolate(X[..., 6:57, 6:57], size=(64, 64), mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.allclose(Crop(0.8)(X), manual, atol=1e-6)


def test_chains_apply_in_order():
    blur_jpeg, jpeg_blur = parse_perturbations("blur:2+jpeg:50,jpeg:50+blur:2")
    assert isinstance(blur_jpeg, Chain) and blur_jpeg.name == "blur:2+jpeg:50"
    assert torch.equal(blur_jpeg(X), Jpeg(50)(Blur(2)(X)))
    assert torch.equal(jpeg_blur(X), Blur(2)(Jpeg(50)(X)))
    assert psnr(blur_jpeg(X), jpeg_blur(X)) < 50
    # the first step sees the seed itself; later steps draw independently
    grey = torch.full((2, 3, 64, 64), 0.5)
    assert torch.equal(parse_perturbation("noise:0.02+crop:0.9")(grey, seed=4), Crop(0.9)(Noise(0.02)(grey, seed=4)))
    twice = parse_perturbation("noise:0.02+noise:0.02")(grey, seed=4) - grey
    assert float(twice.std()) == pytest.approx(0.02 * math.sqrt(2), rel=0.05)


def test_parser_expansion_canonical_names_and_dedup():
    assert parse_perturbations("") == [] and parse_perturbations(" none ") == [Identity()]
    assert [p.name for p in parse_perturbations("blur:2.0, jpeg:075 ,blur:2,resize:.5")] == ["blur:2", "jpeg:75",
                                                                                              "resize:0.5"]
    names = [p.name for p in parse_perturbations("blur:*+jpeg:50,noise:0.01+resize:*")]
    assert names == ["blur:1+jpeg:50", "blur:2+jpeg:50", "blur:4+jpeg:50", "noise:0.01+resize:0.5",
                     "noise:0.01+resize:0.25"]
    assert parse_perturbation("jpeg:75") == Jpeg(75) and isinstance(Jpeg(75).quality, int)


@pytest.mark.parametrize("spec, error, match", [
    ("jpg:75", RegistryError, "did you mean 'jpeg'"),
    ("blurr:2", KeyError, "did you mean 'blur'"),
    ("jpeg", ValueError, "needs its quality.*jpeg:\\*"),
    ("jpeg:", ValueError, "needs its quality"),
    ("jpeg:abc", ValueError, "not a number"),
    ("jpeg:7.5", ValueError, "integer"),
    ("jpeg:0", ValueError, "1..100"),
    ("jpeg:101", ValueError, "1..100"),
    ("jpeg:75:3", ValueError, "one parameter"),
    ("blur:0", ValueError, "sigma"),
    ("blur:-1", ValueError, "sigma"),
    ("resize:1", ValueError, "factor"),
    ("noise:nan", ValueError, "sigma"),
    ("crop:1.5", ValueError, "fraction"),
    ("none:3", ValueError, "no parameter"),
    ("none+jpeg:50", ValueError, "chain"),
    ("blur:2+", ValueError, "empty step"),
    (":75", ValueError, "no family"),
])
def test_parser_errors(spec: str, error: type, match: str):
    with pytest.raises(error, match=match):
        parse_perturbations(spec)


def test_parse_single_and_registration_checks():
    with pytest.raises(ValueError, match="exactly one"):
        parse_perturbation("jpeg:*")
    with pytest.raises(ValueError, match="exactly one"):
        parse_perturbation("jpeg:75,blur:2")
    with pytest.raises(ValueError, match="two steps"):
        Chain((Blur(1),))
    with pytest.raises(RegistryError, match="already registered"):
        register_perturbation("jpeg", param="quality")(Jpeg)

    @dataclass(frozen=True)
    class Wrong(Perturbation):
        strength: float

    with pytest.raises(TypeError, match="fields"):
        register_perturbation("wrong", param="amount")(Wrong)
    assert "wrong" not in PERTURBATIONS
