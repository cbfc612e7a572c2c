"""Recording and replay as :data:`adapters.http.TransportWrapper` links of the client factory's transport chain.

* :func:`recording_wrapper`: every exchange (or failure) goes, redacted, to ``<upstream>-<run>-<part>.har`` in the
  cassette directory: one file per upstream and run, a new part past ``max_file_bytes``. The file is rewritten
  atomically after each exchange, so a crash loses at most the exchange in flight.
* :func:`replay_wrapper`: answers from the directory's cassettes, never touching the network (the inner transport
  is ignored). The live request is redacted with the directory's salt before matching, so it matches its redacted
  recording. Optional replay of the recorded latency (``replay_latency``: a factor, 1 = as recorded) and injected
  faults (:class:`FaultRule`). A request nothing answers raises :class:`~gateway.recording.match.NoMatch`; one
  answered by a recorded 1xx (a WebSocket handshake's ``101 Switching Protocols``, which replay cannot give) raises
  :class:`Unsupported`, a ``NoMatch`` too, as ``replay serve`` answers both with ``501``.
* :func:`install` puts the wrapper a :class:`~gateway.recording.settings.RecordingSettings` asks for on a factory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from adapters.http import ClientFactory, TransportWrapper

from .bodies import bodiless, decoded_response
from .har import (
    Exchange,
    dumps_har,
    exchange_to_entry,
    headers_from,
    load_directory,
    now_iso,
    write_bytes_atomically,
)
from .match import NoMatch, ReplayIndex
from .redact import Redactor
from .settings import FaultRule, RecordingSettings

__all__ = [
    "FaultRule",
    "RecordingSettings",
    "RecordingTransport",
    "ReplayTransport",
    "Replayer",
    "Unsupported",
    "install",
    "interim_reason",
    "recording_wrapper",
    "replay_wrapper",
    "response_of",
]

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
        self._cookies: frozenset[str] = frozenset()  # cookie values seen in this run, redacted in later answers too

    @property
    def path(self) -> Path:
        return self.directory / f"{_safe_name(self.upstream)}-{self.run}-{self.part:03d}.har"

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self._cookies |= self.redactor.cookie_values([exchange])
            cookies = self._cookies
        redacted = self.redactor.exchange(exchange, cookies)  # before anything touches disk
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
        # The cassette keeps the decoded body (HAR 1.2's content.text), so redaction reads the real text.
        headers, decoded = decoded_response(headers_from(response.headers.multi_items()), raw, har=False)
        exchange = base.with_(
            status=response.status_code,
            status_text=response.reason_phrase,
            response_headers=headers,
            response_body=decoded,
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
    # Header values as UTF-8 bytes: what servers send for text outside ASCII (a file name in Content-Disposition).
    headers = [
        (k.encode("utf-8"), v.encode("utf-8")) for k, v in exchange.response_headers if k.lower() not in _HOP_HEADERS
    ]
    recorded_length = exchange.header("content-length", response=True)
    if bodiless(exchange.method, exchange.status) and recorded_length is not None:
        # HEAD and 304 answers carry the size of the resource, not of their (empty) body.
        headers.append((b"Content-Length", recorded_length.encode("utf-8")))
    else:
        headers.append((b"Content-Length", str(len(exchange.response_body)).encode("ascii")))
    return httpx.Response(
        exchange.status,
        headers=headers,
        stream=httpx.ByteStream(exchange.response_body),  # readable as a stream too (``aiter_raw``)
        request=request,
        extensions={"reason_phrase": exchange.status_text.encode("latin-1", "replace")},
    )


class Unsupported(NoMatch):
    """The recorded answer is one replay cannot give (a 1xx: a WebSocket handshake's 101); a :class:`NoMatch`, so it
    is reported as a miss is (a permanent failure: the outbox parks the message at once, with this reason)."""


def interim_reason(status: int) -> str:
    """Why a recorded 1xx answer is not replayed, in one line."""
    if status == 101:
        return "the recorded answer is 101 Switching Protocols (a WebSocket handshake); WebSockets are not replayed"
    return f"the recorded answer is an interim {status} without a final answer; it cannot be replayed"


class ReplayTransport(httpx.AsyncBaseTransport):
    def __init__(self, replayer: Replayer, upstream: str) -> None:
        self.replayer = replayer
        self.upstream = upstream

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.replayer.answer(request, self.upstream)
        if response.status_code < 200:
            await response.aclose()
            raise Unsupported(f"{request.method} {request.url}: {interim_reason(response.status_code)}")
        return response


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
