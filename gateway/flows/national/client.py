"""The national portal's client as the flow's port, built over the process's one HTTP client factory.

:func:`build_portal` makes a :class:`~adapters.national_portal.NationalPortalClient` of the settings over an HTTP
client; :func:`open_portal` does it for one piece of work (the operators' commands) and closes the HTTP client after;
:func:`sync_handler` gives the composition root the ``national.sync`` handler, which closes its HTTP client with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from adapters.http import ClientFactory
from adapters.national_portal import NationalPortalClient
from gateway import messages
from gateway.flows.national.handler import NationalSyncHandler
from gateway.flows.national.settings import NationalPortalSettings
from gateway.services.context import Context

__all__ = ["HttpClient", "build_portal", "open_portal", "sync_handler"]

UPSTREAM = messages.NATIONAL_TARGET

#: The HTTP client :meth:`adapters.http.ClientFactory.client` gives (an ``httpx.AsyncClient``).
HttpClient: TypeAlias = Any


def build_portal(settings: NationalPortalSettings, http: HttpClient) -> NationalPortalClient:
    """The portal's client over ``http`` (from the factory, its ``base_url`` the portal's), which it does not close;
    the password is resolved at each login, never kept."""
    return NationalPortalClient(
        http,
        username=settings.username,
        password=settings.password,
        dstcode=settings.dstcode,
        madonvi=settings.madonvi,
        batch_size=settings.batch_size,
        upstream=UPSTREAM,
    )


@contextlib.asynccontextmanager
async def open_portal(settings: NationalPortalSettings, factory: ClientFactory) -> AsyncIterator[NationalPortalClient]:
    """A client of the configured portal for one piece of work (a command's); its HTTP client closed after."""
    async with factory.client(UPSTREAM, settings.client_settings()) as http:
        yield build_portal(settings, http)


def sync_handler(ctx: Context, settings: NationalPortalSettings, factory: ClientFactory) -> NationalSyncHandler:
    """The ``national.sync`` handler over a client built through ``factory`` (recording, replay and the address
    policy apply); closing the handler closes the client's HTTP connections."""
    http = factory.client(UPSTREAM, settings.client_settings())
    return NationalSyncHandler(ctx, build_portal(settings, http), settings, close=http.aclose)
