"""Query-only attacks (issue #25): the Square Attack against linear logits with a known optimum, its query
budget and accounting, early stopping, that it never asks for a gradient, its ε-ball, determinism and
its component.

On a linear logit ``z = w·x + b`` the best L∞ point is ``x ∓ eps·sign(w)``, which moves the logit by
``eps·||w||_1``: an image whose clean logit is within that of 0 can be carried across it, one further
away cannot. The images are built so that each has the clean logit the test asks for.
"""

from __future__ import annotations

import pytest
import torch

from stigbench.attacks.gradient import LOSSES, quantize_in_ball
from stigbench.attacks.query import Square, square_attack, square_fraction, square_side
from stigbench.attacks.registry import AttackInfo, attacks
from stigbench.core.contracts import FAKE, REAL, GradientAttack

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 8
EPS = 4 / 255
W = torch.randn(3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
REACH = EPS * float(W.abs().sum())  # how far the best point in the ball moves the logit


def _logit(x: torch.Tensor) -> torch.Tensor:
    return (x * W).flatten(1).sum(1)


def _images(clean_logits: list[float], seed: int = 0) -> torch.Tensor:
    """Images in about ``[0.25, 0.75]`` (the ball stays inside the box) whose logits are ``clean_logits``:
    random deviations from grey with their component along ``W`` replaced by the one that sets the logit."""
    g = torch.Generator().manual_seed(seed)
    r = (torch.rand(len(clean_logits), 3, SIZE, SIZE, generator=g) - 0.5) * 0.4
    target = torch.tensor(clean_logits) - 0.5 * float(W.sum())
    along = (target - _logit(r)) / float((W * W).sum())
    return 0.5 + r + along.view(-1, 1, 1, 1) * W


class Queries:
    """A logits function that counts the rows it is asked for, per image (each row is assigned to the
    original it lies within ``eps`` of), records their logits, and refuses to run with autograd on."""

    def __init__(self, originals: torch.Tensor, fn=_logit) -> None:
        self.originals, self.fn = originals, fn
        self.rows: list[list[float]] = [[] for _ in range(originals.shape[0])]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.requires_grad:
            raise RuntimeError("a query attack asked for a gradient")
        z = self.fn(x)
        owner = (x[:, None] - self.originals[None]).flatten(2).abs().amax(2).argmin(1)
        for i, value in zip(owner.tolist(), z.tolist()):
            self.rows[i].append(value)
        return z

    @property
    def counts(self) -> list[int]:
        return [len(r) for r in self.rows]


def _within(adv: torch.Tensor, orig: torch.Tensor, eps: float) -> bool:
    return bool(((adv - orig).abs().amax() <= eps + 1e-6) and adv.min() >= 0 and adv.max() <= 1)


# -- success within the budget --------------------------------------------------------------------
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("towards", [REAL, FAKE])
def test_square_carries_every_image_across_when_the_ball_allows_it(towards: int, loss: str) -> None:
    sign = 1 if towards == REAL else -1  # the clean logits are on the wrong side, 0.4 of the reach away
    x = _images([sign * 0.4 * REACH] * 6)
    attack = Square(loss=loss)
    adv = attack.perturb(x, _logit, towards=towards, generator=torch.Generator().manual_seed(0))
    z0, z = _logit(x), _logit(adv)
    if towards == REAL:
        assert (z < z0).all() and (z < 0).all()
    else:
        assert (z > z0).all() and (z >= 0).all()
    assert (attack.queries_used_ < attack.queries).all()  # it stopped early, every image
    assert _within(adv, x, EPS)


# -- query accounting -----------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [2, 32])
def test_no_image_gets_more_than_its_budget_and_the_count_is_reported(batch_size: int) -> None:
    x = _images([2.0 * REACH] * 5)  # out of reach: every image spends its whole budget
    counter = Queries(x)
    attack = Square(queries=60, batch_size=batch_size)
    attack.perturb(x, counter)
    assert counter.counts == [60] * 5
    assert attack.queries_used_.tolist() == counter.counts
    assert (_logit(attack.perturb(x, _logit)) < _logit(x)).all()  # still the best it found


def test_done_images_are_not_queried_further() -> None:
    x = _images([0.1 * REACH, 2.0 * REACH, -0.5, 0.3 * REACH])  # easy, out of reach, already real, easy
    counter = Queries(x)
    attack = Square(queries=200, batch_size=4)
    adv = attack.perturb(x, counter)
    used = attack.queries_used_.tolist()
    assert used == counter.counts
    assert used[1] == 200 and max(used[0], used[2], used[3]) < 200
    for i in (0, 3):  # the first query that crossed 0 was the last one
        crossed = [k for k, z in enumerate(counter.rows[i]) if z < 0]
        assert crossed and crossed[0] == len(counter.rows[i]) - 1
    # An image already real is still moved (it stops at its first gain), and never made worse.
    z0, z = _logit(x), _logit(adv)
    assert (z < z0).all() and z[2] < 0


def test_it_never_asks_for_a_gradient() -> None:
    x = _images([0.3 * REACH] * 3)
    adv = Square(queries=50).perturb(x, Queries(x))  # Queries raises under autograd
    assert _within(adv, x, EPS)
    with torch.inference_mode():
        assert _within(Square(queries=50).perturb(x, Queries(x)), x, EPS)


def test_logits_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="one logit per image"):
        Square(queries=5).perturb(_images([1.0]), lambda x: x.flatten(1)[:, :2])


