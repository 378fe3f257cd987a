from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stigbench.measures import spectrum as S


def test_convention_dc_at_centre_and_unscaled():
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    f = S.fft_shifted(x)
    assert torch.allclose(f[..., 4, 4].real, x.sum(dim=(-2, -1)))
    lm = S.log_magnitude(x)
    assert torch.allclose(lm[..., 4, 4], torch.log1p(x.sum(dim=(-2, -1))))


def test_round_trip_magnitude_phase():
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    lm, ph = S.magnitude_phase(x)
    back = S.from_log_magnitude(lm, ph)
    assert torch.allclose(back, x, atol=1e-10)


def test_round_trip_odd_and_rectangular_sizes():
    x = torch.rand(1, 3, 15, 12, dtype=torch.float64)
    assert torch.allclose(S.from_log_magnitude(*S.magnitude_phase(x)), x, atol=1e-10)


def test_shift_only_spatial_axes():
    """Batch items and channels are independent: the official code's un-dimensioned shift mixed them."""
    x = torch.rand(3, 3, 8, 8)
    full = S.log_magnitude(x)
    for i in range(3):
        for c in range(3):
            assert torch.allclose(full[i, c], S.log_magnitude(x[i, c]))


def test_half_precision_inputs_are_upcast():
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(S.log_magnitude(x.to(torch.bfloat16)), S.log_magnitude(x.to(torch.bfloat16).float()))
    assert S.log_magnitude(x.half()).dtype == torch.float32
    with pytest.raises(TypeError):
        S.log_magnitude(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_radial_profile_by_hand():
    spec = torch.zeros(5, 5)
    spec[2, 2] = 10.0  # DC, ring 0
    spec[2, 3] = 4.0   # ring 1
    prof = S.radial_profile(spec)
    # ring 1 (circular, rounded): the 4 axis neighbours and the 4 diagonals (sqrt 2 -> 1)
    assert prof.shape == (3,)
    assert prof[0] == 10.0
    assert prof[1] == pytest.approx(4.0 / 8)
    assert prof[2] == 0.0
    sq = S.radial_profile(spec, kind="square")
    assert sq[1] == pytest.approx(4.0 / 8)
    with pytest.raises(ValueError):
        S.radial_profile(spec, kind="hexagonal")


def test_radial_profile_of_radial_function_is_exact():
    r = S.radius_map(16, 16).double()
    prof = S.radial_profile(r * 2.0 + 1.0)
    assert torch.allclose(prof, torch.arange(9, dtype=torch.float64) * 2.0 + 1.0)


def test_mean_log_spectrum_independent_of_batching():
    x = torch.rand(10, 3, 8, 8)
    a = S.mean_log_spectrum([x])
    b = S.mean_log_spectrum([x[:3], x[3:7], x[7:]])
    assert a.dtype == torch.float64
    assert torch.allclose(a, b, atol=1e-12)
    with pytest.raises(ValueError):
        S.mean_log_spectrum([])


def test_lfd_by_hand():
    a = torch.zeros(1, 2, 2, dtype=torch.float64)
    b = torch.tensor([[[1.0, 2.0], [0.0, 3.0]]], dtype=torch.float64)
    # mean of squared differences = (1 + 4 + 0 + 9) / 4 = 3.5
    assert S.lfd(a, b) == pytest.approx(math.log(4.5))
    assert S.lfd(b, b) == 0.0
    assert S.lfd(a, b) == S.lfd(b, a)
    with pytest.raises(ValueError):
        S.lfd(a, torch.zeros(1, 3, 3))


def test_minmax_scale_per_image():
    x = torch.stack([torch.linspace(0, 1, 12).reshape(3, 2, 2), torch.linspace(5, 50, 12).reshape(3, 2, 2)])
    y = S.minmax_scale(x)
    for i in range(2):
        assert y[i].min() == -1 and y[i].max() == 1
    assert S.spectrum_image(torch.rand(2, 3, 8, 8)).shape == (2, 3, 8, 8)


def test_upsampling_artefact_visible_in_spectrum():
    """Pixel replication leaves a spectral signature the profile picks up (sanity of the pipeline)."""
    rng = np.random.default_rng(0)
    small = torch.from_numpy(rng.random((8, 3, 16, 16)))
    up = small.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
    noise = torch.from_numpy(rng.random((8, 3, 32, 32)))
    p_up = S.radial_profile(S.mean_log_spectrum([up]).mean(0))
    p_noise = S.radial_profile(S.mean_log_spectrum([noise]).mean(0))
    # replication multiplies the spectrum by cos(pi f): near Nyquist the energy collapses
    assert p_up[-1] < p_noise[-1] - 1.0


def test_radial_profile_after_inference_mode_still_differentiable():
    """Cached ring indices made under inference_mode must not poison later autograd use."""
    with torch.inference_mode():
        S.radial_profile(torch.rand(2, 24, 24))
    x = torch.rand(2, 24, 24, requires_grad=True)
    S.radial_profile(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("shape", [(8, 8), (15, 12), (7, 9)])
def test_mirror_negates_frequency(shape):
    """Oracle: the centred spectrum at -k is the complex conjugate at k for a real image, so its
    magnitude is its own mirror; on an arbitrary map, mirror is an involution that keeps DC."""
    h, w = shape
    x = torch.rand(2, 3, h, w, dtype=torch.float64)
    f = S.fft_shifted(x)
    assert torch.allclose(S.mirror(f), f.conj(), atol=1e-10)
    m = torch.randn(2, 3, h, w)
    assert torch.equal(S.mirror(S.mirror(m)), m)
    assert torch.equal(S.mirror(m)[..., h // 2, w // 2], m[..., h // 2, w // 2])


def test_symmetrise_is_projection_that_real_images_survive():
    m = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    s = S.symmetrise(m)
    assert torch.allclose(S.mirror(s), s)
    assert torch.allclose(S.symmetrise(s), s)
    lm, ph = S.magnitude_phase(torch.rand(4, 3, 16, 16, dtype=torch.float64))
    assert torch.allclose(S.symmetrise(lm), lm, atol=1e-12)
    # A symmetric magnitude with a real image's phase is the spectrum of the real image rebuilt from it.
    back = S.from_log_magnitude(s.abs(), ph)
    assert torch.allclose(S.log_magnitude(back), s.abs(), atol=1e-8)


def test_periodic_smooth_decomposition():
    """Moisan 2011: x = p + s, s smooth with zero mean, and p's spectrum has no border cross."""
    from stigbench.measures.spectrum import log_magnitude, periodic_smooth

    n = 64
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    g = torch.Generator().manual_seed(0)
    # a ramp (the worst case for the periodic DFT: one big jump at each border) plus texture
    x = (0.2 + 0.006 * xx + 0.004 * yy + 0.1 * torch.rand(2, 3, n, n, generator=g, dtype=torch.float64))
    p, s = periodic_smooth(x)
    torch.testing.assert_close(p + s, x)
    assert s.mean(dim=(-2, -1)).abs().max() < 1e-12
    c = n // 2
    lx, lp = log_magnitude(x), log_magnitude(p)
    axis = (slice(None), slice(None), c, slice(c + 4, n))  # the horizontal frequency axis, away from DC
    beside = (slice(None), slice(None), c + 3, slice(c + 4, n))
    assert (lx[axis].mean() - lx[beside].mean()) > 1.5  # the cross is there in x's spectrum...
    assert abs(lp[axis].mean() - lp[beside].mean()) < 0.3  # ...and gone from p's
    # the discrete Laplacian of s (periodic boundary) is the boundary image of the jumps
    lap = sum(torch.roll(s, k, d) for k in (1, -1) for d in (-1, -2)) - 4 * s
    v = torch.zeros_like(x)
    v[..., 0, :] += x[..., -1, :] - x[..., 0, :]
    v[..., -1, :] -= x[..., -1, :] - x[..., 0, :]
    v[..., :, 0] += x[..., :, -1] - x[..., :, 0]
    v[..., :, -1] -= x[..., :, -1] - x[..., :, 0]
    torch.testing.assert_close(lap, v)
    # fp32 in, fp32 out; integers refused
    assert periodic_smooth(x.float())[0].dtype == torch.float32
    with pytest.raises(TypeError):
        periodic_smooth(torch.zeros(4, 4, dtype=torch.uint8))


def test_grey_is_bt601_luma_over_any_leading_axes():
    x = torch.rand(2, 5, 3, 4, 4, dtype=torch.float64)
    expected = 0.299 * x[..., 0, :, :] + 0.587 * x[..., 1, :, :] + 0.114 * x[..., 2, :, :]
    torch.testing.assert_close(S.grey(x), expected)
    assert S.grey(x[0]).shape == (5, 4, 4) and S.grey(torch.ones(3, 2, 2)).allclose(torch.ones(2, 2))
