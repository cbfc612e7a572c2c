"""Agency status events (``POST /api/v1/agencies/{agency}/events``): the state machine, deadlines, inter-agency
transfers, results, idempotency and access control."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway import audit
from gateway.domain.calendar import VIETNAM_TZ, OfficeCalendar
from gateway.store.models import AuditEntry, HistoryEntry, OutboxMessage
from tests.api_support import (
    ADMIN,
    AGENCY,
    AGENCY2,
    AGENCY2_AUTH,
    AGENCY3,
    AGENCY3_AUTH,
    AGENCY_AUTH,
    PORTAL,
    Gateway,
    b64,
    component,
    gateway_client,
    joint_submission,
    open_runtime,
    pdf,
)
from tests.documents import sign_pdf

pytest_plugins = ("tests.api_fixtures",)  # the gw, any_gw and signed_gw fixtures

CALENDAR = OfficeCalendar()
#: Wednesday 25 November 2026, 10:00 (Tuesday the 24th is Vietnam Cultural Day, a day off since 2026).
RECEPTION = datetime(2026, 11, 25, 10, 0, tzinfo=VIETNAM_TZ)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(VIETNAM_TZ)


def messages(gw: Gateway, kind: str | None = None) -> list[OutboxMessage]:
    with gw.db.unit_of_work() as session:
        statement = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind:
            statement = statement.where(OutboxMessage.kind == kind)
        return list(session.scalars(statement))


def audit_count(gw: Gateway) -> int:
    """Audit entries of changes (reading a dossier is an entry too, and changes nothing)."""
    with gw.db.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action != "dossier.read"))


async def received(gw: Gateway, at: datetime = RECEPTION, body: dict[str, Any] | None = None) -> dict[str, Any]:
    dossier = await gw.submitted(body)
    gw.clock.set(at)
    response = await gw.event(dossier["code"], "received")
    assert response.status_code == 200, response.text
    return await gw.get(dossier["code"])


async def test_received_sets_the_legal_due_date(any_gw: Gateway) -> None:
    dossier = await any_gw.submitted()
    any_gw.clock.set(RECEPTION)
    response = await any_gw.event(dossier["code"], "received", due_at="2026-12-01T17:00:00+07:00", note="Đủ hồ sơ")
    assert response.status_code == 200
    answer = response.json()
    assert answer == {
        "dossier_code": dossier["code"],
        "status": "received",
        "national_status_code": 2,
        "agency_code": AGENCY,
        "received_at": "2026-11-25T10:00:00+07:00",
        "due_at": "2026-12-16T17:00:00+07:00",  # 15 working days after Wednesday 25 November
        "duplicate": False,
    }
    assert local(answer["due_at"]) == CALENDAR.due_at(RECEPTION, 15)
    view = await any_gw.get(dossier["code"])
    assert view["received_at"] == answer["received_at"] and view["due_at"] == answer["due_at"]
    last = view["history"][-1]
    assert last["status"] == "received" and last["actor"] == f"agency:{AGENCY}"
    assert "agency's due date: 2026-12-01T17:00:00+07:00" in last["note"]  # recorded, not trusted over the law
    with any_gw.db.unit_of_work() as session:
        assert audit.verify(session) == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status": "supplement_requested", "components": ["TP2"]}, "reason"),
        ({"status": "supplement_requested", "reason": "Bản sao chưa chứng thực"}, "components"),
        ({"status": "supplement_requested", "reason": "x", "components": ["TP9"]}, "components[0]"),
        ({"status": "refused"}, "reason"),
        ({"status": "suspended"}, "reason"),
        ({"status": "processing", "transfer_to": AGENCY3}, "transfer_to"),
        ({"status": "refused", "reason": "x", "transfer_to": AGENCY3}, "transfer_to"),
        ({"status": "processing", "result": {"files": []}}, "result"),
        ({"status": "teleported"}, "status"),
        ({"status": "processing", "at": "2026-11-25T12:00:00+07:00"}, "at"),  # in the future
        ({"status": "processing", "at": "yesterday"}, "at"),
    ],
)
async def test_bad_events_are_422_and_change_nothing(gw: Gateway, fields: dict[str, Any], field: str) -> None:
    dossier = await received(gw)
    before = await gw.get(dossier["code"])
    audits = audit_count(gw)
    body = {"at": RECEPTION.isoformat(), **fields}
    status = body.pop("status")
    response = await gw.event(dossier["code"], status, **body)
    assert response.status_code == 422, response.text
    assert any(d["field"] == field for d in response.json()["error"]["details"]), response.json()
    assert await gw.get(dossier["code"]) == before
    assert audit_count(gw) == audits


async def test_an_illegal_transition_is_409_and_nothing_changes(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    dossier = await gw.submitted()
    before = await gw.get(dossier["code"])
    outbox_before = len(messages(gw))
    audits = audit_count(gw)
    response = await gw.event(dossier["code"], "completed")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "illegal_transition"
    assert error["details"] == [{"from": "submitted", "to": "completed"}]
    assert "illegal transition" in error["message"]
    assert await gw.get(dossier["code"]) == before
    assert len(messages(gw)) == outbox_before and audit_count(gw) == audits
    assert any(r.name == "gateway.events" and "illegal transition" in r.getMessage() for r in caplog.records)


async def test_events_are_for_the_agency_handling_the_dossier(gw: Gateway) -> None:
    dossier = await gw.submitted()
    code = dossier["code"]
    # Another agency, on its own path: not its dossier.
    response = await gw.event(code, "received", token=AGENCY3_AUTH, agency=AGENCY3)
    assert response.status_code == 403
    # A token of one agency on another agency's path.
    assert (await gw.event(code, "received", token=AGENCY3_AUTH, agency=AGENCY)).status_code == 403
    assert (await gw.event(code, "received", token=PORTAL)).status_code == 403
    assert (await gw.event(code, "received", token=ADMIN)).status_code == 403
    assert (await gw.event(code, "received", token={})).status_code == 401
    assert (await gw.event(code, "received", token={"Authorization": "Bearer not-a-token"})).status_code == 401
    assert (await gw.event(f"{AGENCY}-261123-9999", "received")).status_code == 404
    assert (await gw.get(code))["status"] == "submitted"


async def test_a_repeated_event_is_accepted_without_a_second_effect(tmp_path: Path) -> None:
    with open_runtime("sqlite", tmp_path, portal={"webhook_url": "https://portal.example.vn/hooks"}) as runtime:
        async for gw in gateway_client(runtime):
            dossier = await gw.submitted()
            gw.clock.set(RECEPTION)
            first = await gw.event(dossier["code"], "received", at=RECEPTION.isoformat())
            webhooks = len(messages(gw, "portal.webhook"))
            audits = audit_count(gw)
            gw.clock.advance(minutes=30)
            again = await gw.event(dossier["code"], "received", at=RECEPTION.isoformat())
            assert again.status_code == 200
            assert again.json()["duplicate"] is True
            assert {k: v for k, v in again.json().items() if k != "duplicate"} == {
                k: v for k, v in first.json().items() if k != "duplicate"
            }
            view = await gw.get(dossier["code"])
            assert [h["status"] for h in view["history"] if "step" not in h] == ["submitted", "received"]
            assert len(messages(gw, "portal.webhook")) == webhooks == 2
            assert audit_count(gw) == audits


async def test_concurrent_repeats_of_an_event_apply_once(any_gw: Gateway) -> None:
    dossier = await any_gw.submitted()
    any_gw.clock.set(RECEPTION)
    responses = await asyncio.gather(*(any_gw.event(dossier["code"], "received") for _ in range(6)))
    assert {r.status_code for r in responses} == {200}
    assert sorted(r.json()["duplicate"] for r in responses) == [False] + [True] * 5
    view = await any_gw.get(dossier["code"])
    assert [h["status"] for h in view["history"] if "step" not in h] == ["submitted", "received"]


async def test_waiting_for_the_applicant_stops_the_clock(gw: Gateway) -> None:
    dossier = await received(gw)  # Wednesday 10:00, due 16 December 17:00
    code = dossier["code"]
    due = local(dossier["due_at"])
    gw.clock.set(datetime(2026, 11, 26, 10, 0, tzinfo=VIETNAM_TZ))  # Thursday
    response = await gw.event(code, "supplement_requested", reason="Bản vẽ thiếu chữ ký", components=["TP3"])
    assert response.status_code == 200
    assert local(response.json()["due_at"]) == due  # the wait is open: the due date moves when it ends
    view = await gw.get(code)
    assert view["history"][-1]["reason"] == "Bản vẽ thiếu chữ ký"

    gw.clock.set(datetime(2026, 11, 30, 10, 0, tzinfo=VIETNAM_TZ))  # Monday: two working days later
    supplement = {"components": [component("TP3", data=pdf("Ban ve da bo sung"))], "note": "Bổ sung bản vẽ"}
    response = await gw.client.post(f"/api/v1/dossiers/{code}/supplements", json=supplement, headers=PORTAL)
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "received"  # back to where it was
    waited = CALENDAR.working_time_between(
        datetime(2026, 11, 26, 10, 0, tzinfo=VIETNAM_TZ), datetime(2026, 11, 30, 10, 0, tzinfo=VIETNAM_TZ)
    )
    assert waited == timedelta(hours=16)
    assert local(view["due_at"]) == CALENDAR.add_working_time(due, waited)
    assert view["due_at"] == "2026-12-18T17:00:00+07:00"


async def test_fee_and_suspension_waits_end_by_agency_events(gw: Gateway) -> None:
    dossier = await received(gw)
    code = dossier["code"]
    due = local(dossier["due_at"])
    gw.clock.set(datetime(2026, 11, 25, 14, 0, tzinfo=VIETNAM_TZ))
    assert (await gw.event(code, "fee_requested", note="Nộp lệ phí")).status_code == 200
    gw.clock.set(datetime(2026, 11, 26, 14, 0, tzinfo=VIETNAM_TZ))  # one working day later
    response = await gw.event(code, "processing")
    assert response.status_code == 200
    assert local(response.json()["due_at"]) == CALENDAR.add_working_time(due, timedelta(hours=8))
    gw.clock.set(datetime(2026, 11, 27, 8, 0, tzinfo=VIETNAM_TZ))
    assert (await gw.event(code, "suspended", reason="Chờ ý kiến cơ quan khác")).status_code == 200
    gw.clock.set(datetime(2026, 11, 27, 9, 0, tzinfo=VIETNAM_TZ))
    response = await gw.event(code, "processing")
    assert local(response.json()["due_at"]) == CALENDAR.add_working_time(due, timedelta(hours=9))


async def test_a_transfer_hands_the_dossier_to_another_agency_and_keeps_the_lead(gw: Gateway) -> None:
    dossier = await received(gw, body=joint_submission())
    code = dossier["code"]
    gw.clock.set(datetime(2026, 11, 26, 9, 0, tzinfo=VIETNAM_TZ))
    response = await gw.event(code, "processing", transfer_to=AGENCY2, note="Chuyển Sở B thẩm định")
    assert response.status_code == 200, response.text
    assert response.json()["agency_code"] == AGENCY2
    view = await gw.get(code)
    assert view["agency_code"] == AGENCY2 and view["lead_agency_code"] == AGENCY
    deliveries = messages(gw, "agency.deliver")
    assert [(m.target, m.idempotency_key) for m in deliveries] == [
        (AGENCY, f"{code}:deliver:{AGENCY}"),
        (AGENCY2, f"{code}:deliver:{AGENCY2}"),
    ]
    assert deliveries[1].payload == {"dossier_code": code, "agency_code": AGENCY2}
    assert deliveries[1].ordering_key == code
    # The new agency and the lead can read it and send events; a third agency cannot.
    assert (await gw.get(code, AGENCY2_AUTH))["agency_code"] == AGENCY2
    assert (await gw.get(code, AGENCY_AUTH))["lead_agency_code"] == AGENCY
    assert (await gw.client.get(f"/api/v1/dossiers/{code}", headers=AGENCY3_AUTH)).status_code == 403
    gw.clock.advance(hours=2)
    assert (
        await gw.event(code, "processing", token=AGENCY2_AUTH, agency=AGENCY2, note="Đã thẩm định")
    ).status_code == 200
    gw.clock.advance(hours=1)
    assert (await gw.event(code, "completed", token=AGENCY_AUTH)).status_code == 200
    # The receiving agency's share of the time left is recorded (equal shares with the lead by default).
    with gw.db.unit_of_work() as session:
        entry = session.scalars(
            select(HistoryEntry).where(HistoryEntry.details["transfer_to"].as_string() == AGENCY2)
        ).one()
        share = local(entry.details["transfer_due_at"])
    remaining = CALENDAR.working_time_between(datetime(2026, 11, 26, 9, 0, tzinfo=VIETNAM_TZ), local(view["due_at"]))
    assert CALENDAR.working_time_between(datetime(2026, 11, 26, 9, 0, tzinfo=VIETNAM_TZ), share) == remaining / 2


@pytest.mark.parametrize(
    ("target", "message"),
    [(AGENCY, "already with agency"), (AGENCY3, "not competent"), ("000.00.99.H38", "not competent")],
)
async def test_transfers_only_to_another_competent_registered_agency(gw: Gateway, target: str, message: str) -> None:
    dossier = await received(gw, body=joint_submission())
    response = await gw.event(dossier["code"], "processing", transfer_to=target)
    assert response.status_code == 422
    assert message in response.json()["error"]["details"][0]["message"]


async def test_transfer_to_an_unregistered_agency_is_refused(gw: Gateway) -> None:
    dossier = await received(gw, body=joint_submission())
    response = await gw.client.delete(f"/api/v1/admin/agencies/{AGENCY2}", headers=ADMIN)
    assert response.status_code == 204
    response = await gw.event(dossier["code"], "processing", transfer_to=AGENCY2)
    assert response.status_code == 422
    assert "not registered" in response.json()["error"]["details"][0]["message"]


async def test_completion_stores_the_result_files_verified(signed_gw: Gateway, pki: Any) -> None:
    dossier = await received(signed_gw)
    code = dossier["code"]
    signed_gw.clock.set(datetime(2026, 12, 1, 15, 0, tzinfo=VIETNAM_TZ))
    licence = await asyncio.to_thread(sign_pdf, pdf("Giay phep xay dung so 123/GPXD"), pki.good)
    result = {
        "decision_number": "123/GPXD",
        "files": [{"filename": "giay-phep.pdf", "content_type": "application/pdf", "content_base64": b64(licence)}],
    }
    response = await signed_gw.event(code, "completed", result=result, note="Đã cấp phép")
    assert response.status_code == 200, response.text
    view = await signed_gw.get(code)
    assert view["status"] == "completed" and view["completed_at"] == "2026-12-01T15:00:00+07:00"
    assert view["overdue"] is False
    assert view["result"]["decision_number"] == "123/GPXD"
    [stored] = view["result"]["files"]
    assert stored["filename"] == "giay-phep.pdf" and stored["verification"]["verdict"] == "valid"
    assert [c["code"] for c in view["components"]] == ["TP1", "TP2", "TP3"]  # results are not components
    signed_gw.clock.advance(days=2)
    response = await signed_gw.event(code, "returned", note="Đã trả kết quả", fees_paid=True)  # paid at the counter
    assert response.status_code == 200, response.text
    assert (await signed_gw.get(code))["status"] == "returned"


async def test_bad_result_files_are_422(gw: Gateway) -> None:
    dossier = await received(gw)
    result = {"files": [{"filename": "kq.pdf", "content_base64": "***"}]}
    response = await gw.event(dossier["code"], "completed", result=result)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "result.files[0].content_base64"
    assert (await gw.get(dossier["code"]))["status"] == "received"


async def test_late_completion_is_overdue(gw: Gateway) -> None:
    dossier = await received(gw)
    gw.clock.set(datetime(2026, 12, 17, 9, 0, tzinfo=VIETNAM_TZ))  # the day after the due date
    assert (await gw.get(dossier["code"]))["overdue"] is True
    assert (await gw.event(dossier["code"], "completed")).status_code == 200
    gw.clock.advance(days=30)
    view = await gw.get(dossier["code"])
    assert view["overdue"] is True and view["completed_at"] == "2026-12-17T09:00:00+07:00"


async def test_events_out_of_order_are_recorded_in_order(gw: Gateway) -> None:
    dossier = await gw.submitted()  # 09:00
    response = await gw.event(dossier["code"], "received", at="2026-11-23T08:59:00+07:00")  # the agency's clock lags
    assert response.status_code == 200
    view = await gw.get(dossier["code"])
    assert view["history"][-1]["at"] == "2026-11-23T09:00:00+07:00"
    assert view["received_at"] == "2026-11-23T09:00:00+07:00"


async def test_a_timestamp_without_offset_is_read_in_vietnam(gw: Gateway) -> None:
    dossier = await gw.submitted()
    gw.clock.set(RECEPTION)
    response = await gw.event(dossier["code"], "received", at="2026-11-25T10:00:00")
    assert response.json()["received_at"] == "2026-11-25T10:00:00+07:00"


async def test_two_supplement_requests_flag_repeated_supplement(gw: Gateway) -> None:
    dossier = await received(gw)
    code = dossier["code"]
    for day in (26, 27):
        gw.clock.set(datetime(2026, 11, day, 9, 0, tzinfo=VIETNAM_TZ))
        response = await gw.event(code, "supplement_requested", reason="Thiếu", components=["TP2"])
        assert response.status_code == 200, response.text
        gw.clock.advance(hours=1)
        body = {"components": [component("TP2", data=pdf(f"TP2 bo sung {day}"))]}
        response = await gw.client.post(f"/api/v1/dossiers/{code}/supplements", json=body, headers=PORTAL)
        assert response.status_code == 200, response.text
    view = await gw.get(code)
    assert view["repeated_supplement"] is True
    assert view["components"][1]["revision"] == 3
    keys = [m.idempotency_key for m in messages(gw, "agency.supplement")]
    assert keys == [f"{code}:supplement:1", f"{code}:supplement:2"]


async def test_supplement_requested_at_reception_resumes_as_received(gw: Gateway) -> None:
    dossier = await gw.submitted()
    code = dossier["code"]
    assert (await gw.event(code, "supplement_requested", reason="Thiếu TP2", components=["TP2"])).status_code == 200
    gw.clock.set(RECEPTION)
    body = {"components": [component("TP2", data=pdf("TP2 moi"))]}
    view = (await gw.client.post(f"/api/v1/dossiers/{code}/supplements", json=body, headers=PORTAL)).json()
    assert view["status"] == "received"
    assert view["received_at"] == "2026-11-25T10:00:00+07:00"  # reception restarts the count
    assert view["due_at"] == "2026-12-16T17:00:00+07:00"
