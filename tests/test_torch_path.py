"""The torch path of the detectors (:class:`~stigbench.core.contracts.DifferentiableDetector`, issue #24):
``sigmoid(logits(x))`` is ``score`` on the same images for every built-in detector (the oracle), the
gradients reach the images without changing the fitted detector, and the scikit-learn → torch
conversions of :mod:`stigbench.detection.torch_path` reproduce ``predict_proba``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm must never reach the network from a test

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.fft
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC

from conftest import pink_noise, upsampled_noise
from test_univfd import HAS_OPEN_CLIP, tiny_clip_params
from stigbench.core.contracts import FAKE, torch_path_unavailable
from stigbench.core.imageset import ArrayImageSet, labelled
from stigbench.core.plugins import load_plugin_file
from stigbench.detection.cnn import CNNDetector
from stigbench.detection.registry import detectors
from stigbench.detection.torch_path import estimator_logits, unsupported
from stigbench.pipeline.plan import construct

TEMPLATE = Path(__file__).parent / "plugin_template" / "my_detector.py"
load_plugin_file(TEMPLATE)
# The built-ins and the template plug-in (other test modules register throwaway detectors of their own).
NAMES = [n for n in detectors().list()
         if (detectors().get(n).__module__.startswith("stigbench.detectors.") or n == "my-bands")
         and (HAS_OPEN_CLIP or n != "univfd")]
# The only configurations without a torch path, and a phrase their reason must contain.
NO_TORCH_PATH = {"my-bands": "no torch_features()"}
TOLERANCE = 1e-5  # |sigmoid(logits) - score|, the contract's
SIZE = 32
# One short epoch: the oracle compares two views of the same fitted model, whatever it learned.
CNN_SETTINGS = {"epochs": 1, "batch_size": 16}
SETTINGS: dict[str, dict] = {"wang2020": {"pretrained": "none"}, "vit-spectrum": {"depth": 1}}
if HAS_OPEN_CLIP:
    SETTINGS["univfd"] = tiny_clip_params()  # a tiny random CLIP: univfd has no default encoder file

pytestmark = pytest.mark.usefixtures("one_thread")


def params(name: str) -> dict:
    cnn = issubclass(detectors().get(name), CNNDetector)
    return {**(CNN_SETTINGS if cnn else {}), **SETTINGS.get(name, {})}


def image_sets(n: int, seed: int) -> tuple[Any, np.ndarray]:
    rng = np.random.default_rng(seed)
    to8 = lambda imgs: (np.stack(imgs).transpose(0, 3, 1, 2) * 255).round().astype(np.uint8)  # noqa: E731
    return labelled(ArrayImageSet(to8([pink_noise(rng, SIZE) for _ in range(n)])),
                    ArrayImageSet(to8([upsampled_noise(rng, SIZE) for _ in range(n)])))


def as_batch(image_set: Any) -> torch.Tensor:
    return torch.cat(list(image_set.batches(len(image_set))))


@pytest.fixture(scope="module")
def data():
    return {"train": image_sets(24, 0), "test": image_sets(6, 1)}


@pytest.fixture(scope="module")
def fitted(data):
    """Each detector fitted once (lazily), shared by the tests of this module."""
    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            det = construct(detectors().get(name), params(name), seed=0, device="cpu")
            cache[name] = det.fit(*data["train"])
        return cache[name]

    return get


def fitted_state(det: Any) -> Any:
    """A deep copy of what fitting made: the network's ``state_dict`` and mode, or every array and value
    inside the scikit-learn estimator."""
    if isinstance(det, CNNDetector):
        return {k: v.detach().clone().numpy() for k, v in det.model_.state_dict().items()}, det.model_.training
    return _sklearn_state(det.estimator_)


def _sklearn_state(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, (list, tuple)):
        return [_sklearn_state(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _sklearn_state(v) for k, v in obj.items()}
    if type(obj).__module__.startswith("sklearn."):
        return {k: _sklearn_state(v) for k, v in vars(obj).items()}
    return obj


# -- every built-in detector ------------------------------------------------------------------------------
def test_every_default_detector_has_a_torch_path():
    defaults = [n for n in detectors().list() if detectors().meta(n).default]
    assert {"durall", "durall-svm", "dzanic", "frank-dct", "peaks", "spectrum-cnn"} <= set(defaults)
    for name in defaults:
        assert torch_path_unavailable(detectors().get(name)()) is None, name


@pytest.mark.parametrize("name", NAMES)
def test_sigmoid_of_logits_is_the_score(name, fitted, data):
    det = fitted(name)
    reason = torch_path_unavailable(det)
    if name in NO_TORCH_PATH:
        assert isinstance(reason, str) and NO_TORCH_PATH[name] in reason
        return
    assert reason is None, reason
    test_set, _ = data["test"]
    logits = det.logits(as_batch(test_set))
    assert logits.shape == (len(test_set),) and logits.dtype in (torch.float32, torch.float64)
    diff = np.abs(torch.sigmoid(logits.detach().double()).numpy() - det.score(test_set))
    assert diff.max() <= TOLERANCE, f"{name}: max |sigmoid(logits) - score| = {diff.max():.3g}"


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NO_TORCH_PATH])
def test_gradients_reach_the_images_and_leave_the_detector_as_it_was(name, fitted, data):
    det = fitted(name)
    before = fitted_state(det)
    images = as_batch(data["test"][0]).requires_grad_()
    det.logits(images).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0
    np.testing.assert_equal(fitted_state(det), before)


def test_cnn_logits_run_in_eval_mode_and_restore_training_mode(fitted, data):
    det = fitted("npr")  # BatchNorm: training mode would use and update batch statistics
    images = as_batch(data["test"][0])
    expected = det.logits(images).detach()
    det.model_.train()
    try:
        before = fitted_state(det)
        logits = det.logits(images.clone().requires_grad_())
        logits.sum().backward()
        assert det.model_.training
        np.testing.assert_equal(fitted_state(det), before)
        torch.testing.assert_close(logits.detach(), expected, rtol=0, atol=0)
    finally:
        det.model_.eval()


def test_knn_dzanic_has_no_torch_path_before_fitting(data):
    det = detectors().get("dzanic")(classifier="knn")
    assert torch_path_unavailable(det) == "a k-NN classifier has no gradient (its P(fake) is a vote count)"
    det.fit(*data["train"])
    with pytest.raises(ValueError, match="k-NN"):
        det.logits(as_batch(data["test"][0]))


# -- the torch twins of the features ----------------------------------------------------------------------
def test_dct_matrix_is_scipys_orthonormal_dct():
    from stigbench.detectors.frank_dct import dct_matrix

    x = np.random.default_rng(0).standard_normal((12, 5))
    c = dct_matrix(12)
    np.testing.assert_allclose((c @ torch.from_numpy(x)).numpy(), scipy.fft.dct(x, type=2, norm="ortho", axis=0),
                               rtol=0, atol=1e-13)
    torch.testing.assert_close(c @ c.T, torch.eye(12, dtype=torch.float64))


@pytest.mark.parametrize("params", [{}, {"channels": "rgb", "max_side": 16}])
def test_frank_dct_torch_features_round_like_its_features(params):
    det = detectors().get("frank-dct")(**params)
    images = as_batch(image_sets(3, 2)[0])
    expected = det.features(images)
    got = det.torch_features(images)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    # The same float32 numbers but where a float64 rounding difference of the DCT crosses a float32
    # rounding boundary: one float32 step (< 1e-6 at |x| < 16) on a few coefficients.
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)
    assert (got.numpy() != expected).mean() < 1e-3


# -- scikit-learn -> torch --------------------------------------------------------------------------------
def _random_problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(80, 6)) * rng.uniform(0.5, 3.0, size=6) + rng.normal(size=6)
    y = (x[:, 0] - x[:, 1] + rng.normal(size=80) > 0).astype(np.int64)
    return x, y, rng.normal(size=(40, 6)) * 2.0


@pytest.mark.parametrize("classes", [(0, 1), (1, 2)], ids=["fake-second", "fake-first"])
@pytest.mark.parametrize("kind", ["logistic", "calibrated-svc"])
def test_conversions_reproduce_predict_proba(kind, classes):
    x, y, x_test = _random_problem()
    final = LogisticRegression() if kind == "logistic" else CalibratedClassifierCV(SVC(), method="sigmoid",
                                                                                   ensemble=False)
    estimator = make_pipeline(StandardScaler(), final).fit(x, np.asarray(classes)[y])
    assert unsupported(estimator) is None
    expected = estimator.predict_proba(x_test)[:, list(estimator.classes_).index(FAKE)]
    features = torch.from_numpy(x_test).requires_grad_()
    logits = estimator_logits(estimator, features)
    assert logits.dtype == torch.float64
    np.testing.assert_allclose(torch.sigmoid(logits).detach().numpy(), expected, rtol=0, atol=1e-8)
    logits.sum().backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0


def test_calibrated_svc_decision_is_scikit_learns():
    from stigbench.detection.torch_path import rbf_decision

    x, y, x_test = _random_problem(1)
    svm = SVC(gamma="scale").fit(x, y)
    np.testing.assert_allclose(rbf_decision(svm, torch.from_numpy(x_test)).numpy(), svm.decision_function(x_test),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("estimator, phrase", [
    (make_pipeline(StandardScaler(), KNeighborsClassifier()), "k-NN"),
    (make_pipeline(MinMaxScaler(), LogisticRegression()), "MinMaxScaler"),
    (CalibratedClassifierCV(SVC(), method="isotonic", ensemble=False), "isotonic"),
    (CalibratedClassifierCV(SVC(), method="sigmoid"), "ensemble"),
    (CalibratedClassifierCV(SVC(kernel="linear"), method="sigmoid", ensemble=False), "RBF"),
    (SVC(), "SVC"),
], ids=["knn", "minmax", "isotonic", "ensemble", "linear-svc", "bare-svc"])
def test_other_estimators_have_no_torch_path(estimator, phrase):
    reason = unsupported(estimator)
    assert reason is not None and phrase in reason
    x, y, x_test = _random_problem()
    with pytest.raises(ValueError, match="no torch path"):
        estimator_logits(estimator.fit(x, y), torch.from_numpy(x_test))


def test_cnn_logits_follow_the_precision_the_detector_scores_in(data):
    """A run's ``precision=auto`` is bf16 on a CPU with AMX: the torch path computes as ``score`` does, so the
    white-box attacker attacks the deployed model and the oracle holds there too."""
    det = construct(detectors().get("spectrum-cnn"), {**CNN_SETTINGS, "precision": "bf16"}, seed=0, device="cpu")
    det.fit(*data["train"])
    test = data["test"][0]
    got = torch.sigmoid(det.logits(as_batch(test))).detach().double().numpy()
    assert np.abs(got - det.score(test)).max() <= TOLERANCE
