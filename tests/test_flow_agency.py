"""The agencies' flow and the portal webhook against in-memory fakes of their ports: deliveries, supplements,
withdrawals, payment notices, polling, and the portal's notices (no sockets, no simulators)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.errors import PermanentError, TransientError
from adapters.onestop.port import AgencyStatus
from gateway import messages
from gateway.flows.agency import AgencyHandler, Poller, poll_due
from gateway.flows.portal import PortalWebhookHandler, subscriptions
from gateway.registry import RegistrySettings, register, validate_registration
from gateway.sections import PollerSection
from gateway.services.changes import find_dossier
from gateway.services.context import Context
from gateway.store.database import Database
from gateway.store.models import OutboxMessage
from gateway.views import agency_documents
from gateway.workers import MessageView
from tests.fakes import AGENCY, PROCEDURE, FakeAgencyClients, FakePortal, context_for, move, open_store, submit

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def registration(*, protocol: str = "rest", poll: bool = False) -> dict[str, Any]:
    document: dict[str, Any] = {
        "code": AGENCY,
        "name": "Sở Xây dựng",
        "protocol": protocol,
        "endpoint": "http://127.0.0.1:9/api",
        "procedures": [PROCEDURE],
        "auth": {"type": "none"},
        "status_updates": {"mode": "poll", "interval_seconds": 60} if poll else {"mode": "callback"},
    }
    if protocol == "soap":
        document["wsdl"] = "http://127.0.0.1:9/soap?wsdl"
    return document


def registered(db: Database, document: dict[str, Any]) -> None:
    settings = RegistrySettings(allow_private_endpoints=True)
    with db.unit_of_work() as session:
        register(session, validate_registration(document, settings=settings, known_procedures={PROCEDURE}))


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_store(tmp_path)
    yield database
    database.dispose()


def message(kind: str, payload: dict[str, Any], key: str = "k") -> MessageView:
    return MessageView(id=1, kind=kind, target=AGENCY, payload=payload, idempotency_key=key, attempts=1)


async def test_a_dossier_supplement_and_withdrawal_reach_the_agency_with_their_keys(db: Database) -> None:
    registered(db, registration())
    ctx = context_for(db)
    code = await submit(ctx, at=NOW)
    clients = FakeAgencyClients()
    handler = AgencyHandler(ctx, clients, agency_documents)
    payload = {"dossier_code": code, "agency_code": AGENCY}
    await handler.handle(message(messages.AGENCY_DELIVER, payload, f"{code}:deliver:{AGENCY}"))
    await handler.handle(message(messages.AGENCY_WITHDRAW, {**payload, "reason": "đổi ý"}, f"{code}:withdraw"))
    system = clients.of(AGENCY)
    assert system.delivered == [(code, f"{code}:deliver:{AGENCY}")]
    assert system.withdrawals == [(code, "đổi ý", f"{code}:withdraw")]
    with pytest.raises(PermanentError, match="none of the supplemented components"):
        await handler.handle(message(messages.AGENCY_SUPPLEMENT, {**payload, "components": ["TP9"]}))
    await handler.aclose()
    assert system.closed


async def test_an_unregistered_agency_or_unknown_dossier_parks_the_message(db: Database) -> None:
    ctx = context_for(db)
    code = await submit(ctx, at=NOW)
    handler = AgencyHandler(ctx, FakeAgencyClients(), agency_documents)
    with pytest.raises(PermanentError, match="not registered"):
        await handler.handle(message(messages.AGENCY_DELIVER, {"dossier_code": code, "agency_code": AGENCY}))
    registered(db, registration())
    with pytest.raises(PermanentError, match="no dossier"):
        await handler.handle(message(messages.AGENCY_DELIVER, {"dossier_code": f"{AGENCY}-261123-0999"}))
    with pytest.raises(PermanentError, match="names no dossier_code"):
        await handler.handle(message(messages.AGENCY_DELIVER, {}))


async def _poll_ctx(db: Database) -> tuple[Context, str]:
    registered(db, registration(poll=True))
    ctx = context_for(db)
    return ctx, await submit(ctx, at=NOW)


async def test_the_poller_applies_a_reported_change_once(db: Database) -> None:
    ctx, code = await _poll_ctx(db)
    clients = FakeAgencyClients()
    clients.of(AGENCY).statuses[code] = AgencyStatus(code, "received", at=NOW + timedelta(minutes=5))
    poller = Poller(ctx, clients, PollerSection())
    first = NOW + timedelta(minutes=10)
    assert await poll_due(poller, now=first) == 0  # the agency's first poll is placed inside its interval
    later = first + timedelta(minutes=2)
    assert await poll_due(poller, now=later) == 1
    with db.unit_of_work() as session:
        assert find_dossier(session, code).status == "received"
    assert await poll_due(poller, now=later + timedelta(minutes=2)) == 0  # the same report: settled, not applied


async def test_the_poller_passes_over_an_illegal_change(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    ctx, code = await _poll_ctx(db)
    clients = FakeAgencyClients()
    clients.of(AGENCY).statuses[code] = AgencyStatus(code, "returned", at=NOW + timedelta(minutes=5))
    poller = Poller(ctx, clients, PollerSection())
    await poll_due(poller, now=NOW + timedelta(minutes=10))
    assert await poll_due(poller, now=NOW + timedelta(minutes=12)) == 0
    assert "illegal transition refused" in caplog.text
    with db.unit_of_work() as session:
        assert find_dossier(session, code).status == "submitted"


async def test_every_recorded_change_is_notified_to_the_portal_in_order(db: Database) -> None:
    ctx = context_for(db, subscriptions(True))
    code = await submit(ctx, at=NOW)
    await move(ctx, code, "received", NOW + timedelta(minutes=1))
    with db.unit_of_work() as session:
        rows = session.query(OutboxMessage).filter_by(kind=messages.PORTAL_WEBHOOK).order_by(OutboxMessage.id).all()
        queued = [(row.payload, row.idempotency_key, row.ordering_key) for row in rows]
    assert [payload["event"]["status"] for payload, _, _ in queued] == ["submitted", "received"]
    assert all(lane == code for _, _, lane in queued)
    portal = FakePortal()
    handler = PortalWebhookHandler(portal)
    for payload, key, _ in queued:
        await handler.handle(MessageView(1, messages.PORTAL_WEBHOOK, "portal", payload, key, 1))
    assert [body["event"]["national_status_code"] for body, _ in portal.notices] == [1, 2]
    portal.failure = TransientError("down", upstream="portal")
    with pytest.raises(TransientError):
        await handler.handle(MessageView(1, messages.PORTAL_WEBHOOK, "portal", queued[0][0], queued[0][1], 2))


async def test_without_the_webhook_no_notice_is_queued(db: Database) -> None:
    ctx = context_for(db, subscriptions(False))
    await submit(ctx, at=NOW)
    with db.unit_of_work() as session:
        assert session.query(OutboxMessage).filter_by(kind=messages.PORTAL_WEBHOOK).count() == 0
