"""``univfd`` with a tiny random CLIP registered with open_clip (no weights needed): the linear probe,
the released head against a reference written here from open_clip directly, the torch path,
save/load with its file checks, the errors the plan reports, preprocessing and the feature cache.

:func:`tiny_clip_params` gives other test files (the detector contract tests) the same tiny CLIP.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import pink_noise, upsampled_noise
from stigbench.core.imageset import ArrayImageSet, labelled
from stigbench.detection import clip_features
from stigbench.detection.clip_features import CLIP_MEAN, CLIP_STD, clip_input, load_encoder
from stigbench.detection.registry import detectors
from stigbench.measures.metrics import auc

try:
    import open_clip
except ImportError:  # the optional extra stigbench[clip]
    open_clip = None
#: For other test files: without open_clip, univfd cannot be built (its contract tests leave it out).
HAS_OPEN_CLIP = open_clip is not None
UnivFD = detectors().get("univfd")

#: A ViT small enough to run in milliseconds: 32² input, width 32, 2 layers, 16-d embedding. Its 2²
#: patches line up with the fakes' 2×2 pixel replication: random 8² (4²) patches leave the linear
#: probe at AUC 0.3-0.6 (0.7-0.8) on the contract tests' noise, 2² at 0.99-1 (three seeds).
TINY_ARCH = "stigbench-tiny-vit"
TINY_CONFIG = {"embed_dim": 16, "quick_gelu": True,
               "vision_cfg": {"image_size": 32, "patch_size": 2, "width": 32, "layers": 2, "head_width": 16},
               "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}


def register_tiny_arch() -> None:
    """Register ``TINY_ARCH`` with open_clip, once per process, the supported way: a JSON config file
    handed to ``open_clip.add_model_config`` (open_clip keeps it after the file is gone)."""
    if TINY_ARCH not in open_clip.list_models():
        folder = Path(tempfile.mkdtemp(prefix="stigbench-tiny-clip-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        (folder / f"{TINY_ARCH}.json").write_text(json.dumps(TINY_CONFIG))
        open_clip.add_model_config(folder / f"{TINY_ARCH}.json")


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """The tiny CLIP, randomly initialised from ``seed``, in eval mode."""
    register_tiny_arch()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return open_clip.create_model(TINY_ARCH, pretrained=None).eval()


def write_tiny_clip(path: Path, seed: int = 0) -> Path:
    torch.save(tiny_model(seed).state_dict(), path)
    return path


@functools.cache
def tiny_clip_params() -> dict[str, str]:
    """``{"clip": PATH, "arch": TINY_ARCH}``: a tiny random CLIP written once per process (for the
    detector contract tests: ``FAST["univfd"] = tiny_clip_params()``); needs open_clip."""
    folder = Path(tempfile.mkdtemp(prefix="stigbench-tiny-clip-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return {"clip": str(write_tiny_clip(folder / "tiny_clip.pt")), "arch": TINY_ARCH}


pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not HAS_OPEN_CLIP, reason='open_clip is not installed (pip install "stigbench[clip]")')]


def image_set(n: int, seed: int, size: int = 32) -> tuple[ArrayImageSet, np.ndarray]:
    """``n`` reals (1/f² noise) then ``n`` fakes (half-size noise up-sampled by pixel replication)."""
    rng = np.random.default_rng(seed)
    # An odd size takes the fakes' top-left corner of the next even size.
    fakes = [upsampled_noise(rng, size + size % 2)[:size, :size] for _ in range(n)]
    return labelled(ArrayImageSet(to8([pink_noise(rng, size) for _ in range(n)])), ArrayImageSet(to8(fakes)))


def to8(images: list[np.ndarray]) -> np.ndarray:
    return (np.stack(images).transpose(0, 3, 1, 2) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def clip_file() -> str:
    return tiny_clip_params()["clip"]


def make(clip: str, **params) -> UnivFD:
    register_tiny_arch()
    return UnivFD(clip=clip, arch=TINY_ARCH, device="cpu", **params)


def write_fc(path: Path, width: int = 16, seed: int = 0, **state) -> Path:
    """A head in the release's format: ``torch.save(nn.Linear(width, 1).state_dict())``."""
    gen = torch.Generator().manual_seed(seed)
    default = {"weight": torch.randn(1, width, generator=gen), "bias": torch.randn(1, generator=gen)}
    torch.save({**default, **state}, path)
    return path


