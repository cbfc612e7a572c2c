"""The adapters' HTTP client factory: mutual TLS, response limits and error mapping."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import respx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters.errors import AuthError, BadResponseError, PermanentError, TransientError, UpstreamError
from adapters.http import (
    ClientFactory,
    ClientSettings,
    LimitedTransport,
    ResponseTooLargeError,
    bearer,
    build_ssl_context,
    json_body,
    map_http_errors,
    raise_for_status,
    response_limit,
)
from tests.adapters_http_support import BASE, LOCAL, settings
from tests.pki import Identity, issue_cert, rsa_key

# ----------------------------------------------------------------------------------------------------------------------
# TLS and mutual TLS
# ----------------------------------------------------------------------------------------------------------------------


def _server_identity(ca: Identity, directory: Path) -> tuple[Path, Path]:
    """A TLS server certificate for 127.0.0.1 issued by ``ca``."""
    key = rsa_key()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class _PeerEcho(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        peer = self.connection.getpeercert()
        subject = dict(part[0] for part in peer["subject"]) if peer else {}
        body = json.dumps({"client": subject.get("commonName")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # refused handshakes are expected


@pytest.fixture(scope="module")
def tls_pki(tmp_path_factory) -> dict[str, Identity | Path]:
    directory = tmp_path_factory.mktemp("mtls")
    ca = issue_cert(None, "mtls-ca", directory, ca=True, subject_cn="Test mTLS CA")
    client = issue_cert(ca, "gateway-client", directory, subject_cn="dvc-gateway H38")
    server_cert, server_key = _server_identity(ca, directory)
    return {"ca": ca, "client": client, "server_cert": server_cert, "server_key": server_key, "dir": directory}


@pytest.fixture(scope="module")
def mtls_server(tls_pki) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_pki["server_cert"], tls_pki["server_key"])
    context.load_verify_locations(cafile=tls_pki["ca"].cert_path)
    context.verify_mode = ssl.CERT_REQUIRED
    server = _QuietServer(("127.0.0.1", 0), _PeerEcho)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def test_mutual_tls_presents_the_client_certificate(tls_pki, mtls_server):
    client_id = tls_pki["client"]
    mtls = ClientSettings(
        base_url=mtls_server,
        verify=str(tls_pki["ca"].cert_path),
        client_cert=(client_id.cert_path, client_id.key_path),
        address_policy=LOCAL,
    )
    context = build_ssl_context(mtls)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1  # the given bundle only
    async with ClientFactory().client("agency:mtls", mtls) as client:
        response = await client.get("/")
    assert response.json() == {"client": "dvc-gateway H38"}

    # Without the client certificate, the server refuses the handshake (TLS 1.3: seen when reading the answer).
    plain = ClientSettings(base_url=mtls_server, verify=str(tls_pki["ca"].cert_path), address_policy=LOCAL)
    async with ClientFactory().client("agency:mtls", plain) as client:
        with pytest.raises(TransientError, match=r"cannot reach|connection broke|TLS"):
            with map_http_errors("agency:mtls"):
                await client.get("/")

    # Without the CA, the server is not trusted (the OS store does not know the test CA).
    untrusted = ClientSettings(
        base_url=mtls_server, client_cert=(client_id.cert_path, client_id.key_path), address_policy=LOCAL
    )
    async with ClientFactory().client("agency:mtls", untrusted) as client:
        with pytest.raises(TransientError):
            with map_http_errors("agency:mtls"):
                await client.get("/")


async def test_tls_verifies_the_name_asked_for_not_the_address_connected_to(tls_pki, mtls_server, monkeypatch):
    port = mtls_server.rsplit(":", 1)[1]
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return real("127.0.0.1" if host == "motcua.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    client_id = tls_pki["client"]
    identity = {"client_cert": (client_id.cert_path, client_id.key_path), "address_policy": LOCAL}
    named = ClientSettings(base_url=f"https://localhost:{port}", verify=str(tls_pki["ca"].cert_path), **identity)
    async with ClientFactory().client("agency:mtls", named) as client:
        assert (await client.get("/")).json() == {"client": "dvc-gateway H38"}  # "localhost" is in the certificate
    # The same server and address under a name its certificate does not carry.
    other = ClientSettings(base_url=f"https://motcua.test:{port}", verify=str(tls_pki["ca"].cert_path), **identity)
    async with ClientFactory().client("agency:mtls", other) as client:
        with pytest.raises(TransientError, match=r"TLS failure.*(hostname|match)"):
            with map_http_errors("agency:mtls"):
                await client.get("/")


async def test_clients_share_a_tls_context_until_its_files_change(tls_pki, mtls_server, tmp_path):
    client_id = tls_pki["client"]
    bundle = tmp_path / "trusted.pem"
    bundle.write_bytes(Path(tls_pki["ca"].cert_path).read_bytes())

    def mtls() -> ClientSettings:
        return ClientSettings(
            base_url=mtls_server,
            verify=str(bundle),
            client_cert=(client_id.cert_path, client_id.key_path),
            address_policy=LOCAL,
        )

    first, second = mtls(), mtls()
    before = build_ssl_context(first)
    assert build_ssl_context(second) is before  # loaded once
    assert build_ssl_context(settings()) is build_ssl_context(settings())  # the system store too
    async with ClientFactory().client("agency:mtls", first) as client:
        assert (await client.get("/")).json() == {"client": "dvc-gateway H38"}

    other_ca = issue_cert(None, "other-ca", tmp_path, ca=True, subject_cn="Another CA")
    replaced = tmp_path / "replaced.pem"
    replaced.write_bytes(Path(other_ca.cert_path).read_bytes())
    replaced.replace(bundle)  # as a bundle is updated: the new file renamed over the old
    assert build_ssl_context(second) is not before  # loaded again
    async with ClientFactory().client("agency:mtls", mtls()) as client:
        with pytest.raises(TransientError, match="TLS"):  # the server's CA is no longer trusted
            with map_http_errors("agency:mtls"):
                await client.get("/")


def test_client_key_with_a_password_and_unreadable_keys(tls_pki):
    client_id: Identity = tls_pki["client"]
    encrypted = tls_pki["dir"] / "encrypted.key"
    encrypted.write_bytes(
        client_id.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"key-pass"),
        )
    )
    good = settings(client_cert=(client_id.cert_path, encrypted), client_key_password=lambda: "key-pass")
    assert isinstance(build_ssl_context(good), ssl.SSLContext)
    wrong = settings(client_cert=(client_id.cert_path, encrypted), client_key_password=lambda: "wrong-pass")
    with pytest.raises(ValueError, match="Cannot load the client certificate") as caught:
        build_ssl_context(wrong)
    assert "wrong-pass" not in str(caught.value)
    with pytest.raises(ValueError, match="Cannot load the client certificate"):
        build_ssl_context(settings(client_cert=(client_id.cert_path, tls_pki["dir"] / "missing.key")))
    with pytest.raises(ValueError, match="Cannot load the CA bundle"):
        build_ssl_context(settings(verify=str(tls_pki["dir"] / "missing.pem")))
    insecure = build_ssl_context(settings(verify=False))
    assert insecure.verify_mode == ssl.CERT_NONE


# ----------------------------------------------------------------------------------------------------------------------
# Response size cap and total deadline
# ----------------------------------------------------------------------------------------------------------------------


def _streaming_transport(chunks: int, chunk: bytes, produced: list[int], delay: float = 0.0) -> httpx.MockTransport:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            await asyncio.sleep(delay)
            produced.append(len(chunk))
            yield chunk

    return httpx.MockTransport(lambda request: httpx.Response(200, content=body()))


async def test_response_size_cap_is_enforced_while_streaming():
    produced: list[int] = []
    limited = LimitedTransport(
        _streaming_transport(10_000, b"x" * 1024, produced), upstream="agency:x", max_response_bytes=64 * 1024
    )
    async with httpx.AsyncClient(transport=limited) as client:
        with pytest.raises(BadResponseError, match="larger than the limit of 65536 bytes") as caught:
            await client.get("https://agency.example.vn/big")
    assert caught.value.upstream == "agency:x"
    assert isinstance(caught.value, ResponseTooLargeError) and caught.value.retryable
    assert (caught.value.limit, caught.value.declared) == (65536, None)
    assert sum(produced) <= 65 * 1024  # abandoned right after the cap, not read to the end (10 MiB)


async def test_one_request_may_lower_the_cap_but_not_raise_it():
    produced: list[int] = []
    limited = LimitedTransport(
        _streaming_transport(100, b"x" * 1024, produced), upstream="agency:x", max_response_bytes=64 * 1024
    )
    async with httpx.AsyncClient(transport=limited) as client:
        with pytest.raises(ResponseTooLargeError, match="larger than the limit of 8192 bytes") as lowered:
            await client.get("https://agency.example.vn/big", extensions=response_limit(8192))
        assert lowered.value.limit == 8192 and sum(produced) <= 9 * 1024
        with pytest.raises(ResponseTooLargeError, match="larger than the limit of 65536 bytes"):
            await client.get("https://agency.example.vn/big", extensions=response_limit(10**9))
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="positive number of bytes"):
            response_limit(bad)  # type: ignore[arg-type]


async def test_declared_content_length_over_the_cap_is_refused_before_reading():
    with respx.mock() as mock:
        mock.get(f"{BASE}/big").respond(200, content=b"{" + b" " * 4000 + b"}")
        async with ClientFactory().client("agency:x", settings(max_response_bytes=1000)) as client:
            with pytest.raises(BadResponseError, match=r"too large \(4002 bytes declared, the limit is 1000\)") as big:
                await client.get("big")
            assert isinstance(big.value, ResponseTooLargeError) and (big.value.declared, big.value.limit) == (
                4002,
                1000,
            )
            mock.get(f"{BASE}/small").respond(200, json={"ok": True})
            assert (await client.get("small")).json() == {"ok": True}
            with pytest.raises(ResponseTooLargeError, match=r"\(11 bytes declared, the limit is 10\)"):
                await client.get("small", extensions=response_limit(10))


async def test_unrequested_compression_is_refused():
    with respx.mock() as mock:
        mock.get(f"{BASE}/gz").respond(200, content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"})
        async with ClientFactory().client("agency:x", settings()) as client:
            with pytest.raises(BadResponseError, match="unrequested content encoding"):
                await client.get("gz")


async def test_total_deadline_covers_a_trickling_body():
    produced: list[int] = []
    limited = LimitedTransport(
        _streaming_transport(1000, b"x", produced, delay=0.05), upstream="agency:x", total_timeout_seconds=0.3
    )
    async with httpx.AsyncClient(transport=limited, timeout=5) as client:
        with pytest.raises(TransientError, match="timed out"):
            with map_http_errors("agency:x"):
                await client.get("https://agency.example.vn/slow")
    assert len(produced) < 20


# ----------------------------------------------------------------------------------------------------------------------
# Error mapping
# ----------------------------------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (500, TransientError, True),
        (502, TransientError, True),
        (503, TransientError, True),
        (429, TransientError, True),
        (401, AuthError, False),
        (403, AuthError, False),
        (400, PermanentError, False),
        (404, PermanentError, False),
        (409, PermanentError, False),
        (422, PermanentError, False),
        (302, BadResponseError, True),
    ],
)
async def test_status_codes_map_to_adapter_errors(status, error, retryable):
    with respx.mock() as mock:
        mock.get(f"{BASE}/x").respond(status, json={"error": "nope"})
        async with ClientFactory().client("agency:x", settings(), auth=bearer("tok-s3cret")) as client:
            response = await client.get("x")
    with pytest.raises(error) as caught:
        raise_for_status(response, "agency:x")
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    assert caught.value.status_code == status
    assert caught.value.upstream == "agency:x"
    assert f"(HTTP {status})" in str(caught.value)
    assert "s3cret" not in str(caught.value)


async def test_2xx_is_not_an_error():
    raise_for_status(httpx.Response(204), "agency:x")


@pytest.mark.parametrize(
    ("raised", "message"),
    [
        (httpx.ConnectTimeout("timed out"), "connecting timed out"),
        (httpx.ReadTimeout("timed out"), "timed out waiting for the response"),
        (httpx.WriteTimeout("timed out"), "timed out sending the request"),
        (httpx.PoolTimeout("timed out"), "free connection"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "cannot reach"),
        (httpx.ReadError("connection reset"), "cannot reach"),
        (httpx.RemoteProtocolError("Server disconnected"), "connection broke"),
    ],
)
async def test_transport_failures_are_transient(raised, message):
    with respx.mock() as mock:
        mock.get(f"{BASE}/x").mock(side_effect=raised)
        async with ClientFactory().client("agency:x", settings()) as client:
            with pytest.raises(TransientError, match=message) as caught:
                with map_http_errors("agency:x"):
                    await client.get("x")
    assert caught.value.retryable and caught.value.__cause__ is not None


async def test_connection_refused_by_a_closed_port_is_transient():
    port = _closed_port()
    local = ClientSettings(f"http://127.0.0.1:{port}", address_policy=LOCAL)
    async with ClientFactory().client("agency:x", local) as client:
        with pytest.raises(TransientError, match="cannot reach"):
            with map_http_errors("agency:x"):
                await client.get("/")


async def test_a_loopback_endpoint_without_allow_private_is_a_permanent_error():
    port = _closed_port()
    async with ClientFactory().client("agency:x", ClientSettings(f"http://127.0.0.1:{port}")) as client:
        with pytest.raises(PermanentError, match="loopback address") as caught:
            with map_http_errors("agency:x"):
                await client.get("/")
    assert not caught.value.retryable


async def test_httpx_status_errors_and_adapter_errors_pass_through_the_context_manager():
    request = httpx.Request("GET", f"{BASE}/x")
    response = httpx.Response(503, request=request, text="down")
    with pytest.raises(TransientError, match="server error: down"):
        with map_http_errors("agency:x"):
            response.raise_for_status()
    original = AuthError("refused", upstream="agency:x")
    with pytest.raises(AuthError) as caught:
        with map_http_errors("agency:x"):
            raise original
    assert caught.value is original
    with pytest.raises(PermanentError, match="invalid request"):
        with map_http_errors("agency:x"):
            raise httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'.")


def test_error_bodies_are_cut_to_200_characters_and_only_for_non_2xx():
    long_body = "Lỗi hệ thống: " + "chi tiết " * 200
    with pytest.raises(TransientError) as caught:
        raise_for_status(httpx.Response(500, text=long_body), "agency:x")
    error = caught.value
    assert error.message.startswith("server error: Lỗi hệ thống: chi tiết")
    excerpt = error.message.removeprefix("server error: ")
    assert len(excerpt) <= 200
    binary = httpx.Response(500, content=b"\x00\x01", headers={"Content-Type": "application/octet-stream"})
    with pytest.raises(TransientError) as caught:
        raise_for_status(binary, "agency:x")
    assert caught.value.message == "server error"


def test_json_expected_but_something_else_came():
    personal = "<html><body>Nguyễn Văn A, CCCD 001099012345</body></html>"
    with pytest.raises(BadResponseError, match="expected JSON, got text/html") as caught:
        json_body(httpx.Response(200, html=personal), "agency:x")
    assert "Nguyễn" not in str(caught.value) and "001099012345" not in str(caught.value)
    with pytest.raises(BadResponseError, match="not valid JSON"):
        json_body(httpx.Response(200, content=b"{oops", headers={"Content-Type": "application/json"}), "agency:x")
    for unstorable in (b'{"a": NaN}', b'{"a": 1e999}', b'{"note": "x\\u0000"}', b'{"note": "\\ud800"}'):
        with pytest.raises(BadResponseError, match="not valid JSON"):  # read by json.loads, refused here
            json_body(httpx.Response(200, content=unstorable, headers={"Content-Type": "application/json"}), "agency:x")
    with pytest.raises(BadResponseError, match="empty response"):
        json_body(httpx.Response(200), "agency:x")
    assert json_body(httpx.Response(204), "agency:x", allow_empty=True) is None
    assert json_body(httpx.Response(200, json={"a": [1]}), "agency:x") == {"a": [1]}
    problem = httpx.Response(200, content=b'{"a":1}', headers={"Content-Type": "application/problem+json"})
    assert json_body(problem, "agency:x") == {"a": 1}
    assert issubclass(BadResponseError, UpstreamError) and BadResponseError.retryable
