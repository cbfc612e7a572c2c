"""The national portal flow end to end: intake and agency events enqueue ``national.sync`` through the message bus,
the real outbox worker delivers it with the flow's handler over the real client to the simulated portal (real
uvicorn on 127.0.0.1), failures queue and drain; ``dvc-gateway national reconcile`` and ``dvc-gateway procedure
sync`` against the same simulator.

The wiring is built from its pieces (the context, a bus with the flow's subscriptions, the handler); agency
deliveries are accepted without an agency, they are not what these tests are about. Every wait has a limit; no
test asserts a timing.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.errors import AuthError, PermanentError
from adapters.http import default_factory
from adapters.national_portal import format_time, wire
from gateway import messages, outbox
from gateway.auth import Principal
from gateway.bootstrap.upstreams import sync_handler
from gateway.bus import MessageBus
from gateway.catalogue import get_procedure, import_procedures, parse_catalogue
from gateway.cli import main
from gateway.config import ConfigError
from gateway.delivery import Deliveries
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.status import national_code
from gateway.flows.national import (
    STEP_SKIPPED,
    NationalPortalSettings,
    is_local_step,
    ordering_key,
    subscriptions,
)
from gateway.outbox import RetryPolicy
from gateway.registry import Registration, register
from gateway.services.context import Context
from gateway.services.events import AgencyEvent, apply_event
from gateway.services.intake import submit
from gateway.settings import load_settings
from gateway.simulators.national_portal import NationalPortalSimulator
from gateway.simulators.national_portal import create_app as create_portal
from gateway.store.database import Database
from gateway.store.models import Dossier, HistoryEntry, NationalSync, OutboxMessage, utcnow
from gateway.views import dossier_view
from gateway.workers import CircuitBreakerSettings, MessageView, OutboxWorker
from signing import TrustStore, Verifier
from tests.documents import make_pdf
from tests.servers import ServerThread, admin_get, admin_post
from tests.test_outbox import BACKENDS, postgres_schema_url

AGENCY = "000.00.23.H38"
PROCEDURE = "1.009794"
USERNAME = "lgsp-h38"
PASSWORD = "mat-khau-cong-quoc-gia"
DSTCODE = "H38"
MADONVI = "000.00.00.H38"
AGENCY_PRINCIPAL = Principal("agency", AGENCY)
CATALOGUE = json.dumps(
    [
        {
            "code": PROCEDURE,
            "name": "Cấp giấy phép xây dựng",
            "agencies": [AGENCY, "000.00.10.H38"],
            "processing_days": 15,
            "components": [
                {"code": "TP1", "name": "Đơn đề nghị", "required": True, "must_be_signed": False},
                {"code": "TP2", "name": "Bản vẽ", "required": False, "must_be_signed": False},
            ],
            "fees": [],
        }
    ]
)


# ----------------------------------------------------------------------------------------------------------------------
# The upstream and the gateway


@pytest.fixture(scope="module")
def portal_server() -> Iterator[ServerThread]:
    app = create_portal(username=USERNAME, password=PASSWORD, dstcode=DSTCODE, madonvi=MADONVI, seed=3)
    with ServerThread(app) as server:
        yield server


@pytest.fixture
def sim(portal_server: ServerThread) -> Iterator[NationalPortalSimulator]:
    simulator: NationalPortalSimulator = portal_server.app.state.simulator
    simulator.reset()
    simulator.session_max_calls = None
    simulator.session_ttl_seconds = 1800.0
    simulator.error_rate = 0.0
    yield simulator
    simulator.reset()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    with postgres_schema_url() as url:
        yield url


@dataclass
class Gateway:
    """The pieces of a running gateway the flow needs: its context (the bus carries the flow's subscriptions) and
    the ``[national_portal]`` settings (``None``: the integration is off)."""

    ctx: Context
    portal: NationalPortalSettings | None
    config_path: Path

    @property
    def db(self) -> Database:
        return self.ctx.db


def write_config(tmp_path: Path, database_url: str, portal: dict[str, Any] | None) -> Path:
    (tmp_path / "national-password").write_text(PASSWORD, encoding="utf-8")
    lines = [
        "[database]",
        f"url = {json.dumps(database_url)}",
        "[registry]",
        "allow_private_endpoints = true",
    ]
    if portal is not None:
        lines.append("[national_portal]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in portal.items()]
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def portal_section(base_url: str, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "username": USERNAME,
        "password": f"file:{tmp_path / 'national-password'}",
        "dstcode": DSTCODE,
        "madonvi": MADONVI,
        "timeout_seconds": 10,
        **overrides,
    }


def open_gateway(tmp_path: Path, database_url: str, portal: dict[str, Any] | None) -> Gateway:
    """A migrated database with the test catalogue and the agency registered, and the flow's pieces over it."""
    path = write_config(tmp_path, database_url, portal)
    settings = load_settings(path, environ={})
    trust = settings.signing.trust_settings()
    db = Database.connect(database_url)
    db.upgrade()
    with db.unit_of_work() as session:
        import_procedures(session, parse_catalogue(CATALOGUE))
        register(session, Registration.model_validate(AGENCY_DOCUMENT))
    verifier = Verifier(TrustStore.load(trust), settings=trust)
    bus = MessageBus(subscriptions(settings.national_portal is not None))
    ctx = Context(db=db, bus=bus, calendar=OfficeCalendar(), verifier=verifier)
    return Gateway(ctx=ctx, portal=settings.national_portal, config_path=path)


#: The agency the dossiers go to (its deliveries are accepted without calling it).
AGENCY_DOCUMENT = {
    "code": AGENCY,
    "name": "Sở Xây dựng",
    "protocol": "rest",
    "endpoint": "http://127.0.0.1:9",
    "procedures": [PROCEDURE],
    "auth": {"type": "bearer", "token": "env:AGENCY_TOKEN_NOT_USED"},
}


def close_gateway(gw: Gateway) -> None:
    gw.ctx.verifier.close()
    gw.db.dispose()


@pytest.fixture
def gw(tmp_path: Path, database_url: str, portal_server: ServerThread, sim: Any) -> Iterator[Gateway]:
    """The gateway with the national portal configured (progress in batches of 3)."""
    gateway = open_gateway(tmp_path, database_url, portal_section(portal_server.base_url, tmp_path, batch_size=3))
    yield gateway
    close_gateway(gateway)


@pytest.fixture
def gw_off(tmp_path: Path, database_url: str) -> Iterator[Gateway]:
    """The gateway without ``[national_portal]``."""
    gateway = open_gateway(tmp_path, database_url, None)
    yield gateway
    close_gateway(gateway)


class AgencyAccepted:
    """Takes the agencies' messages as delivered: the dossiers' deliveries to their agency are not tested here."""

    kinds = messages.AGENCY_KINDS

    async def handle(self, message: MessageView) -> None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def delivery(gw: Gateway) -> AsyncIterator[Delivery]:
    assert gw.portal is not None
    dispatcher = Deliveries([sync_handler(gw.ctx, gw.portal, default_factory), AgencyAccepted()])
    worker = OutboxWorker(
        gw.db,
        dispatcher,
        policy=RetryPolicy(max_attempts=100, initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0.0),
        breaker=CircuitBreakerSettings(failure_threshold=1000, cooldown_seconds=0.05),
    )
    yield Delivery(gw, dispatcher, worker)
    await dispatcher.aclose()


@dataclass
class Delivery:
    gw: Gateway
    dispatcher: Deliveries
    worker: OutboxWorker

    async def drain(self, rounds_limit: int = 2000) -> None:
        """Run the worker until no message is left to deliver; a dead one fails the test at once."""
        with anyio.fail_after(60):
            for _ in range(rounds_limit):
                await self.worker.run_once()
                left = unfinished(self.gw)
                dead = [m for m in left if m[2] == outbox.DEAD]
                assert not dead, f"dead messages: {dead}"
                if not left:
                    return
                await asyncio.sleep(0.01)
        raise AssertionError(f"messages left: {unfinished(self.gw)}")

    async def rounds(self, count: int) -> None:
        """Run the worker ``count`` times (deliveries may fail and be retried)."""
        with anyio.fail_after(60):
            for _ in range(count):
                await self.worker.run_once()
                await asyncio.sleep(0.02)


def unfinished(gw: Gateway) -> list[tuple[int, str, str, str | None]]:
    with gw.db.unit_of_work() as session:
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.state.in_((outbox.PENDING, outbox.IN_FLIGHT, outbox.DEAD)))
        )
        return [(m.id, m.kind, m.state, m.last_error) for m in rows]