def reference_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """UnivFD's test transform written out: zero padding, CenterCrop's split (the odd pixel bottom/right)
    or its crop offset round((H - size) / 2), then CLIP's Normalize."""
    h = images.shape[-1]
    if h < size:
        lo = (size - h) // 2
        images = F.pad(images, (lo, size - h - lo, lo, size - h - lo))
    else:
        top = int(round((h - size) / 2.0))
        images = images[..., top:top + size, top:top + size]
    mean, std = torch.tensor(CLIP_MEAN).reshape(1, 3, 1, 1), torch.tensor(CLIP_STD).reshape(1, 3, 1, 1)
    return (images - mean) / std


# -- the linear probe and the released head ---------------------------------------------------------
def test_the_linear_probe_trains_and_scores(clip_file):
    (x, y), (xt, yt) = image_set(20, 0), image_set(10, 1)
    det = make(clip_file).fit(x, y)
    scores = det.score(xt)
    assert scores.shape == (20,) and np.isfinite(scores).all() and 0 <= scores.min() <= scores.max() <= 1
    assert auc(yt, scores) > 0.8
    info = det.fit_info_
    assert info["n_train"] == 40 and info["embedding"] == 16 and info["image_size"] == 32
    assert info["clip"]["sha256"] and "trained_on" not in info


@pytest.mark.parametrize("size", [25, 32, 41])
def test_released_scores_are_sigmoid_fc_of_open_clips_embedding(clip_file, tmp_path, size):
    fc = write_fc(tmp_path / "fc_weights.pth")
    x, y = image_set(3, 2, size)
    det = make(clip_file, checkpoint=str(fc)).fit(x, y)
    model = open_clip.create_model(TINY_ARCH, pretrained=None).eval()
    model.load_state_dict(torch.load(clip_file, map_location="cpu", weights_only=True))
    head = torch.load(fc, map_location="cpu", weights_only=True)
    images = torch.from_numpy(np.stack([x[i].numpy() for i in range(len(x))]))
    with torch.no_grad():
        logit = model.encode_image(reference_input(images, 32)) @ head["weight"].T + head["bias"]
    np.testing.assert_allclose(det.score(x), torch.sigmoid(logit)[:, 0].numpy(), atol=1e-5)
    assert det.fit_info_["trained_on"] == "released" and det.fit_info_["checkpoint"]["sha256"]
    assert det.released_checkpoint() == str(fc) and det.authors_threshold == 0.5


