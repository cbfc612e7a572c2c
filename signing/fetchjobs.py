"""The three fetchers of one validation (OCSP, CRL, issuer certificates) over an HTTP backend (:class:`Downloader`).

Each validation context gets its own fetchers with their own request budget and bookkeeping of what was fetched; the
backend they share carries the HTTP clients and the caches. Malformed answers become pyhanko-certvalidator's fetch
errors here, so a broken CRL or OCSP response never reaches the validator as data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Iterable, Iterator
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from asn1crypto import cms, crl, ocsp, pem, x509
from pyhanko_certvalidator import errors
from pyhanko_certvalidator.authority import Authority
from pyhanko_certvalidator.fetchers.api import CertificateFetcher, CRLFetcher, OCSPFetcher
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

from .fetchcache import ExpiringCache

__all__ = [
    "CERT_CONTENT_TYPES",
    "Downloader",
    "FetchSession",
    "HttpxCRLFetcher",
    "HttpxCertificateFetcher",
    "HttpxOCSPFetcher",
]

logger = logging.getLogger(__name__)

#: The media types an AIA issuer-certificate URL may answer with.
CERT_CONTENT_TYPES = (
    ACCEPTABLE_STRICT_CERT_CONTENT_TYPES
    | ACCEPTABLE_CERT_PEM_ALIASES
    | ACCEPTABLE_CERT_DER_ALIASES
    | ACCEPTABLE_PKCS7_DER_ALIASES
)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Downloader(Protocol):
    """What the fetchers need from their backend (:class:`signing.fetchers.HttpxFetcherBackend`): one screened,
    bounded HTTP exchange, and the caches shared by every validation."""

    ocsp_cache: ExpiringCache[Hashable, ocsp.OCSPResponse]
    crl_cache: ExpiringCache[str, crl.CertificateList]
    cert_cache: ExpiringCache[str, tuple[x509.Certificate, ...]]

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
    ) -> tuple[bytes, str | None]: ...


class FetchSession(Generic[K, V]):
    """Per-validation bookkeeping: what was fetched (or failed) under which tag, and jobs under way."""

    def __init__(self) -> None:
        self.results: dict[K, V | Exception] = {}
        self.running: dict[K, asyncio.Event] = {}

    async def run(self, tag: K, job: Callable[[], Awaitable[V]]) -> V:
        """``job``'s result for ``tag``: run once per validation, awaited by every other request for ``tag``."""
        result = await queue_fetch_task(self.results, self.running, tag, job)
        if isinstance(result, Exception):  # pyHanko raises a failed job's error; its annotation allows returning it
            raise result
        return result

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


class HttpxOCSPFetcher(OCSPFetcher):
    certid_hash_algo = "sha1"  # what responders universally support (RFC 5019)

    def __init__(self, backend: Downloader, budget: FetchBudget) -> None:
        self._backend = backend
        self._budget = budget
        self._session: FetchSession[tuple[bytes, Hashable, tuple[str, ...]], ocsp.OCSPResponse] = FetchSession()

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
        cache = self._backend.ocsp_cache
        cached = cache.get(tag)
        if cached is not None:
            logger.debug("OCSP response for %s served from cache", _describe(cert))
            return cached
        urls = tag[2]
        if not urls:
            raise errors.OCSPFetchError("No URLs to fetch OCSP responses from")
        try:
            request = format_ocsp_request(
                cert,  # attribute certificates are handled too
                authority,
                certid_hash_algo=self.certid_hash_algo,
                request_nonces=True,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise errors.OCSPFetchError(f"Cannot build an OCSP request for {_describe(cert)}: {exc}") from exc
        der_request = request.dump()

        async def ask(url: str) -> ocsp.OCSPResponse:
            body, _ = await self._backend.download(
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

        logger.info("Downloader OCSP status of %s from %s", _describe(cert), ", ".join(urls))
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


class HttpxCRLFetcher(CRLFetcher):
    def __init__(self, backend: Downloader, budget: FetchBudget) -> None:
        self._backend = backend
        self._budget = budget
        self._session: FetchSession[str, crl.CertificateList] = FetchSession()
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
            logger.info("Downloader CRLs for %s", _describe(cert))
        # Raises the last CRLFetchError when every distribution point failed.
        results = [fetched async for fetched in crl_job_results_as_completed(self._single(url) for url in urls)]
        self._by_cert[key] = results
        return results

    async def _single(self, url: str) -> crl.CertificateList:
        return await self._session.run(url, lambda: self._download(url))

    async def _download(self, url: str) -> crl.CertificateList:
        cache = self._backend.crl_cache
        cached = cache.get(url)
        if cached is not None:
            logger.debug("CRL %s served from cache", url)
            return cached
        body, _ = await self._backend.download(
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


class HttpxCertificateFetcher(CertificateFetcher):
    def __init__(self, backend: Downloader, budget: FetchBudget) -> None:
        self._backend = backend
        self._budget = budget
        self._session: FetchSession[str, tuple[x509.Certificate, ...]] = FetchSession()

    def fetch_cert_issuers(
        self, cert: x509.Certificate | cms.AttributeCertificateV2
    ) -> AsyncGenerator[x509.Certificate, None]:
        urls = cap_aia_urls(self._budget, _readable_urls(lambda: gather_aia_issuer_urls(cert)))
        logger.info("Downloader issuer certificates of %s", _describe(cert))
        return complete_certificate_fetch_jobs([self._fetch_certs(url) for url in urls])

    def fetch_crl_issuers(self, certificate_list: crl.CertificateList) -> AsyncGenerator[x509.Certificate, None]:
        urls = cap_aia_urls(self._budget, _readable_urls(lambda: certificate_list.issuer_cert_urls))
        return complete_certificate_fetch_jobs([self._fetch_certs(url) for url in urls])

    async def _fetch_certs(self, url: str) -> tuple[x509.Certificate, ...]:
        return await self._session.run(url, lambda: self._download(url))

    async def _download(self, url: str) -> tuple[x509.Certificate, ...]:
        cache = self._backend.cert_cache
        cached = cache.get(url)
        if cached is not None:
            logger.debug("Certificates from %s served from cache", url)
            return cached
        body, media_type = await self._backend.download(
            FetchKind.CERT, url, self._budget, accept=",".join(sorted(CERT_CONTENT_TYPES))
        )
        if media_type is not None and media_type not in CERT_CONTENT_TYPES:
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
