"""STIG networks: shapes, sizes, identity start, the exact up-sampling, parameter count."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stigbench.attacks.stig.networks import (
    PatchProjector,
    ProfileDiscriminator,
    SpectrumDiscriminator,
    UNetPlusPlus,
    level_widths,
    upsample2x,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("levels", "size"), [(2, 32), (3, 32), (3, 64), (4, 64), (4, 128), (5, 32)])
def test_generator_keeps_shape(levels, size):
    torch.manual_seed(0)
    g = UNetPlusPlus(levels=levels, width=4)
    x = torch.rand(2, 3, size, size) * 2 - 1
    out, feats = g(x, layers=list(range(levels)))
    assert out.shape == x.shape
    assert out.abs().max() <= 1  # sigmoid * 2 - 1
    for i, f in enumerate(feats):
        assert f.shape == (2, g.widths[i], size // 2**i, size // 2**i)
    # the encoder alone gives the same features as the full pass
    for a, b in zip(g.encode(x, [0, levels - 1]), (feats[0], feats[-1])):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("levels", "size"), [(3, 30), (4, 36), (5, 40), (3, 2)])
def test_generator_rejects_bad_sizes(levels, size):
    g = UNetPlusPlus(levels=levels, width=4)
    with pytest.raises(ValueError, match="multiples of"):
        g(torch.zeros(1, 3, size, size))


def test_identity_init_is_identity_in_training_and_eval():
    g = UNetPlusPlus(levels=3, width=4, identity_init=True)
    x = torch.randn(2, 3, 32, 32) * 3
    assert torch.equal(g.train()(x), x)
    assert torch.equal(g.eval()(x), x)


def test_norm_behaves_the_same_in_train_and_eval():
    torch.manual_seed(0)
    g = UNetPlusPlus(levels=3, width=8, norm="group")
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(g.train()(x), g.eval()(x))
    # and an image's output does not depend on the rest of its batch
    torch.testing.assert_close(g(x)[:1], g(x[:1]))


def test_paper_generator_size():
    assert level_widths(5, 64) == [64, 128, 256, 512, 512]
    n = sum(p.numel() for p in UNetPlusPlus(levels=5, width=64).parameters())
    assert abs(n - 24.8e6) < 0.1e6  # paper: ~24.8 M


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 4, 16)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample_matches_interpolate(mode, shape, channels_last):
    x = torch.randn(*shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = upsample2x(x, mode)
    torch.testing.assert_close(out, F.interpolate(x, scale_factor=2.0, mode=mode, align_corners=False),
                               atol=1e-5, rtol=1e-5)
    if channels_last:  # the layout survives, so the next convolution needs no copy
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_discriminators_and_heads(size):
    d = SpectrumDiscriminator(width=4)
    assert d(torch.randn(2, 3, size, size)).shape == (2, 1, size // 16, size // 16)
    ds = ProfileDiscriminator(size // 2 + 1)
    assert ds(torch.rand(2, size // 2 + 1)).shape == (2,)
    h = PatchProjector([4, 8], dim=16)
    out = h(1, torch.randn(2, 5, 8))
    assert out.shape == (2, 5, 16)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 5))


def test_circular_padding_makes_g_blind_to_where_the_spectrum_array_ends():
    """A centred spectrum is periodic; with circular padding (and periodic up-sampling) G commutes with
    circular shifts by its pooling stride, so no frequency is treated as an edge."""
    from stigbench.attacks.stig.networks import upsample2x

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=g)
    up = upsample2x(x, periodic=True)
    torch.testing.assert_close(upsample2x(torch.roll(x, 1, -1), periodic=True), torch.roll(up, 2, -1))
    torch.testing.assert_close(up[..., 4:-4, 4:-4], upsample2x(x)[..., 4:-4, 4:-4])  # the interior as before
    assert not torch.allclose(up[..., :2, :], upsample2x(x)[..., :2, :])  # the borders wrap around

    x = torch.randn(1, 3, 32, 32, generator=g)
    shift = (4, -8)  # multiples of the 3-level net's pooling stride
    for padding, equivariant in (("circular", True), ("zeros", False)):
        torch.manual_seed(1)
        net = UNetPlusPlus(levels=3, width=4, identity_init=True, padding=padding).eval()
        torch.nn.init.normal_(net.head.weight)
        with torch.no_grad():
            a = net(torch.roll(x, shift, (-2, -1)))
            b = torch.roll(net(x), shift, (-2, -1))
        assert torch.allclose(a, b, atol=1e-4) == equivariant, padding
    with pytest.raises(ValueError, match="padding"):
        UNetPlusPlus(levels=2, width=4, padding="reflect")


def test_upsampling_first_used_under_inference_mode_still_trains():
    from stigbench.attacks.stig.networks import _upsample_matrix

    _upsample_matrix.cache_clear()
    x = torch.rand(1, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        upsample2x(x, periodic=True)  # a refiner refining first fills the cache...
    w = torch.rand(1, 3, 6, 6, requires_grad=True)
    upsample2x((x * w).contiguous(memory_format=torch.channels_last), periodic=True).sum().backward()
    assert w.grad is not None  # ...and a refiner training next can still back-propagate through it
