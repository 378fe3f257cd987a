"""The ``stigbench`` / ``bench.py`` command line: thin adapters over the library functions.

Options left unset (``None``) never override the defaults or a ``--config`` file, and every boolean
has an explicit ``--no-`` form, so ``--no-resize`` can turn off a ``resize: true`` from a config.
The options of ``run`` and ``grid`` that set a run setting are made from its declaration
(:mod:`stigbench.core.config`) by :func:`run_setting_options`.
"""

from __future__ import annotations

import json
import logging
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from stigbench.core.config import Option, RunConfig, Setting, settings
from stigbench.core.registry import RegistryError

_F = TypeVar("_F", bound=Callable[..., Any])


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(items: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``("stig.iterations=200", "durall.c=0.5")`` -> ``{"stig": {"iterations": 200}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, param = key.partition(".")
        if not sep or not dot or not name or not param:
            raise click.BadParameter(f"expected NAME.PARAM=VALUE, got {item!r}", param_hint="--set")
        out.setdefault(name, {})[param] = _parse_value(value)
    return out


def load_config_file(path: str) -> dict[str, Any]:
    """A run's ``config.json`` (``{"config": {...}}``) or a plain JSON object of config fields."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return data.get("config", data) if isinstance(data, dict) else {}


def _console_log() -> None:
    """Warnings and errors of the run on stderr; the full INFO log goes to the run's ``run.log``."""
    logger = logging.getLogger("stigbench")
    if not any(getattr(h, "_stigbench_console", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        handler._stigbench_console = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


class _Abort(click.ClickException):
    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stigbench")
def main() -> None:
    """stigbench: how robust are deepfake detectors against STIG spectral refinement?"""


def _build_config(config_path: str | None, overrides: tuple[str, ...], spec_dir: tuple[str, ...],
                  detector_plugin: tuple[str, ...], quiet: bool, options: dict[str, Any]) -> Any:
    """A :class:`RunConfig` from a saved config (if any) plus the options the user actually set."""
    from stigbench.core.plugins import load_plugin_file
    from stigbench.pipeline.components import params_field

    data = load_config_file(config_path) if config_path else {}
    data.update({k: v for k, v in options.items() if v is not None})
    if spec_dir:
        data["spec_dirs"] = [*data.get("spec_dirs", []), *spec_dir]
    if detector_plugin:
        data["plugins"] = [*data.get("plugins", []), *map(str, detector_plugin)]
    for plugin in data.get("plugins", []):
        load_plugin_file(plugin)
    for name, params in parse_overrides(overrides).items():
        field = params_field(name)
        if field is None:
            from stigbench.attacks.registry import attacks

            if name in attacks():  # an attack's parameters live in its --attack item, with its target
                example = ":".join(f"{k}={v}" for k, v in params.items())
                raise click.BadParameter(f"{name!r} is an attack: give its parameters in --attack "
                                         f"('{name}:{example}')", param_hint="--set")
            raise click.BadParameter(f"{name!r} is neither a refiner nor a detector", param_hint="--set")
        data.setdefault(field, {}).setdefault(name, {}).update(params)
    if quiet:
        data["progress"] = False
    try:
        return RunConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise _Abort(str(exc)) from exc


def _setting_option(name: str, setting: Setting, option: Option, annotation: Any,
                    command: str) -> Callable[[_F], _F]:
    """The click option of one setting: unset (``None``) unless given."""
    flag = option.flag_for(name)
    value_type = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)
    kind: Any
    if value_type is bool:
        flag, kind = f"{flag}/--no-{flag.removeprefix('--')}", None
    elif option.choices:
        kind = click.Choice(list(option.choices))
    elif setting.path:
        kind = click.Path(exists=option.exists, file_okay=setting.path == "file", dir_okay=setting.path == "dir")
    elif value_type in (int, str):
        kind = value_type
    else:
        raise TypeError(f"setting {name!r}: no command-line option for values of type {annotation!r}")
    note = option.grid_note if command == "grid" else ""
    return click.option(flag, *filter(None, [option.short]), name, type=kind, default=None,
                        metavar=option.metavar, help=" ".join(filter(None, [setting.help, note])) or None)


def run_setting_options(command: str, declaration: type[RunConfig] = RunConfig) -> Callable[[_F], _F]:
    """One option per setting of ``declaration`` that ``command`` (``run`` or ``grid``) offers, in
    declaration order (:mod:`stigbench.core.config`); the command receives them in ``**options``."""
    hints = typing.get_type_hints(declaration)
    options = [_setting_option(name, s, s.option, hints[name], command) for name, s in settings(declaration).items()
               if s.option is not None and command in s.option.commands()]

    def decorate(f: _F) -> _F:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


_USER_ERRORS = (RegistryError, ValueError, FileNotFoundError, TypeError)


def _ranked(body: Callable[[], Any], backend: str | None) -> Any:
    """``body()`` as this process's part of the job (:func:`stigbench.core.distributed.run_ranked`):
    its result, or ``None`` on a torchrun rank other than 0. User errors exit with status 2."""
    from stigbench.core.distributed import DistributedError, launched, run_ranked

    if backend is not None and not launched():
        click.echo("note: --dist-backend has no effect outside torchrun", err=True)
    try:
        return run_ranked(body, backend)
    except (*_USER_ERRORS, DistributedError) as exc:
        raise _Abort(str(exc)) from exc


@main.command()
@run_setting_options("run")
@click.option("--set", "overrides", multiple=True, metavar="NAME.PARAM=VALUE",
              help="Constructor parameter of a refiner or detector, e.g. --set stig.preset=paper (repeatable).")
@click.option("--spec-dir", multiple=True, type=click.Path(exists=True, file_okay=False), help="Extra folder of dataset specs.")
@click.option("--detector-plugin", multiple=True, type=click.Path(exists=True, dir_okay=False), help="A .py file registering a detector.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Start from a saved config.json.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--dist-backend", type=click.Choice(["auto", "gloo", "nccl"]), default=None,
              help="Under torchrun: the torch.distributed backend (auto: nccl with CUDA, else gloo).")
def run(config_path: str | None, overrides: tuple[str, ...], spec_dir: tuple[str, ...],
        detector_plugin: tuple[str, ...], quiet: bool, dist_backend: str | None, **options: Any) -> None:
    """Train refiners, refine the test fakes, score detectors before and after; write a run folder.

    Under `torchrun --nproc_per_node N`, STIG and the CNN detectors train on all N processes; rank 0
    does everything else and writes the run folder (docs/scaling-out.md).
    """
    from stigbench.pipeline.runner import run_benchmark

    config = _build_config(config_path, overrides, spec_dir, detector_plugin, quiet, options)
    _console_log()
    result = _ranked(lambda: run_benchmark(config), dist_backend)
    if result is None:  # a torchrun rank other than 0: it helped train and writes nothing
        return
    click.echo((result.run_dir / "summary.md").read_text(encoding="utf-8"))
    if result.errors:
        click.echo(f"{len(result.errors)} component(s) failed; see run.log", err=True)
    click.echo(f"Run folder: {result.run_dir}")


@main.command()
@click.option("--datasets", default=None, help="Comma-separated dataset names or patterns.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@run_setting_options("grid")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Grid folder; run the same command again to resume an interrupted grid.")
@click.option("--executor", type=click.Choice(["local", "ray", "slurm"]), default="local", show_default=True,
              help="Where the cells run: one after another here, as Ray tasks, or as a Slurm array job "
                   "(docs/scaling-out.md).")  # tests: = executors.EXECUTORS
@click.option("--ray-address", default=None, help="ray: join the cluster at HOST:PORT, ray://HOST:PORT or auto "
              "(default: start a local Ray for the grid).")
@click.option("--cpus-per-cell", type=float, default=None, help="ray, slurm: CPUs per cell (default 1).")
@click.option("--gpus-per-cell", type=float, default=None, help="ray, slurm: GPUs per cell (default 0).")
@click.option("--slurm-partition", default=None, help="slurm: the partition (default: the cluster's).")
@click.option("--slurm-time", type=int, default=None, metavar="MINUTES", help="slurm: time limit per cell (default 240).")
@click.option("--slurm-folder", type=click.Path(file_okay=False), default=None,
              help="slurm: folder for submitit's logs (default: OUT/submitit).")
@click.option("--slurm-cluster", type=click.Choice(["slurm", "local"]), default=None,
              help="slurm: 'local' runs the array job's cells as local processes (submitit's local executor).")
@click.option("--set", "overrides", multiple=True, metavar="NAME.PARAM=VALUE")
@click.option("--spec-dir", multiple=True, type=click.Path(exists=True, file_okay=False))
@click.option("--detector-plugin", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--quiet", is_flag=True)
def grid(datasets: str | None, seeds: str, out: str, config_path: str | None, overrides: tuple[str, ...],
         spec_dir: tuple[str, ...], detector_plugin: tuple[str, ...], quiet: bool, **options: Any) -> None:
    """Run every dataset x seed (resumable); then `bench.py report OUT` compares them."""
    from stigbench.data.specs import datasets as dataset_registry
    from stigbench.pipeline.executors import OPTIONS, ExecutorError, make_executor
    from stigbench.pipeline.grid import layout_cells, run_grid

    kind, executor_options = options.pop("executor"), {k: options.pop(k) for k in OPTIONS}
    base = _build_config(config_path, overrides, spec_dir, detector_plugin, quiet, options)
    _console_log()
    if not datasets and not base.layout:
        raise _Abort("grid needs --datasets or --layout")
    try:
        executor = make_executor(kind, **executor_options)
        names = dataset_registry(base.spec_dirs).resolve(datasets) if datasets else []
        cells = layout_cells(base, names)
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        result = run_grid(list(cells), seed_list, out, base, echo=click.echo, cells=cells, executor=executor)
    except (*_USER_ERRORS, ExecutorError) as exc:
        raise _Abort(str(exc)) from exc
    click.echo(f"grid {result.out}: {len(result.ran)} cell(s) run, {len(result.skipped)} reused"
               + (f", {len(result.failed)} failed" if result.failed else ""))
    if result.failed:
        raise click.ClickException("failed cell(s), recorded in grid.json (rerun to retry): "
                                   + "; ".join(f"{k}: {v}" for k, v in result.failed.items()))


@main.command()
@click.option("--checkpoint", required=True, type=click.Path(exists=True, file_okay=False),
              help="A saved refiner folder, e.g. reports/demo/<run>/refiners/stig.")
@click.option("--input", "input_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--output", "output_dir", required=True, type=click.Path(file_okay=False))
@click.option("--size", type=int, default=None, help="Default: the size the refiner was trained at.")
@click.option("--resize/--no-resize", default=False, help="Resize instead of centre-cropping.")
@click.option("--batch-size", type=int, default=16)
@click.option("--quiet", is_flag=True)
def refine(checkpoint: str, input_dir: str, output_dir: str, size: int | None, resize: bool, batch_size: int,
           quiet: bool) -> None:
    """Refine a folder of images with a saved refiner; writes PNGs, never overwrites."""
    from stigbench.pipeline.refine import refine_folder
    from stigbench.core.imageset import set_progress

    set_progress(not quiet)
    try:
        result = refine_folder(checkpoint, input_dir, output_dir, size, resize, batch_size, progress=not quiet)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise _Abort(str(exc)) from exc
    for s in result.skipped:
        click.echo(f"skipped {s.path}: {s.reason}", err=True)
    click.echo(f"refined {len(result.written)} image(s) at {result.size}x{result.size} into {output_dir}"
               + (f"; skipped {len(result.skipped)}" if result.skipped else ""))


@main.command()
@click.option("--detector", "detector_dir", required=True, metavar="FOLDER|NAME",
              help="A saved detector folder, e.g. reports/demo/<run>/detectors/durall; or a registered detector "
                   "with a released checkpoint: --detector wang2020 --set checkpoint=F --set backbone=resnet50.")
@click.option("--set", "overrides", multiple=True, metavar="PARAM=VALUE",
              help="With --detector NAME: its constructor parameters (repeatable).")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True), help="An image file or a folder.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the scores to this CSV (never overwritten) and skipped files to skipped.csv beside it.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv"]), default="markdown", show_default=True,
              help="How to print the scores when there is no --out.")
