"""The ``demo-gan`` and ``demo-diffusion`` datasets: layout, determinism, reuse, the source partition and
the fingerprint each generator leaves.

Builds are 32x32 with few images and a short training (keyword arguments of the builders), so the whole
file stays well under 30 s on two CPU cores; the calibration at full size is benchmarks/bench_demo_families.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stigbench.cli import main
from stigbench.data.specs import BUILDERS, datasets
from stigbench.data.demo import GROUP_PATTERN
from stigbench.data import demo_families
from stigbench.data.demo_families import (DiffusionTraining, GanTraining, Reference, build_demo_diffusion, build_demo_gan,
                                     check_reference, images_sha256, partition_by_group)
from stigbench.measures.spectrum import log_magnitude, radial_profile

SIZE, N = 32, 32
GAN = GanTraining(width=16, latent=24, steps=60)
DIFFUSION = DiffusionTraining(width=16, depth=4, steps=60)
FAMILIES = {"gan": (build_demo_gan, GAN), "diffusion": (build_demo_diffusion, DIFFUSION)}


def _build(family: str, root: Path, seed: int = 0, size: int = SIZE, n: int = N) -> dict:
    build, training = FAMILIES[family]
    return build(root, seed=seed, size=size, n_real=n, n_fake=n, progress=False, training=training)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict]:
    root = tmp_path_factory.mktemp(request.param) / "data"
    return request.param, root, _build(request.param, root)


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def _load(folder: Path) -> torch.Tensor:
    arr = np.stack([np.asarray(Image.open(p)) for p in _pngs(folder)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).double() / 255


def _group(path: Path) -> str:
    return re.fullmatch(GROUP_PATTERN, path.stem).group("group")  # type: ignore[union-attr]


# -- layout, partition, reuse, determinism ---------------------------------------------------------
@pytest.mark.heavy
def test_layout_and_manifest(built: tuple[str, Path, dict]) -> None:
    family, root, manifest = built
    assert [len(_pngs(root / d)) for d in ("real", "fake", "sources")] == [N, N, N]
    assert manifest["dataset"] == f"stigbench-demo-{family}" and manifest["synthetic"] is True
    assert manifest["training"]["steps"] == 60 and manifest["generator"]["references"]
    for path in _pngs(root / "fake")[:4]:
        with Image.open(path) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (SIZE, SIZE))
    assert sorted(p.name for p in root.parent.iterdir()) == [root.name]  # no temporary folder left


def test_reals_and_sources_are_disjoint_by_group(built: tuple[str, Path, dict]) -> None:
    _, root, _ = built
    real, sources, fake = _pngs(root / "real"), _pngs(root / "sources"), _pngs(root / "fake")
    assert not {_group(p) for p in real} & {_group(p) for p in sources}
    assert [p.name for p in fake] == [p.name for p in sources]  # a fake keeps its source's group
    # Both halves draw on the photographs and on dead leaves.
    for half in (real, sources):
        assert 0 < sum(p.stem.startswith("leaves") for p in half) < len(half)


def test_partition_balances_groups() -> None:
    names = [f"photo-q{g}_{k:03d}" for g in range(8) for k in range(10)] + [f"leaves{i:04d}_000" for i in range(160)]
    a, b = partition_by_group(names, 120, np.random.default_rng(0))
    assert (len(a), len(b)) == (120, 120) and not set(a) & set(b)
    groups = lambda idx: {names[i].rsplit("_", 1)[0] for i in idx}  # noqa: E731
    assert not groups(a) & groups(b)
    photos_a = sum(not names[i].startswith("leaves") for i in a)
    assert 30 <= photos_a <= 50  # 80 photo crops in groups of 10, about half each


def test_matching_build_is_reused(built: tuple[str, Path, dict]) -> None:
    family, root, manifest = built
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert _build(family, root) == manifest
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


@pytest.mark.heavy
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_seed_is_byte_identical_other_seed_differs(family: str, tmp_path: Path) -> None:
    def tiny(name: str, seed: int) -> dict[str, bytes]:
        _build(family, tmp_path / name, seed=seed, size=16, n=6)
        return {str(p.relative_to(tmp_path / name)): p.read_bytes() for p in sorted((tmp_path / name).rglob("*.png"))}

    rng_before = torch.random.get_rng_state()
    a = tiny("a", 0)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's stream is untouched
    assert len(a) == 18 and a == tiny("b", 0) and a != tiny("c", 1)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("kwargs", [{"size": 8}, {"n_real": 1}, {"n_fake": 0}, {"seed": -1}])
def test_bad_arguments(family: str, kwargs: dict, tmp_path: Path) -> None:
    build, _ = FAMILIES[family]
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        build(tmp_path / "x", progress=False, **kwargs)


@pytest.mark.parametrize("training", [GanTraining(steps=0), DiffusionTraining(sample_sigma=-0.1),
                                      DiffusionTraining(sigmas=(0.3, 0.1))])
def test_bad_training(training: GanTraining | DiffusionTraining, tmp_path: Path) -> None:
    build = build_demo_gan if isinstance(training, GanTraining) else build_demo_diffusion
    with pytest.raises(ValueError, match="steps|sample_sigma|sigmas"):
        build(tmp_path / "x", progress=False, training=training)  # type: ignore[arg-type]


def test_gan_size_must_divide_by_4(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        build_demo_gan(tmp_path / "x", size=18, progress=False)


# -- the same images on every CPU, and the hash that says so ----------------------------------------
# A processor without AVX, AVX2, FMA or AVX-512, as far as torch, oneDNN, MKL, numpy and libm can tell.
OLD_CPU = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
           "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
           "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX,-AVX2,-FMA,-AVX512F,-AVX512DQ,-AVX512BW,-AVX512VL"}
TINY = {"size": 16, "n_real": 6, "n_fake": 6, "progress": False}
TINY_TRAINING = {"gan": dataclasses.replace(GAN, steps=20), "diffusion": dataclasses.replace(DIFFUSION, steps=20)}
_TINY_SCRIPT = """
import json, sys, torch
from pathlib import Path
from stigbench.data.demo_families import DiffusionTraining, GanTraining, build_demo_diffusion, build_demo_gan
torch.set_num_threads(1)
out = {}
for name, build, training in (("gan", build_demo_gan, GanTraining(**json.loads(sys.argv[2]))),
                              ("diffusion", build_demo_diffusion, DiffusionTraining(**json.loads(sys.argv[3])))):
    out[name] = build(Path(sys.argv[1]) / name, training=training, **json.loads(sys.argv[4]))["images_sha256"]
