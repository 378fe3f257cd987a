"""Each run setting is declared once (:mod:`stigbench.core.config`, issue #23): the ``run`` and ``grid``
options, the result-free and legacy lists and the executors' path handling are read off the declaration,
and they are what was written out by hand before it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from stigbench.core.config import (
    Option,
    RunConfig,
    legacy_defaults,
    non_result_settings,
    path_settings,
    setting,
    settings,
)
from stigbench.core.settings import LEGACY_DEFAULTS, NON_RESULT_SETTINGS
from stigbench.evaluation.rows import CLEAN

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class WithKnobs(RunConfig):
    """The declaration with two settings more, as one edit of ``RunConfig`` would add them."""

    run_knob: int = setting(3, results=False, help="A knob of run alone.", option=Option())
    grid_knob: bool = setting(False, legacy=True, help="A knob of both.",
                              option=Option(grid=True, grid_note="Per cell."))


def test_result_free_and_legacy_settings_are_those_of_0_2_plus_attacks():
    # file_hashes records what the files were; their hashes are in the stage keys themselves
    assert NON_RESULT_SETTINGS == frozenset({"out", "progress", "cache", "cache_dir", "spec_dirs", "plugins", "name",
                                             "file_hashes"})
    assert dict(LEGACY_DEFAULTS) == {
        "fit_refiners_on": "train", "test_datasets": "", "attack_from": None,
        "layout": None, "root": None, "subset": None, "real_root": None,
        "attacks": "", "attack_reals": False,  # a run saved before --attack existed ran no gradient attack
    }


def test_path_settings_are_those_the_executors_listed_in_0_2():
    assert set(path_settings()) == {"real", "fake", "out", "fid_weights", "cache_dir", "root", "real_root",
                                    "spec_dirs", "plugins"}


def test_workers_get_every_path_setting_absolute(tmp_path, monkeypatch):
    from stigbench.pipeline.executors import worker_config

    monkeypatch.chdir(tmp_path)
    config = worker_config(RunConfig(real="r", out="o", spec_dirs=["s"], dataset="d"))
    assert (config.real, config.out, config.spec_dirs) == (str(tmp_path / "r"), str(tmp_path / "o"),
                                                           [str(tmp_path / "s")])
    assert (config.dataset, config.fake, config.progress) == ("d", None, False)


def test_the_perturb_default_is_the_clean_condition():
    assert RunConfig().perturb == CLEAN


def test_the_commands_offer_exactly_the_declared_options():
    """Unset by default, so that they do not override a --config file; grid's --out is its own."""
    from stigbench import cli  # here: the one-edit test imports this module before it builds the commands

    for command in (cli.run, cli.grid):
        declared = {name: s.option.flag_for(name) for name, s in settings().items()
                    if s.option is not None and command.name in s.option.commands()}
        offered = [p for p in command.params if p.name in settings() and (command.name, p.name) != ("grid", "out")]
        assert {p.name: p.opts[0] for p in offered} == declared
        assert [p.name for p in offered if p.default is not None] == []


def test_a_new_setting_is_one_edit():
    """A field added to the declaration shows in ``run --help`` and, if marked so, in ``grid --help``;
    and in the result-free and legacy lists when it says so."""
    assert "run_knob" in non_result_settings(WithKnobs) and "grid_knob" not in non_result_settings(WithKnobs)
    assert legacy_defaults(WithKnobs) == {**LEGACY_DEFAULTS, "grid_knob": True}
    # the real commands, built in a fresh interpreter whose RunConfig is WithKnobs
    script = (
        "import json, sys; sys.path.insert(0, 'tests')\n"
        "import stigbench.core.config as config; from test_run_settings import WithKnobs\n"
        "config.RunConfig = WithKnobs\n"
        "from click.testing import CliRunner; from stigbench.cli import main\n"
        "print(json.dumps({c: CliRunner().invoke(main, [c, '--help'], terminal_width=200).output"
        " for c in ('run', 'grid')}))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    helps = json.loads(done.stdout)
    assert "--run-knob INTEGER" in helps["run"] and "A knob of run alone." in helps["run"]
    assert "--run-knob" not in helps["grid"]
    assert "--grid-knob / --no-grid-knob" in helps["run"]
    assert "--grid-knob / --no-grid-knob" in helps["grid"] and "A knob of both. Per cell." in helps["grid"]
    assert "Per cell." not in helps["run"]
