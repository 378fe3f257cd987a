"""``spectral-pgd`` (issue #25, item 4): PGD on the log-magnitude spectrum, against cases with a known optimum.

A logit that is linear in each channel's log-magnitude, ``z = sum_c w_c · L_c(x)``, has a known optimum over
the symmetric box: where no pixel is clamped the attacked image's log-magnitude is exactly ``L + delta``, so
``z(delta) = z(0) + sum_c w_c · delta_c``; with ``delta(k) = delta(-k)`` each pair ``{k, -k}`` contributes
``(w(k) + w(-k)) · delta(k)``, i.e. ``2 · symmetrise(w)(k) · delta(k)``, maximised (toward fake) or minimised
(toward real) at ``delta = ±eps · sign(symmetrise(w))`` — wherever ``symmetrise(w) != 0``; where it is 0 the
logit is flat and only the budget is checked. One more bound: a magnitude cannot fall below 0, so where
``L < eps`` (``|F| < e^eps - 1``) a decrease stops at ``-L``: the optimal change is ``max(±eps · sign, -L)``. The same holds for the luma model of frequency detectors,
``z = w · L(grey(x))``, on images whose three channels are equal: their spectra share one phase, so
``|G'| + 1 = (|F| + 1) · sum_c a_c e^{delta_c}`` increases in every ``delta_c`` and each pair is pushed to the
same vertex in every channel.

The analytic checks run in float64, where the FFT round trip is exact to ~1e-15 (the synthesis test below
measures it), so their tolerance 1e-9 only absorbs round-off: a step left out (a step is 2.5 · eps / steps
= 1.25e-2 nats here) or a wrong vertex (2 · eps away) would fail by seven orders of magnitude.
"""

from __future__ import annotations

import math

import pytest
import torch

from stigbench.attacks.gradient import LOSSES
from stigbench.attacks.registry import AttackInfo, attacks
from stigbench.attacks.spectral_gradient import (EPS_GRID, SpectralPGD, dc_mask, log_magnitude_change,
                                                 spectral_pgd, synthesise, uniform_symmetric)
from stigbench.core.contracts import FAKE, REAL, GradientAttack
from stigbench.measures.spectrum import fft_shifted, grey, log_magnitude, magnitude_phase, mirror, symmetrise
from test_gradient_attacks import _ConvNet, _loss

pytestmark = pytest.mark.usefixtures("one_thread")

N, SIZE = 3, 8
EPS = 0.05
TOL = 1e-9


def _images(seed: int, lo: float = 0.3, hi: float = 0.7, dtype: torch.dtype = torch.float64,
            channels_equal: bool = False) -> torch.Tensor:
    """Images in ``[lo, hi]``: away from 0 and 1, so that a small ``eps`` clamps no pixel."""
    g = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(N, 1 if channels_equal else 3, SIZE, SIZE, generator=g, dtype=dtype)
    return x.expand(N, 3, SIZE, SIZE).clone() if channels_equal else x


def _spectral_weights(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Random weights over a centred spectrum, antisymmetric (``symmetrise(w) = 0``) on a third of the pairs."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    flat = torch.rand(shape, generator=g) < 1 / 3
    flat = flat & mirror(flat)
    return torch.where(flat, 0.5 * (w - mirror(w)), w)


MODELS = {
    # z = sum_c w_c · L_c(x): linear in each channel's log-magnitude.
    "per-channel": lambda w: lambda x: (log_magnitude(x) * w).flatten(1).sum(1),
    # z = w · L(grey(x)): the luma spectrum of frequency detectors (channels equal, see the module notes).
    "grey": lambda w: lambda x: (log_magnitude(grey(x)) * w).flatten(1).sum(1),
}


def _linear_pixels(seed: int = 0) -> tuple[torch.Tensor, callable]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, SIZE, SIZE, generator=g)
    return w, lambda x: (x * w.to(x.dtype)).flatten(1).sum(1) + 0.3


def _net(seed: int = 0) -> callable:
    """The nonconvex logit of the pixel-attack tests, on float32 (the float64 tests hand it float64)."""
    net = _ConvNet(seed)
    return lambda x: net(x.float())


