"""Error isolation: a component that fails (a refiner, a detector, a cross-dataset cell, the quality
metrics) is recorded among the run's errors and logged with its traceback, and the run goes on with
the others."""

from __future__ import annotations

import logging
import traceback
from types import TracebackType
from typing import Any

log = logging.getLogger("stigbench")


class Attempt:
    """The context manager of :func:`isolated`; ``error`` is the recorded error, ``None`` while none."""

    def __init__(self, errors: dict[str, str], key: str, message: str, args: tuple[Any, ...]) -> None:
        self.errors, self.key, self.message, self.args = errors, key, message, args
        self.error: str | None = None

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if not isinstance(exc, Exception):  # KeyboardInterrupt and SystemExit still stop the run
            return False
        self.error = self.errors[self.key] = f"{type(exc).__name__}: {exc}"
        log.error(self.message + ":\n%s", *self.args, "".join(traceback.format_exception(exc_type, exc, tb)))
        return True


def isolated(errors: dict[str, str], key: str, message: str, *args: Any) -> Attempt:
    """``with isolated(state.errors, f"detector:{name}", "detector %s failed", name) as attempt:`` runs
    the block; an ``Exception`` in it is recorded as ``errors[key] = "<Type>: <message>"`` (and as
    ``attempt.error``), logged as ``message % args``, a colon and the traceback, and swallowed: the
    caller goes on after the block."""
    return Attempt(errors, key, message, args)


__all__ = ["Attempt", "isolated"]
