"""Client of the SMS gateway: one signed ``POST {base_url}/send`` ``{"to", "text"}`` per message.

``X-Signature`` is the hex HMAC-SHA256 of the raw body with the shared secret (:mod:`adapters.sms.wire`). The
recipient's number is never logged. Failures are :mod:`adapters.errors` errors (the outbox retries transient ones).
"""

from __future__ import annotations

import json
import logging

import httpx

from adapters.errors import PermanentError
from adapters.http import SecretSource, map_http_errors, raise_for_status
from adapters.sms.wire import SIGNATURE_HEADER, SMS_MAX_CHARS, sign_body

__all__ = ["SmsClient"]

logger = logging.getLogger(__name__)


class SmsClient:
    """Sends texts through the SMS gateway over ``http`` (an ``httpx.AsyncClient`` whose ``base_url`` is the
    gateway's API, with its timeouts; closed by :meth:`aclose`)."""

    def __init__(self, http: httpx.AsyncClient, *, secret: SecretSource, upstream: str = "sms") -> None:
        self._http = http
        self._secret = secret
        self.upstream = upstream

    def _key(self) -> str:
        return self._secret() if callable(self._secret) else self._secret

    async def send(self, to: str, text: str) -> None:
        """Send ``text`` (at most one SMS) to the number ``to``."""
        if not to.strip():
            raise PermanentError("no recipient", upstream=self.upstream)
        if len(text) > SMS_MAX_CHARS or not text.isascii():
            raise PermanentError("the text is not one plain SMS", upstream=self.upstream)
        body = json.dumps({"to": to, "text": text}, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_body(body, self._key())}
        with map_http_errors(self.upstream):
            response = await self._http.post("send", content=body, headers=headers)
        raise_for_status(response, self.upstream)
        logger.info("SMS sent", extra={"chars": len(text)})

    async def aclose(self) -> None:
        await self._http.aclose()
