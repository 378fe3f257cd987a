"""What every benchmark script shares: a description of the machine and appending to RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import torch

from stigbench.core.provenance import cpu_info

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nEach section is appended by the script named in its title.\n"


def cpu_name() -> str:
    return cpu_info()["model"]


def machine(device: torch.device | None = None) -> str:
    """``AMD EPYC, 2 logical cores, torch 2.x (2 threads)``, or the GPU's name."""
    if device is not None and device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    load = f", load average {os.getloadavg()[0]:.2f} at start" if hasattr(os, "getloadavg") else ""
    isa = [k for k, on in (cpu_info().get("isa") or {}).items() if on]
    return (f"{cpu_name()} ({' '.join(isa) or 'ISA unknown'}), {os.cpu_count()} logical cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads){load}")


def append_section(title: str, body: str, device: torch.device | None = None) -> Path:
    """Append ``## title — date`` with the machine line and ``body`` to RESULTS.md."""
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    text = f"\n## {title} — {when}\n\nMachine: {machine(device)}.\n\n{body.rstrip()}\n"
    old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEADER
    RESULTS.write_text(old.rstrip("\n") + "\n" + text, encoding="utf-8")
    return RESULTS
