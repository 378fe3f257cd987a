"""Griffe extension: the docstrings' reST (Sphinx roles such as :class:`X`, literal blocks) as Markdown.

The docstrings are written for reading in the source, where Sphinx roles name what they point to;
Markdown has no roles, and left alone ``:class:`` would show up literally before every name. Turning a
role into a cross-reference would need every target resolvable (``--strict`` fails on the rest), and
many are relative (``:func:`y``` inside a module), so a role becomes the plain code span it wraps.
"""

from __future__ import annotations

import re

import griffe

# :class:`X`, :py:func:`y`, :meth:`~a.b.c` (the tilde shows only the last part in Sphinx)
_ROLE = re.compile(r":(?:py:)?[a-z]+:`~?([^`]+)`")


# reST's "text::" before an indented literal block; in Markdown the indentation alone makes the block
_LITERAL = re.compile(r"(?<=\S)::[ \t]*$", flags=re.M)


def _plain(text: str) -> str:
    return _LITERAL.sub(":", _ROLE.sub(lambda m: f"``{m.group(1)}``", text))


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = _plain(obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not m.is_alias)
