"""One generic, typed registry for every pluggable kind (detectors, refiners, datasets, ...).

Shape after timm's ``_registry`` and lm-evaluation-harness' ``api/registry``: entries are registered
with a decorator, carry a metadata object next to the code, duplicate names raise, unknown names raise
with close-match suggestions, and listings take fnmatch patterns. Plug-ins do not have to subclass
anything: the registry checks that an entry provides the methods of its kind's protocol instead.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Raised for duplicate or unknown registry names.

    A ``KeyError`` subclass so that ``except KeyError`` keeps working, but with a readable ``str``
    (``KeyError`` would quote the whole message).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its metadata.

    ``target`` is either the object itself or, for heavy optional imports, a lazy ``"module:attr"``
    string resolved on first :meth:`load`.
    """

    name: str
    target: T | str
    meta: Any = None
    source: str = ""

    def load(self) -> T:
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            obj = getattr(importlib.import_module(module_name), attr)
            return obj
        return self.target


@dataclass
class Registry(Generic[T]):
    """A named collection of objects of one kind.

    Args:
        kind: human-readable name of the kind, used in messages ("detector").
        required_methods: names an entry must provide (callable attributes); checked at registration
            so that a broken plug-in fails where it is defined, not half-way through a run.
    """

    kind: str
    required_methods: tuple[str, ...] = ()
    _entries: dict[str, Entry[T]] = field(default_factory=dict, repr=False)

    # -- registration -------------------------------------------------------------------------
    def add(self, name: str, target: T | str, meta: Any = None, source: str = "") -> Entry[T]:
        """Register ``target`` under ``name``; raises on a duplicate name or a missing method."""
        if not name or any(ch in name for ch in ",*?[] "):
            raise ValueError(f"invalid {self.kind} name {name!r}: no commas, spaces or glob characters")
        if name in self._entries:
            prev = self._entries[name]
            raise RegistryError(
                f"{self.kind} {name!r} is already registered"
                + (f" (by {prev.source})" if prev.source else "")
            )
        if not isinstance(target, str):
            self._check(name, target)
        entry = Entry(name=name, target=target, meta=meta, source=source)
        self._entries[name] = entry
        return entry

    def register(self, name: str, meta: Any = None) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorator(obj: T) -> T:
            source = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', name)}"
            self.add(name, obj, meta=meta, source=source)
            return obj

        return decorator

    def remove(self, name: str) -> None:
        """Unregister ``name`` (tests and interactive sessions)."""
        self.get_entry(name)
        del self._entries[name]

    def _check(self, name: str, obj: Any) -> None:
        missing = [m for m in self.required_methods if not callable(getattr(obj, m, None))]
        if missing:
            raise TypeError(
                f"{self.kind} {name!r} ({obj!r}) does not implement the {self.kind} protocol: "
                f"missing {', '.join(missing)}"
            )

    # -- lookup -------------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def get_entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self._unknown_message(name)) from None

    def get(self, name: str) -> T:
        """The registered object (lazy entries are imported and checked here)."""
        entry = self.get_entry(name)
        obj = entry.load()
        if isinstance(entry.target, str):
            self._check(name, obj)
        return obj

    def meta(self, name: str) -> Any:
        return self.get_entry(name).meta

    def list(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by an fnmatch pattern (``"fr*"``)."""
        names = sorted(self._entries)
        if pattern is None:
            return names
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    def resolve(self, spec: str | Iterable[str]) -> list[str]:
        """Expand a comma-separated list of names and fnmatch patterns, keeping the given order.

        Every item must match something: an unknown exact name raises with suggestions, and a
        pattern that matches nothing raises too, since a silently empty selection hides typos.
        """
        items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
        out: list[str] = []
        for item in items:
            if not item:
                continue
            if any(ch in item for ch in "*?["):
                matched = self.list(item)
                if not matched:
                    raise RegistryError(
                        f"pattern {item!r} matches no {self.kind}; available: {', '.join(self.list()) or 'none'}"
                    )
            else:
                self.get_entry(item)
                matched = [item]
            out.extend(m for m in matched if m not in out)
        return out

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        msg = f"unknown {self.kind} {name!r}"
        if close:
            msg += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        msg += f" Available: {', '.join(sorted(self._entries)) or 'none'}"
        return msg