# ----------------------------------------------------------------------------------------------------------------------
# Dossiers


def code_only(session: Session, dossier: Dossier, now: datetime, /, *, created: bool = False) -> dict[str, Any]:
    return {"code": dossier.code}


async def submit_dossier(gw: Gateway, *, channel: str = "online", return_method: str | None = None) -> str:
    document: dict[str, Any] = {
        "procedure_code": PROCEDURE,
        "agency_code": AGENCY,
        "channel": channel,
        "applicant": {"full_name": "Nguyễn Văn A", "id_number": "001099012345", "phone": "0912345678"},
        "summary": "Cấp giấy phép xây dựng nhà ở riêng lẻ",
        "components": [
            {"code": "TP1", "filename": "don.pdf", "content_base64": base64.b64encode(make_pdf("Don")).decode()}
        ],
    }
    if return_method:
        document["return_method"] = return_method
        document["delivery_address"] = {"line": "12 Phố Huế", "province": "Hà Nội"}
    answer = await submit(gw.ctx, Principal("portal"), document, idempotency_key=None, now=utcnow(), render=code_only)
    assert answer.status == 201, answer.body
    return answer.body["code"]


async def event(gw: Gateway, code: str, status: str, **fields: Any) -> None:
    body = AgencyEvent.model_validate({"dossier_code": code, "status": status, **fields})
    await apply_event(gw.ctx, AGENCY_PRINCIPAL, body, now=utcnow())


