"""The message bus and the unit of work: events reach their handlers inside the transaction that raised them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from gateway import outbox
from gateway.bus import QUIET, MessageBus, merge_subscriptions
from gateway.domain.events import ChangeRecorded, DomainEvent
from gateway.store.database import Database
from gateway.store.models import OutboxMessage
from gateway.unit_of_work import UnitOfWork, in_unit

AT = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class Pinged(DomainEvent):
    pass


def change(code: str = "D-1", previous: str | None = "submitted") -> ChangeRecorded:
    return ChangeRecorded(
        dossier_code=code,
        dossier_id=1,
        history_id=2,
        status="received",
        previous=previous,
        step=None,
        at=AT,
        recorded_at=AT,
    )


def test_handlers_run_in_registration_order_and_events_they_raise_are_handled_too() -> None:
    seen: list[str] = []

    def first(event: ChangeRecorded, uow: UnitOfWork) -> None:
        seen.append(f"first:{event.dossier_code}")
        uow.emit(Pinged(dossier_code=event.dossier_code))

    def second(event: ChangeRecorded, uow: UnitOfWork) -> None:
        seen.append("second")

    def pinged(event: Pinged, uow: UnitOfWork) -> None:
        seen.append(f"pinged:{event.dossier_code}")

    bus = MessageBus(merge_subscriptions({ChangeRecorded: [first]}, {ChangeRecorded: [second], Pinged: [pinged]}))
    uow = UnitOfWork(session=None, bus=bus)  # type: ignore[arg-type]
    uow.emit(change())
    uow.publish()
    assert seen == ["first:D-1", "second", "pinged:D-1"]
    assert uow.events == []


def test_a_handler_registered_for_a_base_type_hears_every_subtype() -> None:
    seen: list[type] = []
    bus = MessageBus({DomainEvent: [lambda event, uow: seen.append(type(event))]})
    uow = UnitOfWork(session=None, bus=bus)  # type: ignore[arg-type]
    uow.emit(change())
    uow.emit(Pinged(dossier_code="D-2"))
    uow.publish()
    assert seen == [ChangeRecorded, Pinged]


def test_the_quiet_bus_handles_nothing() -> None:
    uow = UnitOfWork(session=None, bus=QUIET)  # type: ignore[arg-type]
    uow.emit(change(previous=None))
    uow.publish()
    assert uow.events == [] and change(previous=None).is_intake


def _enqueue(event: ChangeRecorded, uow: UnitOfWork) -> None:
    outbox.enqueue(
        uow.session,
        kind="test.kind",
        target="t",
        payload={"dossier_code": event.dossier_code},
        idempotency_key=f"{event.dossier_code}:test",
        ordering_key=event.dossier_code,
    )


def _outbox_rows(db: Database) -> int:
    with db.unit_of_work() as session:
        return int(session.scalar(select(func.count(OutboxMessage.id))) or 0)


async def test_what_a_handler_enqueues_commits_with_the_change(db: Database) -> None:
    bus = MessageBus({ChangeRecorded: [_enqueue]})
    await in_unit(db, bus, lambda uow: uow.emit(change("D-1")))
    assert _outbox_rows(db) == 1


async def test_a_failing_use_case_leaves_no_follow_up(db: Database) -> None:
    bus = MessageBus({ChangeRecorded: [_enqueue]})

    def work(uow: UnitOfWork) -> None:
        uow.emit(change("D-2"))
        uow.publish()
        raise RuntimeError("the change fails after its follow-ups were enqueued")

    with pytest.raises(RuntimeError):
        await in_unit(db, bus, work)
    assert _outbox_rows(db) == 0
