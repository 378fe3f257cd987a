"""stigbench.data.exact: the grid, exact convolutions, the written-out Adam and elementary functions.

Oracles are torch's own float64 functions and layers; the exactness claims are checked as bit equality
against torch's convolution on grid operands and across summation orders.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stigbench.data import exact

D = torch.float64


def _grid(*shape: int, seed: int = 0) -> torch.Tensor:
    return exact.quantise(torch.randn(*shape, dtype=D, generator=torch.Generator().manual_seed(seed)))


def test_quantise_is_a_grid_of_19_bits() -> None:
    x = torch.randn(1000, dtype=D) * 3
    q = exact.quantise(x)
    step = math.ldexp(1.0, math.frexp(float(x.abs().max()))[1] - exact.BITS)
    assert torch.equal(q, torch.round(x / step) * step)
    assert (q / step).abs().max() <= 2 ** exact.BITS and (q - x).abs().max() <= step / 2
    assert torch.equal(exact.quantise(q), q) and torch.equal(exact.quantise(torch.zeros(3, dtype=D)), torch.zeros(3, dtype=D))


def test_grid_dot_products_do_not_depend_on_the_order() -> None:
    """The premise: MAX_TERMS products of grid numbers add up exactly, so any order gives the same bits."""
    a, b = _grid(exact.MAX_TERMS, seed=1), _grid(exact.MAX_TERMS, seed=2)
    p = a * b
    perm = torch.randperm(len(p), generator=torch.Generator().manual_seed(3))
    sums = {float(p.sum()), float(p[perm].sum()), float(p.cumsum(0)[-1]), float(math.fsum(p.tolist()))}
    assert len(sums) == 1
    # Off the grid the same sum depends on the order (the reason for the grid).
    r = torch.randn(exact.MAX_TERMS, dtype=D, generator=torch.Generator().manual_seed(4)) * 1e3
    assert len({float(r.sum()), float(r[perm].sum()), float(r.cumsum(0)[-1])}) > 1


@pytest.mark.parametrize("layer", [
    nn.Conv2d(32, 8, 3, 1, 1),  # exact._ShiftConv (stride 1, "same", more channels than taps)
    nn.Conv2d(4, 8, 3, 1, 1),  # torch's convolution
    nn.Conv2d(8, 16, 4, 2, 1),
    nn.ConvTranspose2d(8, 4, 4, 2, 1),
])
def test_exact_layers_equal_torch_on_the_grid(layer: nn.Module) -> None:
    cls = exact.ExactConvTranspose2d if isinstance(layer, nn.ConvTranspose2d) else exact.ExactConv2d
    mine = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding).to(D)
    exact.init_exact(mine, torch.Generator().manual_seed(0))
    layer = layer.to(D)
    layer.load_state_dict(mine.state_dict())
    x = _grid(3, layer.in_channels, 12, 12, seed=5).requires_grad_()
    y_mine, y_torch = mine(x), layer(x)
    assert torch.equal(y_mine, exact.quantise(y_torch))
    g = _grid(*y_mine.shape, seed=6)
    got = torch.autograd.grad(y_mine, (x, mine.weight, mine.bias), g)
    want = torch.autograd.grad(y_torch, (x, layer.weight, layer.bias), g)
    assert torch.equal(got[0], exact.quantise(want[0]))  # the input gradient goes back on the grid
    assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])


def test_the_budget_is_checked() -> None:
    layer = exact.init_exact(exact.ExactConv2d(3, 4, 3, 1, 1), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="exceed"):
        layer(torch.zeros(40, 3, 32, 32, dtype=D))  # 40 x 34^2 weight-gradient terms > 2^15
    with torch.no_grad():
        assert layer(torch.zeros(40, 3, 32, 32, dtype=D)).shape == (40, 4, 32, 32)  # no backward: fine


def test_adam_matches_torch() -> None:
    torch.manual_seed(0)
    w = nn.Parameter(_grid(50, seed=7))
    ref = nn.Parameter(w.detach().clone())
    mine, theirs = exact.Adam([w], lr=1e-2), torch.optim.Adam([ref], lr=1e-2)
    for step in range(5):
        for p in (w, ref):
            p.grad = _grid(50, seed=10 + step)
        mine.step()
        theirs.step()
        assert torch.allclose(w, ref, rtol=0, atol=2e-5)  # the grid's rounding, 2^-19 of the largest weight
        assert torch.equal(w.detach(), exact.quantise(w.detach()))


def test_elementary_functions() -> None:
    x = torch.linspace(-40, 40, 10001, dtype=D)
    assert torch.allclose(exact.exp(x), torch.exp(x), rtol=1e-15, atol=0)
    assert torch.allclose(exact.sigmoid(x), torch.sigmoid(x), rtol=0, atol=1e-15)
    u = torch.rand(10000, dtype=D, generator=torch.Generator().manual_seed(0)) + 1e-9
    assert torch.allclose(exact.log(u), torch.log(u), rtol=0, atol=1e-14)
    assert float(exact.log(torch.tensor([1.0], dtype=D))) == 0.0
    assert torch.allclose(exact.cos_turns(u * 4 - 2), torch.cos(2 * math.pi * (u * 4 - 2)), rtol=0, atol=1e-14)
    z = exact.normal((200, 500), torch.Generator().manual_seed(1))
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01 and abs(float((z ** 4).mean()) - 3) < 0.1
    assert torch.equal(z, exact.normal((200, 500), torch.Generator().manual_seed(1)))