# -- ball, box, storage, never worse ---------------------------------------------------------------
def test_output_stays_in_the_ball_and_the_box_and_is_never_worse() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (4, 3, SIZE, SIZE), generator=g).float() / 255
    x[:, 0, 0] = 1 / 255  # where the box clips the ball
    x[:, 0, 1] = 254 / 255
    bumpy = lambda t: torch.sin(40 * _logit(t)) + 0.05 * _logit(t)  # noqa: E731  (many local optima)
    for towards in (REAL, FAKE):
        attack = Square(eps="8/255", queries=100)
        adv = attack.perturb(x, bumpy, towards=towards)
        assert _within(adv, x, 8 / 255)
        gain = LOSSES["margin"](bumpy(adv), towards) - LOSSES["margin"](bumpy(x), towards)
        assert (gain >= 0).all() and (gain > 0).any()
        stored = attack.store(adv, x)
        assert torch.equal(stored, quantize_in_ball(adv, x, 8 / 255, "linf"))
        assert torch.equal(stored, (stored * 255).round() / 255) and _within(stored, x, 8 / 255)


def test_a_zero_budget_returns_the_images_without_a_query() -> None:
    x = _images([1.0, 2.0])
    counter = Queries(x)
    adv, used = square_attack(x, counter, eps=0.0, queries=10)
    assert torch.equal(adv, x) and used.tolist() == [0, 0] and counter.counts == [0, 0]


# -- determinism ------------------------------------------------------------------------------------
def test_same_seed_same_result_and_the_batch_size_does_not_matter() -> None:
    x = _images([0.5 * REACH, 0.7 * REACH, 2.0 * REACH], seed=4)

    def run(seed: int, batch_size: int = 32) -> tuple[torch.Tensor, list[int]]:
        attack = Square(queries=150, batch_size=batch_size)
        adv = attack.perturb(x, _logit, generator=torch.Generator().manual_seed(seed))
        return adv, attack.queries_used_.tolist()

    (a, qa), (b, qb) = run(0), run(0)
    assert torch.equal(a, b) and qa == qb
    assert not torch.equal(a, run(1)[0])
    c, qc = run(0, batch_size=1)
    assert torch.allclose(a, c, atol=1e-6) and qa == qc
    attack = Square(queries=30, seed=7)  # the default generator is seeded from ``seed``
    assert torch.equal(attack.perturb(x, _logit), attack.perturb(x, _logit))


# -- the schedule -----------------------------------------------------------------------------------
def test_p_is_halved_on_the_papers_schedule_rescaled_to_the_budget() -> None:
    p = 0.05
    # 10 000 queries: the paper's iterations themselves
    expected = {0: p, 10: p, 11: p / 2, 50: p / 2, 51: p / 4, 200: p / 4, 201: p / 8, 501: p / 16,
                1001: p / 32, 2001: p / 64, 4001: p / 128, 6001: p / 256, 8001: p / 512, 9999: p / 512}
    assert {i: square_fraction(p, i, 10000) for i in expected} == expected
    # 1000 queries: ten times sooner (iteration i is the paper's 10·i)
    assert [square_fraction(p, i, 1000) for i in (1, 2, 5, 6, 20, 21, 801)] == [p, p / 2, p / 2, p / 4, p / 4,
                                                                               p / 8, p / 512]


def test_the_square_side_covers_the_fraction_and_never_the_whole_image() -> None:
    assert square_side(0.05, 224, 224) == 50  # sqrt(0.05 · 224²) = 50.09
    assert square_side(0.05, 8, 8) == 2
    assert square_side(1.0, 8, 8) == 7
    assert square_side(1e-6, 8, 8) == 1
    assert square_side(0.5, 1, 1) == 1


# -- the component ----------------------------------------------------------------------------------
def test_component_registry_and_budget() -> None:
    assert attacks().get("square") is Square
    meta = attacks().meta("square")
    assert isinstance(meta, AttackInfo) and meta.knowledge == "query" and "ECCV 2020" in meta.paper
    assert isinstance(Square(), GradientAttack)
    assert Square().budget() == "linf 4/255, 1000 queries"
    assert Square(eps="8/255", queries=500).budget() == "linf 8/255, 500 queries"
    assert Square(eps="2/255").eps == 2 / 255
    assert Square.param_grids == {"eps": (1 / 255, 2 / 255, 4 / 255, 8 / 255)}
    assert Square.norm == "linf" and Square.threat == "query"
    assert Square(target="durall").get_params() == {"eps": 4 / 255, "queries": 1000, "p_init": 0.05,
                                                    "loss": "margin", "target": "durall", "seed": 0,
                                                    "batch_size": 32}


@pytest.mark.parametrize("kwargs, param", [
    ({"eps": 1.5}, "eps"), ({"eps": "abc"}, "eps"), ({"queries": 1}, "queries"), ({"queries": 2.5}, "queries"),
    ({"queries": True}, "queries"), ({"p_init": 0}, "p_init"), ({"p_init": 1.5}, "p_init"),
    ({"loss": "dlr"}, "loss"), ({"target": 3}, "target"), ({"seed": "a"}, "seed"), ({"batch_size": 0}, "batch_size"),
])
def test_check_params_names_the_bad_parameter(kwargs: dict, param: str) -> None:
    attack = Square(**kwargs)  # the constructor only stores
    with pytest.raises(ValueError, match=param):
        attack.check_params()
    with pytest.raises(ValueError, match=param):
        attack.perturb(_images([1.0]), _logit)
