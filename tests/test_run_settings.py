"""Each run setting is declared once: the lists that the stage cache, the grid and the comparison
report read are the ones written out by hand before the declaration carried them (issue #23)."""

from __future__ import annotations

from stigbench.core.settings import LEGACY_DEFAULTS, NON_RESULT_SETTINGS


def test_result_free_and_legacy_settings_are_those_of_0_2():
    assert NON_RESULT_SETTINGS == frozenset({"out", "progress", "cache", "cache_dir", "spec_dirs", "plugins", "name"})
    assert dict(LEGACY_DEFAULTS) == {
        "fit_refiners_on": "train", "test_datasets": "", "attack_from": None,
        "layout": None, "root": None, "subset": None, "real_root": None,
    }