print(json.dumps(out))
"""


def _tiny_build(family: str, root: Path) -> dict:
    build = build_demo_gan if family == "gan" else build_demo_diffusion
    return build(root, training=TINY_TRAINING[family], **TINY)  # type: ignore[arg-type]


@pytest.mark.heavy
def test_same_images_on_an_older_instruction_set(tmp_path: Path) -> None:
    """Built here (the CPU's best kernels) and in a process capped to SSE4 kernels without FMA."""
    here = {f: _tiny_build(f, tmp_path / "here" / f)["images_sha256"] for f in ("gan", "diffusion")}
    args = [json.dumps(dataclasses.asdict(TINY_TRAINING[f])) for f in ("gan", "diffusion")]
    done = subprocess.run([sys.executable, "-c", _TINY_SCRIPT, str(tmp_path / "capped"), *args, json.dumps(TINY)],
                          env={**os.environ, **OLD_CPU}, capture_output=True, text=True, check=True)
    capped = json.loads(done.stdout.strip().splitlines()[-1])
    assert capped == here
    assert here["gan"]["real"] == here["diffusion"]["real"] and here["gan"]["fake"] != here["diffusion"]["fake"]


def test_manifest_hash_is_the_images_hash(built: tuple[str, Path, dict]) -> None:
    _, root, manifest = built
    assert manifest["images_sha256"] == images_sha256(root) and manifest["reference"] is None
    # It covers the pixels and the names: swapping two fakes' files changes the fake hash only.
    fakes = _pngs(root / "fake")
    a, b = fakes[0].read_bytes(), fakes[1].read_bytes()
    try:
        fakes[0].write_bytes(b)
        fakes[1].write_bytes(a)
        swapped = images_sha256(root)
        assert swapped["fake"] != manifest["images_sha256"]["fake"] and swapped["real"] == manifest["images_sha256"]["real"]
    finally:
        fakes[0].write_bytes(a)
        fakes[1].write_bytes(b)


@pytest.mark.parametrize("family", ["gan"])  # one family: the check is _build_family's, shared by both
def test_a_build_that_differs_from_its_reference_warns(family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    dataset_id = f"stigbench-demo-{family}"
    # The CLI's console handler stops propagation on the "stigbench" logger (a CLI test run earlier in
    # the session leaves it so), so listen on the module's logger directly rather than through caplog.
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    module_log = logging.getLogger("stigbench.data.demo_families")
    module_log.addHandler(handler)
    first = _tiny_build(family, tmp_path / "a")
    got = first["images_sha256"]

    def reference(fake: str) -> Reference:
        return Reference(images_sha256={**got, "fake": fake}, lfd_all=0.1, lfd_test=0.12, auc={"durall": 0.9},
                         measured="test", seed=0, size=16, n_real=6, n_fake=6, training=TINY_TRAINING[family])

    try:
        monkeypatch.setitem(demo_families.REFERENCE, dataset_id, reference(got["fake"]))
        same = _tiny_build(family, tmp_path / "b")
        assert same["reference"]["matches"] is True and same["reference"]["calibration"]["lfd_all"] == 0.1
        # A build made before its reference was recorded ("a") is judged against it when reused.
        assert first["reference"] is None
        assert _tiny_build(family, tmp_path / "a")["reference"]["matches"] is True
        assert not records

        monkeypatch.setitem(demo_families.REFERENCE, dataset_id, reference("0" * 64))
        other = _tiny_build(family, tmp_path / "c")
        assert other["reference"]["matches"] is False
        _tiny_build(family, tmp_path / "c")  # reused: warns again
    finally:
        module_log.removeHandler(handler)
    assert len(records) == 2
    message = records[0].getMessage()
    assert got["fake"] in message and "0" * 64 in message and "not comparable" in message and "real" not in message.split(":")[1]


@pytest.mark.parametrize("dataset_id", [demo_families.GAN_ID, demo_families.DIFFUSION_ID])
def test_the_references_describe_the_default_builds(dataset_id: str) -> None:
    """Changing a family's defaults without measuring its new reference build leaves it unvouched for."""
    ref = demo_families.REFERENCE[dataset_id]
    training = GanTraining() if dataset_id == demo_families.GAN_ID else DiffusionTraining()
    defaults = {"seed": 0, "size": 64, "n_real": 480, "n_fake": 480,
                "training": json.loads(json.dumps(dataclasses.asdict(training)))}
    assert ref.applies_to(defaults)
    assert set(ref.images_sha256) == {"real", "sources", "fake"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in ref.images_sha256.values())
    assert 0 < ref.lfd_all and 0 < ref.lfd_test and all(0.0 <= a <= 1.0 for a in ref.auc.values())
    assert datasets().get(dataset_id.removeprefix("stigbench-")).size == ref.size  # the spec builds the reference


def test_older_manifests_still_pass() -> None:
    assert check_reference({"dataset": "stigbench-demo-gan", "version": "1", "seed": 0})
    assert check_reference({"dataset": "stigbench-demo-gan", "version": "2", "reference": None})


# -- the fingerprints ------------------------------------------------------------------------------
def _residual_spectrum(x: torch.Tensor) -> np.ndarray:
    """Mean log-magnitude of the noise residual (image minus its 3x3 box blur), over images and channels."""
    blur = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), 3, 1)
    return log_magnitude(x - blur).mean(dim=(0, 1)).numpy()


