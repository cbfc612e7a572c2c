"""The caches behind online revocation fetching: bounded, thread-safe, and expiring when the fetched object does.

URLs and certificates come from untrusted documents, so every cache is bounded in entries (least recently used first
out) and optionally in total size. An entry lives until the ``nextUpdate`` of what it holds; the caches only save
network round trips, every validation still checks whatever it is given.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Generic, TypeVar

__all__ = ["CACHE_MAX_ENTRIES", "ExpiringCache", "utcnow"]

#: Cached objects per cache (least recently used first out): URLs come from untrusted input.
CACHE_MAX_ENTRIES = 256

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def utcnow() -> datetime:
    """The current time, aware (UTC): what cache entries' expiry is compared with."""
    return datetime.now(UTC)


class ExpiringCache(Generic[K, V]):
    """A thread-safe LRU map whose entries expire at a given time (``None``: never), bounded in entries and size."""

    def __init__(self, max_entries: int = CACHE_MAX_ENTRIES, max_size: int | None = None) -> None:
        self._entries: OrderedDict[K, tuple[V, datetime | None, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._max_size = max_size
        self._size = 0

    def get(self, key: K) -> V | None:
        now = utcnow()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, expires, _size = entry
            if expires is not None and expires <= now:
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V, expires: datetime | None, size: int = 0) -> None:
        if expires is not None and expires <= utcnow():
            return
        if self._max_size is not None and size > self._max_size:
            return
        with self._lock:
            if key in self._entries:
                self._remove(key)
            self._entries[key] = (value, expires, size)
            self._size += size
            while len(self._entries) > self._max_entries or (
                self._max_size is not None and self._size > self._max_size
            ):
                self._remove(next(iter(self._entries)))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _remove(self, key: K) -> None:
        _value, _expires, size = self._entries.pop(key)
        self._size -= size
