"""The network end of every outbound HTTP client: :func:`guarded_transport`.

Requests keep httpx's API (clients, auth flows, recording and replay links, zeep's transport) while the connections,
their pool and the HTTP/1.1 parsing are aiohttp's: its parser and writer are in C, and an exchange costs about a
third of the CPU that httpx's own HTTP/1.1 stack spends on it. :class:`GuardedTransport` maps each request and
response across, and each aiohttp failure to the httpx exception that means the same.

Where a connection may go is checked where it is made, with :mod:`adapters.netguard`'s policy: the resolver
(:class:`GuardedResolver`) refuses a host name with any refused address before anything connects, and a literal
address is judged before the request leaves (whatever its spelling), so redirects and DNS rebinding cannot get around
the policy. TLS verifies the original host name.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict
from yarl import URL

from adapters.netguard import AddressPolicy, BlockedAddressError, parse_address, resolve_addresses

__all__ = ["GuardedResolver", "GuardedTransport", "guarded_transport"]

#: Headers aiohttp would add of its own accord (httpx has already set those the request carries).
_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
#: The longest status or header line taken from an answer (aiohttp's own limit is 8,190 bytes).
_MAX_HEADER_LINE = 32 * 1024
#: Bodies declared this small (and not compressed) are read with their head and handed over read: their
#: connection goes back to the pool at once, and httpx's reading of a body, chunk by chunk through the transport
#: chain's streams, is spared.
_READ_WITH_HEAD = 64 * 1024
#: The most hosts a transport remembers as let through (an agency's client speaks to one or two).
_HOSTS_REMEMBERED = 64


class GuardedResolver(AbstractResolver):
    """Resolves host names for aiohttp and refuses any name with an address ``policy`` refuses."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # aiohttp bounds the whole connection, this resolution included, with the request's connect timeout.
        addresses = await resolve_addresses(host, port, None)
        self.policy.check_connection(host, addresses)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": socket.IPPROTO_TCP,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


def _seconds(*parts: float | None) -> float | None:
    """The sum of ``parts``, or ``None`` (no limit) when any of them is ``None``."""
    return None if any(part is None for part in parts) else sum(part for part in parts if part is not None)


def _reraise(exc: BaseException, request: httpx.Request) -> NoReturn:
    """Raise the httpx exception ``exc`` means (:func:`_translated`), or ``exc`` itself when it means none."""
    translated = _translated(exc, request)
    if translated is None:
        raise exc
    raise translated from exc


def _translated(exc: BaseException, request: httpx.Request) -> httpx.TransportError | None:
    """The httpx exception an aiohttp (or socket) failure means, or ``None`` for anything else."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, BlockedAddressError):
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(f"connecting timed out: {message}", request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(f"the response did not arrive in time: {message}", request=request)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return httpx.ConnectError(f"TLS failure: {exc.certificate_error}", request=request)
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return httpx.ConnectError(f"TLS failure: {message}", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError("the server closed the connection without a complete answer", request=request)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(f"malformed or incomplete answer: {message}", request=request)
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL):  # never sendable: a request to mend, not to retry
        return httpx.LocalProtocolError(f"invalid address: {message}", request=request)
    if isinstance(exc, ssl.SSLError):
        return httpx.ReadError(f"TLS failure: {exc.reason or type(exc).__name__}", request=request)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return httpx.ReadError(f"network failure: {message}", request=request)
    return None


def _read_with_head(request: httpx.Request, response: aiohttp.ClientResponse) -> bool:
    """Whether ``response``'s body is small enough to read at once (see :data:`_READ_WITH_HEAD`)."""
    length = response.content_length
    if length is None or length > _READ_WITH_HEAD or request.method == "HEAD":
        return False
    return response.headers.get("Content-Encoding", "identity").strip().lower() in ("", "identity")


