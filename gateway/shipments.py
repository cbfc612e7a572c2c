"""Postal return (DESIGN.md §4.5, §6): pickup of the originals, delivery of the result, tracking.

When the applicant chose ``return_method = "post"`` and ``[postal] base_url`` is configured:

- **at intake**, a dossier whose ``originals_check_required`` is true gets a *pickup* order (the postal service
  collects the paper originals from the applicant and brings them to the one-stop office);
- **on ``completed``**, a *delivery* order (the result, from the office to the applicant's ``delivery_address``).

Each is a :class:`~gateway.store.models.Shipment` row (``requested`` until ordered) and a ``postal.order`` outbox
message in the transaction of the change (:func:`on_change`). :class:`Handler` sends the order through
:class:`adapters.postal.PostalClient` (idempotency key: the message's, ``<dossier>:postal:<kind>``), stores the
order code and records the history step ``pickup_ordered`` or ``shipped``.

Tracking events come by the signed webhook (``POST /api/v1/postal/events``, :mod:`gateway.api.routes_postal`) or,
for shipments with no news for ``poll_after_seconds``, by polling (:func:`periodic_jobs`); both go through
:func:`apply_tracking_event`:

- each new event is a history step ``<kind>_<status>`` (``delivery_in_transit``, ``delivery_failed``,
  ``delivery_returned`` (returned to the sender), ``pickup_delivered``…) whose status is the dossier's current one,
  except that a delivery's ``delivered`` moves the dossier ``completed → returned`` (the entry's step is
  ``delivery_delivered``); failed deliveries and returns to the sender leave the dossier ``completed``;
- an ``accepted`` event for an order already accepted adds no step (the order's own step said it);
- an event already seen (same status and time) changes nothing (duplicates are idempotent);
- an event older than the last one applied, or any event after ``delivered`` or ``returned``, is kept in the
  shipment's event log (``details.events``, ``applied: false``) and moves nothing: the shipment never goes backwards;
- every recorded step passes the fan-out (:func:`gateway.fanout.after_change`): national portal, portal webhook.

Without ``[postal] base_url`` the integration is off: a dossier that would have needed an order gets one history
step ``postal_skipped`` per kind, and nothing else happens.

Configuration (``[postal]``; secrets as ``env:NAME`` or ``file:PATH``):

====================== ============================================================================================
``base_url``           the postal service's API (unset: postal return off)
``secret``             the shared secret: signs requests, authenticates the tracking webhook
``timeout_seconds``    per network operation (default 10)
``attempts``           tries per call before the outbox's own retry takes over (default 3)
``poll_interval_seconds`` how often the tracking poll runs (default 300)
``poll_after_seconds`` a shipment not heard of for this long is polled (default 3600)
``office_name``,       the one-stop office (*Bộ phận Một cửa*) sending results and receiving originals: required
``office_phone``,      to order anything
``office_address``
====================== ============================================================================================

Names, phones and addresses are sent to the postal service only, never logged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from adapters.errors import AuthError, PermanentError, UpstreamError
from adapters.http import ClientSettings
from adapters.netguard import AddressPolicy
from adapters.postal import Order, PostalClient, TrackingEvent, TrackingStatus

from . import audit, messages, outbox
from .config import Config, ConfigError, resolve_secret
from .domain.status import Status, can_transition
from .fanout import Fanout, after_change
from .periodic import PeriodicJob
from .store.models import Dossier, HistoryEntry, Shipment, utcnow

if TYPE_CHECKING:
    from .dispatch import GatewayDispatcher
    from .runtime import Runtime
    from .workers import MessageView

__all__ = [
    "ACTOR",
    "FINAL_STATUSES",
    "Handler",
    "PostalSettings",
    "TrackingOutcome",
    "apply_tracking_event",
    "on_change",
    "periodic_jobs",
    "receive_event",
    "shipments_view",
]

log = logging.getLogger("gateway.shipments")

#: The actor of the history steps and audit entries this module records.
ACTOR = "postal"
PICKUP = "pickup"
DELIVERY = "delivery"
UPSTREAM = messages.POSTAL_TARGET
#: A shipment in one of these is over: no event moves it any more.
FINAL_STATUSES = frozenset({TrackingStatus.DELIVERED.value, TrackingStatus.RETURNED.value, "cancelled"})
#: For two events at the same instant: the one further along wins.
_RANK = {"requested": 0, "accepted": 1, "in_transit": 2, "failed": 3, "delivered": 4, "returned": 4}
#: The shipment's event log keeps at most this many events.
_MAX_EVENTS = 200
_ORDER_STEPS = {PICKUP: "pickup_ordered", DELIVERY: "shipped"}
_KIND_WORDS = {PICKUP: "pickup of the originals", DELIVERY: "delivery of the result"}


# --------------------------------------------------------------------------------------------------------------------
# Configuration


def _number(section: Mapping[str, Any], key: str, default: float, *, minimum: float = 0.0) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"[postal] {key} must be a number of at least {minimum:g}")
    return float(value)


@dataclass(frozen=True)
class PostalSettings:
    """The ``[postal]`` section (see the module notes); the secret stays a reference until a request needs it."""

    base_url: str
    secret: str | None = None
    timeout_seconds: float = 10.0
    attempts: int = 3
    poll_interval_seconds: float = 300.0
    poll_after_seconds: float = 3600.0
    office: Mapping[str, str] | None = None

    @classmethod
    def from_config(cls, config: Config) -> PostalSettings | None:
        """The settings, or ``None`` when the integration is off (no ``base_url``)."""
        section = config.section("postal")
        base_url = section.get("base_url")
        if not base_url:
            return None
        if not isinstance(base_url, str):
            raise ConfigError("[postal] base_url must be a URL")
        secret = section.get("secret")
        if secret is not None and not isinstance(secret, str):
            raise ConfigError("[postal] secret must be a string (a literal, env:NAME or file:PATH)")
        attempts = section.get("attempts", 3)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigError("[postal] attempts must be a positive integer")
        office = {key: section.get(f"office_{key}") for key in ("name", "phone", "address")}
        complete = all(isinstance(value, str) and value.strip() for value in office.values())
        return cls(
            base_url=base_url,
            secret=secret or None,
            timeout_seconds=_number(section, "timeout_seconds", 10.0, minimum=0.001),
            attempts=attempts,
            poll_interval_seconds=_number(section, "poll_interval_seconds", 300.0, minimum=0.001),
            poll_after_seconds=_number(section, "poll_after_seconds", 3600.0),
            office={k: str(v) for k, v in office.items()} if complete else None,
        )

    def resolve_secret(self) -> str:
        """The shared secret, resolved now (never kept); :class:`ConfigError` when it is missing."""
        value = resolve_secret(self.secret, key="[postal] secret") if self.secret else None
        if not value:
            raise ConfigError("[postal] secret is not configured")
        return value


# --------------------------------------------------------------------------------------------------------------------
# History steps


def _step(
    session: Session,
    dossier: Dossier,
    *,
    step: str,
    at: datetime,
    note: str,
    now: datetime,
    fanout: Fanout | None,
    details: Mapping[str, Any] | None = None,
    status: Status | None = None,
) -> HistoryEntry:
    """Record a history entry (never before the last one): a step in the current status, or a status change when
    ``status`` is given; fanned out unless ``fanout`` is ``None``."""
    previous = dossier.status
    last = dossier.history[-1].at if dossier.history else at
    entry_details: dict[str, Any] = {"step": step, **(details or {})}
    if status is not None and status.value != previous:
        entry_details["from"] = previous
    entry = HistoryEntry(
        status=(status.value if status is not None else previous),
        at=max(at, last),
        actor=ACTOR,
        note=note,
        details=entry_details,
    )
    dossier.history.append(entry)
    dossier.status = entry.status
    dossier.updated_at = now
    session.flush()
    if fanout is not None:
        after_change(session, dossier, entry, fanout, previous=previous, now=now)
    return entry


def _already_skipped(dossier: Dossier, kind: str) -> bool:
    return any(
        (entry.details or {}).get("step") == "postal_skipped" and (entry.details or {}).get("kind") == kind
        for entry in dossier.history
    )


# --------------------------------------------------------------------------------------------------------------------
# Fan-out: what a change orders


def _wanted(dossier: Dossier, entry: HistoryEntry, previous: str | None) -> str | None:
    """The kind of order ``entry`` calls for, if any."""
    if dossier.return_method != "post" or (entry.details or {}).get("step"):
        return None
    if previous is None and entry.status == Status.SUBMITTED and dossier.originals_check_required:
        return PICKUP
    if entry.status == Status.COMPLETED and previous != Status.COMPLETED:
        return DELIVERY
    return None


def on_change(
    session: Session, dossier: Dossier, entry: HistoryEntry, *, enabled: bool, previous: str | None, now: datetime
) -> None:
    """Order a pickup at intake (originals to check, return by post) or a delivery on ``completed`` (return by
    post): a :class:`Shipment` and a ``postal.order`` message; without the integration, a ``postal_skipped`` step."""
    kind = _wanted(dossier, entry, previous)
    if kind is None:
        return
    if not enabled:
        if not _already_skipped(dossier, kind):
            note = f"Postal {_KIND_WORDS[kind]} not ordered: the postal integration is off ([postal] base_url)"
            details = {"kind": kind}
            _step(
                session, dossier, step="postal_skipped", at=entry.at, note=note, now=now, fanout=None, details=details
            )
        return
    existing = session.scalars(
        select(Shipment).where(Shipment.dossier_id == dossier.id, Shipment.kind == kind)
    ).one_or_none()
    if existing is None:
        session.add(Shipment(dossier_id=dossier.id, kind=kind, status="requested", created_at=now, updated_at=now))
    outbox.enqueue(
        session,
        kind=messages.POSTAL_ORDER,
        target=messages.POSTAL_TARGET,
        payload={"dossier_code": dossier.code, "kind": kind},
        idempotency_key=outbox.message_key(dossier.code, f"postal:{kind}"),
        ordering_key=f"{dossier.code}#postal",  # its own lane: a failing agency never holds the result back
    )


# --------------------------------------------------------------------------------------------------------------------
# Reading


def shipments_view(session: Session, dossier: Dossier) -> list[dict[str, Any]]:
    """The dossier's ``shipments[]`` (DESIGN.md §6): ``order_code`` (none until ordered), ``kind``, ``status``."""
    if dossier.id is None:
        return []
    rows = session.scalars(select(Shipment).where(Shipment.dossier_id == dossier.id).order_by(Shipment.id))
    return [{"order_code": row.order_code, "kind": row.kind, "status": row.status} for row in rows]


