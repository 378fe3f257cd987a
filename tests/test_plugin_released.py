"""The plug-in path of a user's own released model (``tests/plugin_template/my_released_detector.py``):
a run scores it from a weights file without training it, ``bench.py detect`` scores a folder with it,
and a bad file fails in the plan. The weights are random, written here; the reference forward is
written here too, from the state dict alone, so the plug-in's network and preprocessing are checked."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from stigbench.cli import main
from stigbench.core.contracts import released_label
from stigbench.core.imageset import ArrayImageSet
from stigbench.core.plugins import load_plugin_file
from stigbench.detection.registry import detectors
from stigbench.detection.released import file_fingerprint

PLUGIN = Path(__file__).parent / "plugin_template" / "my_released_detector.py"
SHAPES = {"0": (16, 3), "2": (32, 16), "4": (32, 32)}  # the three convolutions: (out, in) channels, 3×3


def random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, (out, inp) in SHAPES.items():
        state[f"{i}.weight"] = torch.randn(out, inp, 3, 3, generator=g) * (2.0 / (9 * inp)) ** 0.5
        state[f"{i}.bias"] = torch.randn(out, generator=g) * 0.1
    state["8.weight"] = torch.randn(1, 32, generator=g) * 0.5
    state["8.bias"] = torch.tensor([-0.6])  # P(fake) about 0.5 on the tiny set: both labels occur
    return state


def reference_p_fake(state: dict[str, torch.Tensor], images: torch.Tensor) -> np.ndarray:
    """P(fake) of images ``(N, 3, H, W)`` in [0, 1]: the plug-in's network, written out."""
    x = images.double() * 2 - 1
    for i in SHAPES:
        x = F.relu(F.conv2d(x, state[f"{i}.weight"].double(), state[f"{i}.bias"].double(), stride=2, padding=1))
    logit = x.mean(dim=(2, 3)) @ state["8.weight"].double().T + state["8.bias"].double()
    return torch.sigmoid(logit.reshape(-1)).numpy()


def read_png(path: str | Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = random_state()
    path = tmp_path_factory.mktemp("weights") / "weights.pt"
    torch.save(state, path)
    return path, state


def run_args(tiny_dataset: Path, out: Path, checkpoint: Path | str) -> list[str]:
    return ["run", "--detector-plugin", str(PLUGIN), "--real", str(tiny_dataset / "real"), "--fake",
            str(tiny_dataset / "fake"), "--refiner", "", "--detectors", "my-released,durall", "--set",
            f"my-released.checkpoint={checkpoint}", "--precision", "fp32", "--no-quality", "--n-boot", "10",
            "--out", str(out), "--quiet"]


@pytest.mark.heavy
def test_a_run_scores_the_plugin_from_its_file(weights, tiny_dataset, tmp_path):
    path, state = weights
    result = CliRunner().invoke(main, run_args(tiny_dataset, tmp_path, path), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = next(tmp_path.glob("*/*"))
    mark = released_label(file_fingerprint(path)["sha256"])
    m = pd.read_csv(run / "metrics.csv", keep_default_na=False)
    rows = m[m.detector == "my-released"]
    assert len(rows) and set(rows.trained_on) == {mark}
    assert {"acc_authors", "acc_real_authors", "acc_fake_authors"} <= set(rows.metric)
    scores = pd.read_csv(run / "scores.csv", keep_default_na=False)
    mine = scores[scores.detector == "my-released"]
    assert len(mine) and set(mine.trained_on) == {mark}
    images = torch.stack([read_png(p) for p in mine.path])
    np.testing.assert_allclose(mine.score, reference_p_fake(state, images), atol=1e-5)


def test_detect_scores_a_folder_with_the_plugin(weights, tiny_dataset):
    path, state = weights
    fakes = tiny_dataset / "fake"
    result = CliRunner().invoke(main, ["detect", "--detector-plugin", str(PLUGIN), "--detector", "my-released",
                                       "--set", f"checkpoint={path}", "--input", str(fakes), "--format", "csv",
                                       "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.output))
    assert len(table) == len(list(fakes.glob("*.png")))
    expected = reference_p_fake(state, torch.stack([read_png(p) for p in table.file]))
    np.testing.assert_allclose(table.p_fake, expected, atol=1e-5)
    assert (table.label == np.where(table.p_fake > 0.5, "fake", "real")).all()  # the authors' threshold
    assert set(table.label) == {"fake", "real"}


@pytest.mark.parametrize("what", ["missing key", "missing file"])
def test_a_bad_file_fails_in_the_plan(weights, tiny_dataset, tmp_path, what):
    checkpoint = tmp_path / "cut.pt"
    if what == "missing key":
        torch.save({k: v for k, v in weights[1].items() if k != "4.bias"}, checkpoint)
    result = CliRunner().invoke(main, run_args(tiny_dataset, tmp_path / "out", checkpoint))
    assert result.exit_code != 0
    named = "1 missing keys ['4.bias']" if what == "missing key" else "checkpoint not found"
    assert "detector 'my-released'" in result.output and named in result.output, result.output
    assert str(checkpoint) in result.output.replace("\n", "")
    assert not list((tmp_path / "out").glob("*/*/scores.csv"))  # failed before scoring anything


def test_without_a_checkpoint_it_trains_the_same_network(tmp_path):
    load_plugin_file(PLUGIN)
    det = detectors().get("my-released")(epochs=1, batch_size=4, device="cpu")
    assert det.released_checkpoint() is None
    images = ArrayImageSet(np.random.default_rng(0).integers(0, 256, (8, 3, 16, 16), dtype=np.uint8))
    det.fit(images, np.array([0, 1] * 4))
    assert det.fit_info_["epochs_run"] == 1 and set(det.model_.state_dict()) == set(random_state())
    det.save(tmp_path / "saved")
    np.testing.assert_allclose(type(det).load(tmp_path / "saved").score(images), det.score(images), atol=1e-6)
