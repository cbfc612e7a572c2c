"""Client of the provincial portal's webhook: one JSON ``POST`` per dossier change (and per agency's answer to a
citizen's question), with an ``Idempotency-Key``.

:class:`PortalNotifier` is what the core depends on; :class:`PortalWebhookClient` implements it with
:class:`adapters.http.webhook.JsonWebhook`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from adapters.http.webhook import JsonWebhook

__all__ = ["UPSTREAM", "PortalNotifier", "PortalWebhookClient"]

UPSTREAM = "portal"


class PortalNotifier(Protocol):
    """The provincial portal as the core sees it."""

    async def notify(self, body: Mapping[str, Any], idempotency_key: str) -> int:
        """Send ``body``; the answer's HTTP status (2xx) or an :mod:`adapters.errors` exception."""
        ...

    async def aclose(self) -> None: ...


class PortalWebhookClient(JsonWebhook):
    """Posts change notices to the portal's ``webhook_url``."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        super().__init__(http, url, UPSTREAM)

    async def notify(self, body: Mapping[str, Any], idempotency_key: str) -> int:
        return await self.post(body, idempotency_key)
