"""Building blocks of the ``npr`` and ``freqnet`` detectors (the detector contract itself is tested for
every registered detector in ``test_detectors.py``)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F

from stigbench.detection.registry import detectors
from stigbench.detectors.freqnet import (FreqNet, FreqNetModel, FrequencyConv, high_pass_channels,
                                         high_pass_spatial)
from stigbench.detectors.npr import NPR, npr_net, npr_residual

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_high_pass(x: torch.Tensor, dims: tuple[int, ...], scale: int = 4) -> torch.Tensor:
    """The papers' formulation: full complex FFT, zero the centred low block of the shifted spectrum."""
    spec = torch.fft.fftshift(torch.fft.fftn(x, dim=dims, norm="ortho"), dim=dims)
    index = [slice(None)] * x.ndim
    for d in dims:
        n = x.shape[d]
        index[d] = slice(n // 2 - n // scale, n // 2 + n // scale)
    spec[tuple(index)] = 0
    return torch.relu(torch.fft.ifftn(torch.fft.ifftshift(spec, dim=dims), dim=dims, norm="ortho").real)


# -- NPR ---------------------------------------------------------------------------------------------
def test_npr_residual_is_zero_on_a_two_by_two_block_constant_image():
    coarse = torch.rand(2, 3, 8, 8)
    blocky = coarse.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    assert torch.equal(npr_residual(blocky), torch.zeros_like(blocky))
    assert npr_residual(torch.rand(2, 3, 16, 16)).abs().max() > 0


def test_npr_residual_matches_nearest_interpolation():
    x = torch.rand(2, 3, 16, 12)
    up = F.interpolate(F.interpolate(x, scale_factor=0.5, mode="nearest"), scale_factor=2.0, mode="nearest")
    torch.testing.assert_close(npr_residual(x), x - up)


def test_npr_residual_keeps_odd_shapes_and_zeroes_each_blocks_anchor():
    x = torch.rand(1, 3, 15, 9)
    r = npr_residual(x)
    assert r.shape == x.shape
    assert torch.equal(r[..., ::2, ::2], torch.zeros_like(r[..., ::2, ::2]))


@pytest.mark.parametrize("size, params", [("small", 29_713), ("paper", 1_437_761)])
def test_npr_network_shapes_and_sizes(size, params):
    net = npr_net(size, num_outputs=1)
    assert sum(p.numel() for p in net.parameters()) == params
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 1)
    assert net(torch.rand(2, 3, 33, 47)).shape == (2, 1)


def test_npr_preprocess_is_the_scaled_residual_of_normalised_images():
    x = torch.rand(2, 3, 16, 16)
    out = NPR().preprocess(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    std = torch.tensor((0.229, 0.224, 0.225)).reshape(1, 3, 1, 1)
    torch.testing.assert_close(out, npr_residual(x) / std * (2.0 / 3.0))


# -- FreqNet -----------------------------------------------------------------------------------------
def test_spatial_high_pass_removes_a_constant_image():
    x = torch.full((2, 3, 32, 32), 0.7)
    assert high_pass_spatial(x).abs().max() < 1e-6


def test_spatial_high_pass_removes_low_and_keeps_high_frequencies():
    i = torch.arange(32.0)
    low = torch.cos(2 * torch.pi * 2 * i / 32)[None, None, :, None].expand(1, 1, 32, 32)  # 2 cycles
    high = torch.cos(2 * torch.pi * 12 * i / 32)[None, None, None, :].expand(1, 1, 32, 32)  # 12 cycles
    assert high_pass_spatial(low).abs().max() < 1e-5
    torch.testing.assert_close(high_pass_spatial(high), torch.relu(high), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (2, 16, 15, 17), (1, 64, 8, 8)])
def test_high_passes_equal_the_complex_fft_formulation(shape):
    x = torch.randn(shape)
    torch.testing.assert_close(high_pass_spatial(x), reference_high_pass(x, (-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(high_pass_channels(x), reference_high_pass(x, (1,)), atol=1e-5, rtol=0)


def test_channel_high_pass_removes_features_constant_across_channels():
    x = torch.rand(2, 1, 8, 8).expand(2, 16, 8, 8)
    assert high_pass_channels(x).abs().max() < 1e-6


@pytest.mark.parametrize("mode", ["amplitude-phase", "real-imag"])
def test_frequency_conv_equals_convolving_the_full_complex_spectrum(mode):
    torch.manual_seed(0)
    layer = FrequencyConv(8, mode)
    x = torch.relu(torch.randn(2, 8, 9, 12))
    spec = torch.fft.fft2(x, norm="ortho")
    if mode == "real-imag":
        out = torch.complex(layer.conv_a(spec.real), layer.conv_b(spec.imag))
    else:
        amp, phase = layer.conv_a(spec.abs()), layer.conv_b(spec.angle())
        out = torch.complex(amp * torch.cos(phase), amp * torch.sin(phase))
    expected = torch.relu(torch.fft.ifft2(out, norm="ortho").real)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=0)


def test_frequency_conv_gradients_are_finite_on_zero_features():
    layer = FrequencyConv(4)
    x = torch.zeros(1, 4, 8, 8, requires_grad=True)
    layer(x + 0.0).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters()) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("size, params", [("small", 14_153), ("paper", 1_850_433)])
def test_freqnet_shapes_and_sizes(size, params):
    model = FreqNet(size=size).build_model(64)
    assert isinstance(model, FreqNetModel)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 1)
    assert model(torch.rand(2, 3, 40, 24)).shape == (2, 1)


def test_freqnet_ignores_the_low_frequencies_of_its_input():
    """The first operation is the spatial high-pass: adding a constant to the image changes nothing."""
    model = FreqNet().build_model(32).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x + 0.3), atol=1e-5, rtol=1e-4)


# -- registration and options ------------------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [("npr", NPR), ("freqnet", FreqNet)])
def test_registered_outside_the_default_set_with_their_paper(name, cls):
    reg = detectors()
    assert reg.get(name) is cls
    meta = reg.meta(name)
    assert not meta.default and meta.family == "cnn" and "Tan et al." in meta.paper and "2024" in meta.paper


@pytest.mark.parametrize("cls", [NPR, FreqNet])
def test_run_settings_and_size_are_parameters(cls):
    params = cls(size="paper", seed=3, device="cpu", precision="bf16").get_params()
    assert params["size"] == "paper" and params["seed"] == 3 and params["device"] == "cpu"
    assert params["precision"] == "bf16"
    with pytest.raises(ValueError, match="size"):
        cls(size="huge")


def test_freqnet_rejects_an_unknown_frequency_layer():
    with pytest.raises(ValueError, match="fcl"):
        FreqNet(fcl="magnitude")
