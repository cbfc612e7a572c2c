"""Online revocation (OCSP, CRL) and AIA issuer-certificate fetching over ``httpx``, for pyhanko-certvalidator.

:class:`HttpxFetcherBackend` is a :class:`~pyhanko_certvalidator.fetchers.api.FetcherBackend` built on the project's
single HTTP client library: it owns the HTTP clients, the address screening and the caches, and hands each validation
the fetchers of :mod:`signing.fetchjobs`. pyhanko-certvalidator's own backends need aiohttp or requests and trust
``certifi``; this one needs neither.

The URLs fetched here come from certificates and CRLs inside untrusted documents, so:

* only ``http://`` and ``https://`` URLs are fetched (``ldap://``, ``file://``... are skipped);
* nothing is ever sent to a link-local or cloud-metadata address (:data:`BLOCKED_NETWORKS`), whether the URL names
  it literally, through a host name that resolves to it, or through a redirect: the address is checked at connection
  time, on the very address that is connected to, so DNS rebinding cannot get around it;
* every request has a deadline (``timeout_seconds`` for the whole exchange, not only per socket operation), at most
  :data:`MAX_REDIRECTS` redirects and a response size cap (``max_response_bytes``, enforced while streaming);
* :class:`~pyhanko_certvalidator.fetchers.api.FetchLimits` bound the number of requests each validation may cause;
* proxies and CA bundles from the environment are not used (``trust_env=False``); HTTPS is verified against the
  operating system's trust store, never ``certifi``.

One backend lives as long as the :class:`~signing.trust.TrustStore` that made it, and may serve validations run in
different event loops (each ``asyncio.run`` in a worker thread has its own). An HTTP client belongs to the loop it is
used in, and fetches are few (their answers are cached), so each download has a client of its own, closed when it
ends: no connection outlives its request. The caches, on the other hand, belong to the backend and are shared by
every loop and thread (:mod:`signing.fetchcache`):

* OCSP responses per certificate (issuer name and key, serial number, responder URLs), reused until their
  ``nextUpdate``;
* CRLs per URL, reused until their ``nextUpdate``;
* issuer certificates per URL.

Objects without a ``nextUpdate`` are not cached (RFC 6960 §4.2.2.1: newer information is always available).
Every validation still checks whatever it is given: the caches only save network round trips.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Hashable

import httpx
from asn1crypto import crl, ocsp, x509
from pyhanko_certvalidator.fetchers.api import FetcherBackend, Fetchers, FetchLimits
from pyhanko_certvalidator.fetchers.common_utils import FetchBudget, FetchKind

from adapters.connections import guarded_transport
from adapters.netguard import BLOCKED_NETWORKS, AddressPolicy, is_blocked_address

from .fetchcache import ExpiringCache
from .fetchjobs import HttpxCertificateFetcher, HttpxCRLFetcher, HttpxOCSPFetcher

__all__ = ["BLOCKED_NETWORKS", "MAX_REDIRECTS", "HttpxFetcherBackend", "is_blocked_address"]

logger = logging.getLogger(__name__)

#: Redirects followed per request (CRL distribution points are sometimes moved behind one).
MAX_REDIRECTS = 3

_ALLOWED_SCHEMES = frozenset({"http", "https"})
#: Total DER bytes kept in the CRL cache.
_CRL_CACHE_MAX_BYTES = 64 * 1024 * 1024
#: Simultaneous connections per event loop.
_MAX_CONNECTIONS = 16
#: CRL, OCSP and AIA servers of government CAs may sit on private networks (a provincial intranet): only link-local
#: and cloud metadata addresses (:data:`BLOCKED_NETWORKS`) are refused, at connection time.
_FETCH_POLICY = AddressPolicy(allow_private=True)


def _checked_url(url: str, kind: FetchKind) -> httpx.URL:
    """``url`` parsed, or the fetch error of ``kind`` when it is not http(s) or names a blocked address."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise kind.value(f"Invalid URL {url!r}: {exc}") from exc
    if parsed.scheme not in _ALLOWED_SCHEMES:
        raise kind.value(f"Refusing to fetch {url!r}: only http and https URLs are fetched")
    if not parsed.host:
        raise kind.value(f"Refusing to fetch {url!r}: no host")
    if is_blocked_address(parsed.host):
        raise kind.value(f"Refusing to fetch {url!r}: link-local or cloud metadata address")
    return parsed


