"""What every figure of the reports shares: matplotlib on the file-only Agg backend, saving and
freeing a figure, and stable colours per condition (reals, fakes, each refined set)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (reports run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path, dpi: int = 100) -> None:
    """Write ``fig`` to ``path`` and free it (pyplot keeps every open figure alive)."""
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def condition_colours(labels: Sequence[str]) -> dict[str, Any]:
    """Stable colours: real grey, fake red, refined sets from a qualitative palette."""
    import seaborn as sns

    refined = [lab for lab in labels if lab not in ("real", "fake")]
    tab10 = sns.color_palette("tab10", 10)
    # every tab10 colour but red (the fakes) and grey (the reals), green first
    palette = [tab10[i] for i in (2, 0, 4, 1, 5, 6, 8, 9)] * (1 + len(refined) // 8)
    out: dict[str, Any] = {"real": "0.45", "fake": "#d62728"}
    out.update(dict(zip(refined, palette)))
    return out


__all__ = ["condition_colours", "pyplot", "save"]
