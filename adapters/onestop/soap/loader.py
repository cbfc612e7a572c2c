"""Loading service descriptions: fetched (or read from the offline copy on disk), then parsed by zeep.

:func:`load_wsdl` loads one description every time it is called; a :class:`WsdlLoader`, created by whoever composes
the application and handed to every client, loads each description once and shares it, with the shipped reference
description.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import zeep

from adapters.errors import TransientError
from adapters.onestop.soap.documents import build_description, reference_document
from adapters.onestop.soap.errors import WsdlError
from adapters.onestop.soap.fetch import FetchedWsdl, WsdlCache, WsdlLimits, fetch_wsdl_documents, shown

__all__ = ["LoadedWsdl", "WsdlLoader", "load_wsdl"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedWsdl:
    """A parsed service description (shared by every client of the same WSDL URL and fetch settings)."""

    url: str
    document: zeep.wsdl.Document = field(repr=False)
    documents: tuple[str, ...]
    from_cache: bool
    fetched_at: datetime
    warnings: tuple[str, ...] = ()  # the repairs the lenient attempt made to load it


async def _fetch_or_read(
    url: str, http: httpx.AsyncClient, *, upstream: str, limits: WsdlLimits, cache: WsdlCache | None
) -> FetchedWsdl:
    """The description fetched now (kept in ``cache``), else ``cache``'s copy when fetching failed transiently."""
    try:
        fetched = await fetch_wsdl_documents(url, http, upstream=upstream, limits=limits)
    except TransientError as exc:
        cached = await asyncio.to_thread(cache.read, url, limits) if cache is not None else None
        if cached is None:
            raise
        logger.warning("Service description %s unreachable (%s): using the offline copy", shown(url), exc.message)
        return cached
    if cache is not None:
        try:
            await asyncio.to_thread(cache.write, fetched)
        except OSError as exc:
            logger.warning("Cannot keep an offline copy of %s: %s", shown(url), exc.strerror or exc)
    return fetched


async def load_wsdl(
    url: str,
    http: httpx.AsyncClient,
    *,
    upstream: str = "wsdl",
    limits: WsdlLimits | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LoadedWsdl:
    """The description at ``url``, fetched through ``http`` and parsed (nothing kept in memory).

    With ``cache_dir``, what is fetched is kept on disk (:class:`~adapters.onestop.soap.fetch.WsdlCache`), and when
    fetching fails for a transient reason (the agency unreachable, a timeout, a 5xx) the copy kept there is used.
    """
    limits = limits or WsdlLimits()
    cache = WsdlCache(cache_dir) if cache_dir is not None else None

    async def load() -> LoadedWsdl:
        fetched = await _fetch_or_read(url, http, upstream=upstream, limits=limits, cache=cache)
        built = await asyncio.to_thread(build_description, fetched)
        for warning in built.warnings:
            logger.warning("Service description %s loaded with a warning: %s", shown(url), warning)
        return LoadedWsdl(
            url=url,
            document=built.document,
            documents=tuple(fetched.documents),
            from_cache=fetched.from_cache,
            fetched_at=fetched.fetched_at,
            warnings=built.warnings,
        )

    too_long = WsdlError(
        f"loading {shown(url)} took longer than {limits.load_timeout_seconds:g} seconds (the limit)", upstream=upstream
    )
    started = asyncio.get_running_loop().time()
    try:
        loaded = await asyncio.wait_for(load(), timeout=limits.load_timeout_seconds)
    except TimeoutError:
        raise too_long from None
    if asyncio.get_running_loop().time() - started > limits.load_timeout_seconds:  # done as the limit passed
        raise too_long
    return loaded


_Key = tuple[Any, ...]
_Pending = tuple[asyncio.AbstractEventLoop, "asyncio.Future[LoadedWsdl]"]


class WsdlLoader:
    """Parsed service descriptions, each loaded once and shared by every client given this loader.

    Whoever composes the application creates one loader and hands it to each
    :class:`~adapters.onestop.soap.client.SoapOneStopClient` (a client without one gets a loader of its own). A
    description is kept under its URL, :class:`~adapters.onestop.soap.fetch.WsdlLimits`, offline cache directory and
    ``settings_key`` (what else decides how documents are fetched: the address policy, for instance), the
    ``max_entries`` most recently used ones; concurrent first loads in one event loop share one fetch. The loader
    may be used from several threads and event loops.
    """

    def __init__(self, *, max_entries: int = 128) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._loaded: OrderedDict[_Key, LoadedWsdl] = OrderedDict()
        self._inflight: dict[_Key, _Pending] = {}
        self._stats: Counter[str] = Counter()
        self._reference_lock = threading.Lock()
        self._reference: zeep.wsdl.Document | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._loaded)

    def stats(self) -> dict[str, int]:
        """How often descriptions were ``fetched``, read from the ``offline`` copy, or already loaded (``hits``)."""
        with self._lock:
            return dict(self._stats)

    def clear(self) -> None:
        """Forget every loaded description and the counts (offline copies on disk stay)."""
        with self._lock:
            self._loaded.clear()
            self._stats.clear()

    def reference_document(self) -> zeep.wsdl.Document:
        """The reference service description shipped with the gateway, parsed once."""
        with self._reference_lock:
            if self._reference is None:
                self._reference = reference_document()
            return self._reference

    async def load(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        upstream: str = "wsdl",
        limits: WsdlLimits | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        settings_key: Any = None,
    ) -> LoadedWsdl:
        """The description at ``url``: already loaded, else :func:`load_wsdl` (once for concurrent callers)."""
        limits = limits or WsdlLimits()
        key: _Key = (url, limits, str(cache_dir) if cache_dir is not None else None, settings_key)
        loop = asyncio.get_running_loop()
        hit, future, owner = self._claim(key, loop)
        if hit is not None:
            return hit
        assert future is not None
        if not owner:
            return await asyncio.shield(future)
        try:
            loaded = await load_wsdl(url, http, upstream=upstream, limits=limits, cache_dir=cache_dir)
        except BaseException as exc:
            self._release(key, future)
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            elif not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: nobody else may be waiting
            raise
        with self._lock:
            self._stats["offline" if loaded.from_cache else "fetched"] += 1
            self._loaded[key] = loaded
            while len(self._loaded) > self.max_entries:
                self._loaded.popitem(last=False)
        self._release(key, future)
        future.set_result(loaded)
        return loaded

    def _claim(
        self, key: _Key, loop: asyncio.AbstractEventLoop
    ) -> tuple[LoadedWsdl | None, asyncio.Future[LoadedWsdl] | None, bool]:
        """``(the loaded description, else None; else the future of its load; whether this caller loads it)``."""
        with self._lock:
            hit = self._loaded.get(key)
            if hit is not None:
                self._loaded.move_to_end(key)
                self._stats["hits"] += 1
                return hit, None, False
            pending = self._inflight.get(key)
            if pending is not None and pending[0] is loop:
                return None, pending[1], False
            future: asyncio.Future[LoadedWsdl] = loop.create_future()
            self._inflight[key] = (loop, future)
            return None, future, True

    def _release(self, key: _Key, future: asyncio.Future[LoadedWsdl]) -> None:
        with self._lock:
            pending = self._inflight.get(key)
            if pending is not None and pending[1] is future:
                del self._inflight[key]