class HttpxFetcherBackend(FetcherBackend):
    """Fetches OCSP responses, CRLs and issuer certificates with httpx, caching them for the backend's lifetime.

    :param timeout_seconds: deadline of each request as a whole (connection, upload, download, redirects).
    :param limits: request budget of each :meth:`get_fetchers` result, that is of each validation context.
    :param max_response_bytes: larger responses are abandoned while streaming and the fetch fails.
    :param user_agent: the ``User-Agent`` header sent.

    Use the same backend from any number of event loops and threads; :meth:`close` releases the HTTP clients (the
    backend stays usable, and keeps its caches). :meth:`clear_cache` forgets everything fetched. The fetchers of
    each validation share :meth:`download` and the caches ``ocsp_cache``, ``crl_cache`` and ``cert_cache``.
    """

    def __init__(
        self,
        *,
        timeout_seconds: float = 10.0,
        limits: FetchLimits = FetchLimits(),  # noqa: B008 - frozen dataclass
        max_response_bytes: int = 10 * 1024 * 1024,
        user_agent: str = "dvc-gateway",
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")
        self.timeout_seconds = timeout_seconds
        self.limits = limits
        self.max_response_bytes = max_response_bytes
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._ssl_context: ssl.SSLContext | None = None
        self.ocsp_cache: ExpiringCache[Hashable, ocsp.OCSPResponse] = ExpiringCache()
        self.crl_cache: ExpiringCache[str, crl.CertificateList] = ExpiringCache(max_size=_CRL_CACHE_MAX_BYTES)
        self.cert_cache: ExpiringCache[str, tuple[x509.Certificate, ...]] = ExpiringCache()

    # -- FetcherBackend ------------------------------------------------------------------------------------------------

    def get_fetchers(self) -> Fetchers:
        """Fetchers for one validation context: a fresh request budget, the backend's clients and caches."""
        budget = FetchBudget(self.limits)
        return Fetchers(
            ocsp_fetcher=HttpxOCSPFetcher(self, budget),
            crl_fetcher=HttpxCRLFetcher(self, budget),
            cert_fetcher=HttpxCertificateFetcher(self, budget),
        )

    async def close(self) -> None:
        """Nothing to release: each download has an HTTP client of its own, closed when it ends."""

    def clear_cache(self) -> None:
        """Forget every fetched OCSP response, CRL and certificate."""
        self.ocsp_cache.clear()
        self.crl_cache.clear()
        self.cert_cache.clear()

    # -- HTTP ----------------------------------------------------------------------------------------------------------

    def _new_client(self) -> httpx.AsyncClient:
        """An HTTP client for one download, on the running event loop (close it after)."""
        with self._lock:
            if self._ssl_context is None:
                # The operating system's trust store; never certifi, never SSL_CERT_FILE & co. from the env.
                self._ssl_context = ssl.create_default_context()
        transport = guarded_transport(
            _FETCH_POLICY,
            verify=self._ssl_context,
            limits=httpx.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=0),
        )
        return httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(self.timeout_seconds),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            trust_env=False,
            headers={"User-Agent": self.user_agent, "Accept-Encoding": "identity"},
        )

    async def download(
        self,
        kind: FetchKind,
        url: str,
        budget: FetchBudget,
        *,
        method: str = "GET",
        accept: str,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[bytes, str | None]:
        """The body and media type of a 2xx response to one request; the fetch error of ``kind`` on any failure.

        Refused URLs are not charged to ``budget``; every request that is made is.
        """
        error = kind.value
        target = _checked_url(url, kind)
        budget.charge(kind)
        headers = {"Accept": accept}
        if content_type is not None:
            headers["Content-Type"] = content_type
        limit = self.max_response_bytes
        logger.info("Fetching %s from %s", kind.name, url)
        try:
            async with asyncio.timeout(self.timeout_seconds):
                async with (
                    self._new_client() as client,
                    client.stream(method, target, headers=headers, content=content) as response,
                ):
                    if not response.is_success:
                        raise error(f"{url} answered HTTP {response.status_code}")
                    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                    if encoding not in ("", "identity"):
                        raise error(f"{url} answered with an unrequested content encoding ({encoding})")
                    declared = response.headers.get("Content-Length")
                    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
                        raise error(f"Response from {url} is too large ({declared} bytes, the limit is {limit})")
                    body = bytearray()
                    async for chunk in response.aiter_raw():
                        body += chunk
                        if len(body) > limit:
                            raise error(f"Response from {url} exceeds the limit of {limit} bytes")
                    media_type = response.headers.get("Content-Type")
        except (TimeoutError, httpx.TimeoutException) as exc:  # the whole-exchange deadline or a socket timeout
            raise error(f"Fetching {url} timed out after {self.timeout_seconds} s") from exc
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL, OSError) as exc:
            raise error(f"Fetching {url} failed: {exc}") from exc
        if media_type is not None:
            media_type = media_type.split(";", 1)[0].strip().lower() or None
        return bytes(body), media_type