def _seed(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unclamped(adv: torch.Tensor) -> bool:
    """No pixel at 0 or 1: the [0, 1] clamp after the inverse FFT did nothing."""
    return bool(adv.min() > 0 and adv.max() < 1)


# -- the logit moves ----------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("towards", [REAL, FAKE])
def test_logit_moves_towards_on_a_pixel_linear_model(towards: int, loss: str) -> None:
    _, f = _linear_pixels()
    x0 = _images(1, lo=0.0, hi=1.0, dtype=torch.float32)  # clamping active: the move must survive it
    adv = spectral_pgd(x0, f, eps=0.1, steps=10, loss=loss, towards=towards, generator=_seed())
    assert adv.shape == x0.shape and adv.dtype == x0.dtype and adv.min() >= 0 and adv.max() <= 1
    moved = f(adv) - f(x0)
    assert ((moved < 0) if towards == REAL else (moved > 0)).all()


@pytest.mark.parametrize("towards", [REAL, FAKE])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("random_start", [False, True])
def test_reaches_the_log_magnitude_optimum(model: str, towards: int, random_start: bool) -> None:
    w = _spectral_weights(3, (SIZE, SIZE) if model == "grey" else (3, SIZE, SIZE))
    f = MODELS[model](w)
    x0 = _images(2, channels_equal=model == "grey")
    adv = spectral_pgd(x0, f, eps=EPS, steps=8, loss="margin", towards=towards, random_start=random_start,
                       generator=_seed(4))
    assert _unclamped(adv)
    change = log_magnitude_change(adv, x0)
    sign = -1 if towards == REAL else 1
    w_sym = symmetrise(w).expand_as(change)
    optimum = (sign * EPS * w_sym.sign() * dc_mask(SIZE, SIZE, dc=False, dtype=w.dtype)).maximum(-log_magnitude(x0))
    decided = w_sym.abs() > 1e-12
    assert (change - optimum)[decided].abs().max() <= TOL
    assert change.abs().max() <= EPS + TOL
    moved = f(adv) - f(x0)
    assert ((moved < 0) if towards == REAL else (moved > 0)).all()


# -- the budget, the phase, DC --------------------------------------------------------------------------
@pytest.mark.parametrize("towards", [REAL, FAKE])
def test_budget_phase_and_dc_hold_where_nothing_is_clamped(towards: int) -> None:
    net = _net()
    x0 = _images(5)
    adv = spectral_pgd(x0, net, eps=EPS, steps=6, towards=towards, generator=_seed(1))
    assert _unclamped(adv)
    assert (_loss(net, adv, towards) > _loss(net, x0, towards)).all()
    change = log_magnitude_change(adv, x0)
    assert change.abs().max() <= EPS + TOL
    assert change.abs().amax(dim=(-2, -1)).min() >= EPS / 2  # it did act on every image and channel
    # The phase is the fake's wherever the magnitude is not ~0. A magnitude below e^eps - 1 may be pushed to 0,
    # where the angle is noise; twice that leaves at least (e^eps - 1) / e^eps ≈ 0.049 after the attack.
    f0, f1 = fft_shifted(x0), fft_shifted(adv)
    where = f0.abs() > 2 * math.expm1(EPS)
    assert where.float().mean() > 0.8
    assert ((f1 / f1.abs() - f0 / f0.abs()).abs()[where]).max() <= 1e-9
    # dc=False: each channel's sum (DC), hence its mean brightness, is unchanged.
    centre = (slice(None), slice(None), SIZE // 2, SIZE // 2)
    assert (f1[centre] - f0[centre]).abs().max() <= 1e-9
    assert (adv.mean(dim=(-2, -1)) - x0.mean(dim=(-2, -1))).abs().max() <= 1e-12


def test_dc_true_lets_the_mean_brightness_move() -> None:
    x0 = _images(6)
    brightness = lambda x: x.flatten(1).mean(1)  # noqa: E731  only DC can move it
    kept = spectral_pgd(x0, brightness, eps=EPS, steps=4, loss="margin", generator=_seed())
    moved = spectral_pgd(x0, brightness, eps=EPS, steps=4, loss="margin", dc=True, generator=_seed())
    assert torch.equal(kept, x0)  # nothing to gain without DC: the clean image is the best point
    assert (brightness(moved) < brightness(x0)).all()
    # The DC log-magnitude moves by the full budget: log1p(sum) - eps.
    assert log_magnitude_change(moved, x0)[..., SIZE // 2, SIZE // 2] == pytest.approx(-EPS, abs=TOL)


def test_the_clamp_keeps_images_in_the_box() -> None:
    # Saturated pixels: the [0, 1] clamp acts, and the bound on the log-magnitude may then be exceeded
    # (documented); the output is still a valid image and no worse than the clean one.
    net = _net()
    x0 = _images(7, lo=0.0, hi=1.0, dtype=torch.float32)
    x0[:, :, 0] = 0.0
    x0[:, :, 1] = 1.0
    adv = SpectralPGD(eps=0.2, steps=4).perturb(x0, net, generator=_seed())
    assert adv.min() >= 0 and adv.max() <= 1 and adv.dtype == torch.float32
    assert (_loss(net, adv, REAL) >= _loss(net, x0, REAL)).all()


# -- the synthesis and its gradient -------------------------------------------------------------------
def test_synthesis_round_trips_and_is_differentiable() -> None:
    x0 = _images(8)
    log_mag, phase = magnitude_phase(x0)
    assert (synthesise(log_mag, phase, torch.zeros_like(log_mag)) - x0).abs().max() <= 1e-14
    delta = uniform_symmetric(log_mag.shape, 0.01, _seed()).double().requires_grad_()
    weights = torch.randn(x0.shape, generator=_seed(1), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda d: (synthesise(log_mag, phase, d) * weights).sum(), (delta,))


def test_random_start_is_symmetric_and_fills_the_box() -> None:
    delta = uniform_symmetric(torch.Size((64, 3, SIZE, SIZE)), EPS, _seed())
    assert torch.equal(delta, mirror(delta))
    assert delta.abs().max() <= EPS and delta.min() < -0.9 * EPS and delta.max() > 0.9 * EPS
    # One uniform value per pair: the mean absolute value of a uniform draw, not of an average of two.
    assert delta.abs().mean() == pytest.approx(EPS / 2, rel=0.05)
    odd = uniform_symmetric(torch.Size((2, 1, 5, 7)), EPS, _seed())
    assert torch.equal(odd, mirror(odd))


# -- determinism and batching ---------------------------------------------------------------------------
def test_same_seed_same_output_another_seed_another_and_batches_do_not_matter() -> None:
    net, x0 = _net(), _images(9, dtype=torch.float32)

    def run(seed: int, batch_size: int = 32) -> torch.Tensor:
        return SpectralPGD(steps=3, batch_size=batch_size).perturb(x0, net, generator=_seed(seed))

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    assert torch.allclose(run(0, batch_size=1), run(0, batch_size=2), atol=1e-6)
    attack = SpectralPGD(steps=3, seed=5)
    assert torch.equal(attack.perturb(x0, net), attack.perturb(x0, net, generator=_seed(5)))
    assert torch.equal(SpectralPGD(steps=3, random_start=False).perturb(x0, net, generator=_seed(0)),
                       SpectralPGD(steps=3, random_start=False).perturb(x0, net, generator=_seed(1)))


def test_runs_under_inference_mode() -> None:
    net, x0 = _net(), _images(10, dtype=torch.float32)
    with torch.inference_mode():
        adv = SpectralPGD(steps=3).perturb(x0, net)
    assert (_loss(net, adv, REAL) > _loss(net, x0, REAL)).all()


# -- the component ----------------------------------------------------------------------------------------
def test_store_rounds_to_the_8bit_grid() -> None:
    net, x0 = _net(), _images(11, lo=0.0, hi=1.0, dtype=torch.float32)
    attack = SpectralPGD()
    adv = attack.perturb(x0, net)
    stored = attack.store(adv, x0)
    assert stored.dtype == torch.float32 and stored.shape == x0.shape
    assert torch.equal(stored, (stored * 255).round() / 255) and stored.min() >= 0 and stored.max() <= 1
    assert (stored - adv).abs().max() <= 0.5 / 255 + 1e-6
    outside = torch.tensor([-0.2, 0.5 / 255 + 1e-4, 0.4, 1.3]).reshape(1, 1, 2, 2)
    assert attack.store(outside, outside).flatten().tolist() == pytest.approx([0.0, 1 / 255, 102 / 255, 1.0])


def test_budget_grid_and_registry() -> None:
    assert SpectralPGD().budget() == "log-magnitude linf 0.1"
    assert SpectralPGD(eps=0.025).budget() == "log-magnitude linf 0.025"
    assert SpectralPGD.param_grids == {"eps": EPS_GRID} and EPS_GRID == (0.025, 0.05, 0.1, 0.2)
    assert SpectralPGD().eps == 0.1 and SpectralPGD().norm == "linf" and SpectralPGD.domain == "log-magnitude"
    assert SpectralPGD(target="durall", dc=True).get_params() == {
        "eps": 0.1, "steps": 10, "step_size": None, "random_start": True, "loss": "ce", "dc": True,
        "target": "durall", "seed": 0, "batch_size": 32}
    assert attacks().get("spectral-pgd") is SpectralPGD
    assert isinstance(SpectralPGD(), GradientAttack)
    meta = attacks().meta("spectral-pgd")
    assert isinstance(meta, AttackInfo) and meta.knowledge == "white-box"
    assert "Lee et al., AAAI 2024" in meta.paper and "Madry et al., ICLR 2018" in meta.paper


@pytest.mark.parametrize("kwargs, param", [
    ({"eps": 0}, "eps"), ({"eps": -0.1}, "eps"), ({"eps": 2.5}, "eps"), ({"eps": "0.1"}, "eps"),
    ({"eps": float("nan")}, "eps"), ({"eps": True}, "eps"), ({"steps": 0}, "steps"), ({"steps": 2.0}, "steps"),
    ({"step_size": 0.0}, "step_size"), ({"loss": "dlr"}, "loss"), ({"target": 3}, "target"),
    ({"batch_size": 0}, "batch_size"),
])
def test_check_params_names_the_bad_parameter(kwargs: dict, param: str) -> None:
    attack = SpectralPGD(**kwargs)  # the constructor only stores
    with pytest.raises(ValueError, match=param):
        attack.check_params()
    with pytest.raises(ValueError, match=param):
        attack.perturb(_images(0, dtype=torch.float32), _net())


def test_eps_error_says_what_the_bound_means() -> None:
    with pytest.raises(ValueError, match=r"\(0, 2\].*7-fold"):
        SpectralPGD(eps=3).check_params()
    SpectralPGD(eps=2).check_params()  # the edge is allowed
