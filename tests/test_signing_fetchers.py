"""The httpx fetcher backend: online OCSP / CRL / AIA fetching, caching, limits and SSRF safety.

The shared test PKI (``tests/pki.py``) serves the real OCSP responder, CRLs and CA certificate; a second, local
server (:class:`MiscServer`) plays the misbehaving hosts: a responder that hangs, a CRL that never ends, redirects.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import AuthorityInformationAccessOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    CertificateFetchError,
    CRLFetchError,
    InsufficientRevinfoError,
    OCSPFetchError,
    RevokedError,
)
from pyhanko_certvalidator.fetchers.api import FetchLimits

import signing.fetchcache as fetchcache_module
from signing.fetchers import HttpxFetcherBackend, is_blocked_address
from tests.pki import Identity, PKIServer, TestPKI, issue_cert, make_crl, rsa_key, signer_subject

METADATA_URL = "http://169.254.169.254/latest/meta-data/"


# ----------------------------------------------------------------------------------------------------------------------
# A small server for misbehaving hosts
# ----------------------------------------------------------------------------------------------------------------------

Route = Callable[[BaseHTTPRequestHandler], None]


class MiscServer:
    """HTTP server on 127.0.0.1 (ephemeral port) in a thread; ``routes`` map a path to a handler; ``hits`` count."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.release = threading.Event()  # ends every hanging handler (set at teardown)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def _handle(self) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.hits[path] = server.hits.get(path, 0) + 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                route = server.routes.get(path)
                if route is None:
                    reply(self, 404, b"not found", "text/plain")
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _handle
            do_POST = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def count(self, path: str) -> int:
        with self._lock:
            return self.hits.get(path, 0)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def serve(body: bytes, content_type: str = "application/octet-stream", status: int = 200) -> Route:
    return lambda handler: reply(handler, status, body, content_type)


def hang(server: MiscServer) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        server.release.wait(30)

    return route


