"""Client settings and authentication from an agency registration document (its ``endpoint`` and ``auth`` objects).

Secret fields are ``env:NAME`` / ``file:PATH`` references resolved through the caller's resolver when a request
needs them; an ``mtls`` auth object names the client certificate and key files.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from adapters.http.auth import BasicAuth, BearerAuth, OAuth2ClientCredentials
from adapters.http.settings import ClientSettings

__all__ = ["auth_from_document", "client_cert_from_document", "settings_from_document"]


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