# --------------------------------------------------------------------------------------------------------------------
# Tracking events


@dataclass(frozen=True)
class TrackingOutcome:
    """What one tracking event did: ``applied``, ``duplicate`` or ``late`` (kept, nothing moved)."""

    outcome: str
    order_code: str
    kind: str
    shipment_status: str
    dossier_code: str
    dossier_status: str

    def to_json(self) -> dict[str, Any]:
        return {
            "order_code": self.order_code,
            "kind": self.kind,
            "status": self.shipment_status,
            "outcome": self.outcome,
            "dossier_code": self.dossier_code,
            "dossier_status": self.dossier_status,
        }


def _event_key(event: TrackingEvent) -> str:
    return f"{event.status.value}@{event.at.astimezone(UTC).isoformat(timespec='microseconds')}"


def _is_newer(shipment: Shipment, event: TrackingEvent) -> bool:
    last = shipment.last_event_at
    if last is None or event.at > last:
        return True
    return event.at == last and _RANK[event.status.value] > _RANK.get(shipment.status, 0)


def _note(shipment: Shipment, event: TrackingEvent) -> str:
    what = {
        TrackingStatus.ACCEPTED: "accepted by the postal service",
        TrackingStatus.IN_TRANSIT: "in transit",
        TrackingStatus.DELIVERED: "delivered",
        TrackingStatus.FAILED: "delivery attempt failed",
        TrackingStatus.RETURNED: "returned to the sender",
    }[event.status]
    text = f"Postal {_KIND_WORDS[shipment.kind]} {shipment.order_code}: {what}"
    return f"{text} ({event.note})" if event.note else text


