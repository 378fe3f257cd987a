"""The training loop of the demo datasets' generators (:mod:`stigbench.data.demo`,
:mod:`stigbench.data.demo_generators`), written once.

Their images are hashed to the bit (``stigbench.data.demo_families.REFERENCE``), so the loop keeps the
order every generator trained in: the batch loss (whose batch the caller draws from its own seeded
generator), ``zero_grad``, ``backward``, ``step``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from tqdm.auto import tqdm


class Optimizer(Protocol):
    """What the loop needs of an optimiser: ``torch.optim.Adam`` or :class:`stigbench.data.exact.Adam`."""

    def zero_grad(self) -> None: ...

    def step(self) -> None: ...


def train_steps(opt: Optimizer, batch_loss: Callable[[], torch.Tensor], steps: int, desc: str,
                progress: bool = False) -> torch.Tensor:
    """``steps`` optimiser steps, each on a fresh ``batch_loss()``; returns the last batch loss (a zero
    tensor for no step). ``desc`` labels the progress bar, shown only with ``progress``."""
    loss = torch.zeros(())
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        loss = batch_loss()
        opt.zero_grad()  # torch's default since 2.0 sets the gradients to None, as exact.Adam does
        loss.backward()
        opt.step()
    return loss


__all__ = ["Optimizer", "train_steps"]
