"""Released-checkpoint loaders: files written in the authors' layouts load strictly and reproduce an
independent reference forward; broken files fail with messages that name the file and the keys."""

from __future__ import annotations

import argparse
import hashlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50

from released_refs import RefNPR, randomise

from stigbench.detection.released import ReleasedNPR, file_fingerprint, load_cnndetection, load_npr


@pytest.fixture(scope="module")
def cnndetection_ref() -> nn.Module:
    return randomise(resnet50(weights=None, num_classes=1), seed=1)


@pytest.fixture(scope="module")
def npr_ref() -> nn.Module:
    return randomise(RefNPR(), seed=2)


def images(seed: int, n: int = 2, size: int = 64) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(n, 3, size, size)


def test_fingerprint_is_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "w.bin"
    data = bytes(range(256)) * 5000  # spans two of sha256_file's 1 MiB blocks
    path.write_bytes(data)
    fp = file_fingerprint(path)
    assert fp == {"path": str(path.resolve()), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy-pickle"])
def test_cnndetection_release_matches_torchvision(tmp_path, cnndetection_ref, zipped):
    # The 2020 release predates PyTorch 1.6's zip format; both serialisations must load.
    path = tmp_path / "blur_jpg_prob0.5.pth"
    optimizer = torch.optim.Adam(cnndetection_ref.parameters(), lr=1e-4, betas=(0.9, 0.999))
    release = {"model": cnndetection_ref.state_dict(), "optimizer": optimizer.state_dict(), "total_steps": 1234}
    torch.save(release, path, _use_new_zipfile_serialization=zipped)
    model = load_cnndetection(path)
    assert not model.training
    x = images(3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), cnndetection_ref(x), atol=1e-5, rtol=1e-5)


def test_cnndetection_accepts_an_exact_bare_state_dict(tmp_path, cnndetection_ref):
    path = tmp_path / "bare.pth"
    torch.save(cnndetection_ref.state_dict(), path)
    x = images(4)
    with torch.no_grad():
        torch.testing.assert_close(load_cnndetection(path)(x), cnndetection_ref(x), atol=1e-5, rtol=1e-5)


def test_npr_release_matches_reference(tmp_path, npr_ref):
    path = tmp_path / "NPR.pth"
    torch.save(npr_ref.state_dict(), path)
    assert list(ReleasedNPR().state_dict()) == list(npr_ref.state_dict())
    model = load_npr(path)
    x = images(5)
    with torch.no_grad():
        torch.testing.assert_close(model(x), npr_ref(x), atol=1e-5, rtol=1e-5)


def test_npr_residual_matches_the_authors_interpolation():
    x = images(6, size=10)
    down = F.interpolate(x, scale_factor=0.5, mode="nearest")
    assert torch.equal(ReleasedNPR.residual(x), x - F.interpolate(down, scale_factor=2.0, mode="nearest"))
    with pytest.raises(ValueError, match="even"):
        ReleasedNPR.residual(images(6, size=9))


@pytest.mark.parametrize("fmt", ["cnndetection", "npr"])
@pytest.mark.parametrize("fault", ["missing", "extra"])
def test_mismatched_keys_are_named(tmp_path, cnndetection_ref, npr_ref, fmt, fault):
    ref, loader = (cnndetection_ref, load_cnndetection) if fmt == "cnndetection" else (npr_ref, load_npr)
    state = dict(ref.state_dict())
    name = "layer1.0.conv2.weight"
    if fault == "missing":
        del state[name]
    else:
        name = "layer9.0.conv1.weight"
        state[name] = torch.zeros(1)
    path = tmp_path / f"{fault}.pth"
    torch.save({"model": state} if fmt == "cnndetection" else state, path)
    with pytest.raises(ValueError) as info:
        loader(path)
    message = str(info.value)
    assert name in message and str(path) in message
    assert ("1 missing keys" in message) == (fault == "missing")
    assert ("1 unexpected keys" in message) == (fault == "extra")


def test_a_wrong_shape_is_named(tmp_path, npr_ref):
    state = dict(npr_ref.state_dict())
    state["fc1.weight"] = torch.zeros(2, 512)
    path = tmp_path / "two_logits.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"fc1\.weight: file \(2, 512\)"):
        load_npr(path)


def test_files_without_batch_counters_load(tmp_path, npr_ref):
    # Pre-0.4.1 checkpoints have no num_batches_tracked; they are the one tolerated difference.
    state = {k: v for k, v in npr_ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    x = images(7)
    with torch.no_grad():
        torch.testing.assert_close(load_npr(path)(x), npr_ref(x), atol=1e-5, rtol=1e-5)


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pth"
    noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    path.write_bytes(b"\x00" + noise.numpy().tobytes())  # a leading zero: neither zip nor pickle magic
    for loader in (load_cnndetection, load_npr):
        with pytest.raises(ValueError, match="not a PyTorch checkpoint") as info:
            loader(path)
        assert str(path) in str(info.value)


def test_non_tensor_pickles_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "with_options.pth"
    torch.save({"model": {"fc.weight": torch.zeros(1, 2048)}, "opt": argparse.Namespace(arch="res50")}, path)
    with pytest.raises(ValueError, match=r"weights_only=True.*Namespace|Namespace.*weights_only=True") as info:
        load_cnndetection(path)
    assert str(path) in str(info.value)


def test_npr_refuses_a_wrapped_file(tmp_path, npr_ref):
    path = tmp_path / "wrapped.pth"
    torch.save({"model": npr_ref.state_dict()}, path)
    with pytest.raises(ValueError, match="bare state dicts"):
        load_npr(path)
