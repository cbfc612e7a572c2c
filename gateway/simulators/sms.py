"""A simulated SMS gateway (the API of :mod:`adapters.sms.client`, the inbound webhook of :mod:`adapters.sms.wire`).

For tests, demos and trials; never for production (state in memory, ``/_sim`` open). It plays the SMS gateway:

* ``POST /send`` ``{"to", "text"}`` with a valid ``X-Signature`` (hex HMAC-SHA256 of the raw body with the shared
  secret), else 401; a text over 160 characters or not plain ASCII is refused (422). Each accepted text is kept
  and shown (``simulate sms`` prints it, the number masked but for its last three digits);
* ``POST /_sim/inbound`` ``{"from", "text", "forge": false}``: a citizen's text, posted signed to ``inbound_url``
  (the gateway's ``/api/v1/sms/inbound``; ``"forge": true`` signs it with a wrong key); the answer carries the
  gateway's status code and body;
* ``GET /_sim/messages?to=NUMBER``: the texts sent (to that number), oldest first;
* ``GET /_sim/state``, ``POST /_sim/reset``, ``POST /_sim/config`` ``{"inbound_url"}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.errors import UpstreamError
from adapters.http import ClientFactory, ClientSettings, default_factory, map_http_errors
from adapters.netguard import AddressPolicy
from adapters.sms import SIGNATURE_HEADER, SMS_MAX_CHARS, InvalidSignature, sign_body, verify_signature

__all__ = ["DEFAULT_SECRET", "SmsSimulator", "create_app"]

logger = logging.getLogger(__name__)

DEFAULT_SECRET = "SMS-SIMULATOR-SECRET"  # noqa: S105 - the simulator's documented default


def _masked(number: str) -> str:
    return "*" * max(len(number) - 3, 0) + number[-3:]


@dataclass
class SmsSimulator:
    """The simulated SMS gateway's state (in memory)."""

    secret: str = field(default=DEFAULT_SECRET, repr=False)
    inbound_url: str | None = None
    show: bool = False
    factory: ClientFactory = field(default_factory=lambda: default_factory)
    sent: list[dict[str, Any]] = field(default_factory=list)
    inbound: list[dict[str, Any]] = field(default_factory=list)
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    def state(self) -> dict[str, Any]:
        return {"sent": self.sent, "inbound": self.inbound, "config": {"inbound_url": self.inbound_url}}

    def reset(self) -> None:
        self.sent.clear()
        self.inbound.clear()

    def receive(self, raw: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
        """A send request from the gateway: its status code and answer."""
        try:
            verify_signature(raw, signature, self.secret)
        except InvalidSignature as exc:
            return 401, {"error": "bad_signature", "detail": str(exc)}
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"error": "not_json"}
        to, text = (body.get("to"), body.get("text")) if isinstance(body, dict) else (None, None)
        if not isinstance(to, str) or not to or not isinstance(text, str):
            return 422, {"error": "expected to and text"}
        if len(text) > SMS_MAX_CHARS or not text.isascii():
            return 422, {"error": "not one plain SMS", "chars": len(text)}
        message = {"id": len(self.sent) + 1, "to": to, "text": text, "at": datetime.now(UTC).isoformat()}
        self.sent.append(message)
        if self.show:
            print(f"SMS to {_masked(to)}: {text}", flush=True)
        return 200, {"id": message["id"], "status": "sent"}

    async def inject(self, sender: str, text: str, *, forge: bool = False) -> dict[str, Any]:
        """Post a citizen's text to the gateway, signed (with a wrong key when ``forge``); what it answered."""
        if self.inbound_url is None:
            return {"error": "no inbound_url configured"}
        body = {"from": sender, "text": text, "received_at": datetime.now(UTC).isoformat(timespec="seconds")}
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        key = "forged-" + self.secret if forge else self.secret
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_body(raw, key)}
        if self._client is None:
            settings = ClientSettings(base_url=self.inbound_url, address_policy=AddressPolicy(allow_private=True))
            self._client = self.factory.client("simulator:sms-inbound", settings)
        outcome: dict[str, Any] = {"text": text, "forged": forge}
        try:
            with map_http_errors("gateway"):
                response = await self._client.post(self.inbound_url, content=raw, headers=headers)
            outcome["status_code"] = response.status_code
            try:
                outcome["answer"] = response.json()
            except ValueError:
                outcome["answer"] = None
        except UpstreamError as exc:
            outcome["error"] = str(exc)
        self.inbound.append(outcome)
        return outcome

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _json(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    try:
        document = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def create_app(
    *,
    secret: str = DEFAULT_SECRET,
    inbound_url: str | None = None,
    show: bool = False,
    factory: ClientFactory | None = None,
) -> Starlette:
    """The simulated SMS gateway: ``secret`` signs both directions; texts are posted to ``inbound_url``; ``show``
    prints each text sent on standard output."""
    sim = SmsSimulator(secret=secret, inbound_url=inbound_url, show=show, factory=factory or default_factory)

    async def send(request: Request) -> Response:
        code, answer = sim.receive(await request.body(), request.headers.get(SIGNATURE_HEADER))
        return JSONResponse(answer, status_code=code)

    async def inbound(request: Request) -> Response:
        options = await _json(request)
        sender = options.get("from") if options else None
        text = options.get("text") if options else None
        if not isinstance(sender, str) or not sender or not isinstance(text, str):
            return JSONResponse({"error": "expected from and text"}, status_code=400)
        outcome = await sim.inject(sender, text, forge=bool(options and options.get("forge")))
        return JSONResponse(outcome, status_code=502 if "error" in outcome else 200)

    async def listing(request: Request) -> Response:
        to = request.query_params.get("to")
        return JSONResponse([m for m in sim.sent if to is None or m["to"] == to])

    async def state(request: Request) -> Response:
        return JSONResponse(sim.state())

    async def reset(request: Request) -> Response:
        sim.reset()
        return JSONResponse({"reset": True})

    async def config(request: Request) -> Response:
        options = await _json(request)
        url = options.get("inbound_url") if options is not None else None
        valid = url is None or (isinstance(url, str) and url.startswith(("http://", "https://")))
        if options is None or not valid:
            return JSONResponse({"error": "invalid_config"}, status_code=400)
        if "inbound_url" in options:
            sim.inbound_url = url
        return JSONResponse(sim.state()["config"])

    routes = [
        Route("/send", send, methods=["POST"]),
        Route("/_sim/inbound", inbound, methods=["POST"]),
        Route("/_sim/messages", listing, methods=["GET"]),
        Route("/_sim/state", state, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/config", config, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sim.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.simulator = sim
    return app
