"""What run.json records about the processor (issue #22: results depend on the instruction set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stigbench.core.provenance import ISA_FLAGS, cpu_info, provenance

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse4_2 avx avx2 fma
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse4_2 avx avx2 fma avx512f
"""


def test_cpu_info_reads_model_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    info = cpu_info(tmp_path / "cpuinfo")
    assert info["model"] == "AMD EPYC 7B13"
    assert info["isa"] == {f: f in {"sse4_2", "avx", "avx2", "fma"} for f in ISA_FLAGS}  # the first processor's
    assert info["caps"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert info["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert cpu_info(tmp_path / "missing")["isa"] == {}


def test_provenance_records_the_cpu() -> None:
    prov = json.loads(json.dumps(provenance(torch.device("cpu"), "fp32")))  # what run.json holds
    assert prov["cpu"]["model"] and prov["cpu"]["torch_capability"]
    if Path("/proc/cpuinfo").is_file():
        assert set(prov["cpu"]["isa"]) == set(ISA_FLAGS) and prov["cpu"]["isa"]["sse4_2"]