def history(gw: Gateway, code: str, *, everything: bool = False) -> list[HistoryEntry]:
    """The dossier's history; without ``everything``, the entries the portal hears of (skipped integrations,
    recorded by any flow when its integration is off, are the gateway's own business)."""
    with gw.db.unit_of_work() as session:
        dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one()
        return [entry for entry in dossier.history if everything or not is_local_step(entry)]


def sync_row(gw: Gateway, code: str) -> NationalSync | None:
    with gw.db.unit_of_work() as session:
        return session.get(NationalSync, code)


def sync_messages(gw: Gateway, code: str) -> list[OutboxMessage]:
    with gw.db.unit_of_work() as session:
        statement = (
            select(OutboxMessage)
            .where(
                OutboxMessage.kind == messages.NATIONAL_SYNC,
                OutboxMessage.ordering_key == ordering_key(code),
            )
            .order_by(OutboxMessage.id)
        )
        return list(session.scalars(statement))


def portal_calls(sim: NationalPortalSimulator, service: str) -> list[dict[str, Any]]:
    return [call for call in sim.calls if call["service"] == service]


def progress_of(sim: NationalPortalSimulator, code: str) -> list[tuple[str, int]]:
    return [(step["ThoiDiemXuLy"], step["TrangThai"]) for step in sim.dossiers[code]["progress"]]


def expected_progress(gw: Gateway, code: str) -> list[tuple[str, int]]:
    return [(format_time(entry.at), national_code(entry.status)) for entry in history(gw, code)]


# ----------------------------------------------------------------------------------------------------------------------
# Intake and status changes reach the portal


