"""The postal flow and the tracking use case over an in-memory postal service (no sockets): a pickup ordered at
intake and its order code stored, a delivery on ``completed``, the skipped steps when the integration is off,
tracking events (``delivered`` → ``returned``, duplicates, late events), the tracking poll, and refusals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from adapters.errors import PermanentError
from adapters.postal import PostalClient, PostalService, TrackingEvent, TrackingStatus
from gateway import audit, messages
from gateway.domain.status import Status
from gateway.errors import NotFound
from gateway.flows.postal.handler import PostalOrderHandler
from gateway.flows.postal.jobs import periodic_jobs
from gateway.flows.postal.reactions import subscriptions
from gateway.flows.postal.settings import PostalSettings
from gateway.services.changes import find_dossier
from gateway.services.context import Context
from gateway.services.tracking import receive_tracking_event
from gateway.store.database import Database
from gateway.store.models import AuditEntry, Dossier, OutboxMessage, Shipment
from gateway.workers import MessageView
from tests.fakes import APPLICANT, EventLog, FakePostalService, context_for, move, open_store, submit

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
OFFICE = {"name": "Bộ phận Một cửa Sở Xây dựng", "phone": "02393123456", "address": "1 Nguyễn Du, Hà Tĩnh"}


def postal_settings(**changes: Any) -> PostalSettings:
    section = {
        "base_url": "https://postal.example.vn/api",
        "secret": "postal-shared-secret",
        "poll_interval_seconds": 60,
        "poll_after_seconds": 3600,
        **{f"office_{key}": value for key, value in OFFICE.items()},
        **changes,
    }
    return PostalSettings.model_validate(section)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_store(tmp_path)
    yield database
    database.dispose()


def rows(db: Database, model: Any, **where: Any) -> list[Any]:
    with db.unit_of_work() as session:
        return list(session.scalars(select(model).filter_by(**where).order_by(model.id)))


def dossier(db: Database, code: str) -> Dossier:
    with db.unit_of_work() as session:
        found = find_dossier(session, code)
        _ = found.history
        return found


def steps(db: Database, code: str) -> list[tuple[str, str | None]]:
    return [(entry.status, (entry.details or {}).get("step")) for entry in dossier(db, code).history]


def order_messages(db: Database) -> list[MessageView]:
    return [MessageView.of(message) for message in rows(db, OutboxMessage, kind=messages.POSTAL_ORDER)]


async def completed(ctx: Context, handler: PostalOrderHandler, **fields: Any) -> tuple[str, str]:
    """A dossier by post without fees, completed, its pickup and delivery ordered: its code and the delivery's order
    code."""
    code = await submit(ctx, at=NOW, **{"fees": (), **fields})
    for minutes, status in enumerate(("received", "processing", "completed"), start=1):
        await move(ctx, code, status, NOW + timedelta(minutes=minutes))
    for message in order_messages(ctx.db):
        await handler.handle(message)
    [delivery] = rows(ctx.db, Shipment, kind="delivery")
    return code, delivery.order_code


def test_the_postal_client_is_the_port() -> None:
    assert isinstance(PostalClient(object(), secret="s"), PostalService)  # type: ignore[arg-type]
    assert isinstance(FakePostalService(), PostalService)


# ----------------------------------------------------------------------------------------------------------------------
# Orders


async def test_pickup_ordered_at_intake_and_its_order_code_stored(db: Database) -> None:
    settings = postal_settings()
    events = EventLog()
    ctx = context_for(db, subscriptions(settings), events.subscriptions)
    postal = FakePostalService()
    handler = PostalOrderHandler(ctx, postal, settings)
    assert handler.kinds == frozenset({messages.POSTAL_ORDER})
    code = await submit(ctx, at=NOW)
    assert [(s.kind, s.status, s.order_code) for s in rows(db, Shipment)] == [("pickup", "requested", None)]
    [message] = order_messages(db)
    assert (message.target, message.payload) == (messages.POSTAL_TARGET, {"dossier_code": code, "kind": "pickup"})
    assert (message.idempotency_key, message.ordering_key) == (f"{code}:postal:pickup", f"{code}#postal")

    events.events.clear()
    await handler.handle(message)
    [(order_code, order)] = postal.orders.items()
    assert order["kind"] == "pickup" and order["dossier_code"] == code
    assert order["idempotency_key"] == message.idempotency_key
    assert order["sender"] == {
        "name": APPLICANT["full_name"],
        "phone": APPLICANT["phone"],
        "address": f"{APPLICANT['address']}, Hà Nội",
    }
    assert order["receiver"] == OFFICE
    assert order["items"] == [{"name": f"Bản gốc đối chiếu hồ sơ {code}", "quantity": 1}]
    [shipment] = rows(db, Shipment)
    assert (shipment.order_code, shipment.status) == (order_code, "accepted")
    last = dossier(db, code).history[-1]
    assert (last.status, last.actor, last.details) == (
        "submitted",
        "postal",
        {"step": "pickup_ordered", "order_code": order_code, "kind": "pickup"},
    )
    assert order_code in (last.note or "")
    assert [(e.step, e.previous, e.status) for e in events.events] == [("pickup_ordered", "submitted", "submitted")]
    assert [e.action for e in rows(db, AuditEntry, subject=code)] == ["shipment.ordered"]

    await handler.handle(message)  # delivered again: already ordered, nothing more
    assert len(postal.orders) == 1 and steps(db, code).count(("submitted", "pickup_ordered")) == 1


async def test_delivery_ordered_on_completed_only_for_return_by_post(db: Database) -> None:
    settings = postal_settings()
    ctx = context_for(db, subscriptions(settings))
    postal = FakePostalService()
    handler = PostalOrderHandler(ctx, postal, settings)
    code, order_code = await completed(ctx, handler, originals_check_required=False)
    assert [m.payload["kind"] for m in order_messages(db)] == ["delivery"]
    order = postal.orders[order_code]
    assert order["sender"] == OFFICE and order["receiver"]["name"] == APPLICANT["full_name"]
    assert order["items"] == [{"name": f"Kết quả giải quyết hồ sơ {code}", "quantity": 1}]
    assert steps(db, code)[-2:] == [("completed", None), ("completed", "shipped")]

    in_person = await submit(ctx, at=NOW, number=2, return_method="in_person")
    await move(ctx, in_person, "received", NOW + timedelta(minutes=1))
    await move(ctx, in_person, "completed", NOW + timedelta(minutes=2))
    assert len(order_messages(db)) == 1


async def test_postal_off_is_shown_once_per_kind_as_skipped(db: Database) -> None:
    ctx = context_for(db, subscriptions(None))
    code = await submit(ctx, at=NOW)
    await move(ctx, code, "received", NOW + timedelta(minutes=1))
    await move(ctx, code, "completed", NOW + timedelta(minutes=2))
    skipped = [entry for entry in dossier(db, code).history if (entry.details or {}).get("step") == "postal_skipped"]
    assert [(entry.status, entry.details["kind"], entry.actor) for entry in skipped] == [
        ("submitted", "pickup", "postal"),
        ("completed", "delivery", "postal"),
    ]
    assert "pickup" in (skipped[0].note or "") and "[postal] base_url" in (skipped[0].note or "")
    assert rows(db, Shipment) == [] and order_messages(db) == []
    assert periodic_jobs(ctx, None, FakePostalService()) == []


async def test_orders_no_longer_needed_are_cancelled_and_refusals_are_permanent(db: Database) -> None:
    settings = postal_settings()
    ctx = context_for(db, subscriptions(settings))
    postal = FakePostalService()
    code = await submit(ctx, at=NOW)
    await move(ctx, code, Status.WITHDRAWN, NOW + timedelta(minutes=1), actor="portal")
    [message] = order_messages(db)
    await PostalOrderHandler(ctx, postal, settings).handle(message)
    assert postal.orders == {}
    [shipment] = rows(db, Shipment)
    assert shipment.status == "cancelled" and shipment.details == {"cancelled": "the dossier is withdrawn"}

    other = await submit(ctx, at=NOW, number=2)
    message = next(m for m in order_messages(db) if m.payload["dossier_code"] == other)
    no_office = postal_settings(office_phone="")
    with pytest.raises(PermanentError, match="office_name, office_phone and office_address"):
        await PostalOrderHandler(ctx, postal, no_office).handle(message)
    with pytest.raises(PermanentError, match="names no dossier"):
        await PostalOrderHandler(ctx, postal, settings).handle(
            MessageView(id=0, kind=messages.POSTAL_ORDER, target="postal", payload={}, idempotency_key="k", attempts=1)
        )


# ----------------------------------------------------------------------------------------------------------------------
# Tracking


async def test_delivered_moves_the_dossier_from_completed_to_returned(db: Database) -> None:
    settings = postal_settings()
    events = EventLog()
    ctx = context_for(db, subscriptions(settings), events.subscriptions)
    postal = FakePostalService()
    code, order_code = await completed(ctx, PostalOrderHandler(ctx, postal, settings))
    events.events.clear()
    later = NOW + timedelta(hours=1)

    moving = postal.push(order_code, "in_transit", later)
    outcome = await receive_tracking_event(ctx, moving, now=later)
    assert (outcome.outcome, outcome.shipment_status, outcome.dossier_status) == ("applied", "in_transit", "completed")
    delivered = postal.push(order_code, "delivered", later + timedelta(hours=1), note="Đã phát")
    outcome = await receive_tracking_event(ctx, delivered, now=later + timedelta(hours=1))
    assert outcome.to_json() == {
        "order_code": order_code,
        "kind": "delivery",
        "status": "delivered",
        "outcome": "applied",
        "dossier_code": code,
        "dossier_status": "returned",
    }
    after = dossier(db, code)
    assert after.status == "returned"
    last = after.history[-1]
    assert last.details == {
        "step": "delivery_delivered",
        "order_code": order_code,
        "kind": "delivery",
        "postal_status": "delivered",
        "from": "completed",
    }
    assert last.actor == "postal" and last.note == f"Postal delivery of the result {order_code}: delivered (Đã phát)"
    assert [(e.status, e.previous, e.step) for e in events.events] == [
        ("completed", "completed", "delivery_in_transit"),
        ("returned", "completed", "delivery_delivered"),
    ]
    actions = [e.action for e in rows(db, AuditEntry, subject=code)]
    assert actions[-2:] == ["shipment.in_transit", "dossier.returned"]
    with db.unit_of_work() as session:
        assert audit.verify(session) == []

    # A repeat changes nothing; an older event is kept in the log and moves nothing.
    assert (await receive_tracking_event(ctx, delivered, now=later)).outcome == "duplicate"
    old = TrackingEvent(order_code=order_code, status=TrackingStatus.FAILED, at=NOW)
    assert (await receive_tracking_event(ctx, old, now=later)).outcome == "late"
    assert len(events.events) == 2 and dossier(db, code).status == "returned"
    [shipment] = rows(db, Shipment, kind="delivery")
    assert [(e["status"], e["applied"]) for e in shipment.details["events"]] == [
        ("in_transit", True),
        ("delivered", True),
        ("failed", False),
    ]
    unknown = TrackingEvent(order_code="EL999999999VN", status=TrackingStatus.DELIVERED, at=later)
    with pytest.raises(NotFound):
        await receive_tracking_event(ctx, unknown, now=later)


async def test_the_tracking_poll_applies_what_the_webhook_never_brought(db: Database) -> None:
    settings = postal_settings()
    ctx = context_for(db, subscriptions(settings))
    postal = FakePostalService()
    handler = PostalOrderHandler(ctx, postal, settings)
    [job] = periodic_jobs(ctx, settings, postal)
    assert (job.name, job.interval_seconds) == ("postal-tracking", 60)
    ordered_at = datetime.now(UTC)
    code, order_code = await completed(ctx, handler)
    postal.push(order_code, "accepted", ordered_at)
    postal.push(order_code, "in_transit", ordered_at + timedelta(minutes=1))
    postal.push(order_code, "delivered", ordered_at + timedelta(minutes=2))
    assert await handler.poll() == 0  # heard of less than poll_after_seconds ago
    assert postal.tracked == []
    later = ordered_at + timedelta(hours=2)
    # Both orders are tracked; the delivery's accepted adds no step, in_transit and delivered do.
    assert await handler.poll(later) == 3
    assert sorted(postal.tracked) == sorted(s.order_code for s in rows(db, Shipment))
    assert dossier(db, code).status == "returned"
    assert [step for _, step in steps(db, code) if step and step.startswith("delivery_")] == [
        "delivery_in_transit",
        "delivery_delivered",
    ]
    postal.tracked.clear()
    assert await handler.poll(later + timedelta(hours=2)) == 0  # the delivered order is over: only the pickup
    assert len(postal.tracked) == 1
