from __future__ import annotations

import pytest

from stigbench.core.registry import Registry, RegistryError


class Good:
    def fit(self): ...
    def score(self): ...


class Bad:
    def fit(self): ...


def make() -> Registry:
    return Registry("widget", required_methods=("fit", "score"))


def test_register_get_and_meta():
    reg = make()

    @reg.register("alpha", meta={"paper": "x"})
    class Alpha(Good):
        pass

    assert reg.get("alpha") is Alpha
    assert reg.meta("alpha") == {"paper": "x"}
    assert "alpha" in reg and len(reg) == 1
    assert reg.get_entry("alpha").source.endswith("Alpha")


def test_duplicate_name_raises():
    reg = make()
    reg.add("alpha", Good)
    with pytest.raises(RegistryError, match="already registered"):
        reg.add("alpha", Good)


def test_protocol_is_checked_at_registration():
    reg = make()
    with pytest.raises(TypeError, match="missing score"):
        reg.add("bad", Bad)


def test_unknown_name_suggests_close_matches():
    reg = make()
    for n in ("durall", "dzanic", "peaks"):
        reg.add(n, Good)
    with pytest.raises(RegistryError) as err:
        reg.get("dural")
    assert "did you mean 'durall'" in str(err.value)
    assert isinstance(err.value, KeyError)


def test_list_and_resolve_patterns_keep_order():
    reg = make()
    for n in ("durall", "durall-svm", "dzanic", "peaks"):
        reg.add(n, Good)
    assert reg.list("d*") == ["durall", "durall-svm", "dzanic"]
    assert reg.resolve("peaks, durall*") == ["peaks", "durall", "durall-svm"]
    assert reg.resolve(["dzanic", "dzanic"]) == ["dzanic"]
    with pytest.raises(RegistryError, match="matches no widget"):
        reg.resolve("x*")
    with pytest.raises(RegistryError, match="unknown widget"):
        reg.resolve("peaks,nope")


def test_invalid_names_rejected():
    reg = make()
    for bad in ("", "a,b", "a*", "a b"):
        with pytest.raises(ValueError):
            reg.add(bad, Good)


def test_lazy_entry_is_imported_and_checked_on_get():
    reg = Registry("thing", required_methods=("loads",))
    reg.add("json", "json:JSONDecoder")  # no 'loads' method -> rejected when loaded
    with pytest.raises(TypeError):
        reg.get("json")
    reg3 = Registry("function")
    reg3.add("dumps", "json:dumps")
    import json

    assert reg3.get("dumps") is json.dumps


def test_builtin_registries_and_plugin_decorators_from_package():
    import stigbench
    from stigbench.detection.registry import detectors
    from stigbench.attacks.registry import refiners

    assert "durall" in detectors()
    assert "spectral-match" in refiners()
    assert callable(stigbench.register_detector) and callable(stigbench.register_refiner)
    meta = detectors().meta("durall")
    assert meta.family == "frequency" and "Durall" in meta.paper


def test_plugin_file_registration(tmp_path):
    from stigbench.detection.registry import DETECTORS
    from stigbench.core.plugins import load_plugin_file

    code = '''
from stigbench import FeatureDetector, register_detector
from sklearn.linear_model import LogisticRegression

@register_detector("mean-brightness-test", family="other", domain="rgb", paper="none (test)", default=False)
class MeanBrightness(FeatureDetector):
    def __init__(self, seed: int = 0):
        self.seed = seed
    def features(self, images):
        return images.mean(dim=(1, 2, 3), keepdim=False).reshape(-1, 1).numpy()
    def make_estimator(self):
        return LogisticRegression(random_state=self.seed)
'''
    path = tmp_path / "my_det.py"
    path.write_text(code)
    try:
        name = load_plugin_file(path)
        assert "mean-brightness-test" in DETECTORS
        assert load_plugin_file(path) == name  # importing twice does not re-register
    finally:
        if "mean-brightness-test" in DETECTORS:
            DETECTORS.remove("mean-brightness-test")