async def test_intake_and_every_status_change_reach_the_portal(
    gw: Gateway, delivery: Delivery, sim: NationalPortalSimulator, portal_server: ServerThread
) -> None:
    code = await submit_dossier(gw, return_method="post")
    [message] = sync_messages(gw, code)
    intake = history(gw, code)[0]
    assert message.target == messages.NATIONAL_TARGET and message.ordering_key == f"{code}#national"
    assert message.payload == {"dossier_code": code, "history_id": intake.id}
    assert message.idempotency_key == outbox.message_key(code, f"national:{intake.id}")
    await delivery.drain()

    held = sim.dossiers[code]
    assert held["TrangThaiHoSo"] == 1
    record = held["record"]
    assert record["MaHoSo"] == code and record["MaTTHC"] == PROCEDURE
    assert record["TenTTHC"] == "Cấp giấy phép xây dựng"  # from the catalogue
    assert record["KenhThucHien"] == 2 and record["HinhThuc"] == 1  # online, result by post
    assert record["NgayTiepNhan"] == format_time(intake.at)
    assert record["ChuHoSo"] == "Nguyễn Văn A"
    assert progress_of(sim, code) == expected_progress(gw, code)

    for status in ("received", "processing", "completed"):
        await event(gw, code, status, note=f"Bước {status}")
        await delivery.drain()
        assert sim.dossiers[code]["TrangThaiHoSo"] == national_code(status)
        assert progress_of(sim, code) == expected_progress(gw, code)

    entries = history(gw, code)
    assert [national_code(e.status) for e in entries] == [1, 2, 4, 9]
    record = sim.dossiers[code]["record"]
    with gw.db.unit_of_work() as session:
        dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one()
        assert record["NgayTiepNhan"] == format_time(dossier.received_at)
        assert record["NgayHenTra"] == format_time(dossier.due_at)
        assert record["NgayKetThucXuLy"] == format_time(dossier.completed_at)
    assert [step["NoiDungXuLy"] for step in sim.dossiers[code]["progress"][1:]] == [
        "Đã tiếp nhận: Bước received",
        "Đang giải quyết: Bước processing",
        "Đã có kết quả: Bước completed",
    ]
    # One message per change; the first sync is new, every later one an update (isUpdating).
    assert [m.payload["history_id"] for m in sync_messages(gw, code)] == [e.id for e in entries]
    assert [call["isUpdating"] for call in portal_calls(sim, wire.SERVICE_SYNC)] == [False, True, True, True]
    row = sync_row(gw, code)
    assert row is not None
    last = history(gw, code, everything=True)[-1].id  # a skipped step after completed counts as done
    assert (row.status_code, row.history_id, row.accepted_ids, row.last_error) == ("9", last, [], None)
    assert row.synced_at is not None
    # The simulator shows what it holds.
    shown = (await admin_get(portal_server.base_url, f"/_sim/dossiers/{code}")).json()
    assert shown["TrangThaiHoSo"] == 9 and len(shown["progress"]) == 4 and shown["updates"] == 3


async def test_an_older_message_after_a_newer_sync_changes_nothing(
    gw: Gateway, delivery: Delivery, sim: NationalPortalSimulator
) -> None:
    code = await submit_dossier(gw)
    await event(gw, code, "received")
    await delivery.drain()
    calls = len(sim.calls)
    intake = history(gw, code)[0]
    old = MessageView(
        id=999,
        kind=messages.NATIONAL_SYNC,
        target=messages.NATIONAL_TARGET,
        payload={"dossier_code": code, "history_id": intake.id},
        idempotency_key=outbox.message_key(code, f"national:{intake.id}"),
        attempts=1,
        ordering_key=code,
    )
    await delivery.dispatcher.dispatch(old)
    assert len(sim.calls) == calls
    assert sim.dossiers[code]["TrangThaiHoSo"] == 2


async def test_a_step_without_a_status_change_is_progress_only(
    gw: Gateway, delivery: Delivery, sim: NationalPortalSimulator
) -> None:
    code = await submit_dossier(gw)
    await event(gw, code, "received")
    await event(gw, code, "processing")
    await delivery.drain()
    syncs = len(portal_calls(sim, wire.SERVICE_SYNC))
    await event(gw, code, "processing", note="Chuyển phòng chuyên môn")  # a progress step: the status stays
    await delivery.drain()
    assert len(portal_calls(sim, wire.SERVICE_SYNC)) == syncs
    assert progress_of(sim, code) == expected_progress(gw, code)
    assert sim.dossiers[code]["progress"][-1]["NoiDungXuLy"] == "Đang giải quyết: Chuyển phòng chuyên môn"


# ----------------------------------------------------------------------------------------------------------------------
# Failures


