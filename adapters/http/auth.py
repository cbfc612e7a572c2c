"""Authentication for the factory's clients: HTTP Basic, bearer tokens and the OAuth 2.0 client credentials grant.

Secrets come as a :data:`SecretSource`, resolved each time a request needs them, never kept resolved and never shown
in a ``repr``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import urllib.parse
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from typing import Literal

import httpx

from adapters.errors import AuthError, BadResponseError
from adapters.http.errors import json_body, raise_for_status, shortened
from adapters.http.settings import USER_AGENT

__all__ = ["BasicAuth", "BearerAuth", "OAuth2ClientCredentials", "SecretSource", "basic", "bearer"]

#: A secret, or a callable returning it when a request needs it (so that it is never kept resolved).
SecretSource = str | Callable[[], str]


def _reveal(secret: SecretSource) -> str:
    return secret() if callable(secret) else secret


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
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
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
            detail = f" ({shortened(code, 60)})" if code else ""
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
