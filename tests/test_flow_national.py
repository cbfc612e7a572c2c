"""The national portal flow against an in-memory portal (no sockets): the reactions queue ``national.sync`` in the
dossier's national lane, the handler sends the dossier new then as an update, resends only the refused records of a
half-accepted batch, and the skipped step is recorded once when the integration is off."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import select

from adapters.errors import PermanentError, TransientError
from adapters.national_portal import NationalPortal, NationalPortalClient, wire
from gateway import messages, outbox
from gateway.bootstrap.upstreams import build_portal
from gateway.bus import MessageBus
from gateway.catalogue import import_procedures, parse_catalogue
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.status import Status
from gateway.flows.national.handler import NationalSyncHandler
from gateway.flows.national.reactions import enqueue_sync, subscriptions
from gateway.flows.national.records import STEP_SKIPPED
from gateway.flows.national.settings import NationalPortalSettings
from gateway.services.changes import changed, record_change, record_step
from gateway.services.context import Context
from gateway.store.database import Database
from gateway.store.models import Dossier, HistoryEntry, NationalSync, OutboxMessage, utcnow
from gateway.unit_of_work import UnitOfWork, in_unit
from gateway.workers import MessageView
from tests.fakes import FakeNationalPortal

AGENCY = "000.00.23.H38"
PROCEDURE = "1.009794"
CATALOGUE = (
    '[{"code": "1.009794", "name": "Cấp giấy phép xây dựng", "agencies": ["000.00.23.H38"], "processing_days": 15,'
    ' "components": [{"code": "TP1", "name": "Đơn đề nghị", "required": true, "must_be_signed": false}],'
    ' "fees": []}]'
)
CALENDAR = OfficeCalendar()
SETTINGS = NationalPortalSettings.model_validate(
    {
        "base_url": "http://127.0.0.1:9",
        "username": "lgsp-h38",
        "password": "mat-khau",
        "dstcode": "H38",
        "madonvi": "000.00.00.H38",
        "batch_size": 3,
    }
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.connect(f"sqlite:///{tmp_path / 'gateway.db'}")
    database.upgrade()
    with database.unit_of_work() as session:
        import_procedures(session, parse_catalogue(CATALOGUE))
    yield database
    database.dispose()


def context(db: Database, *, enabled: bool = True) -> Context:
    """The pieces the flow needs: the database and a bus carrying the flow's subscriptions (no verifier used)."""
    return Context(db=db, bus=MessageBus(subscriptions(enabled)), calendar=CALENDAR, verifier=cast(Any, None))


async def intake(ctx: Context, number: int = 1) -> str:
    """A dossier taken in: its ``submitted`` entry, and the event every intake raises."""
    code = f"{AGENCY}-261123-{number:04d}"
    now = utcnow()

    def work(uow: UnitOfWork) -> None:
        dossier = Dossier(
            code=code,
            procedure_code=PROCEDURE,
            agency_code=AGENCY,
            lead_agency_code=AGENCY,
            status=Status.SUBMITTED.value,
            channel="online",
            applicant={"full_name": "Nguyễn Văn A", "id_number": "001099012345"},
            summary="Cấp giấy phép xây dựng nhà ở riêng lẻ",
            submitted_at=now,
            updated_at=now,
        )
        entry = HistoryEntry(status=Status.SUBMITTED.value, at=now, actor="portal", note=None, details={})
        dossier.history.append(entry)
        uow.session.add(dossier)
        uow.session.flush()
        uow.emit(changed(dossier, entry, previous=None, now=now))

    await in_unit(ctx.db, ctx.bus, work)
    return code


async def change(ctx: Context, code: str, status: Status, *, step: str | None = None, note: str | None = None) -> int:
    """A change recorded through the one way changes are recorded; the new entry's id."""
    now = utcnow() + timedelta(seconds=1)

    def work(uow: UnitOfWork) -> int:
        dossier = uow.session.scalars(select(Dossier).where(Dossier.code == code)).one()
        details = {"step": step} if step else {}
        entry = record_change(
            uow, dossier, status=status, at=now, actor=AGENCY, note=note, details=details, calendar=CALENDAR, now=now
        )
        return entry.id

    return await in_unit(ctx.db, ctx.bus, work)


