"""Client of an alert webhook (a chat bot, an incident tool): one JSON ``POST`` per alert, with an
``Idempotency-Key``.

:class:`AlertNotifier` is what the core depends on; :class:`AlertWebhookClient` implements it with
:class:`adapters.http.webhook.JsonWebhook`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from adapters.http.webhook import JsonWebhook

__all__ = ["UPSTREAM", "AlertNotifier", "AlertWebhookClient"]

UPSTREAM = "alerts"


class AlertNotifier(Protocol):
    """The alert receiver as the core sees it."""

    async def send(self, body: Mapping[str, Any], idempotency_key: str) -> int:
        """Post ``body``; the answer's HTTP status (2xx) or an :mod:`adapters.errors` exception."""
        ...

    async def aclose(self) -> None: ...


class AlertWebhookClient(JsonWebhook):
    """Posts alerts to ``url``."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        super().__init__(http, url, UPSTREAM)

    async def send(self, body: Mapping[str, Any], idempotency_key: str) -> int:
        return await self.post(body, idempotency_key)
