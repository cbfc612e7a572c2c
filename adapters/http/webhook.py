"""One JSON ``POST`` per notice to a configured URL, with an ``Idempotency-Key``: the shape shared by the webhooks
the gateway calls (the provincial portal's, the operators' alert receiver).

The ``httpx.AsyncClient`` comes from :class:`adapters.http.ClientFactory` (timeouts, size cap, recording); failures
are mapped to :mod:`adapters.errors` under the webhook's upstream name, so the outbox decides between retry and
dead letter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from adapters.http.errors import map_http_errors, raise_for_status

__all__ = ["JsonWebhook"]


class JsonWebhook:
    """Posts JSON bodies to ``url``; errors are named after ``upstream``."""

    def __init__(self, http: httpx.AsyncClient, url: str, upstream: str) -> None:
        self._http = http
        self._url = url
        self.upstream = upstream

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self._url!r})"

    async def post(self, body: Mapping[str, Any], idempotency_key: str) -> int:
        """Post ``body``; the answer's HTTP status (2xx) or an :mod:`adapters.errors` exception."""
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json", "Idempotency-Key": idempotency_key}
        with map_http_errors(self.upstream):
            response = await self._http.post(self._url, content=content, headers=headers)
        raise_for_status(response, self.upstream)
        return response.status_code

    async def aclose(self) -> None:
        await self._http.aclose()
