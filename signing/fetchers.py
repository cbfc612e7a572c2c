"""Online revocation (OCSP, CRL) and AIA issuer-certificate fetching over ``httpx``, for pyhanko-certvalidator.

:class:`HttpxFetcherBackend` is a :class:`~pyhanko_certvalidator.fetchers.api.FetcherBackend` built on the project's
single HTTP client library. pyhanko-certvalidator's own backends need aiohttp or requests and trust ``certifi``;
this one needs neither.

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
different event loops (each ``asyncio.run`` in a worker thread has its own). An ``httpx.AsyncClient`` belongs to the
loop it is used in, so the backend keeps one client per running loop; connections are not kept alive between
requests, so a client whose loop has ended holds no socket and is simply dropped. The caches, on the other hand,
belong to the backend and are shared by every loop and thread (guarded by a lock):

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
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Generic, TypeVar

import httpx
from asn1crypto import cms, crl, ocsp, pem, x509
from pyhanko_certvalidator import errors
from pyhanko_certvalidator.authority import Authority
from pyhanko_certvalidator.fetchers.api import (
    CertificateFetcher,
    CRLFetcher,
    FetcherBackend,
    Fetchers,
    FetchLimits,
    OCSPFetcher,
)
from pyhanko_certvalidator.fetchers.common_utils import (
    ACCEPTABLE_CERT_DER_ALIASES,
    ACCEPTABLE_CERT_PEM_ALIASES,
    ACCEPTABLE_PKCS7_DER_ALIASES,
    ACCEPTABLE_STRICT_CERT_CONTENT_TYPES,
    FetchBudget,
    FetchKind,
    cap_aia_urls,
    complete_certificate_fetch_jobs,
    crl_job_results_as_completed,
    enumerate_delivery_point_urls,
    format_ocsp_request,
    gather_aia_issuer_urls,
    ocsp_job_get_earliest,
    process_ocsp_response_data,
    queue_fetch_task,
    unpack_cert_content,
)
from pyhanko_certvalidator.util import get_ocsp_urls, get_relevant_crl_dps, issuer_serial

from adapters.netguard import BLOCKED_NETWORKS, AddressPolicy, guarded_transport, is_blocked_address

__all__ = ["BLOCKED_NETWORKS", "MAX_REDIRECTS", "HttpxFetcherBackend", "is_blocked_address"]

logger = logging.getLogger(__name__)

#: Redirects followed per request (CRL distribution points are sometimes moved behind one).
MAX_REDIRECTS = 3

_ALLOWED_SCHEMES = frozenset({"http", "https"})
#: Cached objects per cache (least recently used first out): URLs come from untrusted input.
_CACHE_MAX_ENTRIES = 256
#: Total DER bytes kept in the CRL cache.
_CRL_CACHE_MAX_BYTES = 64 * 1024 * 1024
#: Simultaneous connections per event loop.
_MAX_CONNECTIONS = 16
#: CRL, OCSP and AIA servers of government CAs may sit on private networks (a provincial intranet): only link-local
#: and cloud metadata addresses (:data:`BLOCKED_NETWORKS`) are refused, at connection time.
_FETCH_POLICY = AddressPolicy(allow_private=True)

_CERT_CONTENT_TYPES = (
    ACCEPTABLE_STRICT_CERT_CONTENT_TYPES
    | ACCEPTABLE_CERT_PEM_ALIASES
    | ACCEPTABLE_CERT_DER_ALIASES
    | ACCEPTABLE_PKCS7_DER_ALIASES
)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _utcnow() -> datetime:
    return datetime.now(UTC)


# ----------------------------------------------------------------------------------------------------------------------
# Address screening
# ----------------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------------------------


class _Cache(Generic[K, V]):
    """A thread-safe LRU map whose entries expire at a given time (``None``: never), bounded in entries and size."""

    def __init__(self, max_entries: int = _CACHE_MAX_ENTRIES, max_size: int | None = None) -> None:
        self._entries: OrderedDict[K, tuple[V, datetime | None, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._max_size = max_size
        self._size = 0

    def get(self, key: K) -> V | None:
        now = _utcnow()
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
        if expires is not None and expires <= _utcnow():
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


# ----------------------------------------------------------------------------------------------------------------------
# Backend
# ----------------------------------------------------------------------------------------------------------------------


class HttpxFetcherBackend(FetcherBackend):
    """Fetches OCSP responses, CRLs and issuer certificates with httpx, caching them for the backend's lifetime.

    :param timeout_seconds: deadline of each request as a whole (connection, upload, download, redirects).
    :param limits: request budget of each :meth:`get_fetchers` result, that is of each validation context.
    :param max_response_bytes: larger responses are abandoned while streaming and the fetch fails.
    :param user_agent: the ``User-Agent`` header sent.

    Use the same backend from any number of event loops and threads; :meth:`close` releases the HTTP clients (the
    backend stays usable, and keeps its caches). :meth:`clear_cache` forgets everything fetched.
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
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._ssl_context: ssl.SSLContext | None = None
        self._ocsp_cache: _Cache[Hashable, ocsp.OCSPResponse] = _Cache()
        self._crl_cache: _Cache[str, crl.CertificateList] = _Cache(max_size=_CRL_CACHE_MAX_BYTES)
        self._cert_cache: _Cache[str, tuple[x509.Certificate, ...]] = _Cache()

    # -- FetcherBackend ------------------------------------------------------------------------------------------------

    def get_fetchers(self) -> Fetchers:
        """Fetchers for one validation context: a fresh request budget, the backend's clients and caches."""
        budget = FetchBudget(self.limits)
        return Fetchers(
            ocsp_fetcher=_OCSPFetcher(self, budget),
            crl_fetcher=_CRLFetcher(self, budget),
            cert_fetcher=_CertificateFetcher(self, budget),
        )

    async def close(self) -> None:
        """Close every HTTP client: this loop's now, those of other running loops on their own loop."""
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        with self._lock:
            clients = list(self._clients.items())
            self._clients.clear()
        for loop, client in clients:
            if loop is current:
                await client.aclose()
            elif not loop.is_closed() and loop.is_running():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)
            # a client of a finished loop holds no connection (no keep-alive): nothing to release

    def clear_cache(self) -> None:
        """Forget every fetched OCSP response, CRL and certificate."""
        self._ocsp_cache.clear()
        self._crl_cache.clear()
        self._cert_cache.clear()

    # -- HTTP ----------------------------------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        """The HTTP client of the running event loop (created on first use; those of closed loops are dropped)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for stale in [other for other in self._clients if other.is_closed()]:
                del self._clients[stale]
            client = self._clients.get(loop)
            if client is None:
                if self._ssl_context is None:
                    # The operating system's trust store; never certifi, never SSL_CERT_FILE & co. from the env.
                    self._ssl_context = ssl.create_default_context()
                # No idle connection outlives its request, so a client left behind by a finished event loop holds
                # no socket: the backend can drop such clients without closing them.
                transport = guarded_transport(
                    _FETCH_POLICY,
                    verify=self._ssl_context,
                    limits=httpx.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=0),
                    http1=True,
                    http2=False,
                )
                client = httpx.AsyncClient(
                    transport=transport,
                    timeout=httpx.Timeout(self.timeout_seconds),
                    follow_redirects=True,
                    max_redirects=MAX_REDIRECTS,
                    trust_env=False,
                    headers={"User-Agent": self.user_agent, "Accept-Encoding": "identity"},
                )
                self._clients[loop] = client
            return client

    async def _fetch(
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
                async with self._client().stream(method, target, headers=headers, content=content) as response:
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


# ----------------------------------------------------------------------------------------------------------------------
# Fetchers
# ----------------------------------------------------------------------------------------------------------------------


class _Session(Generic[K, V]):
    """Per-validation bookkeeping: what was fetched (or failed) under which tag, and jobs under way."""

    def __init__(self) -> None:
        self.results: dict[K, V | Exception] = {}
        self.running: dict[K, asyncio.Event] = {}

    async def run(self, tag: K, job: Callable[[], Awaitable[V]]) -> V:
        return await queue_fetch_task(self.results, self.running, tag, job)  # type: ignore[return-value]

    def successes(self) -> Iterator[tuple[K, V]]:
        for tag, result in list(self.results.items()):
            if not isinstance(result, Exception):
                yield tag, result


def _describe(cert: x509.Certificate | cms.AttributeCertificateV2) -> str:
    if isinstance(cert, x509.Certificate):
        return cert.subject.human_friendly
    return "attribute certificate"


def _same_cert_id(a: ocsp.CertId, b: ocsp.CertId) -> bool:
    return all(
        a[field].native == b[field].native for field in ("issuer_name_hash", "issuer_key_hash", "serial_number")
    ) and (a["hash_algorithm"]["algorithm"].native == b["hash_algorithm"]["algorithm"].native)


def _ocsp_expiry(response: ocsp.OCSPResponse, request: ocsp.OCSPRequest) -> datetime | None:
    """The ``nextUpdate`` of the answer about the requested certificate; ``None`` when uncacheable."""
    try:
        wanted = request["tbs_request"]["request_list"][0]["req_cert"]
        basic = response.basic_ocsp_response
        if basic is None:
            return None
        for single in basic["tbs_response_data"]["responses"]:
            if _same_cert_id(single["cert_id"], wanted):
                next_update = single["next_update"].native
                return next_update if isinstance(next_update, datetime) else None
    except (ValueError, TypeError, KeyError):
        return None
    return None


class _OCSPFetcher(OCSPFetcher):
    certid_hash_algo = "sha1"  # what responders universally support (RFC 5019)

    def __init__(self, backend: HttpxFetcherBackend, budget: FetchBudget) -> None:
        self._backend = backend
        self._budget = budget
        self._session: _Session[tuple[bytes, Hashable, tuple[str, ...]], ocsp.OCSPResponse] = _Session()

    async def fetch(
        self, cert: x509.Certificate | cms.AttributeCertificateV2, authority: Authority
    ) -> ocsp.OCSPResponse:
        try:
            urls = tuple(get_ocsp_urls(cert))
        except ValueError as exc:  # asn1crypto cannot decode some URIs (IPv6 literals among them)
            raise errors.OCSPFetchError(f"Unreadable OCSP URL in {_describe(cert)}: {exc}") from exc
        # The responder URLs are part of the key: a hostile certificate naming the same issuer and serial as a real
        # one but another responder must not put its responder's answer in the real certificate's place.
        tag = (issuer_serial(cert), authority.hashable, urls)
        return await self._session.run(tag, lambda: self._fetch(cert, authority, tag))

    async def _fetch(
        self,
        cert: x509.Certificate | cms.AttributeCertificateV2,
        authority: Authority,
        tag: tuple[bytes, Hashable, tuple[str, ...]],
    ) -> ocsp.OCSPResponse:
        cache = self._backend._ocsp_cache
        cached = cache.get(tag)
        if cached is not None:
            logger.debug("OCSP response for %s served from cache", _describe(cert))
            return cached
        urls = tag[2]
        if not urls:
            raise errors.OCSPFetchError("No URLs to fetch OCSP responses from")
        try:
            request = format_ocsp_request(
                cert,  # type: ignore[arg-type]  # attribute certificates are handled too
                authority,
                certid_hash_algo=self.certid_hash_algo,
                request_nonces=True,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise errors.OCSPFetchError(f"Cannot build an OCSP request for {_describe(cert)}: {exc}") from exc
        der_request = request.dump()

        async def ask(url: str) -> ocsp.OCSPResponse:
            body, _ = await self._backend._fetch(
                FetchKind.OCSP,
                url,
                self._budget,
                method="POST",
                accept="application/ocsp-response",
                content=der_request,
                content_type="application/ocsp-request",
            )
            try:
                return process_ocsp_response_data(body, ocsp_request=request, ocsp_url=url)
            except errors.OCSPFetchError:
                raise
            except (errors.OCSPValidationError, ValueError, TypeError) as exc:
                raise errors.OCSPFetchError(f"Unusable OCSP response from {url}: {exc}") from exc

        logger.info("Fetching OCSP status of %s from %s", _describe(cert), ", ".join(urls))
        response: ocsp.OCSPResponse = await ocsp_job_get_earliest(ask(url) for url in urls)
        cache.put(tag, response, _ocsp_expiry(response, request))
        return response

    def fetched_responses(self) -> Iterable[ocsp.OCSPResponse]:
        return [response for _, response in self._session.successes()]

    def fetched_responses_for_cert(
        self, cert: x509.Certificate | cms.AttributeCertificateV2
    ) -> Iterable[ocsp.OCSPResponse]:
        target = issuer_serial(cert)
        return [response for (serial, _, _), response in self._session.successes() if serial == target]


def _parse_crl(data: bytes, url: str) -> crl.CertificateList:
    try:
        if pem.detect(data):
            _, _, data = pem.unarmor(data)
        parsed = crl.CertificateList.load(data)
        tbs = parsed["tbs_cert_list"]
        tbs["issuer"].native  # noqa: B018 - force parsing: a malformed CRL fails here, not in the validator
        tbs["this_update"].native  # noqa: B018
        tbs["next_update"].native  # noqa: B018
        parsed["signature"].native  # noqa: B018
    except (ValueError, TypeError, KeyError) as exc:
        raise errors.CRLFetchError(f"{url} did not serve a CRL: {exc}") from exc
    return parsed


class _CRLFetcher(CRLFetcher):
    def __init__(self, backend: HttpxFetcherBackend, budget: FetchBudget) -> None:
        self._backend = backend
        self._budget = budget
        self._session: _Session[str, crl.CertificateList] = _Session()
        self._by_cert: dict[bytes, list[crl.CertificateList]] = {}

    async def fetch(
        self, cert: x509.Certificate | cms.AttributeCertificateV2, *, use_deltas: bool | None = True
    ) -> Iterable[crl.CertificateList]:
        key = issuer_serial(cert)
        known = self._by_cert.get(key)
        if known is not None:
            return known
        try:
            points = get_relevant_crl_dps(cert, use_deltas=bool(use_deltas))
        except ValueError as exc:
            raise errors.CRLFetchError(f"Unreadable CRL distribution points in {_describe(cert)}: {exc}") from exc
        urls: list[str] = []
        for point in points:
            try:
                found = list(enumerate_delivery_point_urls(point))
            except ValueError as exc:  # asn1crypto cannot decode some URIs (IPv6 literals among them)
                logger.warning("Skipping an unreadable CRL distribution point of %s: %s", _describe(cert), exc)
                continue
            urls.extend(url for url in found if url not in urls)
        if urls:
            logger.info("Fetching CRLs for %s", _describe(cert))
        # Raises the last CRLFetchError when every distribution point failed.
        results = [fetched async for fetched in crl_job_results_as_completed(self._single(url) for url in urls)]
        self._by_cert[key] = results
        return results

    async def _single(self, url: str) -> crl.CertificateList:
        return await self._session.run(url, lambda: self._download(url))

    async def _download(self, url: str) -> crl.CertificateList:
        cache = self._backend._crl_cache
        cached = cache.get(url)
        if cached is not None:
            logger.debug("CRL %s served from cache", url)
            return cached
        body, _ = await self._backend._fetch(
            FetchKind.CRL, url, self._budget, accept="application/pkix-crl, application/x-pkcs7-crl;q=0.5, */*;q=0.1"
        )
        parsed = _parse_crl(body, url)
        next_update = parsed["tbs_cert_list"]["next_update"].native
        if isinstance(next_update, datetime):
            cache.put(url, parsed, next_update, size=len(body))
        return parsed

    def fetched_crls(self) -> Iterable[crl.CertificateList]:
        unique: dict[bytes, crl.CertificateList] = {}
        for _, fetched in self._session.successes():
            unique.setdefault(fetched.signature, fetched)
        return list(unique.values())

    def fetched_crls_for_cert(
        self, cert: x509.Certificate | cms.AttributeCertificateV2
    ) -> Iterable[crl.CertificateList]:
        return self._by_cert[issuer_serial(cert)]  # KeyError when never fetched, as the API says


def _readable_urls(source: Callable[[], Iterable[str]]) -> list[str]:
    """The caIssuers URLs of a certificate or CRL; none when asn1crypto cannot decode them."""
    try:
        return list(source())
    except ValueError as exc:
        logger.warning("Ignoring unreadable caIssuers URLs: %s", exc)
        return []


class _CertificateFetcher(CertificateFetcher):
    def __init__(self, backend: HttpxFetcherBackend, budget: FetchBudget) -> None:
        self._backend = backend
        self._budget = budget
        self._session: _Session[str, tuple[x509.Certificate, ...]] = _Session()

    def fetch_cert_issuers(
        self, cert: x509.Certificate | cms.AttributeCertificateV2
    ) -> AsyncIterator[x509.Certificate]:
        urls = cap_aia_urls(self._budget, _readable_urls(lambda: gather_aia_issuer_urls(cert)))
        logger.info("Fetching issuer certificates of %s", _describe(cert))
        return complete_certificate_fetch_jobs([self._fetch_certs(url) for url in urls])

    def fetch_crl_issuers(self, certificate_list: crl.CertificateList) -> AsyncIterator[x509.Certificate]:
        urls = cap_aia_urls(self._budget, _readable_urls(lambda: certificate_list.issuer_cert_urls))
        return complete_certificate_fetch_jobs([self._fetch_certs(url) for url in urls])

    async def _fetch_certs(self, url: str) -> tuple[x509.Certificate, ...]:
        return await self._session.run(url, lambda: self._download(url))

    async def _download(self, url: str) -> tuple[x509.Certificate, ...]:
        cache = self._backend._cert_cache
        cached = cache.get(url)
        if cached is not None:
            logger.debug("Certificates from %s served from cache", url)
            return cached
        body, media_type = await self._backend._fetch(
            FetchKind.CERT, url, self._budget, accept=",".join(sorted(_CERT_CONTENT_TYPES))
        )
        if media_type is not None and media_type not in _CERT_CONTENT_TYPES:
            raise errors.CertificateFetchError(f"{url} served {media_type!r}, not certificates")
        try:
            certs = tuple(unpack_cert_content(body, media_type, url, permit_pem=True))
            for cert in certs:
                cert["tbs_certificate"]["subject"].native  # noqa: B018 - force parsing
        except (ValueError, TypeError, KeyError) as exc:
            raise errors.CertificateFetchError(f"{url} did not serve certificates: {exc}") from exc
        if certs:
            cache.put(url, certs, None)
        return certs

    def fetched_certs(self) -> Iterable[x509.Certificate]:
        unique: dict[bytes, x509.Certificate] = {}
        for _, certs in self._session.successes():
            for cert in certs:
                unique.setdefault(cert.issuer_serial, cert)
        return list(unique.values())
