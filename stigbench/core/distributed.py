"""Data-parallel training under ``torchrun``: one run folder, every rank helping to train.

``torchrun --standalone --nproc_per_node N bench.py run ...`` starts N processes. Rank 0 runs the
benchmark exactly as a single process would: it plans, reads the stage cache, writes the run folder,
logs and checkpoints, and computes everything that is not training (refinement, features, feature
detectors, scores, metrics, FID) by itself. The other ranks *follow* (:func:`follow`): they wait for
rank 0 to hand them a training call (:func:`run_on_all`: STIG's fit, a CNN detector's fit), run it
with rank 0 so that :class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients, and
write nothing. Training is the only part whose cost grows with the model; everything else is one
pass over the data, which rank 0 streams.

How a trainer splits a batch (:func:`shard`): the *global* batch of the single-process run (the
preset's) is cut into contiguous per-rank slices of ``ceil``/``floor`` sizes, in rank order, so the
concatenation over ranks is exactly the single-process batch. Per-sample mean losses are weighted by
:func:`loss_weight` so that DDP's average over ranks is the mean over the global batch even when the
slices differ in size. Normalisation layers stay per rank (no SyncBatchNorm, which has no CPU
kernel): with ``norm="batch"`` a rank's statistics are those of its slice.

Messages between ranks are ``torch.distributed`` object collectives on the process group torchrun
set up (gloo for the control messages, always): no sockets of our own. A rank that dies makes the
other ranks' next collective fail; torchrun then stops the job and names the rank. A rank that
raises while the others wait in a gradient all-reduce blocks them until the process group's timeout
(``STIGBENCH_DIST_TIMEOUT`` seconds, default 1800).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import logging
import os
import signal
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

BACKENDS = ("auto", "gloo", "nccl")
_T = TypeVar("_T")


class DistributedError(RuntimeError):
    """A distributed run cannot start or continue; the message says why."""


@dataclass(frozen=True)
class World:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """``device`` for this rank: CUDA without an index means this rank's local GPU."""
        if device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device


