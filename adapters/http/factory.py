"""Builds every adapter's ``httpx.AsyncClient`` through one transport chain.

:class:`ClientFactory` stacks the guarded network transport, the :class:`~adapters.http.transport.LimitedTransport`
and its :data:`TransportWrapper` links (recording, replay, fault injection); :data:`default_factory` is the
process-wide one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from http.cookiejar import CookieJar
from typing import Any

import httpx

from adapters.connections import guarded_transport
from adapters.http.settings import USER_AGENT, ClientSettings, build_ssl_context
from adapters.http.transport import LimitedTransport

__all__ = ["ClientFactory", "GatewayClient", "TransportWrapper", "default_factory"]

logger = logging.getLogger(__name__)

#: ``(inner transport, upstream name) -> transport``: one link of the transport chain.
TransportWrapper = Callable[[httpx.AsyncBaseTransport, str], httpx.AsyncBaseTransport]


class _Cookies(httpx.Cookies):
    """httpx's cookie jar, which leaves alone the answers that set no cookie (most of them): httpx would build a
    request and a response in the standard library's shape for each answer, to find nothing in it."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "Set-Cookie" in response.headers or "Set-Cookie2" in response.headers:
            super().extract_cookies(response)


class GatewayClient(httpx.AsyncClient):
    """The ``httpx.AsyncClient`` the factory builds: httpx's own, with a cookie jar that keeps cookies as httpx's
    does, for less work per answer."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cookies = self._cookies

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: httpx.Cookies | CookieJar | dict[str, str] | list[tuple[str, str]]) -> None:
        self._cookies = _Cookies(cookies)


class ClientFactory:
    """Builds every adapter's ``httpx.AsyncClient``; its wrappers see every exchange of every upstream.

    The transport of a client is, from the network up: the guarded HTTP transport (limits, TLS, mutual TLS, SSRF
    guard), the :class:`LimitedTransport` (size cap, total deadline), then each wrapper in the order given: the first
    wrapper wraps the guarded transport, the last one sees requests first. A wrapper receives the upstream's name
    (``"agency:000.00.23.H38"``, ``"national_portal"``...) and may ignore the inner transport (replay does).
    Wrappers added later apply to clients built later.
    """

    def __init__(self, wrappers: Sequence[TransportWrapper] = ()) -> None:
        self._wrappers: list[TransportWrapper] = list(wrappers)

    @property
    def wrappers(self) -> tuple[TransportWrapper, ...]:
        return tuple(self._wrappers)

    def add_wrapper(self, wrapper: TransportWrapper) -> None:
        self._wrappers.append(wrapper)

    def transport(self, upstream: str, settings: ClientSettings) -> httpx.AsyncBaseTransport:
        """The transport chain of one upstream."""
        transport: httpx.AsyncBaseTransport = guarded_transport(
            settings.address_policy, verify=build_ssl_context(settings), limits=settings.limits()
        )
        transport = LimitedTransport(
            transport,
            upstream=upstream,
            max_response_bytes=settings.max_response_bytes,
            total_timeout_seconds=settings.total_timeout_seconds,
        )
        for wrapper in self._wrappers:
            transport = wrapper(transport, upstream)
        return transport

    def client(self, upstream: str, settings: ClientSettings, *, auth: httpx.Auth | None = None) -> httpx.AsyncClient:
        """A client for ``upstream``; close it (``aclose`` or ``async with``) when the adapter is done with it.

        The client always has:

        * timeouts: per operation (``timeout_seconds``, ``connect_timeout_seconds``) and for the whole exchange
          including the body (``total_timeout_seconds``);
        * a connection pool bounded by ``max_connections`` / ``max_keepalive``;
        * TLS verified against the operating system's trust store, a given CA bundle or a given ``ssl.SSLContext``,
          with an optional client certificate (mutual TLS);
        * the SSRF guard (:mod:`adapters.netguard`) on the address actually connected to;
        * a response size cap enforced while streaming (``max_response_bytes``), so an endless or huge answer never
          sits in memory whole; one request may lower it with :func:`~adapters.http.transport.response_limit` (a WSDL
          document, for instance), and a response over the cap fails with
          :class:`~adapters.http.transport.ResponseTooLargeError`;
        * no redirects followed, no proxy or CA settings taken from the environment (``trust_env=False``);
        * the factory's transport wrappers: recording, replay and fault injection plug in there, for SOAP (zeep's
          httpx transport) and REST alike.
        """
        if settings.verify is False:
            logger.warning("TLS certificate verification is disabled for upstream %s", upstream)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **settings.headers}
        logger.debug("HTTP client for upstream %s at %s", upstream, settings.base_url)
        return GatewayClient(
            base_url=settings.base_url,
            transport=self.transport(upstream, settings),
            timeout=settings.timeout(),
            headers=headers,
            auth=auth,
            follow_redirects=False,
            trust_env=False,
        )


#: The process-wide factory: the daemon adds its recording/replay wrappers here.
default_factory = ClientFactory()
