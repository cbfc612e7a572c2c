"""Client of the public postal service (*bưu chính công ích*): pickup and delivery orders, tracking.

::

    POST {base}/orders                 create an order (headers Idempotency-Key, X-Signature)
         {"kind": "pickup|delivery", "dossier_code", "sender": {...}, "receiver": {...}, "items": [...]}
         -> 201 {"order_code", "status", ...}   (a repeated key: the first answer again, Idempotent-Replayed: true)
    GET  {base}/orders/{code}/events   its tracking events (header X-Signature)
         -> {"order_code", "events": [{"order_code", "status", "at", "note"}, ...]}

Requests are signed with the shared secret: ``X-Signature`` is the hex HMAC-SHA256 of ``"<METHOD> <path>\\n"``
(the path as sent, query included) followed by the raw body (empty for ``GET``); the service signs its tracking
webhook with the same secret (:mod:`adapters.postal.webhook`).

Both calls are safe to repeat (order creation carries the caller's idempotency key), so transient failures are
retried here a few times with jittered backoff, never sooner than the service's ``Retry-After``; a failure whose
``Retry-After`` is longer than the longest backoff is not retried here but raised at once (the caller's outbox waits
that long); other failures are :mod:`adapters.errors`. Names, phones and
addresses are never logged.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from adapters import jsonbody
from adapters.errors import BadResponseError, TransientError
from adapters.http import json_body, map_http_errors, raise_for_status
from adapters.postal.webhook import (
    SIGNATURE_HEADER,
    InvalidEvent,
    TrackingEvent,
    TrackingStatus,
    parse_event,
    sign_body,
)

__all__ = ["KINDS", "Order", "OrderKind", "PostalClient", "request_signature"]

logger = logging.getLogger(__name__)

OrderKind = Literal["pickup", "delivery"]
KINDS: tuple[str, ...] = ("pickup", "delivery")
_PARTY_FIELDS = ("name", "phone", "address")
T = TypeVar("T")


def request_signature(method: str, path: str, body: bytes, secret: str | bytes) -> str:
    """``X-Signature`` of a request to the postal service: HMAC-SHA256 of ``"<METHOD> <path>\\n" + body``."""
    return sign_body(f"{method.upper()} {path}\n".encode() + body, secret)


@dataclass(frozen=True)
class Order:
    """A postal order: its code (the tracking number) and status; ``duplicate`` for a replayed creation."""

    order_code: str
    status: str
    kind: str | None = None
    dossier_code: str | None = None
    duplicate: bool = False


def _check_party(party: Any, name: str) -> dict[str, Any]:
    if not isinstance(party, Mapping):
        raise ValueError(f"{name} must be an object with name, phone and address")
    for field_name in _PARTY_FIELDS:
        value = party.get(field_name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name}.{field_name} is required")
    return dict(party)


def _check_items(items: Any) -> list[dict[str, Any]]:
    if isinstance(items, str | bytes) or not isinstance(items, Sequence) or not items:
        raise ValueError("items must be a non-empty list")
    checked = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item["name"].strip():
            raise ValueError(f"items[{index}] must have a name")
        quantity = item.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise ValueError(f"items[{index}].quantity must be a positive integer")
        checked.append({**item, "quantity": quantity})
    return checked


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > 255 or not key.isascii() or not key.isprintable():
        raise ValueError("the idempotency key must be 1-255 printable ASCII characters")
    return key


class PostalClient:
    """The public postal service, reached through ``client`` (from :meth:`adapters.http.ClientFactory.client`,
    ``base_url`` the service's API); ``client`` is not closed by this object.

    :param secret: the shared secret signing requests (and the service's webhooks); never logged nor shown.
    :param attempts: tries per call when failures are transient (1: no retry).
    :param backoff_seconds: the first retry waits a random time up to this (full jitter), each next one up to
        twice as long, never more than ``max_backoff_seconds``.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        secret: str | Callable[[], str],
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 5.0,
        upstream: str = "postal",
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError("attempts must be a positive integer")
        if backoff_seconds < 0 or max_backoff_seconds < 0:
            raise ValueError("backoff must not be negative")
        self._client = client
        self._secret = secret
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.upstream = upstream

    def __repr__(self) -> str:
        return f"PostalClient(upstream={self.upstream!r}, secret=***, attempts={self.attempts})"

    def _key(self) -> str:
        return self._secret() if callable(self._secret) else self._secret

    # -- operations ----------------------------------------------------------------------------------------------------

    async def create_order(
        self,
        kind: OrderKind,
        dossier_code: str,
        sender: Mapping[str, Any],
        receiver: Mapping[str, Any],
        items: Sequence[Mapping[str, Any]],
        idempotency_key: str,
    ) -> Order:
        """Order a pickup (the applicant's originals to the agency) or a delivery (the result to the applicant).

        Repeating a call with the same ``idempotency_key`` (after a timeout, say) returns the same order.
        """
        if kind not in KINDS:
            raise ValueError("kind must be 'pickup' or 'delivery'")
        if not isinstance(dossier_code, str) or not dossier_code.strip():
            raise ValueError("dossier_code is required")
        payload = {
            "kind": kind,
            "dossier_code": dossier_code,
            "sender": _check_party(sender, "sender"),
            "receiver": _check_party(receiver, "receiver"),
            "items": _check_items(items),
        }
        body = jsonbody.encode(payload)
        headers = {"Idempotency-Key": _check_key(idempotency_key), "Content-Type": "application/json"}

        async def attempt() -> Order:
            response = await self._send("POST", "/orders", body, headers)
            raise_for_status(response, self.upstream)
            answer = self._object(response)
            code = answer.get("order_code")
            status = answer.get("status")
            if not isinstance(code, str) or not code or not isinstance(status, str) or not status:
                raise BadResponseError("the order answer has no order_code or status", upstream=self.upstream)
            return Order(
                order_code=code,
                status=status,
                kind=answer.get("kind", kind),
                dossier_code=answer.get("dossier_code", dossier_code),
                duplicate=response.headers.get("Idempotent-Replayed", "").strip().lower() == "true",
            )

        order = await self._retrying(attempt)
        logger.info("Postal %s order %s for dossier %s (%s)", kind, order.order_code, dossier_code, order.status)
        return order

    async def track(self, order_code: str) -> list[TrackingEvent]:
        """The order's tracking events, oldest first."""
        if not isinstance(order_code, str) or not order_code.strip() or "/" in order_code:
            raise ValueError("order_code must be a non-empty string without '/'")
        path = f"/orders/{urllib.parse.quote(order_code, safe='')}/events"

        async def attempt() -> list[TrackingEvent]:
            response = await self._send("GET", path, b"", {})
            raise_for_status(response, self.upstream)
            answer = self._object(response)
            events = answer.get("events")
            if not isinstance(events, list):
                raise BadResponseError("the tracking answer has no list of events", upstream=self.upstream)
            try:
                parsed = [parse_event(event) for event in events]
            except InvalidEvent as exc:
                raise BadResponseError(f"invalid tracking event: {exc}", upstream=self.upstream) from None
            if any(event.order_code != order_code for event in parsed):
                raise BadResponseError("the tracking answer is about another order", upstream=self.upstream)
            return sorted(parsed, key=lambda event: event.at)

        return await self._retrying(attempt)

    @staticmethod
    def is_final(status: TrackingStatus | str) -> bool:
        """Whether a shipment in ``status`` is over (delivered or returned to the sender)."""
        return TrackingStatus(status) in (TrackingStatus.DELIVERED, TrackingStatus.RETURNED)

    # -- plumbing ------------------------------------------------------------------------------------------------------

    def _retried_here(self, exc: BaseException) -> bool:
        """A transient failure is retried here unless the service asked for a longer wait than this client's."""
        return isinstance(exc, TransientError) and (exc.retry_after or 0.0) <= self.max_backoff_seconds

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        backoff = wait_random_exponential(multiplier=self.backoff_seconds, max=self.max_backoff_seconds)

        def wait(state: RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            asked = failure.retry_after if isinstance(failure, TransientError) else None
            return max(backoff(state), asked or 0.0)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait,
            retry=retry_if_exception(self._retried_here),
            reraise=True,
            before_sleep=lambda state: logger.info(
                "Postal call failed (%s), attempt %d of %d: retrying",
                state.outcome.exception() if state.outcome else "?",
                state.attempt_number,
                self.attempts,
            ),
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True ends the loop with an exception

    async def _send(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
        with map_http_errors(self.upstream):
            request = self._client.build_request(
                method, path, content=body or None, headers={"Accept": "application/json", **headers}
            )
            # The signature covers the path as sent (the base URL's prefix and the query included).
            signed_path = request.url.raw_path.decode("ascii")
            request.headers[SIGNATURE_HEADER] = request_signature(method, signed_path, body, self._key())
            return await self._client.send(request)

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        value = json_body(response, self.upstream)
        if not isinstance(value, dict):
            raise BadResponseError("expected a JSON object", upstream=self.upstream)
        return value
