"""JSON bodies as the gateway sends them: :func:`encode`.

The bytes are exactly those of ``json.dumps(value, ensure_ascii=False, allow_nan=False, default=default)`` in UTF-8.
Files travel in these bodies as base64 text, tens of kilobytes to megabytes long, which ``json.dumps`` would still
read character by character to escape what needs it: nothing, in base64. So a long string that holds no character
JSON escapes (a quote, a backslash, a control character) and nothing beyond ASCII is copied into the body as it is,
beside the rest of the document written by ``json.dumps``. It depends on the standard library alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["encode"]

#: Strings at least this long are checked for being copied as they are; shorter ones cost less to escape.
_LONG = 512
#: The characters JSON escapes (``ensure_ascii=False``): control characters, the quote and the backslash.
_ESCAPED = bytes(range(0x20)) + b'"\\'
#: What stands in a copied string's place while the rest is written (``\u0000`` once written, then its number).
_MARK = "\x00jsonbody:"


class _Copied:
    """A long string to copy as it is, by its number."""

    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number


def _verbatim(text: str) -> bytes | None:
    """``text`` in ASCII when JSON writes it unchanged, else None."""
    if not text.isascii():
        return None
    data = text.encode("ascii")
    return data if len(data.translate(None, _ESCAPED)) == len(data) else None


def _set_aside(value: Any, copied: list[bytes]) -> Any:
    """``value`` with its long plain strings replaced by :class:`_Copied` (appended to ``copied``, in the order
    ``json.dumps`` writes them); the containers on the way to one are new, the rest is ``value``'s own."""
    kind = type(value)
    if kind is str:
        data = _verbatim(value) if len(value) >= _LONG else None
        if data is None:
            return value
        copied.append(data)
        return _Copied(len(copied) - 1)
    if kind not in _CONTAINERS:
        return value
    changed: Any = None  # a copy of the container (a tuple as a list, as json.dumps writes it) once one changes
    for key, item in value.items() if kind is dict else enumerate(value):
        if type(item) in _WALKED:
            new = _set_aside(item, copied)
            if new is not item:
                if changed is None:
                    changed = dict(value) if kind is dict else list(value)
                changed[key] = new
    return value if changed is None else changed


#: The containers walked, and the types whose values may hold long strings.
_CONTAINERS = frozenset({dict, list, tuple})
_WALKED = _CONTAINERS | {str}


def _written(value: Any, default: Callable[[Any], Any] | None) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, default=default).encode("utf-8")


def encode(value: Any, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """``json.dumps(value, ensure_ascii=False, allow_nan=False, default=default)`` in UTF-8, long plain strings copied
    in whole (see the module's documentation); the same errors (``ValueError``, ``TypeError``, ``RecursionError``)."""
    copied: list[bytes] = []
    try:
        shaped = _set_aside(value, copied)
    except RecursionError:  # too deep, or circular: json.dumps says which
        return _written(value, default)
    if not copied:
        return _written(value, default)

    def standing_in(item: Any) -> Any:
        if isinstance(item, _Copied):
            return f"{_MARK}{item.number}"
        if default is None:
            raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")
        return default(item)

    body = json.dumps(shaped, ensure_ascii=False, allow_nan=False, default=standing_in).encode("utf-8")
    parts: list[bytes] = []
    for number, data in enumerate(copied):
        mark = json.dumps(f"{_MARK}{number}").encode("ascii")
        before, found, body = body.partition(mark)
        if not found or mark in body:  # the document holds the mark's text itself
            return _written(value, default)
        parts += (before, b'"', data, b'"')
    parts.append(body)
    return b"".join(parts)
