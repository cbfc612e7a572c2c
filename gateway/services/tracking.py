"""Postal tracking events: what the public postal service says of a pickup or delivery, applied to the dossier.

Events come by the signed webhook or by the tracking poll, and both go through :func:`apply_tracking_event`: each
new event is a history step recorded with ``record_change`` (a delivery's ``delivered`` moves the dossier
``completed → returned``), repeats change nothing, and late events are kept in the shipment's log without moving it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from adapters.postal.webhook import TrackingEvent, TrackingStatus
from gateway import audit
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.status import Status, can_transition
from gateway.errors import NotFound
from gateway.services.changes import record_change
from gateway.services.context import Context
from gateway.store.models import Dossier, HistoryEntry, Shipment
from gateway.unit_of_work import UnitOfWork, in_unit

__all__ = [
    "ACTOR",
    "DELIVERY",
    "FINAL_STATUSES",
    "KIND_WORDS",
    "PICKUP",
    "RANK",
    "TrackingOutcome",
    "apply_tracked",
    "apply_tracking_event",
    "claim_stale",
    "receive_event",
    "receive_tracking_event",
    "record_postal_step",
]

log = logging.getLogger("gateway.shipments")

#: The actor of the history steps and audit entries of the postal flow.
ACTOR = "postal"
PICKUP = "pickup"
DELIVERY = "delivery"
#: A shipment in one of these is over: no event moves it any more.
FINAL_STATUSES = frozenset({TrackingStatus.DELIVERED.value, TrackingStatus.RETURNED.value, "cancelled"})
#: For two events at the same instant: the one further along wins.
RANK = {"requested": 0, "accepted": 1, "in_transit": 2, "failed": 3, "delivered": 4, "returned": 4}
#: What each kind of order carries, in the history's notes.
KIND_WORDS = {PICKUP: "pickup of the originals", DELIVERY: "delivery of the result"}
#: The shipment's event log keeps at most this many events.
_MAX_EVENTS = 200


def record_postal_step(
    uow: UnitOfWork,
    dossier: Dossier,
    *,
    step: str,
    at: datetime,
    note: str,
    details: Mapping[str, Any],
    calendar: OfficeCalendar,
    now: datetime,
    status: Status | None = None,
) -> HistoryEntry:
    """A postal history step in the dossier's current status, or a status change when ``status`` is given."""
    previous = dossier.status
    entry_details: dict[str, Any] = {"step": step, **details}
    if status is not None and status.value != previous:
        entry_details["from"] = previous
    return record_change(
        uow,
        dossier,
        status=status if status is not None else Status(previous),
        at=at,
        actor=ACTOR,
        note=note,
        details=entry_details,
        calendar=calendar,
        now=now,
    )


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
    return event.at == last and RANK[event.status.value] > RANK.get(shipment.status, 0)


def _note(shipment: Shipment, event: TrackingEvent) -> str:
    what = {
        TrackingStatus.ACCEPTED: "accepted by the postal service",
        TrackingStatus.IN_TRANSIT: "in transit",
        TrackingStatus.DELIVERED: "delivered",
        TrackingStatus.FAILED: "delivery attempt failed",
        TrackingStatus.RETURNED: "returned to the sender",
    }[event.status]
    text = f"Postal {KIND_WORDS[shipment.kind]} {shipment.order_code}: {what}"
    return f"{text} ({event.note})" if event.note else text


def _log_event(shipment: Shipment, event: TrackingEvent, key: str, *, applies: bool, now: datetime) -> None:
    details = dict(shipment.details or {})
    events = list(details.get("events", []))
    events.append(
        {
            "key": key,
            "status": event.status.value,
            "at": event.at.isoformat(),
            "note": event.note,
            "received_at": now.isoformat(),
            "applied": applies,
        }
    )
    shipment.details = {**details, "events": events[-_MAX_EVENTS:]}
    shipment.last_checked_at = now


