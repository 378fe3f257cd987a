"""Runs into groups (one per dataset and settings) and the warnings a comparison owes its reader.

Runs of one dataset with the same settings (all but the seed and what cannot change a result, see
:mod:`stigbench.core.settings`) form a group and are averaged over their seeds. A dataset whose runs
differ in settings gets one group per settings set, labelled ``<dataset> [<settings hash>]``: the hash
appears only where two groups share a name. Warnings are one line each, short enough to read in a list:

* per dataset with several groups: the keys that differ and each group's value, paths without the
  folders they share (``progan/fake [f7f16958] | biggan/fake [0c1d2e3f]``); every differing key and
  its full value are in ``groups.csv``;
* per group: runs from different code versions, the same seed twice, refiners fitted on different sets;
* per group and failed component: in how many runs it failed and the first line of its error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from stigbench.reporting.compare.collect import RunInfo, canon, shorten_paths

ABSENT = "<absent>"
#: At most this many differing keys show their values in a warning line (all are named).
KEYS_WITH_VALUES = 2
#: At most this many groups show their value per key in a warning line.
GROUPS_WITH_VALUES = 4


def commit_of(record: dict[str, Any]) -> str:
    """The run's git commit (10 characters, ``+dirty`` with uncommitted changes) or ``unknown``."""
    git = record.get("provenance", {}).get("git") or {}
    return (git.get("commit") or "unknown")[:10] + ("+dirty" if git.get("dirty") else "")


def _plain(value: Any) -> str:
    if value is ABSENT:
        return ABSENT
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]  # a spec's real/fake entries: one folder, shown as a path
    return value if isinstance(value, str) else canon(value)


def value_texts(values: Sequence[Any], limit: int = 32) -> list[str]:
    """Short texts of one setting's values in several groups: paths lose the folders they share and
    keep their end (``…/progan/fake``), other values their start."""
    texts = [_plain(v) for v in values]
    paths = len(texts) > 1 and all("/" in t or "\\" in t for t in texts)
    if paths:
        texts = shorten_paths(texts)
    return [t if len(t) <= limit else ("…" + t[-(limit - 1):] if paths else t[: limit - 1] + "…") for t in texts]


def difference_line(dataset: str, reps: dict[str, dict[str, Any]], differing: list[str]) -> str:
    """One warning line: ``dataset``'s groups (settings hash -> settings) differ in ``differing``."""
    shown = []
    for key in differing[:KEYS_WITH_VALUES]:
        hashes = list(reps)[:GROUPS_WITH_VALUES]
        texts = value_texts([reps[h].get(key, ABSENT) for h in hashes])
        more = " | …" if len(reps) > GROUPS_WITH_VALUES else ""
        shown.append(f"{key}: " + " | ".join(f"{t} [{h}]" for t, h in zip(texts, hashes)) + more)
    rest = differing[KEYS_WITH_VALUES:]
    also = f"; also {', '.join(rest)}" if rest else ""
    return (f"{dataset}: {len(reps)} groups with different settings, kept apart (not averaged); "
            f"{'; '.join(shown)}{also} (details: groups.csv)")


def _first_line(message: str, limit: int = 120) -> str:
    line = str(message).strip().splitlines()[0] if str(message).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def failure_lines(runs: Sequence[RunInfo], labels: dict[int, str]) -> list[str]:
    """Per group and failed component: ``<group>: detector:x failed in 1 of 2 runs (seed 0), its rows are
    missing: <first line of the error>``."""
    per: dict[tuple[str, str], list[tuple[Any, str]]] = {}
    size: dict[str, int] = {}
    for i, r in enumerate(runs):
        size[labels[i]] = size.get(labels[i], 0) + 1
        for comp, msg in (r.record.get("errors") or {}).items():
            per.setdefault((labels[i], comp), []).append((r.seed, _first_line(msg)))
    out = []
    for (group, comp), hits in per.items():
        seeds = ", ".join(str(s) for s, _ in hits)
        messages = list(dict.fromkeys(m for _, m in hits))
        other = f" (and {len(messages) - 1} other message(s), see runs.csv)" if len(messages) > 1 else ""
        out.append(f"{group}: {comp} failed in {len(hits)} of {size[group]} run(s) (seed {seeds}), its rows are "
                   f"missing: {messages[0]}{other}")
    return out


def group_runs(runs: Sequence[RunInfo]) -> tuple[dict[int, str], pd.DataFrame, list[str]]:
    """``(run index -> group label, one row per group, warnings)``.

    A dataset whose runs share one settings set keeps its name as label; with several, each group is
    ``<dataset> [<hash>]``, and one warning line names the differing keys (:func:`difference_line`).
    ``groups.csv`` (the returned frame) lists every differing key with its full value.
    """
    by_dataset: dict[str, dict[str, list[int]]] = {}
    for i, r in enumerate(runs):
        by_dataset.setdefault(r.dataset, {}).setdefault(r.settings_hash, []).append(i)
    labels: dict[int, str] = {}
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for dataset in sorted(by_dataset):
        groups = by_dataset[dataset]
        reps = {h: runs[idx[0]].settings for h, idx in groups.items()}
        keys = sorted(set().union(*reps.values()))
        differing = [k for k in keys if len({canon(s.get(k, ABSENT)) for s in reps.values()}) > 1]
        for h, idx in groups.items():
            label = dataset if len(groups) == 1 else f"{dataset} [{h}]"
            seeds = [runs[i].seed for i in idx]
            for i in idx:
                labels[i] = label
            s = reps[h]
            recorded = sorted({runs[i].recorded_name for i in idx if runs[i].recorded_name != dataset})
            rows.append({"group": label, "dataset": dataset, "settings_hash": h, "n_runs": len(idx),
                         "seeds": ", ".join(map(str, sorted(seeds, key=str))),
                         "fit_refiners_on": s.get("fit_refiners_on"),
                         "differing_settings": "; ".join(f"{k}={_plain(s.get(k, ABSENT))}" for k in differing),
                         "recorded_name": ", ".join(recorded)})
            commits = sorted({commit_of(runs[i].record) for i in idx})
            if len(commits) > 1:
                warnings.append(f"{label}: its runs come from different code versions ({', '.join(commits)})")
            repeated = sorted({str(x) for x in seeds if seeds.count(x) > 1})
            if repeated:
                warnings.append(f"{label}: seed(s) {', '.join(repeated)} occur more than once; those runs are repeats, "
                                "not independent seeds, so the spread understates the variation")
        if "fit_refiners_on" in differing:
            warnings.append(f"{dataset}: some runs fitted their refiners on the TEST fakes they refine (transductive, "
                            "--fit-refiners-on test) and others on the training fakes; not comparable as one attack")
        if differing:
            warnings.append(difference_line(dataset, reps, differing))
    warnings += failure_lines(runs, labels)
    return labels, pd.DataFrame(rows), warnings


__all__ = ["ABSENT", "commit_of", "difference_line", "failure_lines", "group_runs", "value_texts"]
