"""Where a grid's cells run: in this process, as Ray tasks, or as one Slurm array job (submitit).

stigbench schedules nothing itself. An executor hands each cell (its name and its :class:`RunConfig`)
to an existing engine, each worker calls :func:`~stigbench.pipeline.runner.run_benchmark` and sends
back a small :class:`CellOutcome` (the run folder relative to the grid folder, the failed components,
or the cell's error); the grid process alone records outcomes in ``grid.json``, as cells finish. The
configuration and the outcome are pickled by Ray or submitit only to travel between stigbench's own
processes; results are written by the workers into the grid folder in the usual formats, so every
executor needs the grid folder (and the stage cache, for resuming) on a file system its workers share.

* ``local`` (:class:`LocalExecutor`): the cells one after another in this process; needs nothing else.
* ``ray`` (:class:`RayExecutor`): one Ray task per cell with its CPU/GPU request, on the cluster at
  ``address`` or on a Ray started here for the grid (and stopped after it).
* ``slurm`` (:class:`SlurmExecutor`): one array job submitted with submitit (partition, time limit,
  CPUs and GPUs per cell); ``cluster="local"`` runs the same job as local processes (submitit's
  local executor), to try a grid's Slurm path on one machine.

A cell that raises, or whose worker process dies (killed, out of memory, pre-empted), comes back as
a failed outcome with its reason; the other cells go on, and the next run of the grid retries it,
resuming from the stage cache whatever the failed attempt had completed.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from stigbench.core.config import RunConfig, path_settings
from stigbench.pipeline.plan import absolute_detector_files, absolute_path
from stigbench.pipeline.runner import RunResult, run_benchmark

EXECUTORS = ("local", "ray", "slurm")
#: Options of :func:`make_executor` (named as the CLI flags) and the executors they apply to.
OPTIONS: dict[str, tuple[str, ...]] = {
    "ray_address": ("ray",), "cpus_per_cell": ("ray", "slurm"), "gpus_per_cell": ("ray", "slurm"),
    "slurm_partition": ("slurm",), "slurm_time": ("slurm",), "slurm_folder": ("slurm",), "slurm_cluster": ("slurm",),
}


class ExecutorError(RuntimeError):
    """An executor that cannot run here: its package is missing or its cluster cannot be reached."""


@dataclass(frozen=True)
class Cell:
    """One grid cell as it travels to a worker: its name, its complete configuration and, for a
    worker given a number of CPUs, the torch threads to use (``None``: leave torch's default)."""

    name: str
    config: RunConfig
    threads: int | None = None


@dataclass(frozen=True)
class CellOutcome:
    """What a worker sends back. ``error`` set: the cell failed (``"Type: message"``); otherwise
    ``run_dir`` is its run folder relative to the grid folder and ``errors`` its failed components."""

    name: str
    run_dir: str | None = None
    errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None


#: ``echo(cell, status)``: an executor reports a cell started or submitted.
Echo = Callable[[Cell, str], None]


def run_cell(cell: Cell, run: Callable[[RunConfig], RunResult] = run_benchmark) -> CellOutcome:
    """Run one cell in this process and summarise it; an exception becomes the outcome's ``error``
    (formatted here, since an exception object need not survive pickling). Ctrl-C still stops it."""
    if cell.threads:
        import torch

        torch.set_num_threads(cell.threads)
    try:
        result = run(cell.config)
    except Exception as exc:
        return CellOutcome(cell.name, error=f"{type(exc).__name__}: {exc}")
    rel = result.run_dir.resolve().relative_to(Path(cell.config.out).resolve())
    return CellOutcome(cell.name, run_dir=str(rel), errors=dict(result.errors))


class Executor(Protocol):
    """Runs grid cells. ``check`` fails fast (before the grid writes anything) when the executor cannot
    run here; ``map`` runs the cells and yields each outcome as its cell finishes, in any order."""

    name: str

    def check(self) -> None: ...

    def map(self, cells: Sequence[Cell], echo: Echo) -> Iterator[CellOutcome]: ...


class LocalExecutor:
    """The cells one after another in this process (the default)."""

    name = "local"

    def __init__(self, run: Callable[[RunConfig], RunResult] = run_benchmark) -> None:
        self.run = run

    def check(self) -> None:
        pass

    def map(self, cells: Sequence[Cell], echo: Echo) -> Iterator[CellOutcome]:
        for cell in cells:
            echo(cell, "running")
            yield run_cell(cell, self.run)


def worker_config(config: RunConfig) -> RunConfig:
    """``config`` as sent to another process: paths absolute (the path settings and the files detector
    parameters name: a worker's working folder may be another one) and no progress bars (those of many workers would interleave in one log)."""
    changes: dict[str, Any] = {}
    for name in path_settings(type(config)):
        value = getattr(config, name)
        if isinstance(value, list):
            changes[name] = [absolute_path(p) for p in value]
        elif value:
            changes[name] = absolute_path(value)
    # Files named by detector parameters (released checkpoints, weights) too.
    changes["detector_params"] = absolute_detector_files(config.detector_params)
    return dataclasses.replace(config, **changes, progress=False)


def _for_workers(cells: Sequence[Cell], cpus_per_cell: float) -> list[Cell]:
    """``cells`` as sent to workers: :func:`worker_config`, and torch threads pinned to the CPUs each
    cell requested (torch would otherwise start one thread per core of the whole node)."""
    threads = max(1, math.ceil(cpus_per_cell)) if cpus_per_cell else None
    return [dataclasses.replace(c, config=worker_config(c.config), threads=threads) for c in cells]


def _require(module: str, extra: str, executor: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExecutorError(f"--executor {executor} needs {module}, which is not installed ({exc}); "
                            f"install it with: pip install 'stigbench[{extra}]'") from exc


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


class RayExecutor:
    """One Ray task per cell, requesting ``cpus_per_cell`` CPUs and ``gpus_per_cell`` GPUs.

    A Ray already initialised in this process (by the caller's ``ray.init``) is used as it is; otherwise
    ``address`` joins a running cluster (``host:port``, ``ray://host:port`` or ``auto``), and without
    it a local Ray is started for the grid and stopped after it. The workers need stigbench installed
    and the grid folder at the same path. Tasks are never retried by Ray: a cell whose worker dies is reported failed
    and retried by the next run of the grid, which resumes from the stage cache.
    """

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_cell: float = 1, gpus_per_cell: float = 0,
                 connect_timeout: float = 10) -> None:
        self.address = address
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = gpus_per_cell
        self.connect_timeout = connect_timeout

    def check(self) -> None:
        _require("ray", "ray", "ray")
        if self.address and self.address != "auto":
            self._probe()

    def _probe(self) -> None:
        """Reach the cluster's port first: ``ray.init`` waits minutes on an address nobody answers."""
        target = str(self.address).removeprefix("ray://")
        host, sep, port = target.rpartition(":")
        host = host.strip("[]")  # an IPv6 address in brackets
        if not sep or not port.isdigit():
            raise ExecutorError(f"--ray-address {self.address!r}: expected host:port, ray://host:port or auto")
        try:
            socket.create_connection((host, int(port)), timeout=self.connect_timeout).close()
        except OSError as exc:
            raise ExecutorError(f"cannot reach a Ray cluster at {self.address} ({exc}); start one there with "
                                "`ray start --head` or leave out --ray-address to start a local Ray") from exc

    def map(self, cells: Sequence[Cell], echo: Echo) -> Iterator[CellOutcome]:
        ray = _require("ray", "ray", "ray")
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ExecutorError(f"cannot start or join Ray (address {self.address or 'local'}): {exc}") from exc
        cells = _for_workers(cells, self.cpus_per_cell)
        task = ray.remote(num_cpus=self.cpus_per_cell, num_gpus=self.gpus_per_cell, max_retries=0)(run_cell)
        pending: dict[Any, Cell] = {}
        try:
            for cell in cells:
                pending[task.options(name=f"stigbench {cell.name}").remote(cell)] = cell
                echo(cell, "submitted")
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(done[0])
                try:
                    yield ray.get(done[0])
                except ray.exceptions.RayError as exc:
                    cause = getattr(exc, "cause", None)  # what the task raised past run_cell (SystemExit...)
                    error = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else \
                        f"worker died: {type(exc).__name__}: {_first_line(str(exc))}"
                    yield CellOutcome(cell.name, error=error)
        finally:
            for ref in pending:  # interrupted: a KeyboardInterrupt in each task lets its stages unlock
                ray.cancel(ref)
            if started:
                ray.shutdown()


class SlurmExecutor:
    """The cells as one Slurm array job submitted with submitit.

    ``partition``, ``time_min`` (the time limit of each cell, minutes), ``cpus_per_cell`` and
    ``gpus_per_cell`` become the job's request; submitit's logs and transport files go to ``folder``
    (default: ``submitit/`` inside the grid folder). ``cluster="local"`` runs the job with submitit's
    local executor (each cell a local process) instead of Slurm. Interrupting the grid cancels its
    unfinished cells, since only the grid process records outcomes.
    """

    name = "slurm"

    def __init__(self, partition: str | None = None, time_min: int = 240, cpus_per_cell: int = 1,
                 gpus_per_cell: int = 0, folder: str | Path | None = None, cluster: str = "slurm",
                 poll_s: float = 1.0) -> None:
        self.partition = partition
        self.time_min = time_min
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = gpus_per_cell
        self.folder = folder
        self.cluster = cluster
        self.poll_s = poll_s

    def check(self) -> None:
        _require("submitit", "slurm", "slurm")
        if self.cluster not in ("slurm", "local"):
            raise ExecutorError(f"slurm cluster must be slurm or local, got {self.cluster!r}")
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ExecutorError("--executor slurm: no Slurm here (`sbatch` is not on PATH); run the grid on a "
                                "Slurm login node, or add --slurm-cluster local to run its cells as local processes")

    def map(self, cells: Sequence[Cell], echo: Echo) -> Iterator[CellOutcome]:
        submitit = _require("submitit", "slurm", "slurm")
        if not cells:
            return
        cells = _for_workers(cells, self.cpus_per_cell)
        folder = Path(self.folder).absolute() if self.folder else Path(cells[0].config.out) / "submitit"
        executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        params: dict[str, Any] = {"name": "stigbench-grid", "timeout_min": self.time_min,
                                  "cpus_per_task": self.cpus_per_cell, "gpus_per_node": self.gpus_per_cell}
        if self.partition:
            params["slurm_partition"] = self.partition
        executor.update_parameters(**params)
        jobs = executor.map_array(run_cell, list(cells))
        pending = dict(zip(jobs, cells))
        for job, cell in pending.items():
            echo(cell, f"submitted as job {job.job_id}")
        try:
            while pending:
                finished = [job for job in pending if job.done()]
                if not finished:
                    time.sleep(self.poll_s)
                for job in finished:
                    yield self._outcome(job, pending.pop(job), submitit)
        finally:
            for job in pending:
                job.cancel(check=False)

    @staticmethod
    def _outcome(job: Any, cell: Cell, submitit: Any) -> CellOutcome:
        try:
            outcome = job.result()
        except submitit.core.utils.FailedJobError as exc:  # raised past run_cell's guard (SystemExit...)
            outcome = CellOutcome(cell.name, error=f"job {job.job_id} failed: {_last_line(str(exc), 'You can check')}")
        except submitit.core.utils.UncompletedJobError:
            stderr = _last_line(job.stderr() or "")
            outcome = CellOutcome(cell.name, error=f"worker died: job {job.job_id} ended without a result "
                                                   f"(state {job.state}){': ' + stderr if stderr else ''}; "
                                                   f"log: {job.paths.stderr}")
        for transport in (job.paths.submitted_pickle, job.paths.result_pickle):
            transport.unlink(missing_ok=True)  # the outcome is recorded in grid.json; the logs stay
        return outcome


def _last_line(text: str, before: str | None = None) -> str:
    """The last line of ``text`` that says something (or the last one before a line starting ``before``):
    the exception line of a traceback, the ``slurmstepd`` line of a killed job's log."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= {"-"}]
    if before is not None:
        lines = lines[:next((k for k, line in enumerate(lines) if line.startswith(before)), len(lines))]
    return lines[-1] if lines else ""


def make_executor(kind: str = "local", **options: Any) -> Executor:
    """The executor ``kind`` (one of :data:`EXECUTORS`) with ``options`` (:data:`OPTIONS`; ``None``
    values are ignored). An option of another executor is an error rather than silently unused."""
    if kind not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown executor option(s) {unknown}; allowed: {sorted(OPTIONS)}")
    misplaced = sorted(k for k in given if kind not in OPTIONS[k])
    if misplaced:
        flags = ", ".join("--" + k.replace("_", "-") for k in misplaced)
        raise ValueError(f"{flags} do(es) not apply to --executor {kind}")
    cpus, gpus = given.get("cpus_per_cell"), given.get("gpus_per_cell")
    for name, value in (("cpus_per_cell", cpus), ("gpus_per_cell", gpus)):
        if value is not None and value < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if kind == "ray":
        return RayExecutor(given.get("ray_address"), cpus_per_cell=1 if cpus is None else cpus,
                           gpus_per_cell=gpus or 0)
    if kind == "slurm":
        return SlurmExecutor(given.get("slurm_partition"), time_min=given.get("slurm_time", 240),
                             cpus_per_cell=math.ceil(cpus or 1), gpus_per_cell=math.ceil(gpus or 0),
                             folder=given.get("slurm_folder"), cluster=given.get("slurm_cluster", "slurm"))
    return LocalExecutor()
