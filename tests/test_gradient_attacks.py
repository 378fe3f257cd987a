"""White-box gradient attacks (issue #24): PGD and APGD against cases with a known optimum, their budget,
the 8-bit storage of their output, and the attack registry.

A linear logit ``z = w·x + b`` has its optimum over the L∞ ball ∩ box at ``x0 ∓ eps·sign(w)`` (clipped)
and over an interior L2 ball at ``x0 ∓ eps·w/||w||``; every attack must find it. A tiny fixed random conv
net stands in for a nonconvex detector.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from stigbench.attacks.gradient import (LOSSES, apgd, apgd_checkpoints, parse_eps, pgd, quantize_in_ball,
                                        uniform_in_ball)
from stigbench.attacks.registry import AttackInfo, attacks, register_attack
from stigbench.attacks.white_box import APGD, PGD
from stigbench.core.contracts import FAKE, REAL, GradientAttack
from stigbench.core.registry import RegistryError

pytestmark = pytest.mark.usefixtures("one_thread")

N, SIZE = 4, 8
EPS = 4 / 255


def _grid_images(seed: int, lo: int = 51, hi: int = 205) -> torch.Tensor:
    """8-bit images in ``[lo, hi] / 255``; the first row of channel 0 at 1/255 and the second at 254/255,
    so that clipping to the box matters there."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(lo, hi + 1, (N, 3, SIZE, SIZE), generator=g).float() / 255
    x[:, 0, 0, :] = 1 / 255
    x[:, 0, 1, :] = 254 / 255
    return x


def _linear(seed: int = 0) -> tuple[torch.Tensor, callable]:
    """Weights (a quarter of them zero) and the logits function ``z = w·x + b``."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, SIZE, SIZE, generator=g)
    w[torch.rand(w.shape, generator=g) < 0.25] = 0
    return w, lambda x: (x * w).flatten(1).sum(1) + 0.3


class _ConvNet(torch.nn.Module):
    """A fixed random nonconvex logit: conv, tanh, conv, sin, mean."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the global stream
            torch.manual_seed(seed)
            self.a = torch.nn.Conv2d(3, 6, 3, padding=1)
            self.b = torch.nn.Conv2d(6, 1, 3, padding=1)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(4 * self.b(torch.tanh(4 * self.a(x)))).flatten(1).mean(1) * 3


def _loss(logits_fn, x: torch.Tensor, towards: int = REAL, loss: str = "ce") -> torch.Tensor:
    with torch.no_grad():
        return LOSSES[loss](logits_fn(x), towards)


def _seeded(seed: int = 0, **settings):
    """``pgd`` with ``settings`` and a fresh generator seeded ``seed`` at every call (a shared generator
    would make a test's result depend on the tests before it)."""
    return partial(lambda *a, **kw: pgd(*a, generator=torch.Generator().manual_seed(seed), **kw), **settings)


def _within(adv: torch.Tensor, orig: torch.Tensor, eps: float, norm: str, tol: float = 1e-6) -> bool:
    d = (adv - orig).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    return bool((size <= eps + tol).all() and adv.min() >= 0 and adv.max() <= 1)


# -- analytic optima -------------------------------------------------------------------------------
LINF_ATTACKS = {
    "pgd": partial(pgd, random_start=False),
    "pgd-random-start": _seeded(5, random_start=True),
    "apgd": apgd,
}


@pytest.mark.parametrize("towards", [REAL, FAKE])
@pytest.mark.parametrize("name", list(LINF_ATTACKS))
def test_linf_reaches_the_linear_optimum(name: str, towards: int) -> None:
    w, f = _linear()
    x0 = _grid_images(1)
    sign = -1 if towards == REAL else 1
    expected = (x0 + sign * EPS * w.sign()).clamp(0, 1)
    adv = LINF_ATTACKS[name](x0, f, eps=EPS, steps=10, towards=towards)
    # Where w = 0 the loss is flat: a random start may leave such a pixel anywhere in the ball.
    where = (w != 0) if name == "pgd-random-start" else torch.ones_like(w, dtype=torch.bool)
    assert ((adv - expected).abs() * where).max() <= 1e-6
    assert _within(adv, x0, EPS, "linf")


