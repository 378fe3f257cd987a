"""Strength sweeps in the reports: attacks compared at equal image cost (issue #22, item 5).

From a run's ``metrics.csv`` (:func:`sweep_table`), per refined condition on clean test images: the
attack (display name without ``strength=``), its strength, PSNR and SSIM to the original fakes, LFD to
the reals, *evasion* = mean ``|AUC - 0.5|`` and the mean attack success rate (``asr`` rows), both over
the *working* detectors (fake AUC >= :data:`~stigbench.evaluation.evidence.WORKING_AUC`, trained on
the fakes). :func:`equal_cost_table` reads every full-strength attack against each swept one at the
full-strength attack's PSNR, interpolated on the sweep and never extrapolated
(:func:`stigbench.evaluation.sweep.interpolate_at`). :func:`sweep_plot` draws evasion, ASR and LFD
against PSNR, one curve per swept attack; the run report and ``bench.py report`` show both
(``sweeps.{csv,png}``, ``equal_cost.csv``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from stigbench.attacks.white_box import format_eps
from stigbench.evaluation.evidence import WORKING_AUC
from stigbench.evaluation.rows import QUERY, WHITE_BOX
from stigbench.evaluation.sweep import interpolate_at, sweep_point
from stigbench.reporting.render import html as H
from stigbench.reporting.render.figures import pyplot, save
from stigbench.reporting.render.markdown import to_markdown
from stigbench.reporting.render.numbers import format_value
from stigbench.reporting.run.metrics_csv import DEFAULT_PERTURBATION, baseline, own_rows

SWEEP_COLUMNS = ["attack", "strength", "refiner", "psnr", "ssim", "lfd", "evasion", "asr", "working"]
#: What the curves and the comparison at equal cost read, with their labels.
CURVES = (("evasion", "evasion: mean |AUC − 0.5| (lower = better attack)"),
          ("asr", "attack success rate (higher = better attack)"),
          ("lfd", "LFD to the reals (lower = closer)"))
SWEEP_NOTE = (f"Per attack and strength, on clean test images: PSNR/SSIM of the refined fakes to the originals, LFD "
              f"to the reals, evasion = mean |AUC − 0.5| and ASR = mean attack success rate (share of the fakes "
              f"flagged at the validation threshold that are no longer flagged), both over the working detectors "
              f"(fake AUC ≥ {WORKING_AUC:g}, trained on the fakes; `working`: how many). Strength 1 is the full "
              "attack (named without strength=); sweep points below 1 get no FID/KID. A gradient attack is swept "
              "over its budget ε (the `strength` column holds ε) and read by its ASR on its white-box target only (no "
              "evasion: driving its target past chance is its aim).")
EQUAL_NOTE = ("Each full-strength attack against each swept attack at the full-strength attack's PSNR: the swept "
              "attack's LFD, evasion and ASR interpolated linearly in PSNR between its measured strengths, never "
              "extrapolated (`outside the sweep`).")


def sweep_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per refined condition of a run (``metrics.csv`` frame), columns :data:`SWEEP_COLUMNS`."""
    m = own_rows(metrics)
    m = m[m["perturbation"] == DEFAULT_PERTURBATION]
    det = m[(m["detector"] != "") & baseline(m)]
    auc = det[det["metric"] == "auc"]
    fake_auc = auc[auc["condition"] == "fake"].groupby("detector")["value"].mean()
    working = set(fake_auc[fake_auc >= WORKING_AUC].index)
    quality = m[(m["detector"] == "") & (m["condition"] == "refined")]
    rows = []
    for refiner in dict.fromkeys(m.loc[m["condition"] == "refined", "refiner"]):
        attack, strength = sweep_point(refiner)
        row: dict[str, Any] = {"attack": attack, "strength": strength, "refiner": refiner}
        for name in ("psnr", "ssim", "lfd"):
            v = quality.loc[(quality["refiner"] == refiner) & (quality["metric"] == name), "value"]
            row[name] = float(v.mean()) if len(v) else math.nan
        mine = det[(det["condition"] == "refined") & (det["refiner"] == refiner) & det["detector"].isin(working)]
        target = _target(mine)
        if target:  # a white-box attack is read on the detector it was crafted against
            mine = mine[mine["detector"] == target]
        a = mine.loc[mine["metric"] == "auc", "value"]
        s = mine.loc[mine["metric"] == "asr", "value"]
        # A white-box attack drives its own target past chance on purpose: read by its ASR, no evasion.
        row["evasion"] = float((a - 0.5).abs().mean()) if len(a) and not target else math.nan
        row["asr"] = float(s.mean()) if len(s) else math.nan
        row["working"] = int(a.size)
        rows.append(row)
    table = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    order = {a: i for i, a in enumerate(dict.fromkeys(table["attack"]))}  # attacks as they came, strengths rising
    return table.sort_values(["attack", "strength"], key=lambda c: c.map(order) if c.name == "attack" else c,
                             kind="stable").reset_index(drop=True)