@click.option("--size", type=int, default=None, help="Default: the size the detector was trained at.")
@click.option("--resize/--no-resize", default=None, help="Resize instead of centre-cropping (default: as the run did).")
@click.option("--batch-size", type=int, default=None)
@click.option("--detector-plugin", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="The .py file registering a plug-in detector.")
@click.option("--quiet", is_flag=True)
def detect(detector_dir: str, overrides: tuple[str, ...], input_path: str, out: str | None, fmt: str,
           size: int | None, resize: bool | None, batch_size: int | None, detector_plugin: tuple[str, ...],
           quiet: bool) -> None:
    """Score images with a detector a run saved (P(fake) and a label at the run's threshold), or with a
    released checkpoint (a label at the authors' threshold)."""
    from stigbench.core.imageset import set_progress
    from stigbench.core.plugins import load_plugin_file
    from stigbench.pipeline.detect import check_out, score_images, score_released, write_result

    set_progress(not quiet)
    saved = Path(detector_dir).is_dir()
    if saved and overrides:
        raise click.BadParameter("a saved detector keeps the parameters it was fitted with; --set goes with "
                                 "--detector NAME", param_hint="--set")
    try:
        if out:
            check_out(out)
        for plugin in detector_plugin:
            load_plugin_file(plugin)
        if saved:
            result = score_images(detector_dir, input_path, size, resize, batch_size, progress=not quiet)
        else:
            params = parse_overrides(tuple(f"{detector_dir}.{o}" for o in overrides)).get(detector_dir, {})
            result = score_released(detector_dir, params, input_path, size, bool(resize), batch_size,
                                    progress=not quiet)
        written = write_result(result, out) if out else []
    except (FileNotFoundError, FileExistsError, ValueError, RegistryError) as exc:
        if not saved and isinstance(exc, RegistryError):
            raise _Abort(f"--detector {detector_dir}: neither a saved detector folder nor {exc}") from exc
        raise _Abort(str(exc)) from exc
    for s in result.skipped:
        click.echo(f"skipped {s.path}: {s.reason}", err=True)
    t = result.threshold
    if t.value is None:
        click.echo("no threshold recorded for this detector: P(fake) only, label unavailable", err=True)
    if result.settings.image_size and result.size != result.settings.image_size:
        click.echo(f"WARNING scored at {result.size}px; the detector was trained at {result.settings.image_size}px", err=True)
    if out:
        click.echo(f"scored {len(result.scores)} image(s) at {result.size}x{result.size} into {written[0]}"
                   + (f"; skipped {len(result.skipped)} (see {written[1]})" if result.skipped else ""))
    elif fmt == "csv":
        click.echo(result.scores.to_csv(index=False), nl=False)
    else:
        from stigbench.reporting.render.markdown import to_markdown

        click.echo(to_markdown(result.scores, floatfmt=".4f"))
    if t.value is not None and not quiet:
        click.echo(f"label: fake when {t.rule()} (chosen on {t.chosen_on}, from {t.source})", err=True)
    if "label_authors" in result.scores and not quiet:
        click.echo("label_authors: fake when P(fake) > the authors' own threshold (a released detector)", err=True)


