"""A simulated agency one-stop system speaking the reference REST contract (``docs/agency-rest-contract.md``).

For tests, demos and agencies' own trials; never for production (state is in memory, ``/_sim`` is not
authenticated). It behaves as a well-behaved agency should:

* ``POST /dossiers`` stores the dossier; ``GET /dossiers/{code}`` answers its status;
  ``POST /dossiers/{code}/supplements`` and ``/withdraw`` record supplements and withdrawals;
  ``POST /dossiers/{code}/payments`` records the fees the applicant paid (``payments`` of the dossier);
  ``POST /questions`` records a citizen's question (``questions``, by id; answered through the gateway's API);
* every ``POST`` needs an ``Idempotency-Key``: a repeated key gets the first answer again (header
  ``Idempotent-Replayed: true``) and causes no second effect; the same key with another request is refused (422);
  ``effects`` counts what really happened, so tests can assert exactly-once;
* with ``token``, requests without ``Authorization: Bearer <token>`` are refused (401);
* with ``mapping`` (a registration document's ``mapping``), it speaks that agency's dialect instead: other paths,
  other field names, other status values.

Test and demo controls, under ``/_sim``:

* ``POST /_sim/faults`` ``{"fail_next": N, "fail_status": 503, "lose_next": N, "html_next": N,
  "delay_seconds": D, "oversize_next": N, "oversize_bytes": B, "oversize_declared": false}`` (or ``{"reset": true}``):
  fail the next N requests before handling them; handle the next N then answer ``fail_status`` as if the answer
  were lost; answer an HTML page instead of JSON; delay every answer; stream an oversized JSON answer;
* ``GET /_sim/state``: received dossiers and counters; ``POST /_sim/reset``: forget everything;
* ``POST /_sim/dossiers/{code}/events`` ``{"status", "note", "reason", "due_at", "transfer_to", "result",
  "components", "at"}``:
  change a dossier's status as the agency's clerk would and, with ``callback_url``, post the agency event
  (``dossier_code, status, at, note, reason, due_at, transfer_to, result``) to the gateway with ``callback_token``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from adapters.errors import UpstreamError
from adapters.http import ClientFactory, ClientSettings, bearer, default_factory, map_http_errors, raise_for_status
from adapters.netguard import AddressPolicy
from adapters.onestop.rest import RestMapping
from gateway.simulators.controls import apply_faults, checked_value, inject_event

__all__ = ["AgencySimulator", "Faults", "create_app"]

logger = logging.getLogger(__name__)

_FINAL = frozenset({"withdrawn", "refused", "completed", "returned"})
_EVENT_FIELDS = ("note", "reason", "due_at", "transfer_to", "result", "components")
_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Bảo trì hệ thống</title></head>"
    "<body><h1>Hệ thống đang bảo trì</h1><p>Vui lòng quay lại sau.</p></body></html>"
)
_CHUNK = 64 * 1024


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Faults:
    """Faults injected into the contract endpoints (never into ``/_sim``)."""

    fail_next: int = 0  # answer fail_status without handling the request
    fail_status: int = 503
    lose_next: int = 0  # handle the request (the effect happens), then answer fail_status
    html_next: int = 0  # answer a 200 HTML page (a proxy's maintenance page) without handling the request
    delay_seconds: float = 0.0  # delay every answer
    oversize_next: int = 0  # answer a JSON document of oversize_bytes, streamed
    oversize_bytes: int = 60_000_000
    oversize_declared: bool = False  # send its Content-Length (else chunked)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` (``ValueError`` for an unknown field or a wrong type)."""
        for name, value in changes.items():
            value = checked_value(self, name, value)
            if name == "fail_status" and not 400 <= value <= 599:
                raise ValueError("fail_status must be an HTTP error status (400-599)")
            setattr(self, name, value)


@dataclass
class _Answer:
    fingerprint: str
    status: int
    body: dict[str, Any]


