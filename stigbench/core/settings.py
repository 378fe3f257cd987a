"""Which run settings change a run's numbers: one declaration, read by the stage cache, the grid and
the comparison report.

A run is defined by its :class:`~stigbench.core.config.RunConfig`. Some of its fields only say
where output goes or how the run is shown; two runs that differ only in those have the same
results, so the grid does not redo a cell for them and a comparison puts them in one group. Each
field declares which it is (:class:`~stigbench.core.config.Setting`); the lists here are read off it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stigbench.core.config import legacy_defaults, non_result_settings

#: Fields that never change a result: output and cache locations, progress bars, where specs and
#: plug-ins were found, the display name of a --real/--fake dataset.
NON_RESULT_SETTINGS = non_result_settings()

#: Fields that name one replicate of an experiment: a grid has one cell per value, and a comparison
#: aggregates over them (mean ± spread) instead of keeping them apart.
REPLICATE_SETTINGS = frozenset({"seed"})

#: Settings added after runs were first saved, with the value an older run (without the key) had.
LEGACY_DEFAULTS: Mapping[str, Any] = legacy_defaults()


def result_settings(config: Mapping[str, Any], *, replicates: bool = True) -> dict[str, Any]:
    """The settings of ``config`` (a ``RunConfig`` as a dict) that change its results; without the
    replicate fields when ``replicates`` is false. Keys missing from old configs get their legacy value."""
    drop = NON_RESULT_SETTINGS | (frozenset() if replicates else REPLICATE_SETTINGS)
    return {**LEGACY_DEFAULTS, **{k: v for k, v in config.items() if k not in drop}}