L2_ATTACKS = {
    "pgd": partial(pgd, random_start=False, steps=10),
    # From a random point of the sphere, radial projection turns the iterate toward the optimum by a
    # constant factor per step: steps as long as eps make 40 of them converge far below the tolerance.
    "pgd-random-start": _seeded(5, random_start=True, steps=40, step_size=0.05),
    "apgd": partial(apgd, steps=10),
}


@pytest.mark.parametrize("towards", [REAL, FAKE])
@pytest.mark.parametrize("name", list(L2_ATTACKS))
def test_l2_reaches_the_linear_optimum(name: str, towards: int) -> None:
    w, f = _linear()
    x0 = _grid_images(1, lo=100, hi=150)[:, :, 2:]  # interior: the ball stays inside the box
    w = w[:, 2:]
    f = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    eps = 0.05
    sign = -1 if towards == REAL else 1
    adv = L2_ATTACKS[name](x0, f, eps=eps, norm="l2", towards=towards)
    assert (adv - (x0 + sign * eps * w / w.norm())).abs().max() <= 1e-3
    assert _within(adv, x0, eps, "l2")


# -- nonconvex: budget, box, monotonicity ----------------------------------------------------------
ALL_RUNS = {
    "pgd-linf": _seeded(0, norm="linf", eps=EPS),
    "pgd-l2": _seeded(0, norm="l2", eps=0.3),
    "apgd-linf": partial(apgd, norm="linf", eps=EPS),
    "apgd-l2": partial(apgd, norm="l2", eps=0.3),
}


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("towards", [REAL, FAKE])
@pytest.mark.parametrize("name", list(ALL_RUNS))
def test_budget_box_and_loss_hold_on_a_nonconvex_model(name: str, towards: int, loss: str) -> None:
    net = _ConvNet()
    x0 = _grid_images(2, lo=0, hi=255)
    run = ALL_RUNS[name]
    adv = run(x0, net, steps=8, towards=towards, loss=loss)
    assert adv.shape == x0.shape and adv.dtype == x0.dtype
    assert _within(adv, x0, run.keywords["eps"], run.keywords["norm"])
    assert (_loss(net, adv, towards, loss) >= _loss(net, x0, towards, loss)).all()
    assert (_loss(net, adv, towards, loss) > _loss(net, x0, towards, loss)).any()


# On this toy model both attacks end in the same basin and differ by ~1e-4 in loss: APGD ≥ PGD holds for
# L∞ (for seeds 0-9 at 20 and 50 steps) but not for L2, where PGD's fixed small steps refine the final
# point faster than APGD's halving ones (at 1000 steps APGD is ahead again). Recorded, not tuned away.
@pytest.mark.parametrize("norm, eps", [
    ("linf", 8 / 255),
    pytest.param("l2", 0.5, marks=pytest.mark.xfail(strict=True, reason="PGD ahead by 3e-4 at 20 L2 steps")),
])
def test_apgd_is_at_least_as_strong_as_pgd_at_equal_steps(norm: str, eps: float) -> None:
    net = _ConvNet(seed=3)
    x0 = _grid_images(3, lo=0, hi=255)
    steps = 20
    strong = _loss(net, apgd(x0, net, eps=eps, norm=norm, steps=steps))
    weak = _loss(net, pgd(x0, net, eps=eps, norm=norm, steps=steps, random_start=False))
    assert strong.mean() >= weak.mean()


def test_attacks_run_under_inference_mode() -> None:
    net, x0 = _ConvNet(), _grid_images(2)
    with torch.inference_mode():
        adv = apgd(x0, net, eps=EPS, steps=3)
    assert _within(adv, x0, EPS, "linf") and (_loss(net, adv) >= _loss(net, x0)).all()


def test_logits_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="one logit per image"):
        pgd(_grid_images(0), lambda x: x.flatten(1)[:, :2], eps=EPS, steps=1)


def test_apgd_checkpoints_follow_the_paper() -> None:
    # p = 0.22, 0.41, 0.57, 0.70, 0.80, 0.86, 0.92, 0.98 (steps of 0.19, 0.16, ... down to 0.06)
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(10) == [3, 5, 6, 7, 8, 9]
    assert apgd_checkpoints(1) == []


