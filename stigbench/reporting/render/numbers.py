"""How numbers read in every table: a value with its interval, a signed difference, a ``mean ± std``
cell over seeds, and whether a text cell reads as a number (such columns are right-aligned)."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def format_value(value: Any, digits: int = 3) -> str:
    """A float with ``digits`` decimals, anything else as text; missing -> ``""``."""
    if _is_missing(value):
        return ""
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f"{v:.{digits}f}"
    return str(value)


def quality_decimals(value: float) -> int:
    """Decimals for about four significant digits (LFD near 1, FID in the tens, KID in the thousandths)."""
    if value is None or not np.isfinite(value) or value == 0:
        return 4
    return int(np.clip(3 - math.floor(math.log10(abs(value))), 0, 6))


def format_ci(value: Any, low: Any = None, high: Any = None, digits: int = 3) -> str:
    """``0.934 [0.881, 0.972]``; just the value when the interval is missing."""
    text = format_value(value, digits)
    if text and not _is_missing(low) and not _is_missing(high):
        text += f" [{format_value(low, digits)}, {format_value(high, digits)}]"
    return text


def format_delta(value: Any, digits: int = 3) -> str:
    """A signed difference with a true minus sign (``+0.012``, ``−0.300``); missing -> ``""``."""
    if _is_missing(value):
        return ""
    v = float(value)
    if abs(v) < 0.5 * 10 ** -digits:
        v = 0.0  # no "-0.000"
    return f"{v:+.{digits}f}".replace("-", "−")


def format_cell(mean: float, std: float, n: int, ci_low: float, ci_high: float, n_group: int,
                quality: bool = False) -> str:
    """``mean ± std`` over seeds (``(n=k)`` added when fewer runs than the group has); a single run:
    ``value [ci_low, ci_high]``. Detection metrics get 3 decimals, quality metrics about 4
    significant digits, the same decimals for the mean, its spread and its interval."""
    if _is_missing(mean):
        return ""
    d = quality_decimals(mean) if quality else 3
    if n > 1:
        text = f"{mean:.{d}f} ± {std:.{d}f}"
    else:
        text = format_ci(mean, ci_low, ci_high, d)
    if n < n_group:
        text += f" (n={n})"
    return text


_NUMBER = re.compile(r"^[+−-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?( .*)?$")


def looks_numeric(text: str) -> bool:
    """A number, optionally followed by an interval or note (``0.93 [0.88, 0.97]``, ``1.2 ± 0.1``)."""
    return bool(_NUMBER.match(text))


def numeric_text(col: pd.Series) -> bool:
    """Whether every non-empty cell of ``col`` reads as a number (such columns are right-aligned)."""
    texts = [str(v) for v in col if str(v)]
    return bool(texts) and all(looks_numeric(t) for t in texts)


__all__ = [
    "format_cell", "format_ci", "format_delta", "format_value", "looks_numeric", "numeric_text",
    "quality_decimals"
]
