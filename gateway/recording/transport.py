"""Recording and replay as :data:`adapters.http.TransportWrapper` links of the client factory's transport chain.

* :func:`recording_wrapper`: every exchange (or failure) goes, redacted, to ``<upstream>-<run>-<part>.har`` in the
  cassette directory: one file per upstream and run, a new part past ``max_file_bytes``. The file is rewritten
  atomically after each exchange, so a crash loses at most the exchange in flight.
* :func:`replay_wrapper`: answers from the directory's cassettes, never touching the network (the inner transport
  is ignored). The live request is redacted with the directory's salt before matching, so it matches its redacted
  recording. Optional replay of the recorded latency (``replay_latency``: a factor, 1 = as recorded) and injected
  faults (:class:`FaultRule`). A request nothing answers raises :class:`~gateway.recording.match.NoMatch`.
* :class:`RecordingSettings` reads the ``[recording]`` section; :func:`install` puts the right wrapper on a factory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from adapters.http import ClientFactory, TransportWrapper

from ..config import ConfigError
from .har import (
    Exchange,
    dumps_har,
    exchange_to_entry,
    headers_from,
    load_directory,
    now_iso,
    write_bytes_atomically,
)
from .match import (
    DEFAULT_IGNORE_JSON_KEYS,
    DEFAULT_IGNORE_QUERY_PARAMS,
    DEFAULT_IGNORE_XML_ELEMENTS,
    MatchSettings,
    ReplayIndex,
)
from .redact import (
    DEFAULT_REDACT_HEADERS,
    DEFAULT_REDACT_JSON_KEYS,
    DEFAULT_REDACT_PARAMS,
    DEFAULT_REDACT_XML_ELEMENTS,
    Redactor,
    directory_salt,
)

__all__ = [
    "FaultRule",
    "RecordingSettings",
    "RecordingTransport",
    "ReplayTransport",
    "Replayer",
    "install",
    "recording_wrapper",
    "replay_wrapper",
    "response_of",
]

MODES = ("off", "record", "replay")
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024
#: Response headers not replayed as recorded (httpx computes them for the body it is given).
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_ERRORS: dict[str, type[httpx.TransportError]] = {
    cls.__name__: cls
    for cls in (
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.WriteTimeout,
        httpx.PoolTimeout,
        httpx.ReadError,
        httpx.WriteError,
        httpx.RemoteProtocolError,
        httpx.LocalProtocolError,
        httpx.ProxyError,
    )
}


def _names(section: Mapping[str, Any], key: str, default: Sequence[str]) -> tuple[str, ...]:
    value = section.get(key)
    if value is None:
        return tuple(default)
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ConfigError(f"[recording] {key} must be a list of non-empty strings")
    return tuple(value)


@dataclass(frozen=True)
class FaultRule:
    """A fault injected into replayed exchanges (``[[recording.faults]]``).

    :param kind: ``delay`` (answer after ``seconds``, then normally), ``drop`` (the connection breaks:
        ``httpx.ConnectError``), ``status`` (answer ``status``, 503 by default, with a JSON error) or ``soap_fault``
        (HTTP 500 with a SOAP 1.1 ``soap:Server`` fault carrying ``message``).
    :param method: only requests with this method; :param url_contains: only URLs containing this text;
        :param upstream: only this upstream (``agency:000.00.23.H38``, ``national_portal``...; not under
        ``replay serve``); :param body_contains: only requests whose body contains this text (a dossier code).
    :param nth: only the n-th request these filters select (1-based); :param times: at most this many times
        (``None``: every time).
    """

    kind: str
    method: str | None = None
    url_contains: str | None = None
    upstream: str | None = None
    body_contains: str | None = None
    nth: int | None = None
    times: int | None = None
    seconds: float = 0.0
    status: int = 503
    message: str = "injected fault"

    def __post_init__(self) -> None:
        if self.kind not in ("delay", "drop", "status", "soap_fault"):
            raise ValueError(f"unknown fault kind {self.kind!r} (delay, drop, status, soap_fault)")
        for name in ("method", "url_contains", "upstream", "body_contains"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a non-empty string")
        for name in ("nth", "times"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int | float) or self.seconds < 0:
            raise ValueError("seconds must be a non-negative number")
        if isinstance(self.status, bool) or not isinstance(self.status, int) or not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if not isinstance(self.message, str):
            raise ValueError("message must be a string")

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> FaultRule:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(map(str, unknown))}")
        if "kind" not in value:
            raise ValueError("a fault needs a kind (delay, drop, status, soap_fault)")
        return cls(**dict(value))

    def applies(self, request: httpx.Request, upstream: str = "", body: bytes = b"") -> bool:
        if self.method and request.method.upper() != self.method.upper():
            return False
        if self.url_contains and self.url_contains not in str(request.url):
            return False
        if self.upstream and self.upstream != upstream:
            return False
        return not (self.body_contains and self.body_contains.encode("utf-8") not in body)


class _FaultPlan:
    def __init__(self, rules: Iterable[FaultRule]) -> None:
        self.rules = list(rules)
        self._seen = [0] * len(self.rules)
        self._fired = [0] * len(self.rules)
        self._lock = threading.Lock()

    def choose(self, request: httpx.Request, upstream: str = "", body: bytes = b"") -> list[FaultRule]:
        chosen = []
        with self._lock:
            for position, rule in enumerate(self.rules):
                if not rule.applies(request, upstream, body):
                    continue
                self._seen[position] += 1
                if rule.nth is not None and self._seen[position] != rule.nth:
                    continue
                if rule.times is not None and self._fired[position] >= rule.times:
                    continue
                self._fired[position] += 1
                chosen.append(rule)
        return chosen


@dataclass(frozen=True)
class RecordingSettings:
    """The ``[recording]`` section."""

    mode: str = "off"
    directory: Path = Path("cassettes")
    redact_headers: tuple[str, ...] = DEFAULT_REDACT_HEADERS
    redact_json_keys: tuple[str, ...] = DEFAULT_REDACT_JSON_KEYS
    redact_xml_elements: tuple[str, ...] = DEFAULT_REDACT_XML_ELEMENTS
    redact_params: tuple[str, ...] = DEFAULT_REDACT_PARAMS
    ignore_json_keys: tuple[str, ...] = DEFAULT_IGNORE_JSON_KEYS
    ignore_xml_elements: tuple[str, ...] = DEFAULT_IGNORE_XML_ELEMENTS
    ignore_query_params: tuple[str, ...] = DEFAULT_IGNORE_QUERY_PARAMS
    match_headers: tuple[str, ...] = ()
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    replay_latency: float = 0.0
    faults: tuple[FaultRule, ...] = ()
    repeat_last: bool = True

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None, base_dir: Path | None = None) -> RecordingSettings:
        """Settings from the ``[recording]`` table (``ConfigError`` naming the key when a value is wrong)."""
        section = dict(section or {})
        known = {
            "mode",
            "directory",
            "redact_headers",
            "redact_json_keys",
            "redact_xml_elements",
            "redact_params",
            "ignore_json_keys",
            "ignore_xml_elements",
            "ignore_query_params",
            "match_headers",
            "max_file_bytes",
            "replay_latency",
            "faults",
            "repeat_last",
        }
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"[recording] unknown keys: {', '.join(unknown)}")
        mode = section.get("mode", "off")
        if mode not in MODES:
            raise ConfigError(f"[recording] mode must be one of {', '.join(MODES)}")
        directory = section.get("directory", "cassettes")
        if not isinstance(directory, str) or not directory:
            raise ConfigError("[recording] directory must be a path")
        path = Path(directory)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        max_bytes = section.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES)
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
            raise ConfigError("[recording] max_file_bytes must be an integer of at least 1024")
        latency = section.get("replay_latency", 0.0)
        if isinstance(latency, bool):
            latency = 1.0 if latency else 0.0
        if not isinstance(latency, int | float) or latency < 0:
            raise ConfigError("[recording] replay_latency must be true, false or a non-negative factor")
        faults = section.get("faults", [])
        if not isinstance(faults, list) or not all(isinstance(item, Mapping) for item in faults):
            raise ConfigError("[recording] faults must be a list of tables")
        try:
            rules = tuple(FaultRule.from_dict(item) for item in faults)
        except ValueError as exc:
            raise ConfigError(f"[recording] faults: {exc}") from None
        repeat_last = section.get("repeat_last", True)
        if not isinstance(repeat_last, bool):
            raise ConfigError("[recording] repeat_last must be true or false")
        return cls(
            mode=mode,
            directory=path,
            redact_headers=_names(section, "redact_headers", DEFAULT_REDACT_HEADERS),
            redact_json_keys=_names(section, "redact_json_keys", DEFAULT_REDACT_JSON_KEYS),
            redact_xml_elements=_names(section, "redact_xml_elements", DEFAULT_REDACT_XML_ELEMENTS),
            redact_params=_names(section, "redact_params", DEFAULT_REDACT_PARAMS),
            ignore_json_keys=_names(section, "ignore_json_keys", DEFAULT_IGNORE_JSON_KEYS),
            ignore_xml_elements=_names(section, "ignore_xml_elements", DEFAULT_IGNORE_XML_ELEMENTS),
            ignore_query_params=_names(section, "ignore_query_params", DEFAULT_IGNORE_QUERY_PARAMS),
            match_headers=_names(section, "match_headers", ()),
            max_file_bytes=max_bytes,
            replay_latency=float(latency),
            faults=rules,
            repeat_last=repeat_last,
        )

    def redactor(self, directory: str | os.PathLike[str]) -> Redactor:
        return Redactor(
            directory_salt(directory),
            headers=self.redact_headers,
            json_keys=self.redact_json_keys,
            xml_elements=self.redact_xml_elements,
            params=self.redact_params,
        )

    def match_settings(self, *, ignore_host: bool = False) -> MatchSettings:
        return MatchSettings(
            ignore_json_keys=self.ignore_json_keys,
            ignore_xml_elements=self.ignore_xml_elements,
            ignore_query_params=self.ignore_query_params,
            match_headers=self.match_headers,
            ignore_host=ignore_host,
        )


# ----------------------------------------------------------------------------------------------------------------------
# Recording
# ----------------------------------------------------------------------------------------------------------------------


def _safe_name(upstream: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", upstream).strip("._") or "upstream"


class _Recorder:
    """One cassette file series for one upstream within one run."""

    def __init__(self, directory: Path, upstream: str, run: str, redactor: Redactor, max_bytes: int) -> None:
        self.directory = directory
        self.upstream = upstream
        self.run = run
        self.redactor = redactor
        self.max_bytes = max_bytes
        self.part = 1
        self.entries: list[bytes] = []
        self._size = 0
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.directory / f"{_safe_name(self.upstream)}-{self.run}-{self.part:03d}.har"

    def record(self, exchange: Exchange) -> None:
        redacted = self.redactor.exchange(exchange)  # before anything touches disk
        # Each entry is serialised once; a rewrite joins the pieces (no re-serialisation of the whole file).
        entry = json.dumps(exchange_to_entry(redacted), ensure_ascii=False, indent=1).encode("utf-8")
        with self._lock:
            if self.entries and self._size + len(entry) > self.max_bytes:
                # Rotate: the finished part stays as it was written last; this exchange opens the next part.
                self.part += 1
                self.entries, self._size = [], 0
            self.entries.append(entry)
            self._size += len(entry) + 2
            write_bytes_atomically(self.path, self._document())

    def _document(self) -> bytes:
        head = dumps_har([], comment=f"upstream {self.upstream}")
        opening, _, closing = head.partition(b'"entries": []')
        return opening + b'"entries": [\n' + b",\n".join(self.entries) + b"\n]" + closing


class RecordingTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, recorder: _Recorder) -> None:
        self.inner = inner
        self.recorder = recorder

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        started = now_iso()
        begin = time.perf_counter()
        base = Exchange(
            method=request.method,
            url=str(request.url),
            request_headers=headers_from(request.headers.multi_items()),
            request_body=body if body else None,
            started=started,
            upstream=self.recorder.upstream,
        )
        try:
            response = await self.inner.handle_async_request(request)
            try:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            elapsed = (time.perf_counter() - begin) * 1000
            await asyncio.to_thread(
                self.recorder.record, base.with_(time_ms=elapsed, error=f"{type(exc).__name__}: {exc}")
            )
            raise
        elapsed = (time.perf_counter() - begin) * 1000
        http_version = response.extensions.get("http_version", b"HTTP/1.1")
        exchange = base.with_(
            status=response.status_code,
            status_text=response.reason_phrase,
            response_headers=headers_from(response.headers.multi_items()),
            response_body=raw,
            time_ms=elapsed,
            http_version=http_version.decode("ascii", "replace") if isinstance(http_version, bytes) else "HTTP/1.1",
        )
        await asyncio.to_thread(self.recorder.record, exchange)
        # A stream, not ``content=``: a caller streaming the answer (``aiter_raw``) reads it as from the network.
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(raw),
            extensions={k: v for k, v in response.extensions.items() if k != "network_stream"},
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def recording_wrapper(
    directory: str | os.PathLike[str], settings: RecordingSettings | None = None, *, run: str | None = None
) -> TransportWrapper:
    """A wrapper recording every exchange of every upstream into ``directory`` (one file series per upstream)."""
    settings = settings or RecordingSettings(mode="record")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    redactor = settings.redactor(path)
    # Unique per run, even for two runs of one process within one second; sorts in time order.
    run_id = run or datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}-{secrets.token_hex(2)}"
    recorders: dict[str, _Recorder] = {}
    lock = threading.Lock()

    def wrap(inner: httpx.AsyncBaseTransport, upstream: str) -> httpx.AsyncBaseTransport:
        with lock:
            recorder = recorders.get(upstream)
            if recorder is None:
                recorder = recorders[upstream] = _Recorder(path, upstream, run_id, redactor, settings.max_file_bytes)
        return RecordingTransport(inner, recorder)

    return wrap


# ----------------------------------------------------------------------------------------------------------------------
# Replay
# ----------------------------------------------------------------------------------------------------------------------


_SOAP_FAULT = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>'
    "<faultcode>soap:Server</faultcode><faultstring>{message}</faultstring>"
    "</soap:Fault></soap:Body></soap:Envelope>"
)


class Replayer:
    """A cassette directory loaded for replay: the index, the redactor, the faults (shared by all upstreams)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        settings: RecordingSettings | None = None,
        *,
        faults: Iterable[FaultRule] = (),
        ignore_host: bool = False,
    ) -> None:
        self.settings = settings or RecordingSettings(mode="replay")
        self.directory = Path(directory)
        if not self.directory.exists():
            raise FileNotFoundError(f"{self.directory}: no such cassette directory")
        salt_home = self.directory if self.directory.is_dir() else self.directory.parent
        self.redactor = self.settings.redactor(salt_home)
        self.index = ReplayIndex.build(
            load_directory(self.directory),
            self.settings.match_settings(ignore_host=ignore_host),
            repeat_last=self.settings.repeat_last,
        )
        self.faults = _FaultPlan([*self.settings.faults, *faults])

    def find(self, method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes | None) -> Exchange:
        """The recorded exchange answering this live request (redacted first, as its recording was)."""
        redacted_url, redacted_headers, redacted_body, _ = self.redactor.redact_request(
            url, headers_from(list(headers)), body
        )
        return self.index.lookup(method, redacted_url, redacted_headers, redacted_body)

    async def answer(self, request: httpx.Request, upstream: str = "") -> httpx.Response:
        body = await request.aread()
        faults = self.faults.choose(request, upstream, body)
        # A fault takes the place of the recorded answer: it neither needs nor consumes a recording.
        for fault in faults:
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "drop":
                raise httpx.ConnectError(f"connection dropped ({fault.message})", request=request)
            elif fault.kind == "status":
                return httpx.Response(fault.status, json={"error": fault.message}, request=request)
            elif fault.kind == "soap_fault":
                text = _SOAP_FAULT.format(message=fault.message)
                return httpx.Response(
                    500, content=text.encode(), headers={"Content-Type": "text/xml; charset=utf-8"}, request=request
                )
        exchange = self.find(request.method, str(request.url), request.headers.multi_items(), body or None)
        if self.settings.replay_latency > 0 and exchange.time_ms > 0:
            await asyncio.sleep(exchange.time_ms / 1000 * self.settings.replay_latency)
        return response_of(exchange, request)