async def test_portal_down_work_queues_and_drains_in_order_per_dossier(
    gw: Gateway, delivery: Delivery, sim: NationalPortalSimulator, portal_server: ServerThread
) -> None:
    await admin_post(portal_server.base_url, "/_sim/faults", {"down_next": 1_000_000, "down_status": 503})
    first, second = await submit_dossier(gw), await submit_dossier(gw)
    for code in (first, second):
        await event(gw, code, "received")
    await event(gw, first, "processing")
    await event(gw, first, "completed")
    await delivery.rounds(15)
    # Nothing reached the portal; the syncs wait, retried, none dead.
    assert sim.dossiers == {} and sim.counters["faults"] >= 2
    for code in (first, second):
        waiting = sync_messages(gw, code)
        assert {m.state for m in waiting} <= {outbox.PENDING, outbox.IN_FLIGHT}
        assert waiting[0].attempts >= 2 and "503" in (waiting[0].last_error or "")
        assert all(m.attempts == 0 for m in waiting[1:])  # held back behind the first one of their dossier
        row = sync_row(gw, code)
        assert row is not None and row.status_code is None and "503" in (row.last_error or "")

    await admin_post(portal_server.base_url, "/_sim/faults", {"down_next": 0})
    await delivery.drain()
    for code, status in ((first, 9), (second, 2)):
        assert sim.dossiers[code]["TrangThaiHoSo"] == status
        assert progress_of(sim, code) == expected_progress(gw, code)  # every step, once, in order
        assert {m.state for m in sync_messages(gw, code)} == {outbox.DONE}
        row = sync_row(gw, code)
        assert row is not None and row.last_error is None
        assert row.history_id == history(gw, code, everything=True)[-1].id
    # Work that queued up went in batches: 4 steps of the first dossier, batches of 3, in one message.
    first_progress = [c for c in portal_calls(sim, wire.SERVICE_PROGRESS) if c["codes"][0] == first]
    assert [len(c["codes"]) for c in first_progress] == [3, 1]


async def test_expired_session_mid_batch_is_refreshed(
    gw: Gateway, delivery: Delivery, sim: NationalPortalSimulator
) -> None:
    code = await submit_dossier(gw)
    for status in ("received", "processing", "completed"):
        await event(gw, code, status)
    await event(gw, code, "returned")
    sim.session_max_calls = 2  # the dossier and the first batch; the second batch finds the session expired
    await delivery.drain()
    assert progress_of(sim, code) == expected_progress(gw, code)
    assert len(sim.dossiers[code]["progress"]) == 5  # nothing sent twice
    assert sim.counters["logins"] == 2 and sim.counters["sessions_refused"] == 1
    assert wire.CODE_SESSION_EXPIRED in [c["error_code"] for c in portal_calls(sim, wire.SERVICE_PROGRESS)]
    assert sim.dossiers[code]["TrangThaiHoSo"] == 10
    assert sim.dossiers[code]["record"]["NgayTra"] == format_time(history(gw, code)[-1].at)
    assert {m.state for m in sync_messages(gw, code)} == {outbox.DONE}


async def test_a_half_accepted_batch_retries_only_the_refused_records(
    gw: Gateway, delivery: Delivery, sim: NationalPortalSimulator, portal_server: ServerThread
) -> None:
    code = await submit_dossier(gw)
    await delivery.drain()
    await event(gw, code, "received")
    await event(gw, code, "processing")
    sim.set_faults({"refuse_next_records": 1, "refuse_service": wire.SERVICE_PROGRESS})
    await delivery.drain()
    entries = history(gw, code, everything=True)
    progress_calls = portal_calls(sim, wire.SERVICE_PROGRESS)
    # Intake's step; then received + processing in one batch, received refused (99); then received alone.
    assert [len(call["codes"]) for call in progress_calls] == [1, 2, 1]
    assert progress_calls[1]["error_code"] == wire.CODE_RECORDS_REFUSED
    assert sim.counters["record_faults"] == 1
    held = sim.dossiers[code]["progress"]
    assert sorted((s["ThoiDiemXuLy"], s["TrangThai"]) for s in held) == sorted(expected_progress(gw, code))
    assert held[-1]["TrangThai"] == national_code("received")  # the one sent again, last
    row = sync_row(gw, code)
    assert row is not None and row.history_id == entries[-1].id and row.accepted_ids == [] and row.last_error is None