def endless(handler: BaseHTTPRequestHandler) -> None:
    """A body that never ends (no Content-Length, closed by the server only if the client goes away)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/pkix-crl")
    handler.send_header("Connection", "close")
    handler.end_headers()
    chunk = b"\x00" * 16384
    for _ in range(100_000):  # 1.6 GB at most: the client must cut it off long before
        handler.wfile.write(chunk)


def redirect(location: str) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


@pytest.fixture(scope="module")
def misc() -> Iterator[MiscServer]:
    server = MiscServer()
    server.start()
    yield server
    server.stop()


# ----------------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------------


def asn1(identity: Identity) -> asn1_x509.Certificate:
    return identity.asn1_cert()


async def validate(
    pki: TestPKI,
    cert: asn1_x509.Certificate,
    backend: HttpxFetcherBackend,
    *,
    with_ca: bool = True,
):
    """Validate ``cert`` to the test root, fetching whatever is needed, with revocation information required."""
    context = ValidationContext(
        trust_roots=[asn1(pki.root)],
        other_certs=[asn1(pki.ca)] if with_ca else [],
        allow_fetching=True,
        revocation_mode="require",
        fetcher_backend=backend,
    )
    return await CertificateValidator(cert, validation_context=context).async_validate_usage(set())


def issue_with_aia(
    pki: TestPKI,
    directory: Path,
    name: str,
    *,
    ca_issuers: tuple[str, ...] = (),
    ocsp_url: str | None = None,
    crl_url: str | None = None,
) -> Identity:
    """A ``ca``-issued signer certificate with caIssuers (and optional OCSP / CRL) URLs."""
    key = rsa_key()
    now = datetime.now(UTC).replace(microsecond=0)
    access = [
        x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url))
        for url in ca_issuers
    ]
    if ocsp_url:
        access.append(
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))
        )
    builder = (
        x509.CertificateBuilder()
        .subject_name(signer_subject(name))
        .issuer_name(pki.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.ca.key.public_key()), critical=False)  # type: ignore[arg-type]
    )
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    if crl_url:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_url)], relative_name=None, reasons=None, crl_issuer=None
        )
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    cert = builder.sign(pki.ca.key, hashes.SHA256())  # type: ignore[arg-type]
    return Identity(
        name=name, key=key, cert=cert, cert_path=directory / name, key_path=directory / name, chain=[pki.ca]
    )


def deltas(server: PKIServer | MiscServer, before: dict[str, int]) -> dict[str, int]:
    now = dict(server.hits)
    return {path: now[path] - before.get(path, 0) for path in now if now[path] != before.get(path, 0)}


@pytest.fixture
def backend() -> HttpxFetcherBackend:
    return HttpxFetcherBackend(timeout_seconds=5)


# ----------------------------------------------------------------------------------------------------------------------
# OCSP and CRL through a real validation
# ----------------------------------------------------------------------------------------------------------------------


async def test_ocsp_good_certificate_validates(pki, pki_server, backend):
    before = dict(pki_server.hits)
    path = await validate(pki, asn1(pki.good), backend)
    assert path.leaf.subject == asn1(pki.good).subject
    hits = deltas(pki_server, before)
    assert hits.get("/ocsp", 0) >= 1  # the signer's status came from the responder
    assert hits.get("/root.crl") == 1  # the issuing CA's status from the root's CRL
    await backend.close()


async def test_ocsp_revoked_certificate_is_rejected(pki, pki_server, backend):
    before = dict(pki_server.hits)
    with pytest.raises(RevokedError):
        await validate(pki, asn1(pki.revoked), backend)
    assert deltas(pki_server, before).get("/ocsp", 0) >= 1
    await backend.close()


async def test_crl_is_fetched_when_there_is_no_ocsp_url(pki, pki_server, misc, tmp_path, backend):
    good = issue_cert(pki.ca, "crl_only_good", tmp_path, crl_url=misc.url("/only.crl"))
    revoked = issue_cert(pki.ca, "crl_only_revoked", tmp_path, crl_url=misc.url("/only.crl"))
    crl = make_crl(pki.ca, [(revoked.cert, datetime.now(UTC) - timedelta(hours=2))])
    misc.routes["/only.crl"] = serve(crl.public_bytes(serialization.Encoding.DER), "application/pkix-crl")
    ocsp_before = pki_server.hits.get("/ocsp", 0)

    await validate(pki, asn1(good), backend)
    with pytest.raises(RevokedError):
        await validate(pki, asn1(revoked), backend)

    assert pki_server.hits.get("/ocsp", 0) == ocsp_before
    assert misc.count("/only.crl") == 1  # fetched once, then served from the cache
    await backend.close()


async def test_pem_crl_is_accepted(pki, misc, tmp_path, backend):
    cert = issue_cert(pki.ca, "pem_crl", tmp_path, crl_url=misc.url("/pem.crl"))
    misc.routes["/pem.crl"] = serve(pki.crl_pem_path.read_bytes(), "application/x-pem-file")
    await validate(pki, asn1(cert), backend)
    await backend.close()


# ----------------------------------------------------------------------------------------------------------------------
# Caching
# ----------------------------------------------------------------------------------------------------------------------


async def test_second_validation_is_served_from_the_cache(pki, pki_server, backend):
    await validate(pki, asn1(pki.good_ec), backend)
    before = dict(pki_server.hits)
    await validate(pki, asn1(pki.good_ec), backend)
    assert deltas(pki_server, before) == {}
    await backend.close()


def test_backend_works_across_event_loops_and_threads(pki, pki_server):
    backend = HttpxFetcherBackend(timeout_seconds=5)
    before = dict(pki_server.hits)
    asyncio.run(validate(pki, asn1(pki.tsa), backend))
    first = deltas(pki_server, before)
    assert first.get("/ocsp", 0) >= 1

    # a second asyncio.run, in another thread: a new client for the new loop, the same caches
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(asyncio.run(validate(pki, asn1(pki.tsa), backend))))
    worker.start()
    worker.join(30)
    assert outcome and not isinstance(outcome[0], BaseException)
    assert deltas(pki_server, before) == first  # nothing fetched again

    # and a cache miss in a third loop fetches over a fresh client; nothing is left open by the finished loops
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(validate(pki, asn1(pki.good), backend))
        gc.collect()
    assert deltas(pki_server, before)["/ocsp"] > first["/ocsp"]
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
    asyncio.run(backend.close())


def test_backend_is_shared_by_concurrent_threads(pki, pki_server):
    """Several verifications at once, each in its own thread and event loop, over one backend."""
    backend = HttpxFetcherBackend(timeout_seconds=5)
    targets = [pki.good, pki.good_ec, pki.tsa, pki.good, pki.good_ec, pki.tsa]
    failures: list[BaseException] = []

    def run(identity: Identity) -> None:
        try:
            asyncio.run(validate(pki, asn1(identity), backend))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(identity,)) for identity in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    before = dict(pki_server.hits)
    for identity in targets[:3]:  # everything is cached by now
        asyncio.run(validate(pki, asn1(identity), backend))
    assert deltas(pki_server, before) == {}


async def test_ocsp_response_is_fetched_again_after_its_next_update(pki, pki_server, backend, monkeypatch):
    await validate(pki, asn1(pki.good), backend)
    before = dict(pki_server.hits)
    later = datetime.now(UTC) + timedelta(days=2)  # the responder's nextUpdate is now + 1 day
    monkeypatch.setattr(fetchcache_module, "utcnow", lambda: later)
    fetchers = backend.get_fetchers()
    await fetchers.ocsp_fetcher.fetch(asn1(pki.good), _authority(pki))
    assert deltas(pki_server, before) == {"/ocsp": 1}
    await backend.close()


def _authority(pki: TestPKI):
    from pyhanko_certvalidator.authority import AuthorityWithCert

    return AuthorityWithCert(asn1(pki.ca))


async def test_aia_issuer_certificate_is_fetched_and_cached(pki, pki_server, tmp_path, backend):
    cert = issue_with_aia(
        pki,
        tmp_path,
        "AIA signer",
        ca_issuers=(f"{pki_server.base_url}/ca.crt",),
        crl_url=pki_server.crl_url,
    )
    before = dict(pki_server.hits)
    await validate(pki, asn1(cert), backend, with_ca=False)  # the CA certificate is not known locally
    assert deltas(pki_server, before).get("/ca.crt") == 1
    await validate(pki, asn1(cert), backend, with_ca=False)
    assert deltas(pki_server, before).get("/ca.crt") == 1
    await backend.close()


async def test_pkcs7_and_pem_certificate_bundles_are_unpacked(pki, misc, backend):
    from asn1crypto import cms

    ca = asn1(pki.ca)
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [],
            "encap_content_info": {"content_type": "data"},
            "certificates": [ca],
            "signer_infos": [],
        }
    )
    p7 = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    misc.routes["/ca.p7c"] = serve(p7, "application/pkcs7-mime")
    misc.routes["/ca.pem"] = serve(pki.ca.cert.public_bytes(serialization.Encoding.PEM), "application/x-pem-file")
    misc.routes["/ca.html"] = serve(b"<html></html>", "text/html")
    cert_fetcher = backend.get_fetchers().cert_fetcher
    for path in ("/ca.p7c", "/ca.pem"):
        fetched = await cert_fetcher._fetch_certs(misc.url(path))
        assert [c.dump() for c in fetched] == [ca.dump()]
    with pytest.raises(CertificateFetchError):
        await cert_fetcher._fetch_certs(misc.url("/ca.html"))
    await backend.close()


# ----------------------------------------------------------------------------------------------------------------------
# Failures: timeouts, oversized answers, errors
# ----------------------------------------------------------------------------------------------------------------------


async def test_hanging_server_times_out_with_a_revocation_failure(pki, misc, tmp_path):
    misc.routes["/hang-ocsp"] = hang(misc)
    misc.routes["/hang.crl"] = hang(misc)
    cert = issue_cert(pki.ca, "hang", tmp_path, ocsp_url=misc.url("/hang-ocsp"), crl_url=misc.url("/hang.crl"))
    backend = HttpxFetcherBackend(timeout_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(InsufficientRevinfoError, match="no revocation information"):
        await validate(pki, asn1(cert), backend)
    assert time.monotonic() - started < 5
    assert misc.count("/hang-ocsp") >= 1 and misc.count("/hang.crl") >= 1

    fetchers = backend.get_fetchers()
    with pytest.raises(OCSPFetchError, match="timed out"):
        await fetchers.ocsp_fetcher.fetch(asn1(cert), _authority(pki))
    with pytest.raises(CRLFetchError, match="timed out"):
        await fetchers.crl_fetcher.fetch(asn1(cert))
    await backend.close()


async def test_oversized_response_is_cut_off(pki, misc, tmp_path):
    misc.routes["/endless.crl"] = endless
    big = b"\x30" * (256 * 1024)
    misc.routes["/declared.crl"] = serve(big, "application/pkix-crl")
    backend = HttpxFetcherBackend(timeout_seconds=10, max_response_bytes=64 * 1024)
    fetchers = backend.get_fetchers()

    endless_cert = issue_cert(pki.ca, "endless", tmp_path, crl_url=misc.url("/endless.crl"))
    started = time.monotonic()
    with pytest.raises(CRLFetchError, match="exceeds the limit"):
        await fetchers.crl_fetcher.fetch(asn1(endless_cert))
    assert time.monotonic() - started < 5  # cut off at the limit, not read to the end or to the timeout

    declared_cert = issue_cert(pki.ca, "declared", tmp_path, crl_url=misc.url("/declared.crl"))
    with pytest.raises(CRLFetchError, match="too large"):
        await fetchers.crl_fetcher.fetch(asn1(declared_cert))

    with pytest.raises(InsufficientRevinfoError):
        await validate(pki, asn1(endless_cert), backend)
    await backend.close()


async def test_http_errors_and_bad_payloads_map_to_fetch_errors(pki, misc, tmp_path, backend):
    from cryptography.x509 import ocsp as crypto_ocsp

    try_later = crypto_ocsp.OCSPResponseBuilder.build_unsuccessful(crypto_ocsp.OCSPResponseStatus.TRY_LATER)
    misc.routes["/ocsp-try-later"] = serve(
        try_later.public_bytes(serialization.Encoding.DER), "application/ocsp-response"
    )
    misc.routes["/ocsp-500"] = serve(b"boom", "text/plain", status=500)
    misc.routes["/garbage.crl"] = serve(b"not a CRL", "application/pkix-crl")
    fetchers = backend.get_fetchers()

    for path in ("/ocsp-try-later", "/ocsp-500"):
        cert = issue_cert(pki.ca, f"ocsp{path.replace('/', '_')}", tmp_path, ocsp_url=misc.url(path))
        with pytest.raises(OCSPFetchError):
            await fetchers.ocsp_fetcher.fetch(asn1(cert), _authority(pki))
    cert = issue_cert(pki.ca, "garbage", tmp_path, crl_url=misc.url("/garbage.crl"))
    with pytest.raises(CRLFetchError):
        await fetchers.crl_fetcher.fetch(asn1(cert))
    # nothing unusable was cached
    assert len(backend.ocsp_cache) == 0 and len(backend.crl_cache) == 0
    await backend.close()


async def test_fetch_limits_are_enforced(pki, pki_server, backend):
    limited = HttpxFetcherBackend(timeout_seconds=5, limits=FetchLimits(max_requests=0))
    before = dict(pki_server.hits)
    with pytest.raises(InsufficientRevinfoError):
        await validate(pki, asn1(pki.good), limited)
    assert deltas(pki_server, before) == {}
    await limited.close()


# ----------------------------------------------------------------------------------------------------------------------
# SSRF safety and URL schemes
# ----------------------------------------------------------------------------------------------------------------------


async def test_metadata_address_is_never_requested(pki, tmp_path, backend, connections):
    cert = issue_cert(pki.ca, "ssrf", tmp_path, ocsp_url=METADATA_URL, crl_url="http://[fe80::1]/ca.crl")
    with pytest.raises(InsufficientRevinfoError):
        await validate(pki, asn1(cert), backend)
    fetchers = backend.get_fetchers()
    with pytest.raises(OCSPFetchError, match="metadata"):
        await fetchers.ocsp_fetcher.fetch(asn1(cert), _authority(pki))
    # asn1crypto turns "http://[fe80::1]/ca.crl" into "http://fe80::1/ca.crl": refused as unreadable instead
    with pytest.raises(CRLFetchError, match=r"metadata|Invalid URL|Unreadable"):
        await fetchers.crl_fetcher.fetch(asn1(cert))
    for url in (
        METADATA_URL,
        "http://2852039166/latest/meta-data/",  # 169.254.169.254 as one decimal number
        "http://0xa9fea9fe/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1%25eth0]/",
    ):
        with pytest.raises(CertificateFetchError):
            await fetchers.cert_fetcher._fetch_certs(url)
    assert [host for host in connections if not host.startswith("127.")] == []
    await backend.close()


async def test_redirect_to_metadata_address_is_refused(pki, misc, tmp_path, backend, connections):
    misc.routes["/moved.crl"] = redirect(METADATA_URL)
    cert = issue_cert(pki.ca, "moved", tmp_path, crl_url=misc.url("/moved.crl"))
    with pytest.raises(CRLFetchError, match="metadata"):
        await backend.get_fetchers().crl_fetcher.fetch(asn1(cert))
    assert misc.count("/moved.crl") >= 1
    assert connections and all(host == "127.0.0.1" for host in connections)
    await backend.close()


async def test_host_name_resolving_to_metadata_address_is_refused(pki, tmp_path, backend, connections, monkeypatch):
    real_getaddrinfo = socket.getaddrinfo

    def fake_getaddrinfo(host, port, *args, **kwargs):
        if host == "metadata.attacker.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("169.254.169.254", port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    cert = issue_cert(pki.ca, "rebind", tmp_path, crl_url="http://metadata.attacker.test/ca.crl")
    with pytest.raises(CRLFetchError, match="metadata"):
        await backend.get_fetchers().crl_fetcher.fetch(asn1(cert))
    assert connections == []
    await backend.close()


async def test_non_http_urls_are_skipped(pki, tmp_path, backend, connections):
    cert = issue_cert(pki.ca, "ldap", tmp_path, crl_url="ldap://ldap.example.vn/cn=CA?certificateRevocationList")
    assert list(await backend.get_fetchers().crl_fetcher.fetch(asn1(cert))) == []
    with pytest.raises(CertificateFetchError, match="only http"):
        await backend.get_fetchers().cert_fetcher._fetch_certs("file:///etc/passwd")
    assert connections == []


@pytest.mark.parametrize(
    ("host", "blocked"),
    [
        ("169.254.169.254", True),
        ("169.254.0.1", True),
        ("[fe80::1]", True),
        ("fe80::abcd%eth0", True),
        ("::ffff:169.254.169.254", True),
        ("fd00:ec2::254", True),
        ("100.100.100.200", True),
        ("2852039166", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("ca.gov.vn", False),
        ("2001:db8::1", False),
    ],
)
def test_blocked_addresses(host, blocked):
    assert is_blocked_address(host) is blocked


async def test_close_keeps_the_backend_usable(pki, pki_server, backend):
    await validate(pki, asn1(pki.good), backend)
    await backend.close()
    backend.clear_cache()
    before = dict(pki_server.hits)
    await validate(pki, asn1(pki.good), backend)
    assert deltas(pki_server, before).get("/ocsp", 0) >= 1
    await backend.close()
