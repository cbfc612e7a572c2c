"""The adapters' HTTP client factory: settings, transport chain, auth helpers, OAuth2, mutual TLS, limits, errors."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import socket
import ssl
import threading
import urllib.parse
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
    DEFAULT_MAX_RESPONSE_BYTES,
    BasicAuth,
    BearerAuth,
    ClientFactory,
    ClientSettings,
    LimitedTransport,
    OAuth2ClientCredentials,
    ResponseTooLargeError,
    auth_from_document,
    basic,
    bearer,
    build_ssl_context,
    client_cert_from_document,
    default_factory,
    json_body,
    map_http_errors,
    raise_for_status,
    response_limit,
    settings_from_document,
)
from adapters.netguard import AddressPolicy, GuardedTransport
from tests.pki import Identity, issue_cert, rsa_key

BASE = "https://motcua.soxaydung.example.vn/api"
TOKEN_URL = "https://sso.example.vn/oauth2/token"
LOCAL = AddressPolicy(allow_private=True)


def settings(**overrides) -> ClientSettings:
    return ClientSettings(**{"base_url": BASE, **overrides})


# ----------------------------------------------------------------------------------------------------------------------
# Settings and the transport chain
# ----------------------------------------------------------------------------------------------------------------------


async def test_client_settings_are_applied():
    policy = AddressPolicy(extra_blocked=("10.9.0.0/16",))
    client = ClientFactory().client(
        "agency:000.00.23.H38",
        settings(
            timeout_seconds=7,
            connect_timeout_seconds=3,
            max_connections=5,
            max_keepalive=2,
            headers={"X-Province": "H38"},
            max_response_bytes=1234,
            total_timeout_seconds=30,
            address_policy=policy,
        ),
    )
    async with client:
        assert client.timeout == httpx.Timeout(7, connect=3)
        assert client.timeout.connect == 3 and client.timeout.read == 7
        assert client.timeout.write == 7 and client.timeout.pool == 7
        assert client.follow_redirects is False
        assert client.trust_env is False
        assert str(client.base_url) == BASE + "/"
        assert client.headers["X-Province"] == "H38"
        assert client.headers["User-Agent"].startswith("dvc-gateway")
        assert client.headers["Accept-Encoding"] == "identity"
        limited = client._transport
        assert isinstance(limited, LimitedTransport)
        assert limited.max_response_bytes == 1234 and limited.total_timeout_seconds == 30
        assert limited.upstream == "agency:000.00.23.H38"
        guarded = limited.inner
        assert isinstance(guarded, GuardedTransport) and guarded.policy is policy
        assert guarded._pool._max_connections == 5
        assert guarded._pool._max_keepalive_connections == 2


def test_settings_defaults_and_validation():
    defaults = settings()
    assert defaults.timeout_seconds == 10 and defaults.connect_timeout_seconds == 5
    assert defaults.max_connections == 20 and defaults.max_keepalive == 10
    assert defaults.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES == 50 * 1024 * 1024
    assert defaults.verify is True and defaults.client_cert is None
    assert defaults.address_policy == AddressPolicy()
    for bad in (
        {"base_url": "ftp://agency.example.vn/"},
        {"base_url": "agency.example.vn/api"},
        {"base_url": "https://user:secret@agency.example.vn/"},
        {"timeout_seconds": 0},
        {"connect_timeout_seconds": -1},
        {"total_timeout_seconds": 0},
        {"max_connections": 0},
        {"max_keepalive": 50},
        {"max_response_bytes": 0},
        {"verify": ssl.create_default_context(), "client_cert": ("c.pem", "k.pem")},
    ):
        with pytest.raises(ValueError) as caught:
            settings(**bad)
        assert "secret" not in str(caught.value)


def test_settings_repr_hides_headers_and_key_password():
    shown = repr(settings(headers={"X-Api-Key": "s3cr3t"}, client_key_password=lambda: "pw-s3cr3t"))
    assert "s3cr3t" not in shown


class Recorder:
    """Transport wrappers that log how they were applied and what passed through them."""

    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []

    def wrapper(self, name: str):
        recorder = self

        class Wrapped(httpx.AsyncBaseTransport):
            def __init__(self, inner: httpx.AsyncBaseTransport, upstream: str) -> None:
                self.inner = inner
                self.upstream = upstream
                recorder.log.append(("wrap", name, upstream, type(inner).__name__))

            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                recorder.log.append(("request", name, self.upstream, request.url.path))
                response = await self.inner.handle_async_request(request)
                recorder.log.append(("response", name, str(response.status_code)))
                return response

            async def aclose(self) -> None:
                recorder.log.append(("close", name))
                await self.inner.aclose()

        return Wrapped


async def test_wrappers_are_applied_in_order_and_see_the_upstream_name():
    recorder = Recorder()
    factory = ClientFactory([recorder.wrapper("record")])
    factory.add_wrapper(recorder.wrapper("faults"))
    assert len(factory.wrappers) == 2
    with respx.mock(assert_all_called=True) as mock:
        mock.get(f"{BASE}/dossiers/X").respond(200, json={"ok": True})
        async with factory.client("agency:000.00.23.H38", settings()) as client:
            response = await client.get("dossiers/X")
    assert response.json() == {"ok": True}
    assert recorder.log == [
        ("wrap", "record", "agency:000.00.23.H38", "LimitedTransport"),  # the first wrapper wraps the base chain
        ("wrap", "faults", "agency:000.00.23.H38", "Wrapped"),
        ("request", "faults", "agency:000.00.23.H38", "/api/dossiers/X"),  # the last one sees requests first
        ("request", "record", "agency:000.00.23.H38", "/api/dossiers/X"),
        ("response", "record", "200"),
        ("response", "faults", "200"),
        ("close", "faults"),
        ("close", "record"),
    ]


async def test_a_wrapper_may_replace_the_network_entirely():
    seen: list[str] = []

    def replay(inner: httpx.AsyncBaseTransport, upstream: str) -> httpx.AsyncBaseTransport:
        seen.append(upstream)
        return httpx.MockTransport(lambda request: httpx.Response(200, json={"replayed": upstream}))

    factory = ClientFactory()
    before = factory.client("national_portal", settings())
    factory.add_wrapper(replay)
    async with factory.client("national_portal", settings()) as client:
        assert (await client.get("/x")).json() == {"replayed": "national_portal"}
    assert seen == ["national_portal"]
    assert not isinstance(before._transport, httpx.MockTransport)  # wrappers apply to clients built later
    await before.aclose()
    assert isinstance(default_factory, ClientFactory)


# ----------------------------------------------------------------------------------------------------------------------
# Auth helpers
# ----------------------------------------------------------------------------------------------------------------------


async def _authorization_sent(auth: httpx.Auth) -> str:
    with respx.mock() as mock:
        route = mock.get(f"{BASE}/ping").respond(204)
        async with ClientFactory().client("u", settings(), auth=auth) as client:
            await client.get("ping")
    return route.calls.last.request.headers["Authorization"]


async def test_bearer_and_basic_auth_resolve_their_secret_per_request():
    calls: list[str] = []

    def token() -> str:
        calls.append("token")
        return f"tok-{len(calls)}"

    auth = bearer(token)
    assert isinstance(auth, BearerAuth)
    assert calls == []  # nothing resolved before a request needs it
    assert await _authorization_sent(auth) == "Bearer tok-1"
    assert await _authorization_sent(auth) == "Bearer tok-2"
    assert await _authorization_sent(bearer("literal")) == "Bearer literal"
    assert "tok-" not in repr(auth)

    credentials = basic("motcua", lambda: "mật khẩu")
    assert isinstance(credentials, BasicAuth)
    header = await _authorization_sent(credentials)
    assert header.startswith("Basic ")
    assert base64.b64decode(header[6:]).decode() == "motcua:mật khẩu"
    assert "mật" not in repr(credentials)


def test_auth_from_document_builds_each_kind_without_resolving_secrets():
    resolved: list[str] = []

    def resolve(reference: str) -> str:
        resolved.append(reference)
        return f"value-of-{reference}"

    assert auth_from_document(None, resolve) is None
    assert auth_from_document({"type": "none"}, resolve) is None
    assert isinstance(auth_from_document({"type": "bearer", "token": "env:SXD_TOKEN"}, resolve), BearerAuth)
    creds = auth_from_document({"type": "basic", "username": "gw", "password": "file:/run/secrets/pw"}, resolve)
    assert isinstance(creds, BasicAuth) and creds.username == "gw"
    oauth = auth_from_document(
        {
            "type": "oauth2",
            "token_url": TOKEN_URL,
            "client_id": "gateway",
            "client_secret": "env:SXD_CLIENT_SECRET",
            "scope": ["dossiers.write", "dossiers.read"],
        },
        resolve,
    )
    assert isinstance(oauth, OAuth2ClientCredentials)
    assert oauth.scope == "dossiers.write dossiers.read" and oauth.client_id == "gateway"
    mtls = {"type": "mtls", "cert": "/etc/dvc/client.pem", "key": "/etc/dvc/client.key"}
    assert auth_from_document(mtls, resolve) is None
    assert client_cert_from_document(mtls) == ("/etc/dvc/client.pem", "/etc/dvc/client.key")
    assert client_cert_from_document({"type": "bearer", "token": "x"}) is None
    assert resolved == []  # references are resolved when a request needs them, never at construction


async def test_auth_from_document_resolves_through_the_callable_at_request_time():
    resolved: list[str] = []

    def resolve(reference: str) -> str:
        resolved.append(reference)
        return "the-token"

    auth = auth_from_document({"type": "bearer", "token": "env:SXD_TOKEN"}, resolve)
    assert await _authorization_sent(auth) == "Bearer the-token"
    assert resolved == ["env:SXD_TOKEN"]


def test_auth_from_document_errors_are_clear_and_secret_free():
    def resolve(reference: str) -> str:
        raise ValueError(f"environment variable {reference.removeprefix('env:')} is not set")

    for document, expected in (
        ({"type": "kerberos"}, "auth.type must be one of"),
        ({"type": "bearer"}, "auth.token is required"),
        ({"type": "basic", "password": "env:X"}, "auth.username is required"),
        ({"type": "oauth2", "client_id": "a", "client_secret": "env:X"}, "auth.token_url is required"),
        ({"type": "mtls", "cert": "/c.pem"}, "auth.key is required"),
        ({"type": "oauth2", "token_url": "ftp://x/", "client_id": "a", "client_secret": "env:X"}, "token_url"),
    ):
        with pytest.raises(ValueError, match=expected):
            auth_from_document(document, lambda ref: "unused")
    # check=True resolves now (and drops the value) so that a missing secret is reported at registration.
    with pytest.raises(ValueError, match="SXD_TOKEN is not set"):
        auth_from_document({"type": "bearer", "token": "env:SXD_TOKEN"}, resolve, check=True)


def test_settings_from_document(tmp_path):
    document = {
        "code": "000.00.23.H38",
        "protocol": "rest",
        "endpoint": BASE,
        "auth": {"type": "mtls", "cert": "/etc/c.pem", "key": "/etc/k.pem", "key_password": "env:KEY_PW"},
    }
    client_settings, auth = settings_from_document(document, lambda ref: "pw", timeout_seconds=3)
    assert auth is None
    assert client_settings.base_url == BASE and client_settings.timeout_seconds == 3
    assert client_settings.client_cert == ("/etc/c.pem", "/etc/k.pem")
    assert client_settings.client_key_password is not None and client_settings.client_key_password() == "pw"
    with pytest.raises(ValueError, match="endpoint is required"):
        settings_from_document({"code": "x"}, lambda ref: "")


# ----------------------------------------------------------------------------------------------------------------------
# OAuth2 client credentials
# ----------------------------------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class OAuthServer:
    """respx routes for a token endpoint issuing ``tok-1``, ``tok-2``... and a resource accepting ``valid``."""

    def __init__(self, mock: respx.MockRouter, *, expires_in: int | None = 3600, token_delay: float = 0.0) -> None:
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self.token_requests: list[httpx.Request] = []
        self.expires_in = expires_in
        self.token_delay = token_delay
        self.resource_calls = 0
        self.token_route = mock.post(TOKEN_URL).mock(side_effect=self._token)
        self.resource_route = mock.get(f"{BASE}/dossiers").mock(side_effect=self._resource)

    async def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        await asyncio.sleep(self.token_delay)
        token = f"tok-{len(self.issued) + 1}"
        self.issued.append(token)
        self.valid = {token}
        body = {"access_token": token, "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return httpx.Response(200, json=body)

    def _resource(self, request: httpx.Request) -> httpx.Response:
        self.resource_calls += 1
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token in self.valid:
            return httpx.Response(200, json={"token": token})
        return httpx.Response(401, json={"error": "invalid_token"})


def oauth(clock: FakeClock | None = None, **kwargs) -> OAuth2ClientCredentials:
    return OAuth2ClientCredentials(
        TOKEN_URL, "gateway", lambda: "client-s3cret", "dossiers", clock=clock or FakeClock(), **kwargs
    )


async def test_oauth2_token_is_fetched_once_and_cached_across_calls():
    auth = oauth()
    with respx.mock() as mock:
        server = OAuthServer(mock)
        async with ClientFactory().client("agency:x", settings(), auth=auth) as client:
            for _ in range(3):
                response = await client.get("dossiers")
                assert response.json() == {"token": "tok-1"}
    assert server.issued == ["tok-1"]
    request = server.token_requests[0]
    form = urllib.parse.parse_qs(request.content.decode())
    assert form == {"grant_type": ["client_credentials"], "scope": ["dossiers"]}
    assert base64.b64decode(request.headers["Authorization"][6:]).decode() == "gateway:client-s3cret"
    assert request.extensions.get("timeout")  # the token request has its own timeout too
    assert "s3cret" not in repr(auth)


async def test_oauth2_concurrent_calls_fetch_one_token():
    auth = oauth()
    with respx.mock() as mock:
        server = OAuthServer(mock, token_delay=0.05)
        async with ClientFactory().client("agency:x", settings(), auth=auth) as client:
            responses = await asyncio.gather(*(client.get("dossiers") for _ in range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    assert server.issued == ["tok-1"]
    assert auth.fetch_count == 1


async def test_oauth2_token_is_refreshed_shortly_before_it_expires():
    clock = FakeClock()
    auth = oauth(clock)
    with respx.mock() as mock:
        server = OAuthServer(mock, expires_in=100)  # refreshed 10 s early (a tenth of its life, at most 30 s)
        async with ClientFactory().client("agency:x", settings(), auth=auth) as client:
            assert (await client.get("dossiers")).json() == {"token": "tok-1"}
            clock.now += 89
            assert (await client.get("dossiers")).json() == {"token": "tok-1"}
            clock.now += 2
            assert (await client.get("dossiers")).json() == {"token": "tok-2"}
    assert server.issued == ["tok-1", "tok-2"]


async def test_oauth2_refreshes_once_on_401_and_retries_once():
    auth = oauth()
    with respx.mock() as mock:
        server = OAuthServer(mock, expires_in=None)  # no announced expiry: used until refused
        async with ClientFactory().client("agency:x", settings(), auth=auth) as client:
            assert (await client.get("dossiers")).json() == {"token": "tok-1"}
            server.valid = set()  # the upstream revokes it
            response = await client.get("dossiers")
            assert response.json() == {"token": "tok-2"}
            assert server.issued == ["tok-1", "tok-2"]
            assert server.resource_calls == 3

            # A token refused even when fresh: one refresh, one retry, then the 401 is the answer.
            mock.get(f"{BASE}/dossiers").respond(401, json={"error": "invalid_token"})
            response = await client.get("dossiers")
            assert response.status_code == 401
            assert server.issued == ["tok-1", "tok-2", "tok-3"]
            with pytest.raises(AuthError):
                raise_for_status(response, "agency:x")


async def test_oauth2_concurrent_401s_refresh_once():
    auth = oauth()
    with respx.mock() as mock:
        server = OAuthServer(mock, expires_in=None, token_delay=0.02)
        async with ClientFactory().client("agency:x", settings(), auth=auth) as client:
            await client.get("dossiers")
            server.valid = set()
            responses = await asyncio.gather(*(client.get("dossiers") for _ in range(5)))
    assert all(r.status_code == 200 for r in responses)
    assert server.issued == ["tok-1", "tok-2"]


async def test_oauth2_token_endpoint_errors():
    with respx.mock() as mock:
        mock.post(TOKEN_URL).respond(401, json={"error": "invalid_client", "error_description": "bad secret"})
        async with ClientFactory().client("agency:x", settings(), auth=oauth()) as client:
            with pytest.raises(AuthError, match="invalid_client") as caught:
                await client.get("dossiers")
        assert "s3cret" not in str(caught.value)

    with respx.mock() as mock:
        mock.post(TOKEN_URL).respond(200, html="<html>SSO login</html>")
        async with ClientFactory().client("agency:x", settings(), auth=oauth()) as client:
            with pytest.raises(BadResponseError, match="expected JSON"):
                await client.get("dossiers")

    with respx.mock() as mock:
        mock.post(TOKEN_URL).respond(503)
        async with ClientFactory().client("agency:x", settings(), auth=oauth()) as client:
            with pytest.raises(TransientError):
                await client.get("dossiers")

    with respx.mock() as mock:
        mock.post(TOKEN_URL).respond(200, json={"token_type": "bearer"})
        async with ClientFactory().client("agency:x", settings(), auth=oauth()) as client:
            with pytest.raises(BadResponseError, match="access_token"):
                await client.get("dossiers")


async def test_oauth2_client_credentials_in_the_body():
    auth = OAuth2ClientCredentials(TOKEN_URL, "gateway", "s3cret", client_auth="post", clock=FakeClock())
    with respx.mock() as mock:
        server = OAuthServer(mock)
        async with ClientFactory().client("agency:x", settings(), auth=auth) as client:
            await client.get("dossiers")
    request = server.token_requests[0]
    assert "Authorization" not in request.headers
    form = urllib.parse.parse_qs(request.content.decode())
    assert form == {"grant_type": ["client_credentials"], "client_id": ["gateway"], "client_secret": ["s3cret"]}


def test_oauth2_needs_an_async_client():
    with respx.mock(assert_all_called=False) as mock, httpx.Client(auth=oauth()) as client:
        mock.get(f"{BASE}/x").respond(200)
        with pytest.raises(RuntimeError, match="AsyncClient"):
            client.get(f"{BASE}/x")


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
    with pytest.raises(BadResponseError, match="empty response"):
        json_body(httpx.Response(200), "agency:x")
    assert json_body(httpx.Response(204), "agency:x", allow_empty=True) is None
    assert json_body(httpx.Response(200, json={"a": [1]}), "agency:x") == {"a": [1]}
    problem = httpx.Response(200, content=b'{"a":1}', headers={"Content-Type": "application/problem+json"})
    assert json_body(problem, "agency:x") == {"a": 1}
    assert issubclass(BadResponseError, UpstreamError) and BadResponseError.retryable
