from __future__ import annotations

import math

import pytest
import torch

from stigbench.measures.fidelity import mean_fidelity, psnr, ssim


def test_psnr_by_hand():
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 -> 20 dB
    p = psnr(x, y)
    assert p[0].item() == pytest.approx(20.0)
    assert p[1].item() > 100


def test_ssim_identity_symmetry_and_degradation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    noisy = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    very = (x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    assert torch.allclose(ssim(x, noisy), ssim(noisy, x))
    assert (ssim(x, very) < ssim(x, noisy)).all() and (ssim(x, noisy) < 1).all()
    # a constant offset leaves structure but lowers the luminance term only slightly
    assert (ssim(x, (x * 0.9 + 0.05)) > ssim(x, noisy)).all()
    with pytest.raises(ValueError):
        ssim(x, x[:, :2])


def test_mean_fidelity_batches():
    x = torch.rand(4, 3, 16, 16)
    out = mean_fidelity([(x[:2], x[:2]), (x[2:], x[2:])])
    assert out["ssim"] == pytest.approx(1.0) and out["psnr"] > 100
    assert not math.isnan(out["psnr"])