# -- determinism -----------------------------------------------------------------------------------
def test_same_seed_same_output_and_another_seed_another_start() -> None:
    net, x0 = _ConvNet(), _grid_images(4)

    def run(seed: int) -> torch.Tensor:
        return pgd(x0, net, eps=EPS, steps=3, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    assert torch.equal(apgd(x0, net, eps=EPS, steps=5), apgd(x0, net, eps=EPS, steps=5))
    a = uniform_in_ball(x0, 0.5, "l2", torch.Generator().manual_seed(0))
    assert torch.equal(a, uniform_in_ball(x0, 0.5, "l2", torch.Generator().manual_seed(0)))
    assert not torch.equal(a, uniform_in_ball(x0, 0.5, "l2", torch.Generator().manual_seed(1)))


# -- storing as 8 bits -----------------------------------------------------------------------------
def _on_grid(x: torch.Tensor) -> bool:
    return bool(((x * 255 - (x * 255).round()).abs() <= 1e-4).all())


def _stored_ok(q: torch.Tensor, orig: torch.Tensor, eps: float, norm: str) -> bool:
    grid_orig = (orig * 255).round() / 255
    return q.dtype == torch.float32 and _on_grid(q) and _within(q, grid_orig, eps, norm)


@pytest.mark.parametrize("norm, eps", [("linf", 4 / 255), ("linf", 4.7 / 255), ("l2", 0.1), ("l2", 3 / 255)])
def test_quantized_attack_is_on_the_grid_and_within_the_ball(norm: str, eps: float) -> None:
    net, x0 = _ConvNet(), _grid_images(5, lo=0, hi=255)
    adv = pgd(x0, net, eps=eps, norm=norm, steps=4, generator=torch.Generator().manual_seed(0))
    assert _stored_ok(quantize_in_ball(adv, x0, eps, norm), x0, eps, norm)


def test_quantize_linf_is_plain_rounding_inside_the_ball() -> None:
    x0 = _grid_images(6)
    delta = (torch.rand(x0.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) * EPS
    adv = (x0 + delta).clamp(0, 1)
    assert torch.equal(quantize_in_ball(adv, x0, EPS, "linf"), (adv * 255).round() / 255)


def test_quantize_linf_clips_what_rounds_outside() -> None:
    x0 = _grid_images(7)
    eps = 4.7 / 255  # not a grid multiple: 4.6 steps is inside, rounds to 5, outside
    q = quantize_in_ball(x0 + 4.6 / 255, x0, eps, "linf")
    assert _stored_ok(q, x0, eps, "linf")
    assert ((q - x0) * 255).round().max() == 4


def _rounding_up(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Originals, float adversarial images whose every coordinate rounds away from the original (so
    plain rounding leaves the L2 ball), and the per-image radius: the float perturbation's norm."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(60, 196, (N, 3, SIZE, SIZE), generator=g).float() / 255
    whole = torch.randint(-4, 5, x0.shape, generator=g).float()
    steps = whole + torch.where(whole < 0, -1.0, 1.0) * (0.5 + 0.2 * torch.rand(x0.shape, generator=g))
    return x0, x0 + steps / 255, steps.flatten(1).norm(dim=1) / 255


def test_quantize_l2_shrinks_what_rounds_outside() -> None:
    x0, adv, radius = _rounding_up(8)
    for i in range(N):
        o, a, eps = x0[i:i + 1], adv[i:i + 1], float(radius[i])
        assert ((a * 255).round() / 255 - o).norm() > eps + 1e-6  # plain rounding is outside
        q = quantize_in_ball(a, o, eps, "l2")
        assert _stored_ok(q, o, eps, "l2")
        truncated = quantize_in_ball(a, o, eps, "l2", tries=0)
        assert torch.equal((truncated * 255).round(), (o * 255).round() + ((a - o) * 255).trunc())
        # Shrinking keeps more of the perturbation than truncation: nearer the float image.
        assert (q - a).norm() < (truncated - a).norm() - 1 / 255


def test_quantize_handles_off_grid_originals_and_the_box() -> None:
    g = torch.Generator().manual_seed(9)
    orig = torch.rand(N, 3, SIZE, SIZE, generator=g)  # off the grid
    orig[:, :, 0] = 0.0
    orig[:, :, 1] = 1.0
    for norm, eps in (("linf", EPS), ("l2", 0.2)):
        adv = (orig + torch.randn(orig.shape, generator=g) * 0.5).clamp(0, 1)  # far outside the ball
        assert _stored_ok(quantize_in_ball(adv, orig, eps, norm), orig, eps, norm)


# -- parse_eps --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [("4/255", 4 / 255), (" 4 / 255 ", 4 / 255), (0.5, 0.5),
                                             ("0.1", 0.1), (0, 0.0), (1, 1.0)])
def test_parse_eps_accepts(value, expected: float) -> None:
    assert parse_eps(value) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("value", [-0.1, 1.5, "9/2", "abc", "1/0", float("nan"), True, None])
def test_parse_eps_rejects(value) -> None:
    with pytest.raises(ValueError, match="eps"):
        parse_eps(value)


# -- registry and components ------------------------------------------------------------------------
def test_registry_lists_suggests_and_refuses_duplicates() -> None:
    registry = attacks()
    assert {"pgd", "apgd"} <= set(registry.list())
    assert registry.get("pgd") is PGD and registry.get("apgd") is APGD
    with pytest.raises(RegistryError, match="did you mean 'pgd'"):
        registry.get("pgdd")
    with pytest.raises(RegistryError, match="already registered"):
        register_attack("pgd", paper="x")(PGD)
    with pytest.raises(TypeError, match="perturb"):
        register_attack("no-perturb", paper="x")(object)
    for name in ("pgd", "apgd"):
        meta = registry.meta(name)
        assert isinstance(meta, AttackInfo) and meta.knowledge == "white-box" and "20" in meta.paper


def test_components_store_and_describe_their_budget() -> None:
    assert PGD(eps="4/255").eps == 4 / 255
    assert PGD().budget() == "linf 4/255"
    assert APGD(eps="8/255").budget() == "linf 8/255"
    assert PGD(eps=0.01).budget() == "linf 0.01"
    assert APGD(eps=0.5, norm="l2").budget() == "l2 0.5"
    assert PGD.param_grids["eps"] == (1 / 255, 2 / 255, 4 / 255, 8 / 255)
    assert PGD.threat == APGD.threat == "white-box"
    assert PGD(target="durall", seed=3).get_params()["target"] == "durall"


@pytest.mark.parametrize("cls", [PGD, APGD])
@pytest.mark.parametrize("kwargs, param", [({"eps": 1.5}, "eps"), ({"eps": "abc"}, "eps"), ({"eps": "9/2"}, "eps"),
                                           ({"norm": "l1"}, "norm"), ({"loss": "dlr"}, "loss"),
                                           ({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size")])
def test_check_params_names_the_bad_parameter(cls, kwargs: dict, param: str) -> None:
    attack = cls(**kwargs)  # the constructor only stores
    with pytest.raises(ValueError, match=param):
        attack.check_params()
    with pytest.raises(ValueError, match=param):
        attack.perturb(_grid_images(0), _linear()[1])


def test_pgd_step_size_is_checked() -> None:
    with pytest.raises(ValueError, match="step_size"):
        PGD(step_size=-1.0).check_params()


# -- the contract, over every registered attack -----------------------------------------------------
@pytest.mark.parametrize("name", attacks().list())
def test_attack_contract(name: str) -> None:
    cls = attacks().get(name)
    attack = cls()
    assert isinstance(attack, GradientAttack)
    w, f = _linear()
    x0 = _grid_images(10)[:3]
    for towards in (REAL, FAKE):
        adv = attack.perturb(x0, f, towards=towards, generator=torch.Generator().manual_seed(0))
        assert adv.shape == x0.shape and adv.dtype == x0.dtype
        assert ((adv >= 0) & (adv <= 1)).all()
        if getattr(attack, "domain", "pixel") == "pixel":  # a spectral budget is checked by its own tests
            assert _within(adv, x0, parse_eps(attack.eps), attack.norm)
        stored = attack.store(adv, x0)
        assert torch.equal(stored, torch.round(stored * 255) / 255)  # the 8-bit grid
        moved = f(adv) - f(x0)
        assert ((moved < 0) if towards == REAL else (moved > 0)).all()
    # Deterministic for a seed, and independent of the batch size.
    net = _ConvNet()
    one = cls(batch_size=1).perturb(x0, net, generator=torch.Generator().manual_seed(0))
    again = cls(batch_size=2).perturb(x0, net, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(one, again, atol=1e-6)
    assert torch.equal(attack.perturb(x0, net), attack.perturb(x0, net))  # the default generator uses seed
