"""Self-contained HTML pages: one file, a small inline stylesheet, plots embedded as base64 PNG.

Nothing here fetches anything (no external CSS, JS or fonts, no scripts at all), so a report opens the
same offline, attached to an e-mail or years later. Tables are written by hand rather than with
``DataFrame.to_html`` so that rows can carry a CSS class (over-correction, baseline) and headers a
tooltip, and so that two-level column headers come out as ``colspan`` cells.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --head: #f6f8fa; --bad: #fde7e9; --badfg: #a40e26;
        --warn: #fff8c5; --base: #f3f6fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       max-width: 1400px; margin: 0 auto; padding: 16px 28px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.sub, .muted, figcaption, .note { color: var(--muted); }
table { border-collapse: collapse; margin: 6px 0 10px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 4px 8px; vertical-align: top; }
th { background: var(--head); text-align: center; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
td.key { white-space: nowrap; }
td:not(.num):not(.key) { overflow-wrap: anywhere; }  /* long paths and settings wrap */
td .ci { display: block; font-size: 11px; color: var(--muted); }
tr.over td .ci { color: var(--badfg); }
div.scroll { overflow-x: auto; max-width: 100%; }
tr.over td { background: var(--bad); color: var(--badfg); }
tr.base td { background: var(--base); }
td.over { background: var(--bad); color: var(--badfg); font-weight: 600; }
tr.evidence td { background: var(--warn); font-weight: 600; }
p.lead { font-size: 15px; margin: 8px 0 12px; }
table.kv th { text-align: left; white-space: nowrap; }
table.kv td { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.box { border: 1px solid var(--line); border-left-width: 5px; border-radius: 4px; padding: 8px 12px; margin: 10px 0; }
.box.error { border-color: #cf222e; background: var(--bad); }
.box.warning { border-color: #bf8700; background: var(--warn); }
.box ul { margin: 4px 0; padding-left: 20px; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
       background: var(--head); padding: 1px 4px; border-radius: 3px; }
nav a { margin-right: 12px; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def png_data_uri(path: str | Path) -> str:
    """``data:image/png;base64,...`` for a PNG file (the report then needs no side files)."""
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure(path: str | Path, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{png_data_uri(path)}" alt="{esc(alt)}">{cap}</figure>'


def box(kind: str, title: str, items: Iterable[str]) -> str:
    """A coloured note (``kind``: ``error`` or ``warning``) with a bullet list of plain-text items."""
    lis = "".join(f"<li>{esc(i)}</li>" for i in items)
    return f'<div class="box {esc(kind)}"><strong>{esc(title)}</strong><ul>{lis}</ul></div>'


def key_values(pairs: Mapping[str, Any]) -> str:
    """A two-column table of labels and values (provenance blocks)."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs.items())
    return f'<table class="kv">{rows}</table>'


def _header_rows(columns: pd.Index, titles: Mapping[str, str]) -> str:
    """``<tr>`` rows of ``<th>``; runs of equal labels on the upper levels of a MultiIndex merge."""
    if not isinstance(columns, pd.MultiIndex):
        cells = "".join(f'<th title="{esc(titles.get(str(c), ""))}">{esc(c)}</th>' if titles.get(str(c))
                        else f"<th>{esc(c)}</th>" for c in columns)
        return f"<tr>{cells}</tr>"
    rows = []
    tuples = list(columns)
    # A column whose lower levels are all empty (a row label such as "detector") spans every header row.
    tall = [all(str(p) == "" for p in t[1:]) for t in tuples]
    for level in range(columns.nlevels):
        cells, j = [], 0
        while j < len(tuples):
            if tall[j]:
                if level == 0:
                    cells.append(f'<th rowspan="{columns.nlevels}">{esc(tuples[j][0])}</th>')
                j += 1
                continue
            k = j
            # Merge only within the same parent, so a group never spans two upper-level groups.
            while k + 1 < len(tuples) and not tall[k + 1] and tuples[k + 1][: level + 1] == tuples[j][: level + 1]:
                k += 1
            label = tuples[j][level]
            span = f' colspan="{k - j + 1}"' if k > j else ""
            title = titles.get(str(label), "")
            tip = f' title="{esc(title)}"' if title else ""
            cells.append(f"<th{span}{tip}>{esc(label)}</th>")
            j = k + 1
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(rows)


def _cell(text: str, numeric: bool) -> str:
    """Escaped cell text; in numeric cells an interval or spread after the value (``0.93 [0.88, 0.97]``,
    ``0.93 ± 0.02 (n=3)``) goes on a second, smaller line so wide tables stay readable."""
    if numeric:
        for sep in (" [", " ("):
            head, found, tail = text.partition(sep)
            if found and head:
                return f'{esc(head)}<span class="ci">{esc(found.strip() + tail)}</span>'
    return esc(text)


def table(df: pd.DataFrame, row_classes: Sequence[str] | None = None, cell_classes: pd.DataFrame | None = None,
          titles: Mapping[str, str] | None = None, numeric: Sequence[Any] = (), nowrap: Sequence[Any] = ()) -> str:
    """An HTML table of ``df`` as it is (format numbers before); ``row_classes[i]`` is the CSS class of
    row ``i``, ``cell_classes`` (same shape, strings) of single cells; ``titles`` maps a column label
    to a header tooltip; columns in ``numeric`` are right-aligned, those in ``nowrap`` never wrap."""
    titles = titles or {}
    numeric_set, nowrap_set = set(numeric), set(nowrap)
    body = []
    for i, row in enumerate(df.itertuples(index=False)):
        rc = f' class="{esc(row_classes[i])}"' if row_classes is not None and row_classes[i] else ""
        cells = []
        for j, (col, value) in enumerate(zip(df.columns, row)):
            classes = []
            if col in numeric_set:
                classes.append("num")
            elif col in nowrap_set:
                classes.append("key")
            if cell_classes is not None and cell_classes.iat[i, j]:
                classes.append(str(cell_classes.iat[i, j]))
            cls = f' class="{" ".join(classes)}"' if classes else ""
            text = "" if value is None or (isinstance(value, float) and value != value) else str(value)
            cells.append(f"<td{cls}>{_cell(text, col in numeric_set)}</td>")
        body.append(f"<tr{rc}>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table><thead>{_header_rows(df.columns, titles)}</thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def page(title: str, body: str, subtitle: str = "") -> str:
    """A complete HTML5 document with the inline stylesheet."""
    sub = f'<p class="sub">{esc(subtitle)}</p>' if subtitle else ""
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n"
        f"<h1>{esc(title)}</h1>{sub}\n{body}\n"
        f"<footer>Generated by stigbench on {esc(stamp)}. Every number on this page is derived from the "
        "long-form metrics.csv file(s); plots are embedded, so this file stands alone.</footer>\n"
        "</body></html>\n"
    )


__all__ = ["CSS", "box", "esc", "figure", "key_values", "page", "png_data_uri", "table"]
