"""The one way every adapter gets its ``httpx.AsyncClient``, its authentication, and its error mapping.

A client from :meth:`ClientFactory.client` always has:

* timeouts: per operation (``timeout_seconds``, ``connect_timeout_seconds``) and for the whole exchange including the
  body (``total_timeout_seconds``);
* a connection pool bounded by ``max_connections`` / ``max_keepalive``;
* TLS verified against the operating system's trust store, a given CA bundle or a given ``ssl.SSLContext``, with an
  optional client certificate (mutual TLS);
* the SSRF guard (:mod:`adapters.netguard`) on the address actually connected to;
* a response size cap enforced while streaming (``max_response_bytes``), so an endless or huge answer never sits in
  memory whole; one request may lower it with :func:`response_limit` (a WSDL document, for instance), and a response
  over the cap fails with :class:`ResponseTooLargeError`;
* no redirects followed, no proxy or CA settings taken from the environment (``trust_env=False``);
* the factory's transport wrappers: recording, replay and fault injection plug in there, for SOAP (zeep's httpx
  transport) and REST alike.

Authentication comes from :func:`bearer`, :func:`basic`, :class:`OAuth2ClientCredentials`, or from an agency
registration document's ``auth`` object through :func:`auth_from_document`. Secrets are resolved when a request
needs them (``env:NAME`` / ``file:PATH`` references through the caller's resolver), never kept resolved and never
logged or shown in a ``repr``.

:func:`map_http_errors`, :func:`raise_for_status` and :func:`json_body` turn httpx failures and unwelcome answers
into :mod:`adapters.errors`, so callers decide retry or dead letter in one place.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import os
import ssl
import time
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from adapters.errors import AuthError, BadResponseError, PermanentError, TransientError, UpstreamError
from adapters.netguard import AddressPolicy, BlockedAddressError, guarded_transport

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "RESPONSE_LIMIT_EXTENSION",
    "BasicAuth",
    "BearerAuth",
    "ClientFactory",
    "ClientSettings",
    "LimitedTransport",
    "OAuth2ClientCredentials",
    "ResponseTooLargeError",
    "SecretSource",
    "TransportWrapper",
    "auth_from_document",
    "basic",
    "bearer",
    "build_ssl_context",
    "client_cert_from_document",
    "default_factory",
    "error_for_response",
    "json_body",
    "map_http_errors",
    "raise_for_status",
    "response_limit",
    "settings_from_document",
]

logger = logging.getLogger(__name__)

#: Default response size cap: 50 MiB.
DEFAULT_MAX_RESPONSE_BYTES = 50 * 1024 * 1024
#: The request extension through which :func:`response_limit` lowers the size cap of one response.
RESPONSE_LIMIT_EXTENSION = "dvc_gateway.max_response_bytes"
#: Body excerpts in error messages (non-2xx answers only) are cut to this many characters.
_EXCERPT_CHARS = 200
_USER_AGENT = "dvc-gateway"

#: A secret, or a callable returning it when a request needs it (so that it is never kept resolved).
SecretSource = str | Callable[[], str]
#: ``(inner transport, upstream name) -> transport``: one link of the transport chain.
TransportWrapper = Callable[[httpx.AsyncBaseTransport, str], httpx.AsyncBaseTransport]


def _reveal(secret: SecretSource) -> str:
    return secret() if callable(secret) else secret


def _short(text: str, limit: int = _EXCERPT_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# ----------------------------------------------------------------------------------------------------------------------
# Settings and TLS
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSettings:
    """How to reach one upstream.

    :param base_url: the upstream's base URL (http or https; credentials belong in ``auth``, not in the URL).
    :param timeout_seconds: read, write and pool timeouts (each socket operation).
    :param connect_timeout_seconds: connection timeout (name resolution and TCP connect, TLS handshake included).
    :param total_timeout_seconds: deadline of one whole exchange, response body included (``None``: none).
    :param verify: ``True`` (the operating system's trust store), ``False`` (no verification: tests only), the path
        of a CA bundle file or directory, or an ``ssl.SSLContext`` used as it is.
    :param client_cert: ``(certificate file, private key file)`` for mutual TLS.
    :param client_key_password: returns the private key's password, when it has one.
    :param headers: sent with every request (``User-Agent`` and ``Accept-Encoding: identity`` by default).
    :param max_response_bytes: larger responses fail with :class:`ResponseTooLargeError` (a bad response) while
        streaming.
    :param address_policy: where connections may go (:class:`~adapters.netguard.AddressPolicy`).
    """

    base_url: str
    timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 5.0
    total_timeout_seconds: float | None = 60.0
    max_connections: int = 20
    max_keepalive: int = 10
    keepalive_expiry_seconds: float = 30.0
    verify: bool | str | os.PathLike[str] | ssl.SSLContext = True
    client_cert: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None
    client_key_password: Callable[[], str] | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)

    def __post_init__(self) -> None:
        try:
            url = httpx.URL(self.base_url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ValueError(f"base_url is not a valid URL: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("base_url must be an absolute http:// or https:// URL")
        if url.userinfo:
            raise ValueError("base_url must not carry credentials: configure them as auth")
        for name in ("timeout_seconds", "connect_timeout_seconds", "keepalive_expiry_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.total_timeout_seconds is not None and self.total_timeout_seconds <= 0:
            raise ValueError("total_timeout_seconds must be positive (or None)")
        if self.max_connections < 1 or not 0 <= self.max_keepalive <= self.max_connections:
            raise ValueError("max_connections must be positive and max_keepalive between 0 and max_connections")
        if self.max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")
        if isinstance(self.verify, ssl.SSLContext) and self.client_cert is not None:
            raise ValueError("with verify=<SSLContext>, load the client certificate into that context")

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_seconds, connect=self.connect_timeout_seconds)

    def limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_keepalive,
            keepalive_expiry=self.keepalive_expiry_seconds,
        )


def build_ssl_context(settings: ClientSettings) -> ssl.SSLContext:
    """The TLS context ``settings`` describe (trust, verification, client certificate)."""
    verify = settings.verify
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is True:
        # The operating system's store (update-ca-certificates & co.), where a province adds its own CAs.
        context = ssl.create_default_context()
    elif verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        path = Path(verify)
        try:
            if path.is_dir():
                context = ssl.create_default_context(capath=str(path))
            else:
                context = ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"Cannot load the CA bundle {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    if settings.client_cert is not None:
        certfile, keyfile = (str(part) for part in settings.client_cert)
        try:
            context.load_cert_chain(certfile, keyfile, password=settings.client_key_password)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
            raise ValueError(f"Cannot load the client certificate {certfile} with key {keyfile}: {reason}") from exc
    return context


# ----------------------------------------------------------------------------------------------------------------------
# Size cap and total deadline
# ----------------------------------------------------------------------------------------------------------------------


class ResponseTooLargeError(BadResponseError):
    """A response passed its size cap (``limit``): declared so (``declared``, in bytes) or found so while streaming."""

    def __init__(self, message: str, *, limit: int, declared: int | None = None, upstream: str = "") -> None:
        super().__init__(message, upstream=upstream)
        self.limit = limit
        self.declared = declared


def response_limit(max_bytes: int) -> dict[str, Any]:
    """Request extensions capping one response at ``max_bytes`` (the client's own cap still applies when lower).

    ``client.get(url, extensions=response_limit(2_000_000))``: the :class:`LimitedTransport` of a factory client
    enforces it like its own cap, failing with :class:`ResponseTooLargeError`.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError("a response limit must be a positive number of bytes")
    return {RESPONSE_LIMIT_EXTENSION: max_bytes}


def _deadline_scope(deadline: float | None) -> asyncio.Timeout:
    return asyncio.timeout_at(deadline)


def _network_error(exc: OSError, request: httpx.Request) -> httpx.TransportError:
    """The httpx error for an ``OSError`` httpcore lets through (TLS alerts while reading, among them)."""
    if isinstance(exc, ssl.SSLError):
        return httpx.ReadError(f"TLS failure: {exc.reason or type(exc).__name__}", request=request)
    return httpx.ReadError(f"network failure: {exc.strerror or type(exc).__name__}", request=request)


class _LimitedStream(httpx.AsyncByteStream):
    """A response body that fails past ``limit`` bytes or after ``deadline`` (event-loop time)."""

    def __init__(
        self,
        inner: httpx.AsyncByteStream,
        *,
        limit: int,
        deadline: float | None,
        upstream: str,
        request: httpx.Request,
    ) -> None:
        self._inner = inner
        self._limit = limit
        self._deadline = deadline
        self._upstream = upstream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        chunks = aiter(self._inner)
        while True:
            scope = _deadline_scope(self._deadline)
            try:
                async with scope:
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                if not scope.expired():
                    raise
                raise httpx.ReadTimeout("the response did not arrive in time", request=self._request) from exc
            except OSError as exc:
                raise _network_error(exc, self._request) from exc
            received += len(chunk)
            if received > self._limit:
                raise ResponseTooLargeError(
                    f"response larger than the limit of {self._limit} bytes: abandoned",
                    limit=self._limit,
                    upstream=self._upstream,
                )
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class LimitedTransport(httpx.AsyncBaseTransport):
    """Caps response bodies at ``max_response_bytes`` and whole exchanges at ``total_timeout_seconds``.

    A declared ``Content-Length`` over the cap fails before the body is read; otherwise the body fails as soon as it
    passes the cap, while streaming (both with :class:`ResponseTooLargeError`). A request carrying
    :func:`response_limit`'s extension is held to the lower of that limit and ``max_response_bytes``. A response
    compressed although ``Accept-Encoding: identity`` was asked for is refused (the cap counts bytes on the wire, and
    a compressed body may expand a thousandfold).
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        upstream: str,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        total_timeout_seconds: float | None = None,
    ) -> None:
        self.inner = inner
        self.upstream = upstream
        self.max_response_bytes = max_response_bytes
        self.total_timeout_seconds = total_timeout_seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = None
        if self.total_timeout_seconds is not None:
            deadline = asyncio.get_running_loop().time() + self.total_timeout_seconds
        scope = _deadline_scope(deadline)
        try:
            async with scope:
                response = await self.inner.handle_async_request(request)
        except TimeoutError as exc:
            if not scope.expired():
                raise
            raise httpx.ReadTimeout("no response in time", request=request) from exc
        except OSError as exc:
            raise _network_error(exc, request) from exc
        limit = self.limit_for(request)
        try:
            self._check_headers(request, response, limit)
        except BaseException:
            await response.aclose()
            raise
        stream = _LimitedStream(
            response.stream,  # type: ignore[arg-type]  # an async transport's response stream is async
            limit=limit,
            deadline=deadline,
            upstream=self.upstream,
            request=request,
        )
        return httpx.Response(
            status_code=response.status_code, headers=response.headers, stream=stream, extensions=response.extensions
        )

    def limit_for(self, request: httpx.Request) -> int:
        """The size cap of ``request``'s response: ``max_response_bytes``, or the request's own when lower."""
        requested = request.extensions.get(RESPONSE_LIMIT_EXTENSION)
        if isinstance(requested, int) and not isinstance(requested, bool) and 0 < requested < self.max_response_bytes:
            return requested
        return self.max_response_bytes

    def _check_headers(self, request: httpx.Request, response: httpx.Response, limit: int) -> None:
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLargeError(
                f"response too large ({declared} bytes declared, the limit is {limit})",
                limit=limit,
                declared=int(declared),
                upstream=self.upstream,
            )
        asked = request.headers.get("Accept-Encoding", "").strip().lower()
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if asked == "identity" and encoding not in ("", "identity"):
            raise BadResponseError(f"response in an unrequested content encoding ({encoding})", upstream=self.upstream)

    async def aclose(self) -> None:
        await self.inner.aclose()


# ----------------------------------------------------------------------------------------------------------------------
# Factory
# ----------------------------------------------------------------------------------------------------------------------


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
        """A client for ``upstream``; close it (``aclose`` or ``async with``) when the adapter is done with it."""
        if settings.verify is False:
            logger.warning("TLS certificate verification is disabled for upstream %s", upstream)
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity", **settings.headers}
        logger.debug("HTTP client for upstream %s at %s", upstream, settings.base_url)
        return httpx.AsyncClient(
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


# ----------------------------------------------------------------------------------------------------------------------
# Authentication
# ----------------------------------------------------------------------------------------------------------------------


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>``, the token obtained when each request is sent."""

    def __init__(self, token: SecretSource) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {_reveal(self._token)}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"


class BasicAuth(httpx.Auth):
    """HTTP Basic authentication, the password obtained when each request is sent."""

    def __init__(self, username: str, password: SecretSource) -> None:
        self.username = username
        self._password = password

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        pair = f"{self.username}:{_reveal(self._password)}".encode()
        request.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        yield request

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password=***)"


def bearer(token: SecretSource) -> httpx.Auth:
    """Bearer-token authentication (``token`` may be a callable returning it)."""
    return BearerAuth(token)


def basic(user: str, password: SecretSource) -> httpx.Auth:
    """HTTP Basic authentication (``password`` may be a callable returning it)."""
    return BasicAuth(user, password)


class OAuth2ClientCredentials(httpx.Auth):
    """OAuth 2.0 client credentials grant (RFC 6749 §4.4) as an ``httpx.Auth`` for async clients.

    The access token is fetched through the same client (so its transport chain, recording included, sees the
    token request too), cached until shortly before ``expires_in``, and fetched again once when the upstream answers
    401, the request being retried once with the new token. Concurrent requests share one fetch (a lock).

    :param client_auth: ``"basic"`` sends the client credentials in an HTTP Basic header (RFC 6749 §2.3.1, which
        every server must support), ``"post"`` in the form body.
    :param clock: monotonic seconds (tests replace it).
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: SecretSource,
        scope: str | Sequence[str] | None = None,
        *,
        client_auth: Literal["basic", "post"] = "basic",
        refresh_margin_seconds: float = 30.0,
        timeout_seconds: float = 10.0,
        upstream: str = "oauth2 token endpoint",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        url = httpx.URL(token_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("token_url must be an absolute http:// or https:// URL")
        if client_auth not in ("basic", "post"):
            raise ValueError("client_auth must be 'basic' or 'post'")
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope if scope is None or isinstance(scope, str) else " ".join(scope)
        self.client_auth = client_auth
        self.refresh_margin_seconds = refresh_margin_seconds
        self.timeout_seconds = timeout_seconds
        self.upstream = upstream
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at: float | None = None  # None with a token: no expiry announced, used until refused
        self.fetch_count = 0  # token requests made (observability and tests)

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r}, secret=***)"

    def invalidate(self) -> None:
        """Forget the cached token (the next request fetches a new one)."""
        self._token = None
        self._expires_at = None

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("OAuth2ClientCredentials works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        async with self._lock:
            if not self._is_fresh():
                token_response = yield self._token_request()
                await self._accept(token_response)
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        async with self._lock:
            if self._token == token:  # nobody refreshed it meanwhile: refresh it here
                self.invalidate()
                token_response = yield self._token_request()
                await self._accept(token_response)
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def _is_fresh(self) -> bool:
        if self._token is None:
            return False
        return self._expires_at is None or self._clock() < self._expires_at

    def _token_request(self) -> httpx.Request:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        headers = {"Accept": "application/json", "User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        secret = _reveal(self._client_secret)
        if self.client_auth == "basic":
            # RFC 6749 §2.3.1: both parts form-urlencoded before the Basic encoding.
            pair = f"{urllib.parse.quote_plus(self.client_id)}:{urllib.parse.quote_plus(secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:
            form["client_id"] = self.client_id
            form["client_secret"] = secret
        self.fetch_count += 1
        return httpx.Request(
            "POST",
            self.token_url,
            data=form,
            headers=headers,
            extensions={"timeout": httpx.Timeout(self.timeout_seconds).as_dict()},
        )

    async def _accept(self, response: httpx.Response) -> None:
        """Cache the token ``response`` carries, or raise the error it means."""
        await response.aread()
        if response.status_code in (400, 401, 403):
            code = ""
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                code = str(json.loads(response.content).get("error") or "")
            detail = f" ({_short(code, 60)})" if code else ""
            raise AuthError(
                f"the token endpoint refused the client credentials{detail}",
                upstream=self.upstream,
                status_code=response.status_code,
            )
        raise_for_status(response, self.upstream)
        body = json_body(response, self.upstream)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise BadResponseError("the token endpoint answered without an access_token", upstream=self.upstream)
        token_type = body.get("token_type", "bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise BadResponseError("the token endpoint issued a non-bearer token", upstream=self.upstream)
        expires_in = body.get("expires_in")
        try:
            lifetime = float(expires_in) if expires_in is not None else None
        except (TypeError, ValueError):
            lifetime = None
        self._token = token
        if lifetime is None or lifetime <= 0:
            self._expires_at = None
        else:
            margin = min(self.refresh_margin_seconds, lifetime / 10)
            self._expires_at = self._clock() + lifetime - margin


def _required(auth: Mapping[str, Any], name: str, kind: str) -> str:
    value = auth.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"auth.{name} is required for auth type {kind!r}")
    return value


def auth_from_document(
    auth: Mapping[str, Any] | None, resolve_secret: Callable[[str], str], *, check: bool = False
) -> httpx.Auth | None:
    """The ``httpx.Auth`` a registration document's ``auth`` object describes (``None`` for ``none`` and ``mtls``).

    Secret fields (``password``, ``token``, ``client_secret``) are references (``env:NAME``, ``file:PATH``) resolved
    through ``resolve_secret`` each time they are needed. With ``check``, each is resolved once now (and the value
    dropped) so that a missing variable or file is reported at registration. The client certificate of ``mtls``
    comes from :func:`client_cert_from_document`.
    """
    auth = auth or {"type": "none"}
    kind = auth.get("type", "none")

    def secret(name: str) -> Callable[[], str]:
        reference = _required(auth, name, kind)
        if check:
            resolve_secret(reference)
        return functools.partial(resolve_secret, reference)

    if kind in ("none", "mtls"):
        if kind == "mtls":
            client_cert_from_document(auth)
        return None
    if kind == "basic":
        return BasicAuth(_required(auth, "username", kind), secret("password"))
    if kind == "bearer":
        return BearerAuth(secret("token"))
    if kind == "oauth2":
        scope = auth.get("scope")
        if scope is not None and not isinstance(scope, str | list | tuple):
            raise ValueError("auth.scope must be a string or a list of strings")
        return OAuth2ClientCredentials(
            _required(auth, "token_url", kind),
            _required(auth, "client_id", kind),
            secret("client_secret"),
            scope,
            client_auth=auth.get("client_auth", "basic"),
        )
    raise ValueError("auth.type must be one of none, basic, bearer, oauth2, mtls")


def client_cert_from_document(auth: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``(certificate file, key file)`` of an ``mtls`` auth object (paths, not secrets), else ``None``."""
    if not auth or auth.get("type") != "mtls":
        return None
    return _required(auth, "cert", "mtls"), _required(auth, "key", "mtls")


def settings_from_document(
    document: Mapping[str, Any], resolve_secret: Callable[[str], str], **overrides: Any
) -> tuple[ClientSettings, httpx.Auth | None]:
    """Client settings and auth for an agency registration document (``endpoint``, ``auth``).

    ``overrides`` are further :class:`ClientSettings` fields (``address_policy``, ``timeout_seconds``...). An ``mtls``
    key protected by a password names it as ``key_password`` (a reference).
    """
    endpoint = document.get("endpoint") or document.get("wsdl")  # SOAP: the WSDL's own address by default
    if not isinstance(endpoint, str) or not endpoint:
        raise ValueError("endpoint is required")
    auth_document = document.get("auth") or {"type": "none"}
    auth = auth_from_document(auth_document, resolve_secret)
    cert = client_cert_from_document(auth_document)
    if cert is not None:
        overrides.setdefault("client_cert", cert)
        password_reference = auth_document.get("key_password")
        if isinstance(password_reference, str) and password_reference:
            overrides.setdefault("client_key_password", functools.partial(resolve_secret, password_reference))
    return ClientSettings(base_url=endpoint, **overrides), auth


# ----------------------------------------------------------------------------------------------------------------------
# Error mapping
# ----------------------------------------------------------------------------------------------------------------------

_TEXT_TYPES = ("text/", "application/json", "application/problem+json", "application/xml", "application/soap+xml")


def _excerpt(response: httpx.Response) -> str:
    """A short, single-line excerpt of a (non-2xx) response body, when it has been read and is text."""
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return ""
    media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if not content or (media_type and not media_type.startswith(_TEXT_TYPES) and not media_type.endswith("+json")):
        return ""
    return _short(content[: _EXCERPT_CHARS * 4].decode("utf-8", errors="replace"))


def error_for_response(response: httpx.Response, upstream: str) -> UpstreamError | None:
    """The error a response status means (``None`` for 2xx); non-2xx messages carry a short body excerpt."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    excerpt = _excerpt(response)
    detail = f": {excerpt}" if excerpt else ""
    if status in (401, 403):
        return AuthError(f"credentials refused{detail}", upstream=upstream, status_code=status)
    if status == 429:
        return TransientError(f"rate limited{detail}", upstream=upstream, status_code=status)
    if status >= 500:
        return TransientError(f"server error{detail}", upstream=upstream, status_code=status)
    if 400 <= status < 500:
        return PermanentError(f"request refused{detail}", upstream=upstream, status_code=status)
    # 1xx reaching here, 3xx (redirects are not followed): a login page or a moved endpoint, not an answer.
    return BadResponseError("unexpected redirect or interim answer", upstream=upstream, status_code=status)


def raise_for_status(response: httpx.Response, upstream: str) -> None:
    """Raise :func:`error_for_response`'s error, if any."""
    error = error_for_response(response, upstream)
    if error is not None:
        raise error


def json_body(response: httpx.Response, upstream: str, *, allow_empty: bool = False) -> Any:
    """The JSON a (read) response carries; :class:`~adapters.errors.BadResponseError` when it carries something else.

    An HTML page (a proxy's or a login page) where JSON was expected is the usual case. The body is never quoted in
    the message: a 2xx body may hold personal data.
    """
    content = response.content
    if not content.strip():
        if allow_empty:
            return None
        raise BadResponseError("empty response where JSON was expected", upstream=upstream)
    media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise BadResponseError(f"expected JSON, got {_short(media_type, 80)}", upstream=upstream)
    try:
        return json.loads(content)
    except (ValueError, RecursionError) as exc:
        raise BadResponseError("the response is not valid JSON", upstream=upstream) from exc


def _blocked_cause(exc: BaseException) -> BlockedAddressError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, BlockedAddressError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


_TIMEOUTS: tuple[tuple[type[httpx.TimeoutException], str], ...] = (
    (httpx.ConnectTimeout, "connecting timed out"),
    (httpx.ReadTimeout, "timed out waiting for the response"),
    (httpx.WriteTimeout, "timed out sending the request"),
    (httpx.PoolTimeout, "timed out waiting for a free connection"),
)


def _mapped(exc: Exception, upstream: str) -> UpstreamError | None:
    """The adapter error an httpx exception means (``None``: not an httpx exception)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return error_for_response(exc.response, upstream) or BadResponseError("unexpected answer", upstream=upstream)
    if isinstance(exc, httpx.TimeoutException):
        what = next((text for kind, text in _TIMEOUTS if isinstance(exc, kind)), "timed out")
        return TransientError(what, upstream=upstream)
    blocked = _blocked_cause(exc)
    if blocked is not None:
        return PermanentError(_short(str(blocked)), upstream=upstream)
    if isinstance(exc, httpx.DecodingError | httpx.TooManyRedirects):
        return BadResponseError(f"unreadable response: {_short(str(exc))}", upstream=upstream)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL):
        return PermanentError(f"invalid request: {_short(str(exc))}", upstream=upstream)
    if isinstance(exc, httpx.RemoteProtocolError):
        return TransientError(f"the connection broke: {_short(str(exc))}", upstream=upstream)
    if isinstance(exc, httpx.TransportError):
        return TransientError(f"cannot reach the upstream: {_short(str(exc)) or type(exc).__name__}", upstream=upstream)
    if isinstance(exc, httpx.StreamError):
        return PermanentError(f"the request could not be sent: {type(exc).__name__}", upstream=upstream)
    if isinstance(exc, httpx.HTTPError):
        return TransientError(f"HTTP failure: {_short(str(exc)) or type(exc).__name__}", upstream=upstream)
    return None


@contextlib.contextmanager
def map_http_errors(upstream: str) -> Iterator[None]:
    """Turn httpx exceptions raised inside the block into :mod:`adapters.errors` (adapter errors pass unchanged).

    Timeouts, connection failures, 5xx and 429 become :class:`~adapters.errors.TransientError`; 401/403
    :class:`~adapters.errors.AuthError`; other 4xx and addresses refused by the SSRF guard
    :class:`~adapters.errors.PermanentError`; unreadable answers :class:`~adapters.errors.BadResponseError`.
    Responses themselves are checked with :func:`raise_for_status` and :func:`json_body`.
    """
    try:
        yield
    except UpstreamError:
        raise
    except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
        error = _mapped(exc, upstream)
        if error is None:  # pragma: no cover - every httpx exception is mapped
            raise
        raise error from exc
    except ssl.SSLError as exc:  # raised past httpx by some TLS failures on transports other than ours
        raise TransientError(f"TLS failure: {exc.reason or type(exc).__name__}", upstream=upstream) from exc
