"""GitHub-flavoured Markdown tables, without the optional ``tabulate`` dependency."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stigbench.reporting.render.numbers import numeric_text


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured Markdown table (no optional ``tabulate`` dependency)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    # Numbers and formatted numbers ("0.93 [0.88, 0.97]", "+0.01") are right-aligned.
    rule = "| " + " | ".join("---:" if pd.api.types.is_numeric_dtype(df.iloc[:, j]) or numeric_text(df.iloc[:, j])
                             else "---" for j in range(df.shape[1])) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def flatten_columns(df: pd.DataFrame, sep: str = " · ") -> pd.DataFrame:
    """MultiIndex columns -> ``"demo · AUC · fake"`` (for Markdown and CSV)."""
    out = df.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [sep.join(str(p) for p in col if str(p)) for col in out.columns]
    return out


__all__ = ["flatten_columns", "to_markdown"]
