"""A simulated public postal service (the API of :mod:`adapters.postal.client`, the webhook of
:mod:`adapters.postal.webhook`).

For tests, demos and trials; never for production (state in memory, ``/_sim`` open). It behaves as the service:

* every request must carry a valid ``X-Signature`` (HMAC-SHA256 with the shared secret of ``"<METHOD> <path>\\n"``
  and the body), else 401;
* ``POST /orders`` needs an ``Idempotency-Key``: a repeated key gets the first answer again (header
  ``Idempotent-Replayed: true``) and creates nothing; the same key with another body is refused (422). The order
  starts ``accepted``, with a first tracking event;
* ``GET /orders/{code}/events`` lists its tracking events, ``GET /orders/{code}`` the order;
* ``POST /_sim/orders/{code}/advance`` ``{"status": ..., "note": ...}`` (both optional) moves the order on
  (accepted → in_transit → delivered; in_transit → failed; failed → in_transit or returned) and pushes the event to
  ``webhook_url`` signed with ``X-Signature`` (hex HMAC-SHA256 of the raw body);
* over time: with ``auto_advance_seconds`` (:func:`create_app`, or ``/_sim/config``), every order whose last event
  is older than that moves one step on by itself (accepted → in_transit → delivered; failed → returned), webhook
  included;
* ``POST /_sim/orders/{code}/push`` ``{"index": N}`` (optional; default the last event) sends an earlier event again:
  a duplicate, or a late one (an old ``in_transit`` after ``delivered``), as real webhooks arrive;
* ``POST /_sim/faults`` ``{"fail_next": N, "lose_next": N, "fail_status": 503, "error_rate": 0.2,
  "duplicate_webhooks": true}``: fail the next N requests before handling them, or handle them and then answer
  ``fail_status`` as if the answer were lost; fail that fraction of requests at random (occasional 5xx, seeded);
  send every webhook twice;
* ``GET /_sim/state``, ``POST /_sim/reset``, ``POST /_sim/config`` ``{"webhook_url": ..., "auto_advance_seconds":
  ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from adapters.errors import UpstreamError
from adapters.http import ClientFactory, ClientSettings, default_factory, map_http_errors
from adapters.netguard import AddressPolicy
from adapters.postal import (
    KINDS,
    SIGNATURE_HEADER,
    InvalidSignature,
    TrackingEvent,
    TrackingStatus,
    sign_body,
    verify_signature,
)
from adapters.postal.webhook import POSTAL_TIME

__all__ = ["NEXT_STATUS", "TRANSITIONS", "PostalSimulator", "create_app"]

T = TrackingStatus
#: Where an order may go from each status.
TRANSITIONS: Mapping[TrackingStatus, frozenset[TrackingStatus]] = {
    T.ACCEPTED: frozenset({T.IN_TRANSIT}),
    T.IN_TRANSIT: frozenset({T.DELIVERED, T.FAILED}),
    T.FAILED: frozenset({T.IN_TRANSIT, T.RETURNED}),
    T.DELIVERED: frozenset(),
    T.RETURNED: frozenset(),
}
#: Where ``advance`` goes when no status is given.
NEXT_STATUS: Mapping[TrackingStatus, TrackingStatus] = {
    T.ACCEPTED: T.IN_TRANSIT,
    T.IN_TRANSIT: T.DELIVERED,
    T.FAILED: T.RETURNED,
}
_NOTES = {
    T.ACCEPTED: "Bưu cục đã nhận đơn hàng",
    T.IN_TRANSIT: "Đang vận chuyển",
    T.DELIVERED: "Đã phát thành công",
    T.FAILED: "Phát không thành công: không liên lạc được người nhận",
    T.RETURNED: "Đã chuyển hoàn cho người gửi",
}


def _now() -> datetime:
    return datetime.now(POSTAL_TIME).replace(microsecond=0)


@dataclass
class PostalSimulator:
    """The simulated postal service's state (in memory)."""

    secret: str = field(default="POSTAL-SIMULATOR-SECRET", repr=False)
    webhook_url: str | None = None
    factory: ClientFactory = field(default_factory=lambda: default_factory)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    lose_next: int = 0
    fail_status: int = 503
    #: The fraction of contract requests failed at random with ``fail_status`` (0: none).
    error_rate: float = 0.0
    duplicate_webhooks: bool = False
    #: Orders whose last event is older than this move on by themselves (``None``: only on demand).
    auto_advance_seconds: float | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)  # noqa: S311 - not security
    _serial: int = 0
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    def reset(self) -> None:
        self.orders.clear()
        self.answers.clear()
        self.counters.clear()
        self.webhooks.clear()
        self.fail_next = self.lose_next = 0
        self.fail_status = 503
        self.error_rate = 0.0
        self.duplicate_webhooks = False

    def state(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "counters": dict(self.counters),
            "webhooks": self.webhooks,
            "faults": {
                "fail_next": self.fail_next,
                "lose_next": self.lose_next,
                "fail_status": self.fail_status,
                "error_rate": self.error_rate,
                "duplicate_webhooks": self.duplicate_webhooks,
            },
            "config": {"webhook_url": self.webhook_url, "auto_advance_seconds": self.auto_advance_seconds},
        }

    def set_faults(self, changes: Mapping[str, Any]) -> None:
        for name, value in changes.items():
            if name == "error_rate":
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                    raise ValueError("error_rate must be a number from 0 to 1")
                self.error_rate = float(value)
                continue
            if name == "duplicate_webhooks":
                if not isinstance(value, bool):
                    raise ValueError("duplicate_webhooks must be true or false")
                self.duplicate_webhooks = value
                continue
            if name not in ("fail_next", "lose_next", "fail_status"):
                raise ValueError(f"unknown fault {name!r}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
            if name == "fail_status" and not 400 <= value <= 599:
                raise ValueError("fail_status must be an HTTP error status")
            setattr(self, name, value)

    # -- contract ------------------------------------------------------------------------------------------------------

    def create_order(self, payload: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(payload, dict):
            return 400, {"error": "invalid_json"}
        problem = _order_problem(payload)
        if problem:
            return 422, {"error": "invalid_order", "detail": problem}
        self._serial += 1
        code = f"EL{self._serial:09d}VN"
        event = TrackingEvent(code, T.ACCEPTED, _now(), _NOTES[T.ACCEPTED])
        self.orders[code] = {
            "order_code": code,
            "kind": payload["kind"],
            "dossier_code": payload["dossier_code"],
            "status": event.status.value,
            "request": payload,
            "events": [event.to_json()],
        }
        self.counters["orders_created"] += 1
        return 201, self.public(code)

    def public(self, code: str) -> dict[str, Any]:
        order = self.orders[code]
        return {key: order[key] for key in ("order_code", "kind", "dossier_code", "status")}

    # -- advancing and the webhook -------------------------------------------------------------------------------------

    async def advance(self, code: str, status: str | None, note: str | None) -> tuple[int, dict[str, Any]]:
        order = self.orders.get(code)
        if order is None:
            return 404, {"error": "not_found", "order_code": code}
        current = TrackingStatus(order["status"])
        if status is None:
            target = NEXT_STATUS.get(current)
            if target is None:
                return 409, {"error": "final", "status": current.value}
        else:
            try:
                target = TrackingStatus(status)
            except ValueError:
                return 400, {"error": "unknown_status", "status": status}
            if target not in TRANSITIONS[current]:
                return 409, {"error": "illegal_transition", "from": current.value, "to": target.value}
        # Never before the previous event (a clock that seems to go backwards would be a bug of the service).
        at = max(_now(), datetime.fromisoformat(order["events"][-1]["at"]))
        event = TrackingEvent(code, target, at, note or _NOTES[target])
        order["status"] = target.value
        order["events"].append(event.to_json())
        outcome = await self.push(event) if self.webhook_url else None
        if outcome is not None and self.duplicate_webhooks:
            await self.push(event)
        return 200, {"event": event.to_json(), "webhook": outcome}

    async def push_again(self, code: str, index: int | None) -> tuple[int, dict[str, Any]]:
        """Send an order's earlier event to the webhook again (a duplicate or a late arrival)."""
        order = self.orders.get(code)
        if order is None:
            return 404, {"error": "not_found", "order_code": code}
        if self.webhook_url is None:
            return 409, {"error": "no_webhook_url"}
        events = order["events"]
        position = len(events) - 1 if index is None else index
        if not -len(events) <= position < len(events):
            return 400, {"error": "no_such_event", "events": len(events)}
        item = events[position]
        event = TrackingEvent(code, TrackingStatus(item["status"]), datetime.fromisoformat(item["at"]), item["note"])
        return 200, {"event": item, "webhook": await self.push(event)}

    async def tick(self, now: datetime | None = None) -> int:
        """Move on every order whose last event is older than ``auto_advance_seconds``; how many moved."""
        if self.auto_advance_seconds is None:
            return 0
        now = now or _now()
        moved = 0
        for code, order in list(self.orders.items()):
            if TrackingStatus(order["status"]) not in NEXT_STATUS:
                continue
            last = datetime.fromisoformat(order["events"][-1]["at"])
            if (now - last).total_seconds() >= self.auto_advance_seconds:
                status, _ = await self.advance(code, None, None)
                moved += status == 200
        return moved

    async def push(self, event: TrackingEvent) -> dict[str, Any]:
        """Post ``event`` to the webhook, signed; what the answer was."""
        assert self.webhook_url is not None
        raw = json.dumps(event.to_json(), ensure_ascii=False).encode("utf-8")
        outcome: dict[str, Any] = {"order_code": event.order_code, "status": event.status.value}
        if self._client is None:
            settings = ClientSettings(base_url=self.webhook_url, address_policy=AddressPolicy(allow_private=True))
            self._client = self.factory.client("simulator:postal-webhook", settings)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_body(raw, self.secret)}
        self.counters["webhooks_sent"] += 1
        try:
            with map_http_errors("gateway"):
                response = await self._client.post(self.webhook_url, content=raw, headers=headers)
            outcome["status_code"] = response.status_code
        except UpstreamError as exc:
            outcome["error"] = str(exc)
        self.webhooks.append(outcome)
        return outcome

    async def run_clock(self, stop: asyncio.Event) -> None:
        """Advance orders over time (:meth:`tick`) until ``stop`` is set."""
        while not stop.is_set():
            period = min(1.0, (self.auto_advance_seconds or 1.0) / 2)
            try:
                await asyncio.wait_for(stop.wait(), timeout=period)
            except TimeoutError:
                pass
            if not stop.is_set():
                try:
                    await self.tick()
                except Exception:  # noqa: BLE001 - the simulator's clock must keep running
                    self.counters["clock_errors"] += 1

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _order_problem(payload: Mapping[str, Any]) -> str | None:
    if payload.get("kind") not in KINDS:
        return "kind must be pickup or delivery"
    if not isinstance(payload.get("dossier_code"), str) or not payload["dossier_code"].strip():
        return "dossier_code is required"
    for party in ("sender", "receiver"):
        value = payload.get(party)
        if not isinstance(value, dict):
            return f"{party} is required"
        for name in ("name", "phone", "address"):
            if not isinstance(value.get(name), str) or not value[name].strip():
                return f"{party}.{name} is required"
    items = payload.get("items")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) and i.get("name") for i in items):
        return "items must be a non-empty list of named items"
    return None