def _record_event(
    uow: UnitOfWork, shipment: Shipment, dossier: Dossier, event: TrackingEvent, calendar: OfficeCalendar, now: datetime
) -> None:
    """The event's history step (``delivered`` of a delivery: ``returned``) and audit entry."""
    step_details = {"order_code": shipment.order_code, "kind": shipment.kind, "postal_status": event.status.value}
    target = None
    if (
        shipment.kind == DELIVERY
        and event.status is TrackingStatus.DELIVERED
        and can_transition(Status(dossier.status), Status.RETURNED)
    ):
        target = Status.RETURNED
    source = dossier.status
    record_postal_step(
        uow,
        dossier,
        step=f"{shipment.kind}_{event.status.value}",
        at=event.at,
        note=_note(shipment, event),
        details=step_details,
        calendar=calendar,
        now=now,
        status=target,
    )
    action = "dossier.returned" if target is not None else f"shipment.{event.status.value}"
    audit_details = dict(step_details)
    if target is not None:
        audit_details.update({"from": source, "to": target.value})
    audit.append(uow.session, ACTOR, action, dossier.code, audit_details, at=now)


def apply_tracking_event(
    uow: UnitOfWork,
    shipment: Shipment,
    dossier: Dossier,
    event: TrackingEvent,
    *,
    calendar: OfficeCalendar,
    now: datetime,
) -> TrackingOutcome:
    """Apply one tracking event of ``shipment``; the caller holds the write lock.

    - each new event is a history step ``<kind>_<status>`` (``delivery_in_transit``, ``delivery_failed``,
      ``delivery_returned`` (returned to the sender), ``pickup_delivered``…) in the dossier's current status, except
      that a delivery's ``delivered`` moves the dossier ``completed → returned``; failed deliveries and returns to
      the sender leave it ``completed``;
    - an ``accepted`` event for an order already accepted adds no step (the order's own step said it);
    - an event already seen (same status and time) changes nothing (``duplicate``);
    - an event older than the last one applied, or any event after ``delivered`` or ``returned``, is kept in the
      shipment's event log (``details.events``, ``applied: false``) and moves nothing (``late``).
    """

    def outcome(name: str) -> TrackingOutcome:
        return TrackingOutcome(
            name, shipment.order_code or "", shipment.kind, shipment.status, dossier.code, dossier.status
        )

    key = _event_key(event)
    if any(item.get("key") == key for item in (shipment.details or {}).get("events", [])):
        return outcome("duplicate")
    applies = shipment.status not in FINAL_STATUSES and _is_newer(shipment, event)
    _log_event(shipment, event, key, applies=applies, now=now)
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
    _record_event(uow, shipment, dossier, event, calendar, now)
    log.info(
        "postal event applied",
        extra={"dossier_code": dossier.code, "order_code": shipment.order_code, "status": event.status.value},
    )
    return outcome("applied")


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


def receive_event(uow: UnitOfWork, event: TrackingEvent, *, calendar: OfficeCalendar, now: datetime) -> TrackingOutcome:
    """The webhook's unit of work: :class:`~gateway.errors.NotFound` for an order the gateway did not place."""
    audit.lock_for_write(uow.session)
    shipment = _shipment_by_order(uow.session, event.order_code)
    if shipment is None:
        raise NotFound(f"no postal order {event.order_code}")
    dossier = _dossier_of(uow.session, shipment)
    return apply_tracking_event(uow, shipment, dossier, event, calendar=calendar, now=now)


async def receive_tracking_event(ctx: Context, event: TrackingEvent, *, now: datetime) -> TrackingOutcome:
    """:func:`receive_event` in one unit of work (the webhook's use case)."""
    return await in_unit(
        ctx.db, ctx.bus, functools.partial(receive_event, event=event, calendar=ctx.calendar, now=now), short=True
    )


def apply_tracked(
    uow: UnitOfWork, order_code: str, events: Sequence[TrackingEvent], *, calendar: OfficeCalendar, now: datetime
) -> int:
    """Apply the events a tracking poll found for ``order_code``: how many were new and applied."""
    audit.lock_for_write(uow.session)
    shipment = _shipment_by_order(uow.session, order_code)
    if shipment is None:
        return 0
    dossier = _dossier_of(uow.session, shipment)
    applied = 0
    for event in events:
        result = apply_tracking_event(uow, shipment, dossier, event, calendar=calendar, now=now)
        applied += result.outcome == "applied"
    shipment.last_checked_at = now
    return applied


def claim_stale(session: Session, now: datetime, after: timedelta, limit: int) -> list[str]:
    """Order codes of open shipments not heard of since ``now - after``, marked checked now (so that another
    process polling meanwhile skips them)."""
    audit.lock_for_write(session)
    statement = (
        select(Shipment)
        .where(
            Shipment.order_code.is_not(None),
            Shipment.status.not_in(sorted(FINAL_STATUSES)),
            or_(Shipment.last_checked_at.is_(None), Shipment.last_checked_at < now - after),
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
