"""The postal service's client as the flow's port: the one place the postal flow names the concrete client.

:func:`build_client` makes a :class:`~adapters.postal.PostalClient` of the ``[postal]`` settings over an HTTP client
from the process's client factory; :func:`order_handler` gives the composition root the ``postal.order`` handler,
which closes its HTTP client with it.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from adapters.errors import AuthError
from adapters.http import ClientFactory
from adapters.postal import PostalClient, PostalService
from gateway.config import ConfigError
from gateway.flows.postal.handler import PostalOrderHandler
from gateway.flows.postal.orders import UPSTREAM
from gateway.flows.postal.settings import PostalSettings
from gateway.services.context import Context

__all__ = ["HttpClient", "build_client", "order_handler"]

#: The HTTP client :meth:`adapters.http.ClientFactory.client` gives (an ``httpx.AsyncClient``).
HttpClient: TypeAlias = Any


def build_client(settings: PostalSettings, http: HttpClient) -> PostalService:
    """The postal client over ``http`` (its ``base_url`` the service's API; not closed by the client). The shared
    secret is resolved at each request, never kept; a secret that cannot be resolved is an authentication failure
    (the message is parked, not retried)."""

    def secret() -> str:
        try:
            return settings.resolve_secret()
        except ConfigError as exc:
            raise AuthError(f"credentials unavailable: {exc}", upstream=UPSTREAM) from None

    return PostalClient(http, secret=secret, attempts=settings.attempts, upstream=UPSTREAM)


def order_handler(ctx: Context, settings: PostalSettings, factory: ClientFactory) -> PostalOrderHandler:
    """The ``postal.order`` handler over a client built through ``factory`` (recording, replay and the address
    policy apply); closing the handler closes the client's HTTP connections."""
    try:
        http = factory.client(UPSTREAM, settings.client_settings())
    except ValueError as exc:
        raise ConfigError(f"[postal] base_url: {exc}") from None
    return PostalOrderHandler(ctx, build_client(settings, http), settings, close=http.aclose)
