"""The adapters' HTTP client factory: settings, transport chain, auth helpers and OAuth2."""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.parse

import httpx
import pytest
import respx

from adapters.connections import GuardedTransport
from adapters.errors import AuthError, BadResponseError, TransientError
from adapters.http import (
    DEFAULT_MAX_RESPONSE_BYTES,
    BasicAuth,
    BearerAuth,
    ClientFactory,
    LimitedTransport,
    OAuth2ClientCredentials,
    auth_from_document,
    basic,
    bearer,
    client_cert_from_document,
    default_factory,
    raise_for_status,
    settings_from_document,
)
from adapters.netguard import AddressPolicy
from tests.adapters_http_support import BASE, settings

TOKEN_URL = "https://sso.example.vn/oauth2/token"


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
        assert guarded.limits.max_connections == 5
        assert guarded.limits.max_keepalive_connections == 2


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
