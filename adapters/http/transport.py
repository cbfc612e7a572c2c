"""The transport link that caps response sizes and the duration of whole exchanges.

:class:`LimitedTransport` streams response bodies through a limited stream that fails with
:class:`ResponseTooLargeError` past the cap, or with a read timeout past the total deadline; :func:`response_limit`
lowers the cap for one request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

from adapters.errors import BadResponseError

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "RESPONSE_LIMIT_EXTENSION",
    "LimitedTransport",
    "ResponseTooLargeError",
    "response_limit",
]

#: Default response size cap: 50 MiB.
DEFAULT_MAX_RESPONSE_BYTES = 50 * 1024 * 1024
#: The request extension through which :func:`response_limit` lowers the size cap of one response.
RESPONSE_LIMIT_EXTENSION = "dvc_gateway.max_response_bytes"


class ResponseTooLargeError(BadResponseError):
    """A response passed its size cap (``limit``): declared so (``declared``, in bytes) or found so while streaming."""

    def __init__(self, message: str, *, limit: int, declared: int | None = None, upstream: str = "") -> None:
        super().__init__(message, upstream=upstream)
        self.limit = limit
        self.declared = declared


def response_limit(max_bytes: int) -> dict[str, Any]:
    """Request extensions capping one response at ``max_bytes`` (the client's own cap still applies when lower).

    ``client.get(url, extensions=response_limit(2_000_000))``: the :class:`LimitedTransport` of a factory client
    enforces it like its own cap, failing with :class:`ResponseTooLargeError`.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError("a response limit must be a positive number of bytes")
    return {RESPONSE_LIMIT_EXTENSION: max_bytes}


def _deadline_scope(deadline: float | None) -> asyncio.Timeout:
    return asyncio.timeout_at(deadline)


def _network_error(exc: OSError, request: httpx.Request) -> httpx.TransportError:
    """The httpx error for an ``OSError`` httpcore lets through (TLS alerts while reading, among them)."""
    if isinstance(exc, ssl.SSLError):
        return httpx.ReadError(f"TLS failure: {exc.reason or type(exc).__name__}", request=request)
    return httpx.ReadError(f"network failure: {exc.strerror or type(exc).__name__}", request=request)


class _LimitedStream(httpx.AsyncByteStream):
    """A response body that fails past ``limit`` bytes or after ``deadline`` (event-loop time)."""

    def __init__(
        self,
        inner: httpx.AsyncByteStream,
        *,
        limit: int,
        deadline: float | None,
        upstream: str,
        request: httpx.Request,
    ) -> None:
        self._inner = inner
        self._limit = limit
        self._deadline = deadline
        self._upstream = upstream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        chunks = aiter(self._inner)
        while True:
            scope = _deadline_scope(self._deadline)
            try:
                async with scope:
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                if not scope.expired():
                    raise
                raise httpx.ReadTimeout("the response did not arrive in time", request=self._request) from exc
            except OSError as exc:
                raise _network_error(exc, self._request) from exc
            received += len(chunk)
            if received > self._limit:
                raise ResponseTooLargeError(
                    f"response larger than the limit of {self._limit} bytes: abandoned",
                    limit=self._limit,
                    upstream=self._upstream,
                )
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _read_whole(response: httpx.Response) -> bool:
    """Whether the transport below read ``response``'s body whole, of the length its head declares."""
    return (
        isinstance(response.stream, httpx.ByteStream)
        and not response.is_stream_consumed
        and response.headers.get("Content-Length", "").strip().isdigit()
    )


class LimitedTransport(httpx.AsyncBaseTransport):
    """Caps response bodies at ``max_response_bytes`` and whole exchanges at ``total_timeout_seconds``.

    A declared ``Content-Length`` over the cap fails before the body is read; otherwise the body fails as soon as it
    passes the cap, while streaming (both with :class:`ResponseTooLargeError`). A request carrying
    :func:`response_limit`'s extension is held to the lower of that limit and ``max_response_bytes``. A response
    compressed although ``Accept-Encoding: identity`` was asked for is refused (the cap counts bytes on the wire, and
    a compressed body may expand a thousandfold). A response whose body the transport below read whole within the
    deadline (a small body: :class:`~adapters.connections.GuardedTransport`) is passed on as it is.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        upstream: str,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        total_timeout_seconds: float | None = None,
    ) -> None:
        self.inner = inner
        self.upstream = upstream
        self.max_response_bytes = max_response_bytes
        self.total_timeout_seconds = total_timeout_seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = None
        if self.total_timeout_seconds is not None:
            deadline = asyncio.get_running_loop().time() + self.total_timeout_seconds
        scope = _deadline_scope(deadline)
        try:
            async with scope:
                response = await self.inner.handle_async_request(request)
        except TimeoutError as exc:
            if not scope.expired():
                raise
            raise httpx.ReadTimeout("no response in time", request=request) from exc
        except OSError as exc:
            raise _network_error(exc, request) from exc
        limit = self.limit_for(request)
        try:
            self._check_headers(request, response, limit)
        except BaseException:
            await response.aclose()
            raise
        if _read_whole(response):
            return response  # its body read with its head, within the deadline, as long as it said (checked)
        stream = _LimitedStream(
            response.stream,  # type: ignore[arg-type]  # an async transport's response stream is async
            limit=limit,
            deadline=deadline,
            upstream=self.upstream,
            request=request,
        )
        return httpx.Response(
            status_code=response.status_code, headers=response.headers, stream=stream, extensions=response.extensions
        )

    def limit_for(self, request: httpx.Request) -> int:
        """The size cap of ``request``'s response: ``max_response_bytes``, or the request's own when lower."""
        requested = request.extensions.get(RESPONSE_LIMIT_EXTENSION)
        if isinstance(requested, int) and not isinstance(requested, bool) and 0 < requested < self.max_response_bytes:
            return requested
        return self.max_response_bytes

    def _check_headers(self, request: httpx.Request, response: httpx.Response, limit: int) -> None:
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLargeError(
                f"response too large ({declared} bytes declared, the limit is {limit})",
                limit=limit,
                declared=int(declared),
                upstream=self.upstream,
            )
        asked = request.headers.get("Accept-Encoding", "").strip().lower()
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if asked == "identity" and encoding not in ("", "identity"):
            raise BadResponseError(f"response in an unrequested content encoding ({encoding})", upstream=self.upstream)

    async def aclose(self) -> None:
        await self.inner.aclose()
