"""The one way every adapter gets its ``httpx.AsyncClient``, its authentication, and its error mapping.

Clients come from :class:`ClientFactory` (:mod:`.factory`) with :class:`ClientSettings` (:mod:`.settings`), the size
cap and total deadline of :mod:`.transport`, and authentication from :mod:`.auth` or an agency registration document
(:mod:`.documents`). :mod:`.errors` turns httpx failures and unwelcome answers into :mod:`adapters.errors`.
"""

from __future__ import annotations

from adapters.http.auth import BasicAuth, BearerAuth, OAuth2ClientCredentials, SecretSource, basic, bearer
from adapters.http.documents import auth_from_document, client_cert_from_document, settings_from_document
from adapters.http.errors import error_for_response, json_body, map_http_errors, raise_for_status, retry_after
from adapters.http.factory import ClientFactory, GatewayClient, TransportWrapper, default_factory
from adapters.http.settings import ClientSettings, build_ssl_context
from adapters.http.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    RESPONSE_LIMIT_EXTENSION,
    LimitedTransport,
    ResponseTooLargeError,
    response_limit,
)

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "RESPONSE_LIMIT_EXTENSION",
    "BasicAuth",
    "BearerAuth",
    "ClientFactory",
    "ClientSettings",
    "GatewayClient",
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
    "retry_after",
    "settings_from_document",
]
