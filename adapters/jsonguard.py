"""Strict JSON parsing for documents from outside: request bodies, notifications, upstream answers.

``json.loads`` accepts ``NaN``, ``Infinity`` and ``-Infinity``, which JSON (RFC 8259) does not have, and reads a
number too large for a float (``1e999``) as infinity. None of them can be written back as JSON (the gateway writes with
``allow_nan=False``), so a document carrying one would be taken in and then fail when it is answered, stored or
delivered. :func:`loads` refuses them. It refuses strings no database can store as text, though JSON can carry them:
with the character U+0000 (``"\\u0000"``, which PostgreSQL's text cannot hold) or half of a surrogate pair
(``"\\ud800"`` alone, which UTF-8 cannot encode), since a dossier with one would fail to be stored, not be refused.
With ``unique_keys`` it refuses an object that names a key twice (which parsers resolve differently: the first, the
last, an error). It depends on the standard library alone, so every adapter and the API may use it.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["UnstorableText", "loads"]

_SHOWN_DIGITS = 20


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= _SHOWN_DIGITS else text[:_SHOWN_DIGITS] + "…"
        raise ValueError(f"the number {shown} is out of range")
    return value


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


class UnstorableText(ValueError):
    """A string of the document no database can store as text; ``field`` is where it is (``components[0].name``,
    ``""`` for the document itself; a key's own path when the key is the string)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


def _unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored as text, or None: U+0000, or half of a surrogate pair (``"\\ud800"`` alone),
    which UTF-8 cannot encode."""
    if "\x00" in text:
        return "holds the character U+0000, which cannot be stored"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "holds half of a UTF-16 surrogate pair, which cannot be stored"
    return None


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _nodes(document: Any, path: str = "") -> Any:
    """Every string of ``document`` (values and keys) with the path that names it; a key's path is its value's, and
    paths are built only as far as the caller iterates."""
    pending: list[tuple[Any, str]] = [(document, path)]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            yield item, path, False
        elif isinstance(item, dict):
            for key, value in item.items():
                yield key, _child(path, ascii(key)[1:-1]), True
                pending.append((value, _child(path, key)))
        elif isinstance(item, list):
            pending.extend((value, _child(path, index)) for index, value in enumerate(item))


def _strings(document: Any) -> Any:
    """Every string of ``document`` (values and keys), without paths: the cheap pass every document takes."""
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            yield from item
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _refuse_unstorable(document: Any) -> None:
    if all(_unstorable(text) is None for text in _strings(document)):
        return
    for text, path, is_key in _nodes(document):  # only for a document refused: where it is
        reason = _unstorable(text)
        if reason is not None:
            raise UnstorableText(path, f"its name {reason}" if is_key else reason)


def loads(data: str | bytes, *, unique_keys: bool = False) -> Any:
    """The JSON document ``data`` holds, numbers finite, strings storable, keys unique when ``unique_keys``.

    :raises UnstorableText: a string or key holding U+0000 or half a surrogate pair (the document is JSON, but its
        content cannot be taken in).
    :raises ValueError: not JSON (:class:`json.JSONDecodeError`), a constant or number JSON cannot carry, a repeated
        key, an integer of more digits than Python converts.
    :raises UnicodeDecodeError: bytes that are not UTF-8, UTF-16 or UTF-32.
    :raises RecursionError: nesting deeper than the interpreter's recursion limit.
    """
    document = json.loads(
        data,
        parse_constant=_no_constants,
        parse_float=_finite,
        object_pairs_hook=_unique if unique_keys else None,
    )
    _refuse_unstorable(document)
    return document