def syncs(db: Database, code: str) -> list[OutboxMessage]:
    with db.unit_of_work() as session:
        statement = select(OutboxMessage).where(OutboxMessage.kind == messages.NATIONAL_SYNC)
        return [m for m in session.scalars(statement.order_by(OutboxMessage.id)) if m.payload["dossier_code"] == code]


def history(db: Database, code: str) -> list[HistoryEntry]:
    with db.unit_of_work() as session:
        return list(session.scalars(select(Dossier).where(Dossier.code == code)).one().history)


def sync_row(db: Database, code: str) -> NationalSync | None:
    with db.unit_of_work() as session:
        return session.get(NationalSync, code)


async def deliver(handler: NationalSyncHandler, message: OutboxMessage) -> None:
    await handler.handle(MessageView.of(message))


def test_the_client_and_the_fake_are_the_port() -> None:
    client = build_portal(SETTINGS, httpx.AsyncClient(base_url=SETTINGS.base_url))
    assert isinstance(client, NationalPortalClient) and isinstance(client, NationalPortal)
    assert client.batch_size == 3 and client.madonvi == "000.00.00.H38"
    assert isinstance(FakeNationalPortal(), NationalPortal)


async def test_a_change_enqueues_a_sync_in_the_national_lane(db: Database) -> None:
    ctx = context(db)
    code = await intake(ctx)
    [first] = syncs(db, code)
    submitted = history(db, code)[0]
    assert (first.kind, first.target) == (messages.NATIONAL_SYNC, messages.NATIONAL_TARGET)
    assert first.ordering_key == f"{code}#national"
    assert first.payload == {"dossier_code": code, "history_id": submitted.id}
    assert first.idempotency_key == outbox.message_key(code, f"national:{submitted.id}")

    received = await change(ctx, code, Status.RECEIVED)
    await change(ctx, code, Status.RECEIVED, step="payment_skipped")  # a step about the gateway itself: not sent
    assert [m.payload["history_id"] for m in syncs(db, code)] == [submitted.id, received]
    assert {m.ordering_key for m in syncs(db, code)} == {f"{code}#national"}

    # An operator's resync: its own step, so it is never taken for the first sync of the entry.
    with db.unit_of_work() as session:
        again = enqueue_sync(session, code, received, resync=True, full=True)
        assert again.payload == {"dossier_code": code, "history_id": received, "resync": True, "full": True}
        assert again.idempotency_key != outbox.message_key(code, f"national:{received}")


async def test_the_handler_sends_the_dossier_new_then_as_an_update(db: Database) -> None:
    ctx, portal = context(db), FakeNationalPortal()
    handler = NationalSyncHandler(ctx, portal, SETTINGS)
    assert handler.kinds == frozenset({messages.NATIONAL_SYNC, messages.NATIONAL_RATING})
    code = await intake(ctx)
    await deliver(handler, syncs(db, code)[-1])
    await change(ctx, code, Status.RECEIVED, note="Bước tiếp nhận")
    await deliver(handler, syncs(db, code)[-1])

    sent = [(service, updating) for service, updating, _ in portal.calls if service == wire.SERVICE_SYNC]
    assert sent == [(wire.SERVICE_SYNC, False), (wire.SERVICE_SYNC, True)]
    record = portal.dossiers[code]
    assert record.status_code == 2 and record.procedure_name == "Cấp giấy phép xây dựng"
    assert [p.content for p in portal.progress[code]] == ["Đã nộp, chờ tiếp nhận", "Đã tiếp nhận: Bước tiếp nhận"]
    row = sync_row(db, code)
    assert row is not None
    assert (row.status_code, row.history_id, row.accepted_ids, row.last_error) == (
        "2",
        history(db, code)[-1].id,
        [],
        None,
    )

    # The first message again, after the newer one: the portal is past it, nothing is sent.
    calls = len(portal.calls)
    await deliver(handler, syncs(db, code)[0])
    assert len(portal.calls) == calls