def _contrast(d: np.ndarray) -> np.ndarray:
    """Each frequency minus the mean of its 8 (periodic) neighbours: isolates narrow peaks."""
    neighbours = sum(np.roll(d, (a, b), (0, 1)) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0))
    return d - neighbours / 8


@pytest.mark.heavy
@pytest.mark.parametrize("built", ["gan"], indirect=True)
def test_gan_fakes_carry_upsampling_replicas(built: tuple[str, Path, dict]) -> None:
    family, root, _ = built
    assert family == "gan"
    real, fake = _contrast(_residual_spectrum(_load(root / "real"))), _contrast(_residual_spectrum(_load(root / "fake")))
    u = np.arange(SIZE) - SIZE // 2
    uu, vv = np.meshgrid(u, u, indexing="ij")
    # Two stride-2 stages put replicas on the N/4 grid; the axes carry the border's cross, so off-axis.
    replicas = (uu != 0) & (vv != 0) & (uu % (SIZE // 4) == 0) & (vv % (SIZE // 4) == 0)
    assert (fake[replicas] - real[replicas]).mean() > 0.1


def _profiles(root: Path, *folders: str) -> list[torch.Tensor]:
    return [radial_profile(log_magnitude(_load(root / d)).mean(dim=1)).mean(dim=0) for d in folders]


@pytest.mark.heavy
@pytest.mark.parametrize("built", ["diffusion"], indirect=True)
def test_diffusion_sampler_changes_the_high_frequencies(built: tuple[str, Path, dict]) -> None:
    family, root, _ = built
    assert family == "diffusion"
    # With the tests' short training the denoiser leaves much of the sampler's noise (a residue, more
    # energy); trained fully it leaves a deficit (test_diffusion_fakes_lack_high_frequencies). Either
    # way the fakes' spectra differ from those of their own source pictures at high frequencies.
    sources, fake = _profiles(root, "sources", "fake")
    assert (sources - fake)[SIZE // 4:].abs().mean() > 0.1


@pytest.mark.slow
def test_diffusion_fakes_lack_high_frequencies(tmp_path: Path) -> None:
    """The default build: a deficit from a quarter of the sampling rate up, measured against the reals."""
    build_demo_diffusion(tmp_path / "d", progress=False)
    real, fake = _profiles(tmp_path / "d", "real", "fake")
    assert (real - fake)[64 // 4:].mean() > 0.05  # measured: 0.11


# -- registry and CLI ------------------------------------------------------------------------------
def test_specs_are_registered_with_their_builders() -> None:
    reg = datasets()
    for name, build in (("demo-gan", build_demo_gan), ("demo-diffusion", build_demo_diffusion)):
        spec = reg.get(name)
        assert (spec.builder, spec.size, spec.synthetic, spec.group_pattern) == (name, 64, True, GROUP_PATTERN)
        assert BUILDERS.get(spec.builder) is build
    result = CliRunner().invoke(main, ["list", "datasets"], catch_exceptions=False)
    assert result.exit_code == 0 and "demo-gan" in result.output and "demo-diffusion" in result.output