_STATE: dict[str, Any] = {"world": None, "control": None, "active": None, "broken": None, "description": None}


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def resolve_backend(backend: str = "auto") -> str:
    """``auto`` -> ``nccl`` with CUDA, else ``gloo``; raises :class:`DistributedError` when unavailable here."""
    if backend not in BACKENDS:
        raise DistributedError(f"distributed backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if backend == "nccl" and not (torch.cuda.is_available() and dist.is_nccl_available()):
        raise DistributedError("distributed backend 'nccl' is not available here (it needs CUDA GPUs and a torch "
                               "built with NCCL); use --dist-backend gloo, which runs on CPUs")
    if backend == "gloo" and not dist.is_gloo_available():
        raise DistributedError("distributed backend 'gloo' is not available in this torch build")
    return backend


def init(backend: str = "auto") -> World:
    """Join the process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``...)."""
    if _STATE["world"] is not None:
        return _STATE["world"]
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise DistributedError(f"not launched by torchrun: {', '.join(missing)} not set")
    backend = resolve_backend(backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    timeout = dt.timedelta(seconds=float(os.environ.get("STIGBENCH_DIST_TIMEOUT", "1800")))
    dist.init_process_group(backend, timeout=timeout)
    world = World(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    _STATE.update(world=world, control=dist.new_group(backend="gloo") if backend != "gloo" else None)
    mine = world.device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))  # what "auto" gives
    devices: list[Any] = [None] * world.world_size
    dist.all_gather_object(devices, str(mine), group=_STATE["control"])
    _STATE["description"] = {"world_size": world.world_size, "backend": backend, "devices": devices}
    return world


def shutdown() -> None:
    """Leave the process group (after the last message)."""
    if _STATE["world"] is not None and dist.is_initialized():
        dist.destroy_process_group()
    _STATE.update(world=None, control=None, active=None, broken=None, description=None)


def mark_broken(reason: str) -> None:
    """No more messages to the other ranks (they are gone or being stopped): see :func:`lead`."""
    _STATE["broken"] = reason


def world() -> World | None:
    """The torchrun job this process belongs to, or ``None`` for a single process."""
    return _STATE["world"]


def active() -> World | None:
    """The world a trainer should split its batches over: set only inside :func:`run_on_all`, so that
    code rank 0 runs alone (refinement, scoring) never waits for the other ranks."""
    return _STATE["active"]


def stage_key(data_parallel: bool) -> dict[str, int]:
    """The stage-key entry of a fit: ``{"world_size": N}`` for a data-parallel component run on N > 1
    ranks (whose result differs from a single process's within tolerance), else nothing, so that
    single-process stage keys are those of earlier versions."""
    w = world()
    return {"world_size": w.world_size} if data_parallel and w is not None and w.world_size > 1 else {}


def describe() -> dict[str, Any] | None:
    """What ``run.json`` records: world size, backend and every rank's device (``None`` for one process)."""
    return _STATE["description"]


# -- splitting a global batch ------------------------------------------------------------------------
def shard(n: int, w: World | None = None) -> tuple[int, int]:
    """``(start, stop)`` of this rank's contiguous slice of ``n`` items (the first ``n % size`` ranks
    get one more); the whole range for a single process."""
    w = active() if w is None else w
    if w is None or w.world_size == 1:
        return 0, n
    base, extra = divmod(n, w.world_size)
    start = w.rank * base + min(w.rank, extra)
    return start, start + base + (w.rank < extra)


def loss_weight(n: int, w: World | None = None) -> float:
    """Factor on this rank's per-sample mean loss so that DDP's gradient average over ranks equals the
    gradient of the mean over the global batch of ``n``: ``local_n * world_size / n`` (1 for one process)."""
    w = active() if w is None else w
    if w is None or w.world_size == 1:
        return 1.0
    start, stop = shard(n, w)
    return (stop - start) * w.world_size / n


def check_global_batch(n: int | None, what: str, w: World | None = None) -> None:
    """Every rank needs at least one sample of each global batch of ``n`` (``None``: not known)."""
    w = active() if w is None else w
    if w is not None and n is not None and n < w.world_size:
        raise DistributedError(f"{what} ({n}) is smaller than the number of ranks ({w.world_size}): every rank "
                               "needs at least one image per step; use fewer processes or a larger batch")


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over ranks (identity for one process): for statistics of the global batch.

    Its backward sums the ranks' gradients, and DDP then averages over ranks, so a loss computed from
    the summed statistic gets its exact single-process gradient.
    """
    if active() is None or active().world_size == 1:
        return x
    return _AllReduceSum.apply(x)


class _AllReduceSum(torch.autograd.Function):
    # The gradient of a sum over ranks with respect to each rank's term is the sum of the ranks' gradients.
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def wrap(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` inside :func:`run_on_all`, else itself.

    Call the wrapper exactly once per backward (other uses of the module's weights go through the
    module itself: their gradients add up in the same backward before DDP averages them).
    """
    w = active()
    if w is None or w.world_size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device = next(module.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    # Buffers stay per rank during training (broadcast_buffers was renamed in newer torch releases).
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
               else {"broadcast_buffers": False})
    return DistributedDataParallel(module, device_ids=ids, **no_sync)


def broadcast_module(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (e.g. BatchNorm statistics, which each rank updates from its own
    slice), so that evaluation is the same everywhere."""
    w = active()
    if w is None or w.world_size == 1:
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)


def all_sum(value: float) -> float:
    """A float summed over the ranks (a logged total such as an epoch's loss)."""
    w = active()
    if w is None or w.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, group=_STATE["control"])
    return float(t.item())


# -- rank 0 leads, the others follow -----------------------------------------------------------------
def _broadcast(message: Any) -> Any:
    box = [message]
    dist.broadcast_object_list(box, src=0, group=_STATE["control"])
    return box[0]


@contextlib.contextmanager
def _activated(w: World) -> Iterator[None]:
    _STATE["active"] = w
    try:
        yield
    finally:
        _STATE["active"] = None


def _call(w: World, fn: Callable[..., _T], args: tuple, kwargs: dict) -> _T | None:
    """Run ``fn`` on this rank with the others, then compare outcomes: rank 0 raises if any rank failed."""
    result, error = None, None
    try:
        with _activated(w):
            result = fn(*args, **kwargs)
    except dist.DistError as exc:  # a peer is gone: no further collective can succeed
        _STATE["broken"] = f"{type(exc).__name__}: {exc}"
        raise DistributedError(f"rank {w.rank}: another rank stopped responding during "
                               f"{getattr(fn, '__name__', fn)} ({exc})") from exc
    except Exception as exc:
        error = (exc, traceback.format_exc())
    outcomes: list[Any] = [None] * w.world_size
    dist.all_gather_object(outcomes, None if error is None else f"{type(error[0]).__name__}: {error[0]}",
                           group=_STATE["control"])
    if error is not None:
        raise error[0]
    failed = {r: msg for r, msg in enumerate(outcomes) if msg is not None}
    if failed:
        raise DistributedError("; ".join(f"rank {r} failed: {msg}" for r, msg in failed.items()))
    return result


def run_on_all(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """On rank 0: run ``fn(*args, **kwargs)`` on every rank together and return rank 0's result.

    ``fn`` and its arguments are pickled to the other ranks (a module-level function; image sets travel
    as file paths or memory-mapped files). Without torchrun this is just ``fn(*args, **kwargs)``.
    """
    w = world()
    if w is None or w.world_size == 1:
        return fn(*args, **kwargs)
    if not w.is_leader:
        raise DistributedError("run_on_all is called by rank 0; the other ranks follow()")
    if _STATE["broken"]:
        raise DistributedError(f"the distributed job is broken ({_STATE['broken']}); data-parallel training "
                               "cannot run")
    _broadcast(("call", fn, args, kwargs))
    return _call(w, fn, args, kwargs)  # type: ignore[return-value]


def follow() -> int:
    """On ranks other than 0: take part in every :func:`run_on_all` of rank 0 until it stops; returns
    the exit status rank 0 ended with (0 or 1)."""
    w = world()
    if w is None or w.is_leader:
        raise DistributedError("follow() is for ranks other than 0 of a torchrun job")
    while True:
        message = _broadcast(None)
        if message[0] == "stop":
            return int(message[1])
        _, fn, args, kwargs = message
        try:
            _call(w, fn, args, kwargs)
        except DistributedError:
            if _STATE["broken"]:
                return 1
        except Exception:  # noqa: S110 - rank 0 gathers every rank's failure and reports it
            pass


@contextlib.contextmanager
def lead() -> Iterator[None]:
    """On rank 0: the body runs the benchmark; at the end the followers are told to stop (with the
    outcome), unless the job is broken."""
    failed = True
    try:
        yield
        failed = False
    finally:
        w = world()
        if w is not None and w.world_size > 1 and not _STATE["broken"]:
            _broadcast(("stop", 1 if failed else 0))


def _on_sigterm(signum: int, frame: Any) -> None:
    # torchrun stops the other ranks with SIGTERM when one fails: end with an exception, so that the run
    # folder is marked failed instead of being left "running".
    mark_broken("stopped by SIGTERM")
    raise SystemExit("terminated by SIGTERM (under torchrun: another rank failed or the job was stopped)")


def run_ranked(body: Callable[[], _T], backend: str | None = None) -> _T | None:
    """Run ``body`` as this process's part of the job and return its result (``None`` on followers).

    Without torchrun: ``body()``. Under torchrun: join the process group, rank 0 runs ``body()`` and
    leads (:func:`lead`), the other ranks follow (:func:`follow`) and exit with status 1 if rank 0
    failed; everyone leaves the group at the end.
    """
    if not launched():
        return body()
    w = init(backend or "auto")
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if w.is_leader:
            with lead():
                return body()
        logging.getLogger("stigbench").setLevel(logging.ERROR)  # rank 0 reports; no duplicate warnings
        status = follow()
        if status:
            raise SystemExit(status)
        return None
    finally:
        shutdown()
