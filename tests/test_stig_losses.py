"""STIG losses on hand-made inputs, the spectral profile and the reconstruction round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stigbench.attacks.stig.losses import (
    SSIM,
    LowFrequencyLoss,
    LSGANLoss,
    PatchNCELoss,
    gather_patches,
    lf_box_half,
    sample_locations,
)
from stigbench.attacks.stig.networks import UNetPlusPlus
from stigbench.attacks.stig.translator import (
    Moments,
    SpectrumTranslator,
    spectral_profile,
)
from stigbench.measures.spectrum import from_log_magnitude, log_magnitude, magnitude_phase


pytestmark = pytest.mark.usefixtures("one_thread")


def test_lsgan_by_hand():
    pred = torch.tensor([0.0, 0.5, 2.0])
    loss = LSGANLoss()
    assert loss(pred, True).item() == pytest.approx((1 + 0.25 + 1) / 3)
    assert loss(pred, False).item() == pytest.approx((0 + 0.25 + 4) / 3)


def test_patchnce_prefers_matching_locations():
    torch.manual_seed(0)
    k = F.normalize(torch.randn(2, 32, 16), dim=-1)
    nce = PatchNCELoss(0.07)
    matched = nce(k.clone(), k)
    shuffled = nce(k[:, torch.randperm(32)], k)
    assert matched < 0.1 < shuffled
    # identical keys everywhere: every location is equally likely, loss = log(P)
    same = F.normalize(torch.ones(1, 8, 4), dim=-1)
    assert nce(same, same).item() == pytest.approx(math.log(8), rel=1e-5)


def test_patchnce_detaches_keys_and_uses_shared_locations():
    q = torch.randn(1, 6, 4, requires_grad=True)
    k = torch.randn(1, 6, 4, requires_grad=True)
    PatchNCELoss()(F.normalize(q, dim=-1), F.normalize(k, dim=-1)).backward()
    assert q.grad is not None and k.grad is None
    feat = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    loc = sample_locations(4, 4, 5, torch.Generator().manual_seed(0))
    assert len(set(loc.tolist())) == 5
    patches = gather_patches(feat, loc)
    assert patches.shape == (2, 5, 3)
    r, c = loc[0] // 4, loc[0] % 4
    torch.testing.assert_close(patches[1, 0], feat[1, :, r, c])
    assert len(sample_locations(2, 2, 256)) == 4  # never more locations than the map has


def test_ssim_identity_and_oracle():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=g)
    y = (x + 0.1 * torch.randn(1, 3, 32, 32, generator=g)).clamp(0, 1)
    ssim = SSIM()
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    ref = skimage_metrics.structural_similarity(
        x[0].permute(1, 2, 0).double().numpy(), y[0].permute(1, 2, 0).double().numpy(), channel_axis=2,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert ssim(x, y).item() == pytest.approx(ref, abs=1e-4)
    assert ssim(x, y).item() < 0.95


def test_low_frequency_loss():
    n = 64
    s = lf_box_half(n)
    assert s == 2 and lf_box_half(256) == 8 and lf_box_half(16) == 1
    target = torch.randn(2, 3, n, n)
    out = target.clone()
    out[..., : n // 2 - s, :] += 1.0  # change only frequencies outside the box
    out[..., n // 2 + s :, :] -= 1.0
    lf = LowFrequencyLoss()
    assert lf(out, target).item() < 1e-3
    inside = target.clone()
    inside[..., n // 2 - s : n // 2 + s, n // 2 - s : n // 2 + s] += 0.5
    assert lf(inside, target).item() == pytest.approx(0.5, rel=1e-4)
    # finite gradient where an identity generator starts: output == target
    z = target.clone().requires_grad_(True)
    lf(z, target).backward()
    assert torch.isfinite(z.grad).all()


def test_spectral_profile_is_scaled_and_differentiable():
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    for rings in ("square", "circular"):
        p = spectral_profile(log_magnitude(x), rings)
        assert p.shape == (2, 17)
        torch.testing.assert_close(p.amin(1), torch.zeros(2))
        torch.testing.assert_close(p.amax(1), torch.ones(2))
    p.sum().backward()
    assert x.grad.abs().sum() > 0


def test_unscaled_profile_is_the_ring_mean_of_20_grey_log_magnitude():
    x = torch.rand(2, 3, 32, 32)
    lm = log_magnitude(x)
    raw = spectral_profile(lm, "square", scale="none")
    # By hand: DC (ring 0) is the centre pixel alone; ring 16 is the outer square border.
    grey = 20 * (0.299 * lm[:, 0] + 0.587 * lm[:, 1] + 0.114 * lm[:, 2])
    torch.testing.assert_close(raw[:, 0], grey[:, 16, 16])
    border = torch.ones(32, 32, dtype=torch.bool)
    border[1:, 1:] = False  # after fftshift, max(|u|, |v|) = 16 is row 0 and column 0
    torch.testing.assert_close(raw[:, 16], grey[:, border].mean(1))
    lo, hi = raw.amin(1, keepdim=True), raw.amax(1, keepdim=True)
    torch.testing.assert_close(spectral_profile(lm, "square"), (raw - lo) / (hi - lo))
    with pytest.raises(ValueError, match="scale"):
        spectral_profile(lm, "square", scale="log")


@pytest.mark.parametrize("spectrum_norm", ["minmax", "real-channel", "real-frequency"])
@pytest.mark.parametrize("size", [16, 32, 64])
def test_identity_generator_reconstructs_the_input(spectrum_norm, size):
    g = torch.Generator().manual_seed(size)
    x = torch.rand(3, 3, size, size, generator=g)
    tr = SpectrumTranslator(UNetPlusPlus(levels=3, width=4, identity_init=True), spectrum_norm, size)
    if tr.needs_real_stats:
        moments = tr.real_stats_moments()
        moments.add(log_magnitude(torch.rand(4, 3, size, size, generator=g)))
        tr.set_real_stats(*moments.result())
        assert tr.std.shape == ((3, size, size) if spectrum_norm == "real-frequency" else (3, 1, 1))
    with torch.no_grad():
        out = tr(x)
    np.testing.assert_allclose(out.numpy(), x.numpy(), atol=2e-5)


@pytest.mark.parametrize("symmetric", [False, True])
def test_symmetric_output_is_the_spectrum_of_the_refined_image(symmetric):
    """With ``symmetric`` the image rebuilt from G's output has exactly that magnitude; without it the
    real part of the inverse FFT keeps only a blend of ``M(k)`` and ``M(-k)``."""
    torch.manual_seed(0)
    tr = SpectrumTranslator(UNetPlusPlus(levels=2, width=4, identity_init=True), "minmax", symmetric=symmetric)
    for p in tr.generator.parameters():  # move G away from the identity (its head starts at zero)
        p.data.add_(0.3 * torch.randn_like(p))
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        lm, phase = magnitude_phase(x)
        z, stats = tr.normalise(lm)
        zh = tr.finish(tr.generator(z))
        wanted = tr.denormalise(zh, stats).clamp_min(0)  # a magnitude cannot go below 0 (log1p 0)
        got = log_magnitude(from_log_magnitude(wanted, phase))
    assert torch.allclose(got, wanted, atol=2e-3) == symmetric  # fp32 FFT error vs ~1 off
    torch.testing.assert_close(tr.finish(zh), zh)  # a projection


def test_real_stats_match_a_direct_computation():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    lm = log_magnitude(torch.cat([a, b]).double())
    per_channel, per_frequency = Moments((0, 2, 3)), Moments((0,))
    for x in (a, b):  # batching does not matter
        per_channel.add(log_magnitude(x))
        per_frequency.add(log_magnitude(x))
    mean, std = per_channel.result()
    flat = lm.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(mean.flatten(), flat.mean(1).float())
    torch.testing.assert_close(std.flatten(), flat.std(1, unbiased=False).float())
    assert mean.shape == (3, 1, 1)
    mean, std = per_frequency.result()
    torch.testing.assert_close(mean, lm.mean(0).float())
    torch.testing.assert_close(std, lm.std(0, unbiased=False).float().clamp_min(1e-3))
    with pytest.raises(ValueError, match="at least one"):
        Moments().result()


@pytest.mark.parametrize("spectrum_norm", ["real-channel", "real-frequency"])
def test_real_stats_need_a_residual_generator(spectrum_norm):
    with pytest.raises(ValueError, match="residual"):
        SpectrumTranslator(UNetPlusPlus(levels=2, width=4, identity_init=False), spectrum_norm, 16)


def test_mean_matching_moves_every_image_by_the_gap_and_stops_at_the_reals():
    from stigbench.attacks.stig.losses import MeanMatchingLoss

    g = torch.Generator().manual_seed(0)
    shape = (3, 4, 4)
    loss = MeanMatchingLoss(shape, decay=0.5)
    real = torch.randn(4, *shape, generator=g)
    fake = (torch.randn(4, *shape, generator=g) + 1.0).requires_grad_(True)
    value = loss(fake, real)
    gap = fake.detach().mean(0) - real.mean(0)  # first batch: the running means are the batch means
    torch.testing.assert_close(value, 0.5 * gap.square().mean())
    value.backward()
    n = gap.numel()
    for i in range(4):  # the same push for every image: the spread between images is left alone
        torch.testing.assert_close(fake.grad[i], gap / (4 * n))
    # second batch: the averages move halfway (decay 0.5) towards the new batch means
    fake2 = real.clone().requires_grad_(True)
    loss(fake2, real)
    torch.testing.assert_close(loss.fake_mean[0], 0.5 * (fake.detach().mean(0) + real.mean(0)))
    torch.testing.assert_close(loss.real_mean[0], real.mean(0))
    # at the reals' mean the push is zero
    settled = MeanMatchingLoss(shape)
    same = real.clone().requires_grad_(True)
    settled(same, real).backward()
    assert same.grad.abs().max() == 0
    assert int(loss.count) == 2 and set(loss.state_dict()) == {"fake_mean", "real_mean", "count", "shift", "scale"}


def test_second_moment_matching_pulls_a_wide_spread_in():
    from stigbench.attacks.stig.losses import MeanMatchingLoss

    g = torch.Generator().manual_seed(1)
    shape = (2, 3, 3)
    real = torch.randn(6, *shape, generator=g)
    fake = (3 * torch.randn(6, *shape, generator=g)).requires_grad_(True)  # same centre, three times wider
    loss = MeanMatchingLoss(shape, moments=2)
    value = loss(fake, real)
    f = fake.detach()
    g1 = f.mean(0) - real.mean(0)
    g2 = f.square().mean(0) - real.square().mean(0)
    torch.testing.assert_close(value, 0.5 * (g1.square().mean() + g2.square().mean()))
    value.backward()
    n = g1.numel()
    torch.testing.assert_close(fake.grad, (g1 + 2 * g2 * f) / (6 * n))
    # a gradient step shrinks the spread towards the reals'
    assert (f - 2 * fake.grad).std() < f.std()
    with pytest.raises(ValueError, match="moments"):
        MeanMatchingLoss(shape, moments=3)