async def test_refused_credentials_and_unknown_dossiers_are_permanent(
    gw: Gateway, delivery: Delivery, sim: NationalPortalSimulator, tmp_path: Path
) -> None:
    code = await submit_dossier(gw)
    intake = history(gw, code)[0]

    def view(payload: dict[str, Any]) -> MessageView:
        return MessageView(
            id=1, kind=messages.NATIONAL_SYNC, target=messages.NATIONAL_TARGET, payload=payload,
            idempotency_key="k", attempts=1, ordering_key=payload.get("dossier_code"),
        )  # fmt: skip

    with pytest.raises(PermanentError, match="no dossier"):
        await delivery.dispatcher.dispatch(view({"dossier_code": "000.00.23.H38-261123-9999", "history_id": 1}))
    with pytest.raises(PermanentError, match="no history entry"):
        await delivery.dispatcher.dispatch(view({"dossier_code": code, "history_id": intake.id + 1000}))
    with pytest.raises(PermanentError, match="names no dossier"):
        await delivery.dispatcher.dispatch(view({"dossier_code": code}))
    (tmp_path / "national-password").write_text("sai-mat-khau", encoding="utf-8")
    with pytest.raises(AuthError):
        await delivery.dispatcher.dispatch(view({"dossier_code": code, "history_id": intake.id}))
    assert sim.dossiers == {}
    assert "refused" in (sync_row(gw, code).last_error or "")  # type: ignore[union-attr]


def test_an_unusable_configuration_is_refused_before_any_delivery(tmp_path: Path) -> None:
    """Settings are read, whole, before anything is delivered: a section that cannot be used stops the gateway with
    one line, rather than dead-lettering every sync later."""
    path = write_config(tmp_path, "sqlite://", {"base_url": "http://127.0.0.1:9", "password": "x"})
    with pytest.raises(ConfigError, match=r"\[national_portal\] username"):
        load_settings(path, environ={})


# ----------------------------------------------------------------------------------------------------------------------
# Not configured: skipped, once


async def test_skipped_and_recorded_once_when_not_configured(gw_off: Gateway) -> None:
    code = await submit_dossier(gw_off)
    await event(gw_off, code, "received")
    await event(gw_off, code, "processing")
    entries = history(gw_off, code, everything=True)
    [skipped] = [e for e in entries if (e.details or {}).get("step") == STEP_SKIPPED]
    assert [e.status for e in entries if not (e.details or {}).get("step")] == ["submitted", "received", "processing"]
    assert skipped.status == "submitted" and skipped.at == entries[0].at and "not configured" in (skipped.note or "")
    assert sync_messages(gw_off, code) == []
    with gw_off.db.unit_of_work() as session:
        dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one()
        view = dossier_view(session, dossier, calendar=gw_off.ctx.calendar, now=utcnow())
    assert [item.get("step") for item in view["history"]].count(STEP_SKIPPED) == 1