class _Handlers:
    """The routes' endpoints, over a :class:`PostalSimulator`."""

    def __init__(self, sim: PostalSimulator) -> None:
        self.sim = sim

    def _preflight(self, request: Request, body: bytes) -> Response | None:
        self.sim.counters["requests"] += 1
        if self.sim.fail_next > 0:
            self.sim.fail_next -= 1
            self.sim.counters["faults"] += 1
            return JSONResponse({"error": "injected_failure"}, status_code=self.sim.fail_status)
        if self.sim.error_rate and self.sim.rng.random() < self.sim.error_rate:
            self.sim.counters["faults"] += 1
            return JSONResponse({"error": "injected_failure"}, status_code=self.sim.fail_status)
        # The path as sent (percent-encoded), query included: what the client signed.
        signed = f"{request.method} ".encode() + (request.scope.get("raw_path") or request.url.path.encode())
        if request.scope.get("query_string"):
            signed += b"?" + request.scope["query_string"]
        try:
            verify_signature(signed + b"\n" + body, request.headers.get(SIGNATURE_HEADER), self.sim.secret)
        except InvalidSignature as exc:
            self.sim.counters["unauthorized"] += 1
            return JSONResponse({"error": "invalid_signature", "detail": str(exc)}, status_code=401)
        return None

    def _lost(self, answer: Response) -> Response:
        if self.sim.lose_next > 0:
            self.sim.lose_next -= 1
            self.sim.counters["faults"] += 1
            return JSONResponse({"error": "injected_failure"}, status_code=self.sim.fail_status)
        return answer

    async def create(self, request: Request) -> Response:
        body = await request.body()
        if (refused := self._preflight(request, body)) is not None:
            return refused
        key = request.headers.get("Idempotency-Key", "")
        if not key:
            return JSONResponse({"error": "missing_idempotency_key"}, status_code=400)
        fingerprint = hashlib.sha256(body).hexdigest()
        stored = self.sim.answers.get(key)
        if stored is not None:
            if stored[0] != fingerprint:
                return JSONResponse({"error": "idempotency_key_reused"}, status_code=422)
            self.sim.counters["replayed"] += 1
            answer = {**stored[1], "status": self.sim.orders[stored[1]["order_code"]]["status"]}
            return self._lost(JSONResponse(answer, status_code=201, headers={"Idempotent-Replayed": "true"}))
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        status, answer = self.sim.create_order(payload)
        if status == 201:
            self.sim.answers[key] = (fingerprint, answer)
        return self._lost(JSONResponse(answer, status_code=status))

    async def order(self, request: Request) -> Response:
        if (refused := self._preflight(request, b"")) is not None:
            return refused
        code = request.path_params["code"]
        if code not in self.sim.orders:
            return JSONResponse({"error": "not_found", "order_code": code}, status_code=404)
        return self._lost(JSONResponse(self.sim.public(code)))

    async def events(self, request: Request) -> Response:
        if (refused := self._preflight(request, b"")) is not None:
            return refused
        code = request.path_params["code"]
        if code not in self.sim.orders:
            return JSONResponse({"error": "not_found", "order_code": code}, status_code=404)
        return self._lost(JSONResponse({"order_code": code, "events": self.sim.orders[code]["events"]}))

    async def advance(self, request: Request) -> Response:
        raw = await request.body()
        try:
            options = json.loads(raw) if raw.strip() else {}
        except ValueError:
            options = None
        if not isinstance(options, dict):
            return JSONResponse({"error": "invalid_json"}, status_code=400)
        status, note = options.get("status"), options.get("note")
        if (status is not None and not isinstance(status, str)) or (note is not None and not isinstance(note, str)):
            return JSONResponse({"error": "invalid_options"}, status_code=400)
        code, answer = await self.sim.advance(request.path_params["code"], status, note)
        return JSONResponse(answer, status_code=code)

    async def state(self, request: Request) -> Response:
        return JSONResponse(self.sim.state())

    async def reset(self, request: Request) -> Response:
        self.sim.reset()
        return JSONResponse({"reset": True})

    async def faults(self, request: Request) -> Response:
        try:
            changes = json.loads(await request.body() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            self.sim.set_faults(changes)
        except ValueError as exc:
            return JSONResponse({"error": "invalid_faults", "detail": str(exc)}, status_code=400)
        return JSONResponse(self.sim.state()["faults"])

    async def config(self, request: Request) -> Response:
        try:
            changes = json.loads(await request.body() or b"{}")
            if not isinstance(changes, dict) or set(changes) - {"webhook_url", "auto_advance_seconds"}:
                raise ValueError('expected {"webhook_url": ..., "auto_advance_seconds": ...}')
            if "webhook_url" in changes:
                url = changes["webhook_url"]
                if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
                    raise ValueError("webhook_url must be an http(s) URL or null")
                self.sim.webhook_url = url
            if "auto_advance_seconds" in changes:
                seconds = changes["auto_advance_seconds"]
                if seconds is not None and (
                    isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0
                ):
                    raise ValueError("auto_advance_seconds must be a positive number or null")
                self.sim.auto_advance_seconds = None if seconds is None else float(seconds)
        except ValueError as exc:
            return JSONResponse({"error": "invalid_config", "detail": str(exc)}, status_code=400)
        return JSONResponse(self.sim.state()["config"])

    async def push(self, request: Request) -> Response:
        raw = await request.body()
        try:
            options = json.loads(raw) if raw.strip() else {}
        except ValueError:
            options = None
        index = options.get("index") if isinstance(options, dict) else None
        if not isinstance(options, dict) or (
            index is not None and (isinstance(index, bool) or not isinstance(index, int))
        ):
            return JSONResponse({"error": "invalid_options"}, status_code=400)
        code, answer = await self.sim.push_again(request.path_params["code"], index)
        return JSONResponse(answer, status_code=code)


def create_app(
    *,
    secret: str = "POSTAL-SIMULATOR-SECRET",  # noqa: S107 - the simulator's demo secret
    webhook_url: str | None = None,
    factory: ClientFactory | None = None,
    auto_advance_seconds: float | None = None,
    error_rate: float = 0.0,
    seed: int | None = 0,
) -> ASGIApp:
    """The simulated postal service as an ASGI app; its :class:`PostalSimulator` is ``app.state.simulator``.

    :param secret: the shared secret (requests and webhooks).
    :param webhook_url: where tracking events are pushed (the gateway's ``/api/v1/postal/events``).
    :param factory: HTTP client factory for the webhook (the process-wide one by default).
    :param auto_advance_seconds: move orders on by themselves after this long without an event (default: never).
    :param error_rate: the fraction of contract requests answered ``fail_status`` at random (occasional 5xx).
    :param seed: the random generator's seed (``None``: unpredictable).
    """
    if auto_advance_seconds is not None and not auto_advance_seconds > 0:
        raise ValueError("auto_advance_seconds must be positive")
    sim = PostalSimulator(
        secret=secret,
        webhook_url=webhook_url,
        factory=factory or default_factory,
        auto_advance_seconds=auto_advance_seconds,
        rng=random.Random(seed),  # noqa: S311 - fault injection, not security
    )
    sim.set_faults({"error_rate": error_rate})

    handlers = _Handlers(sim)
    routes = [
        Route("/orders", handlers.create, methods=["POST"]),
        Route("/orders/{code}", handlers.order, methods=["GET"]),
        Route("/orders/{code}/events", handlers.events, methods=["GET"]),
        Route("/_sim/orders/{code}/advance", handlers.advance, methods=["POST"]),
        Route("/_sim/orders/{code}/push", handlers.push, methods=["POST"]),
        Route("/_sim/state", handlers.state, methods=["GET"]),
        Route("/_sim/reset", handlers.reset, methods=["POST"]),
        Route("/_sim/faults", handlers.faults, methods=["POST"]),
        Route("/_sim/config", handlers.config, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        clock = asyncio.create_task(sim.run_clock(stop), name="postal-simulator-clock")
        try:
            yield
        finally:
            stop.set()
            await clock
            await sim.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.simulator = sim
    return app