def response_of(exchange: Exchange, request: httpx.Request) -> httpx.Response:
    """The httpx response a recorded exchange gives (its recorded failure raised again, for a failed one)."""
    if exchange.error or exchange.status == 0:
        name, _, message = (exchange.error or "ConnectError: no response recorded").partition(": ")
        raise _ERRORS.get(name, httpx.ConnectError)(f"{message or name} (replayed)", request=request)
    headers = [(k, v) for k, v in exchange.response_headers if k.lower() not in _HOP_HEADERS]
    headers.append(("Content-Length", str(len(exchange.response_body))))
    return httpx.Response(
        exchange.status,
        headers=headers,
        stream=httpx.ByteStream(exchange.response_body),  # readable as a stream too (``aiter_raw``)
        request=request,
        extensions={"reason_phrase": exchange.status_text.encode("latin-1", "replace")},
    )


class ReplayTransport(httpx.AsyncBaseTransport):
    def __init__(self, replayer: Replayer, upstream: str) -> None:
        self.replayer = replayer
        self.upstream = upstream

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.replayer.answer(request, self.upstream)


def replay_wrapper(
    directory: str | os.PathLike[str],
    settings: RecordingSettings | None = None,
    *,
    faults: Iterable[FaultRule] = (),
) -> TransportWrapper:
    """A wrapper answering every upstream's requests from the cassettes of ``directory`` (no network at all).

    The wrapper's :class:`Replayer` (index, statistics) is its ``replayer`` attribute.
    """
    replayer = Replayer(directory, settings, faults=faults)

    def wrap(inner: httpx.AsyncBaseTransport, upstream: str) -> httpx.AsyncBaseTransport:
        return ReplayTransport(replayer, upstream)

    wrap.replayer = replayer  # type: ignore[attr-defined]
    return wrap


def install(factory: ClientFactory, settings: RecordingSettings) -> TransportWrapper | None:
    """Add the wrapper ``settings.mode`` asks for to ``factory`` (nothing for ``off``); the wrapper added."""
    wrapper: TransportWrapper | None
    if settings.mode == "record":
        wrapper = recording_wrapper(settings.directory, settings)
    elif settings.mode == "replay":
        wrapper = replay_wrapper(settings.directory, settings)
    else:
        return None
    factory.add_wrapper(wrapper)
    return wrapper