def apply_tracking_event(
    session: Session, shipment: Shipment, dossier: Dossier, event: TrackingEvent, *, now: datetime, fanout: Fanout
) -> TrackingOutcome:
    """Apply one tracking event of ``shipment`` (see the module notes); the caller holds the write lock."""
    details = dict(shipment.details or {})
    log_events = list(details.get("events", []))
    key = _event_key(event)

    def outcome(name: str) -> TrackingOutcome:
        return TrackingOutcome(
            name, shipment.order_code or "", shipment.kind, shipment.status, dossier.code, dossier.status
        )

    if any(item.get("key") == key for item in log_events):
        return outcome("duplicate")
    applies = shipment.status not in FINAL_STATUSES and _is_newer(shipment, event)
    log_events.append(
        {
            "key": key,
            "status": event.status.value,
            "at": event.at.isoformat(),
            "note": event.note,
            "received_at": now.isoformat(),
            "applied": applies,
        }
    )
    shipment.details = {**details, "events": log_events[-_MAX_EVENTS:]}
    shipment.last_checked_at = now
    if not applies:
        log.info(
            "late postal event kept, shipment not moved",
            extra={"order_code": shipment.order_code, "status": event.status.value, "shipment_status": shipment.status},
        )
        return outcome("late")
    before = shipment.status
    shipment.status = event.status.value
    shipment.last_event_at = event.at
    shipment.updated_at = now
    if event.status is TrackingStatus.ACCEPTED and before in ("requested", "accepted"):
        return outcome("applied")  # the order's own step already said so
    step = f"{shipment.kind}_{event.status.value}"
    step_details = {"order_code": shipment.order_code, "kind": shipment.kind, "postal_status": event.status.value}
    target = None
    if (
        shipment.kind == DELIVERY
        and event.status is TrackingStatus.DELIVERED
        and can_transition(Status(dossier.status), Status.RETURNED)
    ):
        target = Status.RETURNED
    source = dossier.status
    note = _note(shipment, event)
    _step(
        session, dossier, step=step, at=event.at, note=note, now=now, fanout=fanout, details=step_details, status=target
    )
    action = "dossier.returned" if target is not None else f"shipment.{event.status.value}"
    audit_details = {"order_code": shipment.order_code, "kind": shipment.kind, "postal_status": event.status.value}
    if target is not None:
        audit_details.update({"from": source, "to": target.value})
    audit.append(session, ACTOR, action, dossier.code, audit_details, at=now)
    log.info(
        "postal event applied",
        extra={"dossier_code": dossier.code, "order_code": shipment.order_code, "status": event.status.value},
    )
    return outcome("applied")


