"""The national portal flow end to end: intake and agency events enqueue ``national.sync`` through the message bus,
the real outbox worker delivers it with the flow's handler over the real client to the simulated portal (real
uvicorn on 127.0.0.1), failures queue and drain. The ``dvc-gateway national reconcile`` and ``dvc-gateway procedure
sync`` commands are in ``tests/test_national_cli.py``.

The wiring is built from its pieces (the context, a bus with the flow's subscriptions, the handler); agency
deliveries are accepted without an agency, they are not what these tests are about. Every wait has a limit; no
test asserts a timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from adapters.errors import AuthError, PermanentError
from adapters.national_portal import format_time, wire
from gateway import messages, outbox
from gateway.config import ConfigError
from gateway.domain.status import national_code
from gateway.flows.national.records import STEP_SKIPPED
from gateway.settings import load_settings
from gateway.simulators.national_portal import NationalPortalSimulator
from gateway.store.models import Dossier, utcnow
from gateway.views import dossier_view
from gateway.workers import MessageView
from tests.national_sync_fixtures import *  # noqa: F403  (the fixtures: pytest finds them in this module)
from tests.national_sync_support import (
    PROCEDURE,
    Delivery,
    Gateway,
    event,
    expected_progress,
    history,
    portal_calls,
    progress_of,
    submit_dossier,
    sync_messages,
    sync_row,
    write_config,
)
from tests.servers import ServerThread, admin_get, admin_post

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
    path = write_config(tmp_path, f"sqlite:///{tmp_path}/gw.db", {"base_url": "http://127.0.0.1:9", "password": "x"})
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
