"""The OCSP responder / CRL server of the throw-away test PKI (see :mod:`tests.pki`)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tests.pki_certificates import _now
from tests.pki_hierarchy import TestPKI


@dataclass(frozen=True)
class _Status:
    """What the responder says about one serial number of ``ca``."""

    status: ocsp.OCSPCertStatus
    revoked_at: datetime | None = None
    reason: x509.ReasonFlags | None = None


def _key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING contents (without the unused-bits octet), as hashed in an OCSP CertID."""
    spki = asn1_keys.PublicKeyInfo.load(
        cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return spki["public_key"].contents[1:]


class PKIServer:
    """HTTP server on 127.0.0.1 (ephemeral port), in a daemon thread, started in ``__enter__``, stopped in ``__exit__``.

    Serves ``POST /ocsp`` and ``GET /ocsp/<url-encoded base64 request>`` (RFC 6960 appendix A), the ``ca`` CRL at
    ``/ca.crl`` (DER), the root CRL at ``/root.crl``, and the CA / root certificates (DER) at ``/ca.crt`` and
    ``/root.crt``. OCSP answers are signed by ``pki.ocsp_signer`` (delegated responder, its certificate included),
    producedAt now, thisUpdate now-1h, nextUpdate now+1d; the status is good / revoked (time and reason from the CRL) /
    unknown for serials or issuers it does not know; a nonce extension in the request is echoed.

    Usage: start the server, ``build_pki`` with its URLs, then :meth:`attach` the PKI. ``hits`` counts requests per
    path (``/ocsp`` for both OCSP forms), successful or not.
    """

    def __init__(self, pki: TestPKI | None = None) -> None:
        self.hits: dict[str, int] = {}
        self.base_url: str = ""
        self._pki: TestPKI | None = None
        self._statuses: dict[int, _Status] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if pki is not None:
            self.attach(pki)

    # -- set-up ------------------------------------------------------------------------------------------------------

    @property
    def pki(self) -> TestPKI:
        if self._pki is None:
            raise RuntimeError("PKIServer.attach(pki) has not been called")
        return self._pki

    @property
    def ocsp_url(self) -> str:
        return f"{self.base_url}/ocsp"

    @property
    def crl_url(self) -> str:
        return f"{self.base_url}/ca.crl"

    @property
    def root_crl_url(self) -> str:
        return f"{self.base_url}/root.crl"

    def attach(self, pki: TestPKI) -> None:
        """Serve ``pki``: every ``ca``-issued certificate is known (good), the CRL entries are revoked."""
        statuses = {identity.cert.serial_number: _Status(ocsp.OCSPCertStatus.GOOD) for identity in pki.ca_issued()}
        for entry in pki.crl:
            reason_ext = entry.extensions.get_extension_for_class(x509.CRLReason) if entry.extensions else None
            statuses[entry.serial_number] = _Status(
                ocsp.OCSPCertStatus.REVOKED,
                revoked_at=entry.revocation_date_utc,
                reason=reason_ext.value.reason if reason_ext else None,
            )
        with self._lock:
            self._pki = pki
            self._statuses = statuses

    def register(
        self,
        cert: x509.Certificate,
        *,
        revoked_at: datetime | None = None,
        reason: x509.ReasonFlags | None = None,
    ) -> None:
        """Make the responder know one more ``ca``-issued certificate (e.g. one made with :func:`issue_cert`)."""
        if revoked_at is None:
            status = _Status(ocsp.OCSPCertStatus.GOOD)
        else:
            status = _Status(ocsp.OCSPCertStatus.REVOKED, revoked_at=revoked_at, reason=reason)
        with self._lock:
            self._statuses[cert.serial_number] = status

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def __enter__(self) -> PKIServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="pki-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    # -- request handling --------------------------------------------------------------------------------------------

    def _count(self, path: str) -> None:
        with self._lock:
            self.hits[path] = self.hits.get(path, 0) + 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

            def _send(self, status: int, body: bytes = b"", content_type: str = "application/octet-stream") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                if path == "/ocsp" or path.startswith("/ocsp/"):
                    server._count("/ocsp")
                    encoded = urllib.parse.unquote(path[len("/ocsp/") :])
                    try:
                        der = base64.b64decode(encoded, validate=True)
                    except (binascii.Error, ValueError):
                        der = b""
                    self._send(200, server._ocsp_response(der), "application/ocsp-response")
                    return
                server._count(path)
                document = server._document(path)
                if document is None:
                    self._send(404, b"not found", "text/plain")
                else:
                    self._send(200, *document)

            def do_POST(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                server._count(path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if path != "/ocsp":
                    self._send(404, b"not found", "text/plain")
                    return
                self._send(200, server._ocsp_response(body), "application/ocsp-response")

        return Handler

    def _document(self, path: str) -> tuple[bytes, str] | None:
        pki = self._pki
        if pki is None:
            return None
        documents = {
            "/ca.crl": (pki.crl_path.read_bytes(), "application/pkix-crl"),
            "/root.crl": (pki.root_crl_path.read_bytes(), "application/pkix-crl"),
            "/ca.crt": (pki.ca.cert_der(), "application/pkix-cert"),
            "/root.crt": (pki.root.cert_der(), "application/pkix-cert"),
        }
        return documents.get(path)

    def _ocsp_response(self, der: bytes) -> bytes:
        """The DER OCSP response to a DER OCSP request (malformedRequest when it cannot be parsed)."""
        try:
            request = ocsp.load_der_ocsp_request(der)
            algorithm = request.hash_algorithm
            serial = request.serial_number
        except Exception:  # ValueError, UnsupportedAlgorithm, ... : anything unparseable is malformed
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(
                serialization.Encoding.DER
            )
        with self._lock:
            pki = self._pki
            status = self._statuses.get(serial)
        if pki is None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(
                serialization.Encoding.DER
            )

        # The responder only speaks for ``ca``: another issuer's serial is unknown whatever its value.
        ours = (
            request.issuer_name_hash == hashlib.new(algorithm.name, pki.ca.cert.subject.public_bytes()).digest()
            and request.issuer_key_hash == hashlib.new(algorithm.name, _key_bits(pki.ca.cert)).digest()
        )
        if not ours or status is None:
            status = _Status(ocsp.OCSPCertStatus.UNKNOWN)

        now = _now()
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=request.issuer_name_hash,
                issuer_key_hash=request.issuer_key_hash,
                serial_number=serial,
                algorithm=algorithm,
                cert_status=status.status,
                this_update=now - timedelta(hours=1),
                next_update=now + timedelta(days=1),
                revocation_time=status.revoked_at,
                revocation_reason=status.reason,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, pki.ocsp_signer.cert)
            .certificates([pki.ocsp_signer.cert])
        )
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce)
        except x509.ExtensionNotFound:
            pass
        else:
            builder = builder.add_extension(nonce.value, critical=False)
        signing_key: Any = pki.ocsp_signer.key  # an RSA key, see build_pki
        return builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