# ----------------------------------------------------------------------------------------------------------------------
# dvc-gateway national reconcile


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_reconcile_lists_mismatches_and_resync_fixes_them(
    gw: Gateway, delivery: Delivery, sim: NationalPortalSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    same, diverged, lost = [await submit_dossier(gw) for _ in range(3)]
    await event(gw, diverged, "received")
    await event(gw, lost, "received")
    await delivery.drain()
    sim.dossiers[diverged]["TrangThaiHoSo"] = 3  # the portal shows something else
    del sim.dossiers[lost]  # the portal lost it
    since = (utcnow() - timedelta(days=1)).date().isoformat()
    config = str(gw.config_path)

    status, out, err = await cli(capsys, "national", "reconcile", "--since", since, "--json", "--config", config)
    assert status == 1, err
    report = json.loads(out)
    assert report["checked"] == 3 and report["source"] == "portal" and report["resynced"] is False
    found = {item["dossier_code"]: item for item in report["mismatches"]}
    assert set(found) == {diverged, lost}
    assert (found[diverged]["local_code"], found[diverged]["national_code"]) == (2, 3)
    assert (found[lost]["local_code"], found[lost]["national_code"]) == (2, None)
    assert sim.counters["lookups"] == 1  # one batched lookup of the three

    status, out, _ = await cli(capsys, "national", "reconcile", "--since", since, "--config", config)
    assert status == 1 and "2 of 3 dossier(s) differ from the national portal" in out
    assert diverged in out and lost in out and same not in out and "--resync" in out

    # The gateway's own records say all is well: the difference is the portal's.
    status, out, _ = await cli(
        capsys, "national", "reconcile", "--since", since, "--from-records", "--json", "--config", config
    )
    assert status == 0 and json.loads(out)["mismatches"] == []

    status, out, err = await cli(
        capsys, "national", "reconcile", "--since", since, "--resync", "--json", "--config", config
    )
    assert status == 0, err
    assert json.loads(out)["resynced"] is True
    resyncs = [m for m in sync_messages(gw, diverged) + sync_messages(gw, lost) if m.payload.get("resync")]
    assert {(m.payload["dossier_code"], m.payload["full"]) for m in resyncs} == {(diverged, False), (lost, True)}
    await delivery.drain()
    assert sim.dossiers[diverged]["TrangThaiHoSo"] == 2
    assert sim.dossiers[lost]["TrangThaiHoSo"] == 2
    assert progress_of(sim, lost) == expected_progress(gw, lost)  # the whole history again
    assert sim.dossiers[same]["updates"] == 0  # untouched

    status, out, _ = await cli(capsys, "national", "reconcile", "--since", since, "--config", config)
    assert status == 0 and "all match the national portal" in out


async def test_reconcile_errors_are_one_line(gw: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = await cli(capsys, "national", "reconcile", "--since", "hôm qua", "--config", str(gw.config_path))
    assert status == 2 and err.count("\n") == 1 and "--since" in err
    (tmp_path / "off").mkdir()
    off = write_config(tmp_path / "off", f"sqlite:///{tmp_path / 'off.db'}", None)
    status, _, err = await cli(capsys, "national", "reconcile", "--since", "2026-11-01", "--config", str(off))
    assert status == 2 and err.count("\n") == 1 and "base_url" in err and "not configured" in err


# ----------------------------------------------------------------------------------------------------------------------
# dvc-gateway procedure sync


def test_procedure_sync_fills_the_catalogue(
    tmp_path: Path, database_url: str, portal_server: ServerThread, sim: NationalPortalSimulator,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    gateway = open_gateway(tmp_path, database_url, portal_section(portal_server.base_url, tmp_path))
    try:
        capsys.readouterr()
        assert main(["procedure", "sync", "--json", "--config", str(gateway.config_path)]) == 0
        outcome = json.loads(capsys.readouterr().out)
        assert (outcome["pulled"], outcome["created"], outcome["updated"], outcome["unchanged"]) == (3, 1, 1, 0)
        assert [item["code"] for item in outcome["skipped"]] == ["1.000775"]
        assert "competent agency" in outcome["skipped"][0]["reason"]
        with gateway.db.unit_of_work() as session:
            created = get_procedure(session, "1.001612")
            updated = get_procedure(session, PROCEDURE)
        assert created is not None and updated is not None
        assert created.name == "Đăng ký thành lập hộ kinh doanh" and created.agencies == ["000.00.10.H38"]
        assert created.processing_days == 3
        assert [(f.code, f.amount) for f in created.fees] == [("LP1", 100000)]
        assert [(c.code, c.required, c.must_be_signed) for c in created.components] == [("TP1", True, False)]
        # The portal's name, time and fees; the province's agencies and components kept.
        assert updated.name == "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ"
        assert updated.agencies == [AGENCY, "000.00.10.H38"]
        assert [(c.code, c.name) for c in updated.components] == [("TP1", "Đơn đề nghị"), ("TP2", "Bản vẽ")]
        assert [(f.code, f.amount) for f in updated.fees] == [("LP1", 150000)]
        assert isinstance(updated.fees[0].amount, int)
        # Again: nothing changes.
        assert main(["procedure", "sync", "--config", str(gateway.config_path)]) == 0
        out = capsys.readouterr().out
        assert "0 created, 0 updated, 2 unchanged, 1 skipped" in out and "skipped 1.000775" in out
        assert sim.counters["catalogue_pulls"] == 2
    finally:
        close_gateway(gateway)


def test_procedure_sync_errors_are_one_line(
    tmp_path: Path, portal_server: ServerThread, sim: NationalPortalSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    path = write_config(tmp_path, url, portal_section(portal_server.base_url, tmp_path, password="sai-mat-khau"))
    capsys.readouterr()
    assert main(["procedure", "sync", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "login refused" in err and "sai-mat-khau" not in err
    sim.set_faults({"down_next": 5})
    path = write_config(tmp_path, url, portal_section(portal_server.base_url, tmp_path))
    assert main(["procedure", "sync", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "503" in err