@dataclass
class AgencySimulator:
    """The simulated agency's state (in memory)."""

    token: str | None = None
    callback_url: str | None = None
    callback_token: str | None = field(default=None, repr=False)
    mapping: RestMapping = field(default_factory=RestMapping)
    factory: ClientFactory = field(default_factory=lambda: default_factory)
    dossiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    questions: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, _Answer] = field(default_factory=dict)
    effects: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    bytes_streamed: int = 0
    #: Builds the callback request from an event (``(body, headers)``); none: the event is posted as JSON.
    callback_encoder: Callable[[dict[str, Any]], tuple[bytes, dict[str, str]]] | None = field(default=None, repr=False)
    _callback_client: httpx.AsyncClient | None = field(default=None, repr=False)

    def reset(self) -> None:
        self.dossiers.clear()
        self.questions.clear()
        self.answers.clear()
        self.effects.clear()
        self.counters.clear()
        self.callbacks.clear()
        self.faults = Faults()
        self.bytes_streamed = 0

    def state(self) -> dict[str, Any]:
        return {
            "dossiers": self.dossiers,
            "questions": self.questions,
            "effects": dict(self.effects),
            "counters": dict(self.counters),
            "faults": asdict(self.faults),
            "bytes_streamed": self.bytes_streamed,
            "callbacks": self.callbacks,
        }

    # -- contract operations: (status, body in the reference contract's names) -----------------------------------------

    def deliver(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        code = payload.get("code")
        if not isinstance(code, str) or not code:
            return 400, {"error": "invalid_dossier", "detail": "code is required"}
        known = self.dossiers.get(code)
        if known is not None:
            return 409, {"error": "already_exists", "code": code, "reference": known["reference"]}
        self.effects["deliver"] += 1
        record = {
            "code": code,
            "reference": f"SIM-{len(self.dossiers) + 1:06d}",
            "received_at": _now(),
            "status": "submitted",
            "received": payload,
            "supplements": [],
            "withdraw_reason": None,
            "history": [{"status": "submitted", "at": _now()}],
            **dict.fromkeys(_EVENT_FIELDS),
        }
        self.dossiers[code] = record
        return 201, {k: record[k] for k in ("code", "reference", "status", "received_at")}

    def status(self, code: str) -> tuple[int, dict[str, Any]]:
        record = self.dossiers.get(code)
        if record is None:
            return 404, {"error": "not_found", "code": code}
        body = {"code": code, "status": record["status"], "at": record["history"][-1]["at"]}
        body.update({name: record[name] for name in _EVENT_FIELDS})
        return 200, body

    def supplement(self, code: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        record = self.dossiers.get(code)
        if record is None:
            return 404, {"error": "not_found", "code": code}
        components = payload.get("components")
        if not isinstance(components, list) or not components:
            return 400, {"error": "invalid_supplement", "detail": "components must be a non-empty list"}
        if record["status"] in _FINAL:
            return 409, {"error": "not_allowed", "code": code, "status": record["status"]}
        self.effects["supplement"] += 1
        record["supplements"].append(components)
        if record["status"] == "supplement_requested":
            self._set_status(record, "processing")
        return 200, {"code": code, "status": record["status"], "accepted": True}

    def withdraw(self, code: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        record = self.dossiers.get(code)
        if record is None:
            return 404, {"error": "not_found", "code": code}
        if record["status"] in ("completed", "returned"):
            return 409, {"error": "not_allowed", "code": code, "status": record["status"]}
        if record["status"] != "withdrawn":
            self.effects["withdraw"] += 1
            record["withdraw_reason"] = payload.get("reason")
            self._set_status(record, "withdrawn")
        return 200, {"code": code, "status": "withdrawn"}

    def fee_paid(self, code: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        record = self.dossiers.get(code)
        if record is None:
            return 404, {"error": "not_found", "code": code}
        reference, amount = payload.get("reference"), payload.get("amount")
        if not isinstance(reference, str) or not reference or isinstance(amount, bool) or not isinstance(amount, int):
            return 400, {"error": "invalid_payment", "detail": "reference (string) and amount (integer VND) required"}
        self.effects["fee_paid"] += 1
        record.setdefault("payments", []).append(payload)
        return 200, {"code": code, "reference": reference, "accepted": True}

    def question(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key, text = payload.get("id"), payload.get("question")
        if isinstance(key, bool) or not isinstance(key, int | str) or not isinstance(text, str) or not text:
            return 400, {"error": "invalid_question", "detail": "id and question are required"}
        self.effects["question"] += 1
        self.questions[str(key)] = {**payload, "received_at": _now()}
        return 202, {"id": key, "accepted": True}

    def _set_status(self, record: dict[str, Any], status: str, at: str | None = None) -> None:
        record["status"] = status
        record["history"].append({"status": status, "at": at or _now()})

    # -- agency events and callbacks -----------------------------------------------------------------------------------

    async def event(self, code: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        record = self.dossiers.get(code)
        if record is None:
            return 404, {"error": "not_found", "code": code}
        status = payload.get("status")
        if not isinstance(status, str) or not status:
            return 400, {"error": "invalid_event", "detail": "status is required"}
        at = payload.get("at") or _now()
        self.effects["event"] += 1
        self._set_status(record, status, at)
        for name in _EVENT_FIELDS:
            record[name] = payload.get(name)
        event = {"dossier_code": code, "status": status, "at": at, **{n: payload.get(n) for n in _EVENT_FIELDS}}
        outcome = await self._post_callback(event) if self.callback_url else None
        return 200, {"code": code, "status": status, "callback": outcome}

    async def _post_callback(self, event: dict[str, Any]) -> dict[str, Any]:
        assert self.callback_url is not None
        if self._callback_client is None:
            settings = ClientSettings(base_url=self.callback_url, address_policy=AddressPolicy(allow_private=True))
            auth = bearer(self.callback_token) if self.callback_token else None
            self._callback_client = self.factory.client("simulator:callback", settings, auth=auth)
        outcome: dict[str, Any] = {"dossier_code": event["dossier_code"], "status": event["status"]}
        try:
            with map_http_errors("gateway"):
                if self.callback_encoder is not None:
                    content, headers = self.callback_encoder(event)
                    response = await self._callback_client.post(self.callback_url, content=content, headers=headers)
                else:
                    response = await self._callback_client.post(self.callback_url, json=event)
            outcome["status_code"] = response.status_code
            raise_for_status(response, "gateway")
        except UpstreamError as exc:
            outcome["error"] = str(exc)
        self.callbacks.append(outcome)
        return outcome

    async def aclose(self) -> None:
        if self._callback_client is not None:
            await self._callback_client.aclose()
            self._callback_client = None


# ----------------------------------------------------------------------------------------------------------------------
# HTTP layer
# ----------------------------------------------------------------------------------------------------------------------


def _fingerprint(request: Request, body: bytes) -> str:
    return hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + body).hexdigest()


class _Handlers:
    """The app's endpoints over one :class:`AgencySimulator`."""

    def __init__(self, sim: AgencySimulator) -> None:
        self.sim = sim

    def _json(self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
        """A contract answer, in the agency's dialect."""
        out = dict(body)
        if "status" in out and status < 300:
            out["status"] = self._their_status(out["status"])
        return JSONResponse(self.sim.mapping.outbound(out), status_code=status, headers=headers)

    def _their_status(self, ours: Any) -> Any:
        reverse = {mine: theirs for theirs, mine in self.sim.mapping.statuses.items()}
        return reverse.get(ours, ours)

    async def _preflight(self, request: Request) -> Response | None:
        """Delay, injected faults and authentication, in that order (as a proxy, then the system, would)."""
        sim, faults = self.sim, self.sim.faults
        sim.counters["requests"] += 1
        if faults.delay_seconds > 0 and await _sleep_unless_gone(request, faults.delay_seconds):
            return Response(status_code=499)  # nobody is listening any more
        if faults.fail_next > 0:
            faults.fail_next -= 1
            sim.counters["faults"] += 1
            return JSONResponse({"error": "injected_failure"}, status_code=faults.fail_status)
        if faults.html_next > 0:
            faults.html_next -= 1
            sim.counters["faults"] += 1
            return HTMLResponse(_HTML_PAGE)
        if faults.oversize_next > 0:
            faults.oversize_next -= 1
            sim.counters["faults"] += 1
            size = max(faults.oversize_bytes, 16)
            headers = {"Content-Length": str(size)} if faults.oversize_declared else None
            return StreamingResponse(self._oversized(request, size), media_type="application/json", headers=headers)
        if sim.token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {sim.token}".encode()):
                sim.counters["unauthorized"] += 1
                return JSONResponse(
                    {"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="agency"'}
                )
        return None

    async def _oversized(self, request: Request, size: int) -> AsyncIterator[bytes]:
        """A JSON document of ``size`` bytes, produced as it is sent; it stops when the client goes away."""
        head, tail = b'{"padding":"', b'"}'
        remaining = size - len(head) - len(tail)
        self.sim.bytes_streamed += len(head)
        yield head
        while remaining > 0:
            if await request.is_disconnected():  # the server would otherwise write on into the void
                return
            chunk = b"x" * min(_CHUNK, remaining)
            remaining -= len(chunk)
            self.sim.bytes_streamed += len(chunk)
            yield chunk
        self.sim.bytes_streamed += len(tail)
        yield tail

    def _payload(self, body: bytes) -> dict[str, Any] | JSONResponse:
        """The JSON object a request carries, in the reference names; an error answer otherwise."""
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            return JSONResponse({"error": "invalid_json"}, status_code=400)
        if not isinstance(payload, dict):
            return JSONResponse({"error": "invalid_json", "detail": "expected an object"}, status_code=400)
        return self.sim.mapping.inbound(payload)

    async def _mutation(
        self, request: Request, operation: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]
    ) -> Response:
        """An idempotency-keyed contract operation."""
        body = await request.body()
        refused = await self._preflight(request)
        if refused is not None:
            return refused
        key = request.headers.get("Idempotency-Key", "")
        if not key:
            return JSONResponse({"error": "missing_idempotency_key"}, status_code=400)
        fingerprint = _fingerprint(request, body)
        stored = self.sim.answers.get(key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                return JSONResponse({"error": "idempotency_key_reused"}, status_code=422)
            self.sim.counters["replayed"] += 1
            return self._json(stored.status, stored.body, {"Idempotent-Replayed": "true"})
        payload = self._payload(body)
        if isinstance(payload, Response):
            return payload
        # No await from here to the answer being stored: concurrent repeats of a key cannot both take effect.
        status, answer = operation(payload)
        if status < 300 or status == 409:
            self.sim.answers[key] = _Answer(fingerprint, status, answer)
        if self.sim.faults.lose_next > 0:
            self.sim.faults.lose_next -= 1
            self.sim.counters["faults"] += 1
            return JSONResponse({"error": "injected_failure"}, status_code=self.sim.faults.fail_status)
        return self._json(status, answer)

    # -- endpoints -----------------------------------------------------------------------------------------------------

    async def deliver(self, request: Request) -> Response:
        return await self._mutation(request, self.sim.deliver)

    async def status(self, request: Request) -> Response:
        refused = await self._preflight(request)
        if refused is not None:
            return refused
        return self._json(*self.sim.status(request.path_params["code"]))

    async def supplement(self, request: Request) -> Response:
        code = request.path_params["code"]
        return await self._mutation(request, lambda payload: self.sim.supplement(code, payload))

    async def withdraw(self, request: Request) -> Response:
        code = request.path_params["code"]
        return await self._mutation(request, lambda payload: self.sim.withdraw(code, payload))

    async def fee_paid(self, request: Request) -> Response:
        code = request.path_params["code"]
        return await self._mutation(request, lambda payload: self.sim.fee_paid(code, payload))

    async def question(self, request: Request) -> Response:
        return await self._mutation(request, self.sim.question)

    async def faults(self, request: Request) -> Response:
        return await apply_faults(request, self.sim, Faults)

    async def state(self, request: Request) -> Response:
        return JSONResponse(self.sim.state())

    async def reset(self, request: Request) -> Response:
        self.sim.reset()
        return JSONResponse({"reset": True})

    async def event(self, request: Request) -> Response:
        return await inject_event(request, self.sim.event)


async def _sleep_unless_gone(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``, or less when the client goes away (then ``True``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        await asyncio.sleep(min(0.05, remaining))
        if await request.is_disconnected():
            return True
    return False


def _route(path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str) -> Route:
    return Route(path, endpoint, methods=[method])


def create_app(
    *,
    token: str | None = None,
    callback_url: str | None = None,
    callback_token: str | None = None,
    mapping: Mapping[str, Any] | None = None,
    factory: ClientFactory | None = None,
) -> ASGIApp:
    """The simulator as an ASGI app; its :class:`AgencySimulator` is ``app.state.simulator``.

    :param token: bearer token the contract endpoints require (none: open).
    :param callback_url: where agency events are posted (the gateway's ``/api/v1/agencies/{agency}/events``).
    :param callback_token: bearer token sent with them.
    :param mapping: a registration document's ``mapping``: speak that dialect instead of the reference contract.
    :param factory: HTTP client factory for the callbacks (the process-wide one by default).
    """
    sim = AgencySimulator(
        token=token,
        callback_url=callback_url,
        callback_token=callback_token,
        mapping=RestMapping.parse(mapping),
        factory=factory or default_factory,
    )
    handlers = _Handlers(sim)
    paths = sim.mapping.paths
    routes = [
        _route(paths["deliver"], handlers.deliver, "POST"),
        _route(paths["status"], handlers.status, "GET"),
        _route(paths["supplement"], handlers.supplement, "POST"),
        _route(paths["withdraw"], handlers.withdraw, "POST"),
        _route(paths["fee_paid"], handlers.fee_paid, "POST"),
        _route(paths["question"], handlers.question, "POST"),
        _route("/_sim/faults", handlers.faults, "POST"),
        _route("/_sim/state", handlers.state, "GET"),
        _route("/_sim/reset", handlers.reset, "POST"),
        _route("/_sim/dossiers/{code}/events", handlers.event, "POST"),
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