class _ResponseStream(httpx.AsyncByteStream):
    """The body of an aiohttp response, as httpx reads it; closing it returns or drops the connection."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        while True:
            try:
                chunk = await content.readany()
            except (aiohttp.ClientError, OSError) as exc:
                _reraise(exc, self._request)
            if not chunk:
                return
            yield chunk

    async def aclose(self) -> None:
        # A body read to its end gives the connection back to the pool; one left unread closes it.
        self._response.release()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport on aiohttp's connections, connecting only where ``policy`` allows.

    :param verify: an ``ssl.SSLContext`` used as it is, ``True`` (the operating system's trust store), ``False`` or a
        CA bundle's path, as httpx takes them.
    :param limits: ``max_connections`` bounds the pool, ``keepalive_expiry`` how long an idle connection is kept;
        ``max_keepalive_connections=0`` closes every connection after its exchange.

    A body declared at most 64 KiB long and not compressed is read with the answer's head (the response's stream
    then holds it whole); any other body is streamed from the connection as the caller reads it.

    The connection pool belongs to the event loop of the first request; use the transport on that loop only.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        verify: ssl.SSLContext | str | bool = True,
        limits: httpx.Limits = _DEFAULT_LIMITS,
        local_address: str | None = None,
    ) -> None:
        self.policy = policy
        self.limits = limits
        self.ssl_context = verify if isinstance(verify, ssl.SSLContext) else _ssl_context(verify)
        self.local_address = local_address
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        #: Hosts of requests already let through: names (the resolver checks them) and allowed literal addresses.
        self._hosts_let_through: set[str] = set()

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self.ssl_context,
                resolver=GuardedResolver(self.policy),
                use_dns_cache=False,  # every new connection resolves, and so is checked, again
                limit=self.limits.max_connections or 0,
                limit_per_host=0,
                local_addr=(self.local_address, 0) if self.local_address else None,
                **_keepalive(self.limits),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # cookies are the httpx client's business
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,  # httpx decodes by Content-Encoding
                trust_env=False,
                # Long header lines (a big cookie, a policy header) as httpx's parser took them; the head stays bounded.
                max_line_size=_MAX_HEADER_LINE,
                max_field_size=_MAX_HEADER_LINE,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        timeouts = request.extensions.get("timeout", {})
        connect, read = timeouts.get("connect"), timeouts.get("read")
        pool, write = timeouts.get("pool"), timeouts.get("write")
        headers = CIMultiDict(request.headers.multi_items())
        data: bytes | AsyncIterator[bytes] | None
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            data = aiter(request.stream)  # type: ignore[arg-type]  # an async transport's request stream is async
            headers.popall("Transfer-Encoding", None)  # aiohttp chunks a body of unknown length itself
        # aiohttp's own timeouts cover connecting (the wait for a free connection included) and each read; the
        # whole send, up to the answer's head, is capped as well, since aiohttp has no timeout for writes.
        scope = asyncio.timeout(_seconds(pool, connect, write, read))
        try:
            self._check_literal(request.url.host)
            async with scope:
                response = await self._session_now().request(
                    request.method,
                    URL(str(request.url), encoded=True),
                    headers=headers,
                    skip_auto_headers=_AUTO_HEADERS,
                    data=data,
                    allow_redirects=False,
                    compress=None,
                    server_hostname=request.extensions.get("sni_hostname"),
                    timeout=aiohttp.ClientTimeout(
                        total=None, connect=_seconds(pool, connect), sock_connect=connect, sock_read=read
                    ),
                )
        except TimeoutError as exc:
            if scope.expired() and not isinstance(exc, aiohttp.ServerTimeoutError):
                raise httpx.WriteTimeout("the request could not be sent in time", request=request) from exc
            _reraise(exc, request)
        except (aiohttp.ClientError, OSError, BlockedAddressError) as exc:
            _reraise(exc, request)
        version = response.version
        label = "HTTP/1.1" if version is None else f"HTTP/{version.major}.{version.minor}"
        extensions: dict[str, Any] = {"http_version": label.encode("ascii")}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", errors="replace")
        if _read_with_head(request, response):
            try:
                body = await response.read()
            except (aiohttp.ClientError, OSError) as exc:
                _reraise(exc, request)
            finally:
                response.release()  # read whole: back to the pool; else (failed, cancelled) closed
            return httpx.Response(
                status_code=response.status,
                headers=list(response.raw_headers),
                stream=httpx.ByteStream(body),
                extensions=extensions,
            )
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response, request),
            extensions=extensions,
        )

    def _check_literal(self, host: str) -> None:
        """Refuse ``host`` when it is a literal address the policy refuses: aiohttp connects to a literal address
        without resolving it. The policy does not change, so each host is judged once (a refused one every time)."""
        if host in self._hosts_let_through:
            return
        literal = parse_address(host)
        if literal is not None:
            self.policy.check_connection(host, [literal])
        if len(self._hosts_let_through) >= _HOSTS_REMEMBERED:
            self._hosts_let_through.clear()
        self._hosts_let_through.add(host)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _keepalive(limits: httpx.Limits) -> dict[str, Any]:
    """The connector's keep-alive arguments: none kept at ``max_keepalive_connections=0``, else kept idle for
    ``keepalive_expiry`` seconds."""
    if limits.max_keepalive_connections == 0:
        return {"force_close": True}
    return {"keepalive_timeout": limits.keepalive_expiry}


def _ssl_context(verify: str | bool) -> ssl.SSLContext:
    return httpx.create_ssl_context(verify=verify, trust_env=False)


_FORBIDDEN_TRANSPORT_KWARGS = frozenset({"proxy", "uds", "trust_env"})


def guarded_transport(policy: AddressPolicy, **transport_kwargs: Any) -> GuardedTransport:
    """A :class:`GuardedTransport`: an httpx transport that connects only to addresses ``policy`` allows.

    ``transport_kwargs`` are ``verify``, ``limits`` and ``local_address`` (as ``httpx.AsyncHTTPTransport`` takes
    them); ``http1=True`` and ``http2=False`` are accepted, since HTTP/1.1 is what it speaks. Proxies, Unix sockets,
    HTTP/2 and settings from the environment are refused: a proxy would connect on our behalf, out of the guard's
    sight.
    """
    forbidden = _FORBIDDEN_TRANSPORT_KWARGS & transport_kwargs.keys()
    if transport_kwargs.pop("http1", True) is not True or transport_kwargs.pop("http2", False) is not False:
        forbidden |= {"anything but HTTP/1.1"}
    if forbidden:
        raise ValueError(f"guarded_transport does not support {', '.join(sorted(forbidden))}")
    unknown = transport_kwargs.keys() - {"verify", "limits", "local_address"}
    if unknown:
        raise TypeError(f"guarded_transport got unexpected arguments: {', '.join(sorted(unknown))}")
    return GuardedTransport(policy, **transport_kwargs)
