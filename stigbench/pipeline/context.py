"""The run-wide settings every stage and component sees, in one explicit object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stigbench.core.device import PRECISIONS, resolve_device, resolve_precision

#: Settings a component receives as a constructor keyword argument of the same name, when it declares one.
CONTEXT_PARAMS = ("seed", "device", "precision", "progress")


@dataclass(frozen=True)
class RunContext:
    """Seed, device, precision, progress and cache of one run.

    ``device``/``precision`` are what the user asked for (``auto`` included): components receive these
    and resolve them themselves, so a saved component replays on other hardware; ``torch_device`` and
    ``resolved_precision`` are what they resolve to here (recorded in the run's provenance).
    """

    seed: int
    device: str
    precision: str
    progress: bool
    cache: bool
    cache_dir: Path | None
    batch_size: int

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        self.torch_device  # noqa: B018 - resolving checks the device name now, not at the first stage

    @classmethod
    def from_config(cls, config: Any) -> RunContext:
        """From a :class:`~stigbench.core.config.RunConfig` (any object with its fields)."""
        return cls(seed=config.seed, device=config.device, precision=config.precision, progress=config.progress,
                   cache=config.cache, cache_dir=Path(config.cache_dir) if config.cache_dir else None,
                   batch_size=config.batch_size)

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    @property
    def resolved_precision(self) -> str:
        return resolve_precision(self.precision, self.torch_device)

    def component_settings(self) -> dict[str, Any]:
        """The values of :data:`CONTEXT_PARAMS` for this run."""
        return {"seed": self.seed, "device": self.device, "precision": self.precision, "progress": self.progress}