def strength_text(strength: float, refiner: str) -> str:
    """A sweep point's strength as it reads: ``0.5``, or a gradient attack's budget as ``4/255``."""
    if re.search(r":eps=\d+/255(:|$)", str(refiner)):  # a pixel budget in whole 8-bit steps (display names)
        return format_eps(float(strength), "linf")
    return f"{strength:g}"


def _target(rows: pd.DataFrame) -> str:
    """The detector a white-box or query attack's rows name as their target (``""`` for a refiner, and for a
    transfer attack, whose ``target`` names its surrogates: it is read on every working detector)."""
    if "knowledge" not in rows or "target" not in rows:
        return ""
    targets = set(rows.loc[rows["knowledge"].isin([WHITE_BOX, QUERY]), "target"]) - {""}
    return next(iter(targets)) if len(targets) == 1 else ""


def swept_attacks(table: pd.DataFrame) -> list[str]:
    """The attacks of ``table`` measured at two strengths or more (those that get a curve)."""
    counts = table.groupby("attack", sort=False)["strength"].nunique()
    return [a for a, n in counts.items() if n >= 2]


def equal_cost_table(table: pd.DataFrame) -> pd.DataFrame:
    """Every full-strength attack (``strength == 1``) against every *other* swept attack, at the PSNR of
    the first: ``attack, psnr, against, <c>, <c>_against`` for each curve ``c`` and a ``note`` that says
    ``outside the sweep`` where that PSNR is not within the swept attack's measured PSNRs. With a
    ``group`` column, per group. Empty without a sweep."""
    cols = ["attack", "psnr", "against", *[c for name, _ in CURVES for c in (name, f"{name}_against")], "note"]
    out = []
    groups = table.groupby("group", sort=False) if "group" in table else [(None, table)]
    for group, t in groups:
        swept = swept_attacks(t)
        for _, a in t[t["strength"] == 1.0].iterrows():
            for b in swept:
                if b == a["attack"]:
                    continue
                curve = t[t["attack"] == b]
                row: dict[str, Any] = {"attack": a["refiner"], "psnr": a["psnr"], "against": b}
                for name, _ in CURVES:
                    row[name] = a[name]
                    row[f"{name}_against"] = interpolate_at(a["psnr"], curve["psnr"], curve[name])
                lo, hi = curve["psnr"].min(), curve["psnr"].max()
                inside = bool(lo <= a["psnr"] <= hi)  # False for a missing PSNR too
                row["note"] = "" if inside else f"outside the sweep ({lo:.1f}–{hi:.1f} dB)"
                out.append({"group": group, **row} if group is not None else row)
    return pd.DataFrame(out, columns=(["group"] if "group" in table else []) + cols).astype({"psnr": float})


def equal_cost_lines(equal: pd.DataFrame) -> list[str]:
    """One sentence per row of :func:`equal_cost_table`."""
    def values(r: pd.Series, suffix: str) -> str:
        return ", ".join(f"{'evasion' if n == 'evasion' else n.upper()} {_num(r[n + suffix])}" for n, _ in CURVES)

    lines = []
    for _, r in equal.iterrows():
        where = f"{r['group']}: a" if "group" in equal and isinstance(r.get("group"), str) else "A"
        head = f"{where}t {r['attack']}'s PSNR ({_num(r['psnr'], 1)} dB)"
        if isinstance(r["note"], str) and r["note"]:
            lines.append(f"{head}: {r['against']} {r['note']}, not extrapolated.")
        else:
            lines.append(f"{head}: {r['against']} (interpolated on its sweep) {values(r, '_against')}; "
                         f"{r['attack']} {values(r, '')}.")
    return lines


def _num(value: Any, digits: int = 3) -> str:
    return format_value(value, digits) if value is not None and not pd.isna(value) else "—"


