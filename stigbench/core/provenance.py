"""What a run records about where it ran: versions, git state, device, date, command line."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("stigbench", "torch", "torchvision", "timm", "numpy", "scipy", "scikit-learn", "pandas",
            "pillow", "skops", "matplotlib", "seaborn", "click")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def git_state(path: Path | None = None) -> dict[str, Any]:
    """Commit hash and whether the working tree of the stigbench sources has changes, if in git."""
    path = path or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


# Instruction-set extensions that change which kernels torch, oneDNN, MKL and numpy run (and, in float32,
# the order their sums are added in).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
             "amx_bf16")
# Environment switches that cap those kernels below what the CPU offers.
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "NPY_DISABLE_CPU_FEATURES")


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """The processor's model, which of :data:`ISA_FLAGS` it has (empty where ``/proc/cpuinfo`` is not
    available), the capability torch dispatches its own kernels to, and any cap set in the environment."""
    model, flags = "", set()
    try:
        with cpuinfo.open(encoding="ascii", errors="ignore") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return {"model": model or platform.processor() or platform.machine(),
            "isa": {flag: flag in flags for flag in ISA_FLAGS} if flags else {},
            "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "caps": {k: os.environ[k] for k in ISA_CAPS if k in os.environ}}


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"


def provenance(device: torch.device, precision: str) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
        "versions": package_versions(),
        "git": git_state(),
        "device": str(device),
        "device_name": device_description(device),
        "cpu": cpu_info(),
        "precision": precision,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }
