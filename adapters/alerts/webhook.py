"""Client of an alert webhook (a chat bot, an incident tool): one JSON ``POST`` per alert, with an
``Idempotency-Key``.

:class:`AlertNotifier` is what the core depends on; :class:`AlertWebhookClient` implements it over an
``httpx.AsyncClient`` from :class:`adapters.http.ClientFactory` (timeouts, size cap). Failures are mapped to
:mod:`adapters.errors`, so the outbox decides between retry and dead letter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from adapters.http import map_http_errors, raise_for_status

__all__ = ["UPSTREAM", "AlertNotifier", "AlertWebhookClient"]

UPSTREAM = "alerts"


class AlertNotifier(Protocol):
    """The alert receiver as the core sees it."""

    async def send(self, body: Mapping[str, Any], idempotency_key: str) -> int:
        """Post ``body``; the answer's HTTP status (2xx) or an :mod:`adapters.errors` exception."""
        ...

    async def aclose(self) -> None: ...


class AlertWebhookClient:
    """Posts alerts to ``url``."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self._http = http
        self._url = url

    def __repr__(self) -> str:
        return f"AlertWebhookClient(url={self._url!r})"

    async def send(self, body: Mapping[str, Any], idempotency_key: str) -> int:
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json", "Idempotency-Key": idempotency_key}
        with map_http_errors(UPSTREAM):
            response = await self._http.post(self._url, content=content, headers=headers)
        raise_for_status(response, UPSTREAM)
        return response.status_code

    async def aclose(self) -> None:
        await self._http.aclose()