class Unreadable:
    """An image set that fails when read: score-only fitting must not read the training images."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        raise AssertionError("read")

    def batches(self, batch_size: int, progress: str | None = None):
        raise AssertionError("read")


def test_released_fit_fits_nothing_and_reads_no_image(clip_file, tmp_path):
    fc = str(write_fc(tmp_path / "fc.pth"))
    det = make(clip_file, checkpoint=fc).fit(Unreadable(), np.array([0, 0, 1, 1]))
    assert det.fit_info_["n_train"] == 0
    np.testing.assert_array_equal(det.estimator_.classes_, [0, 1])
    x, _ = image_set(3, 8)
    loaded = make(clip_file, checkpoint=fc).load_release()  # what `bench.py detect` calls
    assert loaded.fit_info_ == det.fit_info_
    np.testing.assert_array_equal(loaded.score(x), det.score(x))
    with pytest.raises(ValueError, match="set checkpoint=PATH"):
        make(clip_file).load_release()


# -- the torch path ---------------------------------------------------------------------------------
@pytest.mark.parametrize("released", [False, True])
def test_logits_match_scores_and_reach_the_images(clip_file, tmp_path, released):
    x, y = image_set(8, 3, 24)
    params = {"checkpoint": str(write_fc(tmp_path / "fc.pth"))} if released else {}
    det = make(clip_file, **params).fit(x, y)
    assert det.torch_path_unavailable() is None
    images = torch.from_numpy(np.stack([x[i].numpy() for i in range(len(x))])).requires_grad_(True)
    logits = det.logits(images)
    np.testing.assert_allclose(torch.sigmoid(logits).detach().numpy(), det.score(x), atol=1e-5)
    logits.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    visual = det.encoder().visual
    assert not visual.training and all(p.grad is None and not p.requires_grad for p in visual.parameters())


# -- persistence ------------------------------------------------------------------------------------
@pytest.mark.parametrize("released", [False, True])
def test_save_load_round_trip(clip_file, tmp_path, released):
    x, y = image_set(8, 4)
    params = {"checkpoint": str(write_fc(tmp_path / "fc.pth"))} if released else {}
    det = make(clip_file, **params).fit(x, y)
    det.save(tmp_path / "det")
    assert {p.suffix for p in (tmp_path / "det").iterdir()} == {".json", ".skops"}
    loaded = UnivFD.load(tmp_path / "det")
    assert loaded.get_params() == det.get_params() and loaded.fit_info_ == det.fit_info_
    np.testing.assert_array_equal(loaded.score(x), det.score(x))


def test_load_refuses_a_changed_released_head_or_clip_file(tmp_path):
    clip = str(write_tiny_clip(tmp_path / "clip.pt"))
    fc = write_fc(tmp_path / "fc_weights.pth")
    x, y = image_set(4, 5)
    make(clip, checkpoint=str(fc)).fit(x, y).save(tmp_path / "det")
    write_fc(fc, seed=1)
    with pytest.raises(ValueError, match="fc_weights.pth changed"):
        UnivFD.load(tmp_path / "det")
    write_fc(fc)  # restored: the same bytes, the same SHA-256
    UnivFD.load(tmp_path / "det")
    write_tiny_clip(tmp_path / "clip.pt", seed=1)
    with pytest.raises(ValueError, match="CLIP weights .*clip.pt changed"):
        UnivFD.load(tmp_path / "det")


# -- errors the plan reports before reading an image ------------------------------------------------
def test_without_a_clip_file_it_says_which_file_to_give():
    det = UnivFD()
    assert det.torch_path_unavailable() is None  # known without any file (bench.py list detectors)
    with pytest.raises(ValueError, match=r"--set univfd.clip=PATH\), an open_clip state dict for arch"):
        det.check_params()


def test_without_open_clip_it_says_what_to_install(clip_file, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "open_clip", None)
    with pytest.raises(ValueError, match=r'pip install "stigbench\[clip\]"'):
        make(clip_file).check_params()


def test_an_unknown_arch_lists_open_clips_models(clip_file):
    with pytest.raises(ValueError, match=r"arch 'ViT-L-41' is not an open_clip model config .*'ViT-L-14'"):
        UnivFD(clip=clip_file, arch="ViT-L-41").check_params()
    with pytest.raises(ValueError, match="schemas such as hf-hub"):
        UnivFD(clip=clip_file, arch="hf-hub:timm/vit_large_patch14_clip_224.openai").check_params()


def test_bad_clip_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="CLIP weights file not found"):
        make(str(tmp_path / "nowhere.pt")).check_params()
    for name in ("random.pt", "random.safetensors"):
        (tmp_path / name).write_bytes(np.random.default_rng(0).bytes(256))
        with pytest.raises(ValueError, match=f"{name}.*(not a PyTorch checkpoint|could not be read as safetensors)"):
            make(str(tmp_path / name)).check_params()
    torch.save({"weight": torch.zeros(1, 16), "bias": torch.zeros(1)}, tmp_path / "fc_as_clip.pt")
    with pytest.raises(ValueError, match=r"no 'visual\.\*' keys.*'weight', 'bias'"):
        make(str(tmp_path / "fc_as_clip.pt")).check_params()
    state = tiny_model().state_dict()
    state.pop("visual.ln_post.bias")
    state["visual.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "short.pt")
    with pytest.raises(ValueError, match=r"short.pt does not match VisionTransformer: 1 missing keys \['ln_post.bias'\], "
                                         r"1 unexpected keys \['extra'\]"):
        make(str(tmp_path / "short.pt")).check_params()
    state = tiny_model().state_dict()
    state["visual.proj"] = torch.zeros(32, 8)
    torch.save(state, tmp_path / "narrow.pt")
    with pytest.raises(ValueError, match=r"narrow.pt: 1 tensors do not fit VisionTransformer, .*proj: file \(32, 8\)"):
        make(str(tmp_path / "narrow.pt")).check_params()
    with pytest.raises(ValueError, match=r"tiny.pt does not match VisionTransformer: \d+ missing keys"):
        UnivFD(clip=str(write_tiny_clip(tmp_path / "tiny.pt")), arch="ViT-B-32", device="cpu").check_params()


@pytest.mark.filterwarnings("ignore:.*(is deprecated|looks like a TorchScript archive)")
def test_a_torchscript_archive_is_refused_with_the_conversion(tmp_path):
    scripted = torch.jit.script(torch.nn.Linear(3, 2))
    torch.jit.save(scripted, tmp_path / "ViT-L-14.pt")
    with pytest.raises(RuntimeError, match="TorchScript"):  # what torch itself does with weights_only=True
        torch.load(tmp_path / "ViT-L-14.pt", weights_only=True)
    with pytest.raises(ValueError, match=r"ViT-L-14.pt is a TorchScript archive.*load_openai_model.*torch.save"):
        make(str(tmp_path / "ViT-L-14.pt")).check_params()


@pytest.mark.parametrize("fault, message", [
    ({"weight": torch.zeros(1, 8)}, r"weight \(1, 8\) and bias \(1,\) do not fit the encoder's 16-d embedding"),
    ({"extra": torch.zeros(1)}, r"missing keys \[\], unexpected keys \['extra'\]"),
])
def test_bad_fc_files_are_named(clip_file, tmp_path, fault, message):
    fc = write_fc(tmp_path / "fc.pth", **fault)
    with pytest.raises(ValueError, match=message):
        make(clip_file, checkpoint=str(fc)).check_params()
    torch.save({"fc.weight": torch.zeros(1, 16), "fc.bias": torch.zeros(1)}, tmp_path / "prefixed.pth")
    with pytest.raises(ValueError, match=r"missing keys \['bias', 'weight'\], unexpected keys \['fc.bias', 'fc.weight'\]"):
        make(clip_file, checkpoint=str(tmp_path / "prefixed.pth")).check_params()
    with pytest.raises(ValueError, match="not found"):
        make(clip_file, checkpoint=str(tmp_path / "nowhere.pth")).check_params()


# -- accepted layouts -------------------------------------------------------------------------------
def test_wrapped_prefixed_and_safetensors_files_load_the_same_encoder(tmp_path):
    from safetensors.torch import save_file

    state = tiny_model().state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.bin")
    save_file(state, str(tmp_path / "open_clip_model.safetensors"))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = tiny_model().encode_image(reference_input(x, 32))
        for name in ("wrapped.bin", "open_clip_model.safetensors"):
            encoder = load_encoder(tmp_path / name, TINY_ARCH)
            torch.testing.assert_close(encoder.visual(clip_input(x, 32)), ref, rtol=0, atol=0)


def test_the_encoder_is_read_once_per_file_and_arch(clip_file):
    assert load_encoder(clip_file, TINY_ARCH) is load_encoder(clip_file, TINY_ARCH)
    det = make(clip_file)
    det.check_params()
    assert det.encoder() is load_encoder(clip_file, TINY_ARCH)


# -- preprocessing ----------------------------------------------------------------------------------
def test_pad_is_torchvisions_center_crop_of_a_smaller_image():
    from PIL import Image
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 256, (9, 9, 3), dtype=np.uint8)  # no zeros: the padding is the only black
    expected = T.Compose([T.CenterCrop(32), T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])(Image.fromarray(pixels))
    out = clip_input(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255, 32, "pad")[0]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    black = (torch.zeros(3) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    inside = ~torch.isclose(out, black[:, None, None]).all(0)
    rows, cols = inside.any(1).nonzero()[:, 0], inside.any(0).nonzero()[:, 0]
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (11, 19, 11, 19)  # 23 = 11 above + 12 below


def test_resize_fills_the_frame_and_larger_images_are_cropped():
    x = torch.rand(2, 3, 12, 12)
    out = clip_input(x, 32, "resize")
    assert out.shape == (2, 3, 32, 32)
    up = F.interpolate(x, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1)
    torch.testing.assert_close(out, reference_input(up, 32), rtol=0, atol=1e-6)
    big = torch.rand(1, 3, 41, 41)
    for small in ("pad", "resize"):  # a larger image is only cropped, whatever `small` says
        torch.testing.assert_close(clip_input(big, 32, small), reference_input(big, 32), rtol=0, atol=0)
    with pytest.raises(ValueError, match="small must be one of"):
        clip_input(x, 32, "stretch")


# -- the feature cache ------------------------------------------------------------------------------
def test_the_feature_cache_is_hit_and_changes_no_number(clip_file, tmp_path, monkeypatch):
    monkeypatch.setenv("STIGBENCH_CACHE", str(tmp_path / "cache"))
    x, _ = image_set(5, 6)
    det = make(clip_file, batch_size=4)
    calls = []
    encode = det.features
    monkeypatch.setattr(det, "features", lambda batch: calls.append(len(batch)) or encode(batch))
    first = det.extract(x)
    assert calls == [4, 4, 2] and len(list((tmp_path / "cache" / "univfd-features").glob("*.npy"))) == 1
    second = det.extract(x)
    assert calls == [4, 4, 2]  # the second extraction encodes nothing
    monkeypatch.setenv("STIGBENCH_CACHE", str(tmp_path / "fresh"))
    uncached = det.extract(x)
    assert calls == [4, 4, 2] * 2
    assert first.dtype == np.float64 and np.array_equal(second, first) and np.array_equal(uncached, first)
    other = make(clip_file, batch_size=4, small="resize").extract(image_set(5, 6, 24)[0])
    assert not np.array_equal(other, first)  # another preprocessing: another entry
    assert len(list((tmp_path / "fresh" / "univfd-features").glob("*.npy"))) == 2


def test_a_corrupt_cache_entry_is_recomputed(clip_file, tmp_path, monkeypatch):
    monkeypatch.setenv("STIGBENCH_CACHE", str(tmp_path))
    x, _ = image_set(3, 7)
    det = make(clip_file)
    first = det.extract(x)
    (entry,) = (tmp_path / clip_features.CACHE_FOLDER).glob("*.npy")
    entry.write_bytes(b"not an array")
    np.testing.assert_array_equal(det.extract(x), first)
    assert np.array_equal(np.load(entry, allow_pickle=False), first)


@pytest.mark.heavy
def test_univfd_trains_a_linear_probe_on_demo(tmp_path):
    """The issue's check: ``bench.py run --dataset demo --detectors univfd`` with the tiny random CLIP."""
    from click.testing import CliRunner

    from stigbench.cli import main

    params = tiny_clip_params()
    register_tiny_arch()
    args = ["run", "--dataset", "demo", "--refiner", "", "--detectors", "univfd", "--set",
            f"univfd.clip={params['clip']}", "--set", f"univfd.arch={params['arch']}", "--max-per-class", "80",
            "--no-quality", "--n-boot", "20", "--out", str(tmp_path), "--quiet"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run,) = tmp_path.glob("*/*")
    m = pd.read_csv(run / "metrics.csv", keep_default_na=False)
    rows = m[m.detector == "univfd"]
    assert set(rows.trained_on) == {"fake"} and "acc_authors" not in set(rows.metric)  # a probe the run trained
    auc = float(rows[(rows.metric == "auc") & (rows.condition == "fake")].value.iloc[0])
    assert 0.0 <= auc <= 1.0
    info = json.loads((run / "run.json").read_text())["detectors"]["univfd"]
    assert info["fit_info"]["clip"]["sha256"] == hashlib.sha256(Path(params["clip"]).read_bytes()).hexdigest()