@main.command("list")
@click.argument("kind", type=click.Choice(["detectors", "refiners", "attacks", "datasets", "perturbations"]))  # tests: = KINDS
@click.argument("pattern", required=False)
@click.option("--spec-dir", multiple=True, type=click.Path(exists=True, file_okay=False))
def list_(kind: str, pattern: str | None, spec_dir: tuple[str, ...]) -> None:
    """List registered detectors, refiners, datasets or perturbations (optionally filtered by an fnmatch PATTERN)."""
    import pandas as pd

    from stigbench.pipeline.components import list_components
    from stigbench.reporting.render.markdown import to_markdown

    rows = list_components(kind, pattern, spec_dir)
    if not rows:
        click.echo(f"no {kind} match {pattern!r}")
        return
    click.echo(to_markdown(pd.DataFrame(rows)))


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the comparison; never overwritten (-2, -3... if taken). "
                   "Default: reports/comparisons/<date>-<time>.")
def report(run_dirs: tuple[str, ...], out: str | None) -> None:
    """Compare runs: RUN_DIR is a run folder or a parent of run folders (every run under it).

    Writes a robustness leaderboard over the datasets, heat maps (detectors x datasets), long
    detection and quality tables, a paper table (CSV, Markdown, LaTeX, PNG) and one self-contained
    comparison.html; runs of a dataset with different settings are kept apart and flagged, and a
    folder that cannot be compared is named with the reason.
    """
    from stigbench.reporting.compare.comparison import compare_runs

    try:
        result = compare_runs([Path(p) for p in run_dirs], Path(out) if out else None)
    except (ValueError, FileNotFoundError) as exc:
        raise _Abort(str(exc)) from exc
    for warning in result.warnings:
        click.echo(f"{'NOT COMPARED' if warning in result.skipped else 'WARNING'} {warning}", err=True)
    click.echo((result.out_dir / "comparison.md").read_text(encoding="utf-8"))
    click.echo(f"Comparison folder: {result.out_dir}")


if __name__ == "__main__":  # torchrun ... -m stigbench.cli run ...
    main()