async def test_a_half_accepted_batch_resends_only_the_failed_records(db: Database) -> None:
    ctx, portal = context(db), FakeNationalPortal(batch_size=3)
    handler = NationalSyncHandler(ctx, portal, SETTINGS)
    code = await intake(ctx)
    await deliver(handler, syncs(db, code)[-1])
    await change(ctx, code, Status.RECEIVED)
    processing = await change(ctx, code, Status.PROCESSING)
    portal.refuse_next_progress = 1  # "received" refused as not stored (99): worth sending again
    with pytest.raises(TransientError, match="1 record"):
        await deliver(handler, syncs(db, code)[1])
    row = sync_row(db, code)
    assert row is not None and row.accepted_ids == [processing] and "99" in (row.last_error or "")

    await deliver(handler, syncs(db, code)[1])
    progress = [codes for service, _, codes in portal.calls if service == wire.SERVICE_PROGRESS]
    assert progress == [[code], [code, code], [code]]  # intake; received + processing; received alone
    assert [p.status_code for p in portal.progress[code]] == [1, 4, 2]
    row = sync_row(db, code)
    assert row is not None and (row.history_id, row.accepted_ids, row.last_error) == (processing, [], None)
    await deliver(handler, syncs(db, code)[2])  # the later message finds nothing left
    assert len([c for c in portal.calls if c[0] == wire.SERVICE_PROGRESS]) == 3


async def test_steps_about_the_gateway_itself_are_never_sent_and_count_as_done(db: Database) -> None:
    ctx, portal = context(db), FakeNationalPortal()
    handler = NationalSyncHandler(ctx, portal, SETTINGS)
    code = await intake(ctx)
    completed = await change(ctx, code, Status.COMPLETED)

    def skip(uow: UnitOfWork) -> int:
        dossier = uow.session.scalars(select(Dossier).where(Dossier.code == code)).one()
        entry = record_step(uow.session, dossier, step="postal_skipped", at=utcnow(), actor="gateway", note="off")
        uow.session.flush()  # the step is written with the unit of work's next flush: its id is known after it
        return entry.id

    skipped = await in_unit(ctx.db, ctx.bus, skip)
    assert [m.payload["history_id"] for m in syncs(db, code)] == [history(db, code)[0].id, completed]
    await deliver(handler, syncs(db, code)[-1])
    assert [p.status_code for p in portal.progress[code]] == [1, 9]
    row = sync_row(db, code)
    assert row is not None and (row.status_code, row.history_id, row.accepted_ids) == ("9", skipped, [])


async def test_a_record_refused_as_invalid_and_unknown_dossiers_are_permanent(db: Database) -> None:
    ctx, portal = context(db), FakeNationalPortal()
    handler = NationalSyncHandler(ctx, portal, SETTINGS)
    code = await intake(ctx)
    portal.refuse_next_progress, portal.refuse_code = 1, "11"
    with pytest.raises(PermanentError, match="error_code 11"):
        await deliver(handler, syncs(db, code)[-1])
    message = MessageView.of(syncs(db, code)[-1])
    for payload, error in (
        ({"dossier_code": f"{AGENCY}-261123-9999", "history_id": 1}, "no dossier"),
        ({"dossier_code": code, "history_id": 10_000}, "no history entry"),
        ({"dossier_code": code}, "names no dossier"),
    ):
        with pytest.raises(PermanentError, match=error):
            await handler.handle(MessageView(**{**message.__dict__, "payload": payload}))


async def test_the_portal_down_is_transient_and_recorded(db: Database) -> None:
    ctx, portal = context(db), FakeNationalPortal()
    closed: list[bool] = []

    async def close() -> None:
        closed.append(True)

    handler = NationalSyncHandler(ctx, portal, SETTINGS, close=close)
    code = await intake(ctx)
    portal.down = True
    with pytest.raises(TransientError):
        await deliver(handler, syncs(db, code)[-1])
    row = sync_row(db, code)
    assert row is not None and row.status_code is None and "503" in (row.last_error or "")
    portal.down = False
    await deliver(handler, syncs(db, code)[-1])
    assert portal.dossiers[code].status_code == 1
    await handler.aclose()
    await handler.aclose()
    assert closed == [True]


async def test_the_skipped_step_once_when_off(db: Database) -> None:
    ctx = context(db, enabled=False)
    code = await intake(ctx)
    await change(ctx, code, Status.RECEIVED)
    await change(ctx, code, Status.PROCESSING)
    entries = history(db, code)
    skipped = [e for e in entries if (e.details or {}).get("step") == STEP_SKIPPED]
    assert len(skipped) == 1
    assert skipped[0].status == "submitted" and skipped[0].at == entries[0].at and skipped[0].actor == "gateway"
    assert "not configured" in (skipped[0].note or "")
    assert syncs(db, code) == []
