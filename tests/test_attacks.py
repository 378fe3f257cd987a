from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stigbench.core.imageset import ArrayImageSet
from stigbench.attacks.perturbations import Blur, Jpeg, Resize
from stigbench.attacks.registry import refiners
from stigbench.attacks.postprocess import BlurAttack, JpegAttack, PerturbationAttack, ResampleAttack
from stigbench.pipeline.refiner_specs import (
    RefinerSpec,
    refiner_display_name,
    resolve_refiner_spec,
    resolve_refiner_specs,
)
from stigbench.core.registry import RegistryError
from test_perturbations import psnr, smooth_images

FAKES = ArrayImageSet.from_float(smooth_images(4, seed=1))
REALS = ArrayImageSet.from_float(smooth_images(3, seed=2))
# Every registered post-processing attack (a PerturbationAttack), from the registry.
ATTACKS = [n for n in refiners().list() if issubclass(refiners().get(n), PerturbationAttack)]


def test_builtin_attacks_and_their_perturbations():
    assert {"blur", "jpeg", "resample"} <= set(ATTACKS)
    defaults = {"blur": Blur(1.0), "jpeg": Jpeg(75), "resample": Resize(0.5)}
    assert {n: refiners().get(n)().perturbation() for n in defaults} == defaults
    assert (refiners().get("blur"), refiners().get("jpeg"), refiners().get("resample")) == (BlurAttack, JpegAttack,
                                                                                            ResampleAttack)


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_contract(name: str, tmp_path):
    cls = refiners().get(name)
    meta = refiners().meta(name)
    assert meta.kind == "training-free" and meta.paper and not meta.stochastic
    ref = cls(batch_size=3)
    with pytest.raises(RuntimeError, match="not fitted"):
        ref.refine(FAKES)
    assert ref.fit(FAKES, REALS) is ref and ref.image_size_ == FAKES.size
    out = ref.refine(FAKES)
    assert isinstance(out, ArrayImageSet) and len(out) == len(FAKES) and out.size == FAKES.size
    value = psnr(torch.from_numpy(FAKES.to_array() / 255.0), torch.from_numpy(out.to_array() / 255.0))
    assert 20.0 < value < 60.0, value  # changes the images, yet keeps them close
    # the very operation of the perturbation with the default parameter (--perturb gives the same)
    assert np.array_equal(out.to_array(), cls().perturbation().apply(FAKES).to_array())
    ref.save(tmp_path / name)
    assert json.loads((tmp_path / name / "params.json").read_text())["params"] == ref.get_params()
    back = cls.load(tmp_path / name)
    assert back.get_params() == ref.get_params() and back.image_size_ == ref.image_size_
    assert np.array_equal(back.refine(FAKES, store=tmp_path / "r.npy").to_array(), out.to_array())


def test_parameter_is_used_and_validated_at_fit():
    a, b = BlurAttack(sigma=0.5).fit(FAKES, REALS), BlurAttack(sigma=2).fit(FAKES, REALS)
    sharp = psnr(FAKES[0][None], a.refine_batch(FAKES[0][None]))
    blurred = psnr(FAKES[0][None], b.refine_batch(FAKES[0][None]))
    assert sharp > blurred
    with pytest.raises(ValueError, match="quality"):
        JpegAttack(quality=0).fit(FAKES, REALS)
    with pytest.raises(ValueError, match="factor"):
        ResampleAttack(factor=2.0).fit(FAKES, REALS)


def test_resolve_refiner_spec():
    assert resolve_refiner_spec("blur:2") == ("blur", {"sigma": 2.0})
    assert resolve_refiner_spec(" jpeg:75 ") == ("jpeg", {"quality": 75})
    assert resolve_refiner_spec("resample:0.25") == ("resample", {"factor": 0.25})
    assert resolve_refiner_spec("stig") == ("stig", {})
    assert isinstance(resolve_refiner_spec("jpeg:75.0")[1]["quality"], int)
    assert refiner_display_name("blur", {"sigma": 2.0}) == "blur:2"
    assert refiner_display_name("spectral-match", {}) == "spectral-match"
    assert resolve_refiner_specs("stig,spectral-*,blur:2.0,jpeg:75,blur:2,resample:*") == [
        RefinerSpec("stig", "stig", {}), RefinerSpec("spectral-match", "spectral-match", {}),
        RefinerSpec("blur:2", "blur", {"sigma": 2.0}), RefinerSpec("jpeg:75", "jpeg", {"quality": 75}),
        RefinerSpec("resample:0.5", "resample", {"factor": 0.5}),
        RefinerSpec("resample:0.25", "resample", {"factor": 0.25}),
    ]


@pytest.mark.parametrize("item, error, match", [
    ("blurr:2", RegistryError, "did you mean 'blur'"),
    ("jpg", KeyError, "did you mean 'jpeg'"),
    ("stig:2", ValueError, "takes no ':' parameter"),
    ("blur:", ValueError, "expected 'blur:<sigma>'"),
    ("blur:2:3", ValueError, "expected"),
    ("blur:abc", ValueError, "not a number"),
    ("blur:-1", ValueError, "sigma"),
    ("jpeg:7.5", ValueError, "integer"),
    ("jpeg:101", ValueError, "1..100"),
    ("resample:1", ValueError, "factor"),
    (":2", ValueError, "no name"),
    ("blur:*", ValueError, "no patterns"),
    ("blur:2,jpeg:75", ValueError, "one refiner"),
])
def test_resolve_refiner_spec_rejects(item: str, error: type, match: str):
    with pytest.raises(error, match=match):
        resolve_refiner_spec(item)


def test_resolve_refiner_specs_rejects():
    with pytest.raises(RegistryError, match="matches no refiner"):
        resolve_refiner_specs("nothing-*")
    with pytest.raises(ValueError, match="takes no ':' parameter"):
        resolve_refiner_specs("stig:*")