def _lock_writes(session: Session) -> None:
    audit.lock_for_write(session)


def _shipment_by_order(session: Session, order_code: str) -> Shipment | None:
    statement = select(Shipment).where(Shipment.order_code == order_code)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


def _dossier_of(session: Session, shipment: Shipment) -> Dossier:
    statement = select(Dossier).where(Dossier.id == shipment.dossier_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return session.scalars(statement).one()


def receive_event(session: Session, event: TrackingEvent, *, now: datetime, fanout: Fanout) -> TrackingOutcome:
    """The webhook's unit of work: :class:`gateway.intake.NotFound` for an order the gateway did not place."""
    from .intake import NotFound

    _lock_writes(session)
    shipment = _shipment_by_order(session, event.order_code)
    if shipment is None:
        raise NotFound(f"no postal order {event.order_code}")
    return apply_tracking_event(session, shipment, _dossier_of(session, shipment), event, now=now, fanout=fanout)


def _apply_tracked(
    order_code: str, events: list[TrackingEvent], now: datetime, fanout: Fanout, session: Session
) -> int:
    _lock_writes(session)
    shipment = _shipment_by_order(session, order_code)
    if shipment is None:
        return 0
    dossier = _dossier_of(session, shipment)
    applied = 0
    for event in events:
        result = apply_tracking_event(session, shipment, dossier, event, now=now, fanout=fanout)
        applied += result.outcome == "applied"
    shipment.last_checked_at = now
    return applied


def _claim_stale(now: datetime, after: timedelta, limit: int, session: Session) -> list[str]:
    """Order codes of open shipments not heard of since ``now - after``, marked checked now (so that another
    process polling meanwhile skips them)."""
    _lock_writes(session)
    cutoff = now - after
    statement = (
        select(Shipment)
        .where(
            Shipment.order_code.is_not(None),
            Shipment.status.not_in(sorted(FINAL_STATUSES)),
            or_(Shipment.last_checked_at.is_(None), Shipment.last_checked_at < cutoff),
        )
        .order_by(Shipment.last_checked_at, Shipment.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    rows = list(session.scalars(statement))
    for row in rows:
        row.last_checked_at = now
    return [row.order_code for row in rows if row.order_code]


# --------------------------------------------------------------------------------------------------------------------
# Orders: the outbox handler


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _address(dossier: Dossier) -> str | None:
    given = dossier.delivery_address
    if isinstance(given, Mapping):
        if _text(given.get("address")):
            return _text(given.get("address"))
        parts = [_text(value) for value in given.values()]
        joined = ", ".join(part for part in parts if part)
        if joined:
            return joined
    return _text((dossier.applicant or {}).get("address"))


def _applicant_party(dossier: Dossier) -> dict[str, str]:
    applicant = dossier.applicant or {}
    given = dossier.delivery_address if isinstance(dossier.delivery_address, Mapping) else {}
    party = {
        "name": _text(given.get("name")) or _text(applicant.get("full_name")) or _text(applicant.get("name")),
        "phone": _text(given.get("phone")) or _text(applicant.get("phone")),
        "address": _address(dossier),
    }
    missing = [key for key, value in party.items() if not value]
    if missing:
        message = f"dossier {dossier.code}: the applicant's {' and '.join(missing)} for the postal order is missing"
        raise PermanentError(message, upstream=UPSTREAM)
    return {key: str(value) for key, value in party.items()}


def _items(dossier: Dossier, kind: str) -> list[dict[str, Any]]:
    if kind == DELIVERY:
        return [{"name": f"Kết quả giải quyết hồ sơ {dossier.code}", "quantity": 1}]
    originals = [c for c in dossier.components if c.current and c.originals_check_required]
    if not originals:
        return [{"name": f"Bản gốc đối chiếu hồ sơ {dossier.code}", "quantity": 1}]
    return [{"name": f"Bản gốc đối chiếu: {c.name or c.code}", "quantity": 1, "component": c.code} for c in originals]


@dataclass(frozen=True)
class _OrderRequest:
    sender: dict[str, str]
    receiver: dict[str, str]
    items: list[dict[str, Any]]


def _find_dossier(session: Session, code: str) -> Dossier:
    dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one_or_none()
    if dossier is None:
        raise PermanentError(f"no dossier {code}", upstream=UPSTREAM)
    return dossier


def _shipment(session: Session, dossier: Dossier, kind: str) -> Shipment:
    shipment = session.scalars(
        select(Shipment).where(Shipment.dossier_id == dossier.id, Shipment.kind == kind)
    ).one_or_none()
    if shipment is None:  # the message outlived its row (an operator removed it): order anyway, as asked
        shipment = Shipment(dossier_id=dossier.id, kind=kind, status="requested")
        session.add(shipment)
        session.flush()
    return shipment


def _moot(dossier: Dossier, kind: str) -> str | None:
    """Why the order is no longer needed, if it is not."""
    if dossier.status in (Status.REFUSED, Status.WITHDRAWN):
        return f"the dossier is {dossier.status}"
    if kind == DELIVERY and dossier.status == Status.RETURNED:
        return "the result was already handed over"
    return None


def _prepare_order(code: str, kind: str, office: Mapping[str, str] | None, session: Session) -> _OrderRequest | None:
    dossier = _find_dossier(session, code)
    shipment = _shipment(session, dossier, kind)
    if shipment.order_code is not None or shipment.status == "cancelled":
        return None  # already ordered (a repeated message) or cancelled
    reason = _moot(dossier, kind)
    if reason is not None:
        _lock_writes(session)
        shipment.status = "cancelled"
        shipment.details = {**(shipment.details or {}), "cancelled": reason}
        log.info("postal order not needed", extra={"dossier_code": code, "kind": kind, "reason": reason})
        return None
    if office is None:
        raise PermanentError(
            "[postal] office_name, office_phone and office_address must be configured to order", upstream=UPSTREAM
        )
    applicant = _applicant_party(dossier)
    sender, receiver = (applicant, dict(office)) if kind == PICKUP else (dict(office), applicant)
    return _OrderRequest(sender=sender, receiver=receiver, items=_items(dossier, kind))


def _store_order(code: str, kind: str, order: Order, fanout: Fanout, now: datetime, session: Session) -> None:
    _lock_writes(session)
    dossier = _find_dossier(session, code)
    shipment = _shipment(session, dossier, kind)
    if shipment.order_code is not None:
        return
    shipment.order_code = order.order_code
    shipment.status = order.status if order.status in _RANK else TrackingStatus.ACCEPTED.value
    shipment.last_checked_at = now
    shipment.updated_at = now
    note = f"Postal {_KIND_WORDS[kind]} ordered: {order.order_code}"
    details = {"order_code": order.order_code, "kind": kind}
    _step(session, dossier, step=_ORDER_STEPS[kind], at=now, note=note, now=now, fanout=fanout, details=details)
    audit.append(session, ACTOR, "shipment.ordered", code, {"order_code": order.order_code, "kind": kind}, at=now)
    log.info("postal order placed", extra={"dossier_code": code, "kind": kind, "order_code": order.order_code})


class Handler:
    """``postal.order`` messages (built by the dispatcher on first use) and the tracking poll."""

    def __init__(self, dispatcher: GatewayDispatcher) -> None:
        self.dispatcher = dispatcher
        self.runtime: Runtime = dispatcher.runtime
        self._http: httpx.AsyncClient | None = None
        self._postal: PostalClient | None = None

    def settings(self) -> PostalSettings:
        try:
            settings = PostalSettings.from_config(self.runtime.config)
        except ConfigError as exc:
            raise PermanentError(str(exc), upstream=UPSTREAM) from None
        if settings is None:
            raise PermanentError("[postal] base_url is not configured", upstream=UPSTREAM)
        return settings

    def client(self) -> PostalClient:
        """The postal client (built through the dispatcher's factory: recording, replay and address policy)."""
        if self._postal is not None:
            return self._postal
        settings = self.settings()

        def secret() -> str:
            try:
                return settings.resolve_secret()
            except ConfigError as exc:
                raise AuthError(f"credentials unavailable: {exc}", upstream=UPSTREAM) from None

        try:
            client_settings = ClientSettings(
                base_url=settings.base_url,
                timeout_seconds=settings.timeout_seconds,
                connect_timeout_seconds=min(5.0, settings.timeout_seconds),
                total_timeout_seconds=max(settings.timeout_seconds, 1.0) * 2,
                # The operator's own configuration: private networks allowed, link-local and metadata never.
                address_policy=AddressPolicy(allow_private=True),
            )
        except ValueError as exc:
            raise PermanentError(f"[postal] base_url: {exc}", upstream=UPSTREAM) from None
        self._http = self.dispatcher.factory.client(UPSTREAM, client_settings)
        self._postal = PostalClient(self._http, secret=secret, attempts=settings.attempts, upstream=UPSTREAM)
        return self._postal

    async def handle(self, message: MessageView) -> None:
        code = message.payload.get("dossier_code")
        kind = message.payload.get("kind")
        if not isinstance(code, str) or not code or kind not in (PICKUP, DELIVERY):
            raise PermanentError("the message names no dossier or no order kind", upstream=UPSTREAM)
        settings = self.settings()
        request = await self.runtime.db.run(functools.partial(_prepare_order, code, kind, settings.office))
        if request is None:
            return
        try:
            order = await self.client().create_order(
                kind, code, request.sender, request.receiver, request.items, message.idempotency_key
            )
        except ValueError as exc:
            raise PermanentError(f"cannot order: {exc}", upstream=UPSTREAM) from None
        fanout = Fanout.from_runtime(self.runtime)
        await self.runtime.db.run(functools.partial(_store_order, code, kind, order, fanout, utcnow()))

    async def poll(self, now: datetime | None = None, *, limit: int = 50) -> int:
        """Track the open shipments not heard of for ``poll_after_seconds``; how many new events were applied."""
        settings = self.settings()
        now = now or utcnow()
        after = timedelta(seconds=settings.poll_after_seconds)
        codes = await self.runtime.db.run(functools.partial(_claim_stale, now, after, limit))
        fanout = Fanout.from_runtime(self.runtime)
        applied = 0
        for order_code in codes:
            try:
                events = await self.client().track(order_code)
            except (UpstreamError, ValueError) as exc:
                log.warning("postal tracking failed", extra={"order_code": order_code, "error": str(exc)})
                continue
            applied += await self.runtime.db.run(functools.partial(_apply_tracked, order_code, events, now, fanout))
        if codes:
            log.info("postal tracking polled", extra={"shipments": len(codes), "applied": applied})
        return applied

    async def aclose(self) -> None:
        http, self._http, self._postal = self._http, None, None
        if http is not None:
            await http.aclose()


def periodic_jobs(runtime: Runtime, dispatcher: GatewayDispatcher) -> list[PeriodicJob]:
    """The tracking poll, every ``[postal] poll_interval_seconds`` (none when the integration is off)."""
    settings = PostalSettings.from_config(runtime.config)
    if settings is None:
        return []
    handler: Handler = dispatcher.flow(__name__)
    return [PeriodicJob("postal-tracking", settings.poll_interval_seconds, handler.poll)]