def sweep_plot(table: pd.DataFrame, path: Path, title: str | None = None) -> bool:
    """Evasion, ASR and LFD against PSNR: one curve per swept attack (strength marked at its ends), the
    other full-strength attacks as single points; one row of panels per ``group`` when ``table`` has
    that column. False (nothing drawn) without a sweep."""
    groups = list(table.groupby("group", sort=False)) if "group" in table else [("", table)]
    groups = [(g, t) for g, t in groups if swept_attacks(t)]
    if not groups:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(len(groups), len(CURVES), figsize=(4.6 * len(CURVES), 3.8 * len(groups)), squeeze=False)
    attacks = list(dict.fromkeys(a for _, t in groups for a in t["attack"]))
    palette = plt.get_cmap("tab10" if len(attacks) <= 10 else "tab20").colors  # 20 before any colour repeats
    colours = dict(zip(attacks, palette * (1 + len(attacks) // len(palette))))
    for row, (group, t) in zip(axes, groups):
        swept = swept_attacks(t)
        for ax, (name, label) in zip(row, CURVES):
            for attack, g in t.groupby("attack", sort=False):
                g = g.sort_values("strength")
                if attack in swept:
                    ax.plot(g["psnr"], g[name], "o-", ms=4, color=colours[attack], label=attack)
                    for _, p in g.iloc[[0, -1]].iterrows():
                        ax.annotate(strength_text(p["strength"], p["refiner"]), (p["psnr"], p[name]),
                                    textcoords="offset points",
                                    xytext=(3, 3), fontsize=7, color=colours[attack])
                else:
                    ax.plot(g["psnr"], g[name], "s", ms=6, color=colours[attack], label=attack)
            ax.set(xlabel="PSNR to the original fakes (dB; right = cheaper)", ylabel=label)
            if group:
                ax.set_title(str(group), fontsize=9)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.suptitle(title or "Attacks at equal image cost: strength sweeps (numbers: strength at the ends)", fontsize=10)
    fig.tight_layout()
    save(fig, path, dpi=110)
    return True


def write_sweeps(folder: Path, table: pd.DataFrame, title: str | None = None) -> list[str]:
    """``sweeps.csv``, ``equal_cost.csv`` and ``sweeps.png`` in ``folder`` when ``table`` has a sweep;
    returns the names written."""
    if table.empty or not swept_attacks(table):
        return []
    table.to_csv(folder / "sweeps.csv", index=False)
    equal_cost_table(table).to_csv(folder / "equal_cost.csv", index=False)
    made = ["sweeps.csv", "equal_cost.csv"]
    if sweep_plot(table, folder / "sweeps.png", title):
        made.append("sweeps.png")
    return made


def read_sweeps(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``sweeps.csv`` and ``equal_cost.csv`` of ``folder`` (empty frames where absent)."""
    def read(name: str) -> pd.DataFrame:
        path = folder / name
        return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.is_file() else pd.DataFrame()

    return read("sweeps.csv"), read("equal_cost.csv")


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    for c in out.columns:
        if c == "strength":
            out[c] = [strength_text(v, r) for v, r in zip(out[c], out.get("refiner", [""] * len(out)))]
        elif c not in ("group", "attack", "refiner", "against", "note", "working", "n"):
            out[c] = [_num(v, 1 if c.startswith("psnr") else 3) for v in out[c]]
    return out


def sweep_markdown(folder: Path) -> list[str]:
    """The Markdown section of the sweeps written in ``folder`` (none without ``sweeps.csv``)."""
    table, equal = read_sweeps(folder)
    if table.empty:
        return []
    lines = ["## Strength sweeps: attacks at equal image cost", ""]
    lines += [f"- {line}" for line in equal_cost_lines(equal)] + ([""] if len(equal) else [])
    lines += [EQUAL_NOTE.replace("`", ""), "", to_markdown(_shown(table)), "", SWEEP_NOTE.replace("`", ""), ""]
    if (folder / "sweeps.png").is_file():
        lines += ["Curves: `sweeps.png` (data: sweeps.csv, equal_cost.csv).", ""]
    return lines


def sweep_html(folder: Path, anchor: str = "sweeps") -> str:
    """The HTML section of the sweeps written in ``folder`` ("" without ``sweeps.csv``)."""
    table, equal = read_sweeps(folder)
    if table.empty:
        return ""
    parts = [f'<h2 id="{anchor}">Strength sweeps: attacks at equal image cost</h2>']
    if len(equal):
        parts.append("<ul>" + "".join(f"<li>{H.esc(line)}</li>" for line in equal_cost_lines(equal)) + "</ul>")
        parts.append(f'<p class="note">{H.esc(EQUAL_NOTE.replace("`", ""))}</p>')
    if (folder / "sweeps.png").is_file():
        parts.append(H.figure(folder / "sweeps.png", "strength sweeps",
                              "Evasion, attack success rate and LFD against PSNR; one curve per swept attack, "
                              "squares: attacks at full strength only."))
    shown = _shown(table)
    keys = [c for c in ("group", "attack", "refiner") if c in shown]
    parts.append(H.table(shown, numeric=[c for c in shown.columns if c not in keys], nowrap=keys))
    parts.append(f'<p class="note">{H.esc(SWEEP_NOTE.replace("`", ""))} Data: sweeps.csv, equal_cost.csv.</p>')
    return "\n".join(parts)


def group_sweep_table(tables: Sequence[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """The sweep tables of several runs, ``(group, table)``, as the mean over each group's runs (``n``:
    how many runs measured the point)."""
    frames = [t.assign(group=g) for g, t in tables if len(t)]
    if not frames:
        return pd.DataFrame(columns=["group", *SWEEP_COLUMNS, "n"])
    allt = pd.concat(frames, ignore_index=True)
    keys = ["group", "attack", "strength", "refiner"]
    values = [c for c in SWEEP_COLUMNS if c not in keys]
    out = allt.groupby(keys, sort=False)[values].mean()
    out["n"] = allt.groupby(keys, sort=False).size()
    out = out.reset_index()
    out["working"] = out["working"].round(1)
    return out[["group", *SWEEP_COLUMNS, "n"]].sort_values(["group", "attack", "strength"], kind="stable")


__all__ = [
    "CURVES", "SWEEP_COLUMNS", "equal_cost_lines", "equal_cost_table", "group_sweep_table", "read_sweeps",
    "sweep_html", "sweep_markdown", "sweep_plot", "sweep_table", "swept_attacks", "write_sweeps",
]
