"""The one-stop rules through the API, on real dates: deadlines on the official calendar, fees before results,
liên thông shares per agency, supplement requests shown with their components, refusals with a signed notice, and
suspension as a pause or a final stop."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select

from gateway import messages
from gateway.catalogue import import_procedures, parse_catalogue
from gateway.domain.calendar import VIETNAM_TZ
from gateway.domain.status import Status
from gateway.flows.postal.reactions import subscriptions
from gateway.registry import RegistrySettings, register, validate_registration
from gateway.runtime import Runtime
from gateway.sections import CalendarSection, office_calendar
from gateway.services.changes import find_dossier, record_change
from gateway.services.watch import watch_items
from gateway.store.database import Database
from gateway.store.models import OutboxMessage
from gateway.unit_of_work import UnitOfWork, in_unit
from gateway.views import agency_document
from tests.api_support import (
    ADMIN,
    AGENCY,
    AGENCY2,
    AGENCY2_AUTH,
    AGENCY3,
    AGENCY3_AUTH,
    JOINT,
    PORTAL,
    PROCEDURE,
    Gateway,
    b64,
    component,
    gateway_client,
    open_runtime,
    pdf,
    registration,
    signing_section,
    submission,
)
from tests.databases import BACKENDS
from tests.documents import sign_pdf
from tests.fakes import context_for, move, open_store, submit
from tests.test_flow_postal import order_messages, postal_settings, steps

ONE_DAY = "9.100001"  # one working day, a fee
TRIPLE = "9.100003"  # liên thông between three agencies, the lead's share twice the others'
STOPPING = "9.100004"  # suspension is a final stop
WAIVED = "9.100005"  # the result may go before the fees

EXTRA_PROCEDURES = f"""[
 {{"code": "{ONE_DAY}", "name": "Thủ tục một ngày", "agencies": ["{AGENCY}"], "processing_days": 1,
   "components": [{{"code": "TP1", "name": "Tờ khai"}}],
   "fees": [{{"code": "LP1", "name": "Lệ phí", "amount": 50000}}]}},
 {{"code": "{TRIPLE}", "name": "Thủ tục liên thông ba cơ quan", "agencies": ["{AGENCY}", "{AGENCY2}", "{AGENCY3}"],
   "processing_days": 10, "components": [{{"code": "TP1", "name": "Tờ khai"}}],
   "transfer_shares": {{"{AGENCY}": 2, "{AGENCY2}": 1, "{AGENCY3}": 1}}}},
 {{"code": "{STOPPING}", "name": "Thủ tục dừng xử lý", "agencies": ["{AGENCY}"], "processing_days": 5,
   "components": [{{"code": "TP1", "name": "Tờ khai"}}], "suspension": "stop"}},
 {{"code": "{WAIVED}", "name": "Thủ tục trả kết quả trước", "agencies": ["{AGENCY}"], "processing_days": 5,
   "components": [{{"code": "TP1", "name": "Tờ khai"}}], "fees": [{{"code": "LP1", "name": "Lệ phí", "amount": 50000}}],
   "fees_after_result": true}}
]"""


def vn(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=VIETNAM_TZ)


def _add_procedures(db: Database) -> None:
    specs = parse_catalogue(EXTRA_PROCEDURES, fmt="json")
    settings = RegistrySettings(allow_private_endpoints=True)
    handled = {
        AGENCY: [PROCEDURE, JOINT, ONE_DAY, TRIPLE, STOPPING, WAIVED],
        AGENCY2: [JOINT, TRIPLE],
        AGENCY3: ["2.001610", TRIPLE],
    }
    with db.unit_of_work() as session:
        import_procedures(session, specs)
        known = {PROCEDURE, JOINT, "2.001610", *(spec.code for spec in specs)}
        for code, procedures in handled.items():
            document = validate_registration(registration(code, procedures), settings=settings, known_procedures=known)
            register(session, document, replace=True)


@pytest.fixture(params=BACKENDS)
def runtime(request: pytest.FixtureRequest, tmp_path: Path, pki: Any) -> Iterator[Runtime]:
    """A gateway trusting the test PKI, telling the portal of changes, with the procedures above; on SQLite and,
    when configured, on PostgreSQL."""
    hook = {"webhook_url": "https://portal.example.vn/hooks"}
    with open_runtime(request.param, tmp_path, signing=signing_section(pki), portal=hook) as runtime:
        _add_procedures(runtime.db)
        yield runtime


@pytest.fixture
async def gw(runtime: Runtime) -> AsyncIterator[Gateway]:
    async for gateway in gateway_client(runtime):
        yield gateway


async def submitted(gw: Gateway, at: datetime, procedure: str, **overrides: Any) -> str:
    gw.clock.set(at)
    body = submission(procedure_code=procedure, components=[component("TP1")], fees=None, **overrides)
    return str((await gw.submitted(body))["code"])


async def event(gw: Gateway, code: str, status: str, at: datetime, **fields: Any) -> dict[str, Any]:
    gw.clock.set(at)
    response = await gw.event(code, status, **fields)
    assert response.status_code == 200, response.text
    return await gw.get(code)


def outbox(gw: Gateway, kind: str) -> list[OutboxMessage]:
    with gw.db.unit_of_work() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)))


def document_for(gw: Gateway, code: str, agency: str) -> dict[str, Any]:
    with gw.db.unit_of_work() as session:
        return agency_document(session, find_dossier(session, code), agency_code=agency)


# -- the official calendar in a dossier ---------------------------------------------------------------------------


async def test_received_on_31_december_2025_with_one_working_day_is_due_on_5_january(gw: Gateway) -> None:
    code = await submitted(gw, vn(2025, 12, 31, 9), ONE_DAY)
    view = await event(gw, code, "received", vn(2025, 12, 31, 10))
    assert view["received_at"] == "2025-12-31T10:00:00+07:00"
    assert view["due_at"] == "2026-01-05T17:00:00+07:00"
    assert view["calendar_version"] == office_calendar(CalendarSection()).version
    assert view["calendar_version"].startswith("vn-2026.1+holidays-")
    assert document_for(gw, code, AGENCY)["calendar_version"] == view["calendar_version"]
    assert view["clock"] == "running" and view["suspension"] == "pause"


# -- fees before results --------------------------------------------------------------------------------------------


async def test_an_unpaid_fee_blocks_the_return_and_the_agency_knows(gw: Gateway) -> None:
    gw.clock.set(vn(2026, 10, 5, 9))
    code = (await gw.submitted(submission()))["code"]  # 1.009794, fee LP1 of 150 000 VND
    for minutes, status in enumerate(("received", "processing", "completed"), start=1):
        await event(gw, code, status, vn(2026, 10, 5, 9, minutes))  # completed stays allowed
    document = document_for(gw, code, AGENCY)
    assert document["payment"] == {
        "status": "unpaid",
        "unpaid_amount": 150000,
        "reference": None,
        "fees_after_result": False,
    }

    gw.clock.set(vn(2026, 10, 6, 9))
    refused = await gw.event(code, "returned", note="Đã trả kết quả")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "fee_unpaid"
    assert "cannot be returned: the fee is unpaid (LP1" in error["message"]
    assert error["details"] == [{"fee": "LP1", "amount": 150000, "paid": False}]
    view = await gw.get(code)
    assert view["status"] == "completed" and view["payment_status"] == "unpaid"

    # Paid at the agency's counter, with the same event: the result is handed over.
    view = await event(gw, code, "returned", vn(2026, 10, 6, 9, 5), fees_paid=True)
    assert view["status"] == "returned" and view["fees"][0]["paid"] is True and view["payment_status"] == "paid"
    assert "(fees paid at the agency: 150000 VND)" in view["history"][-1]["note"]
    assert document_for(gw, code, AGENCY)["payment"]["status"] == "paid"


async def test_only_a_change_the_fees_could_hold_back_reads_them(gw: Gateway) -> None:
    """An agency's event reads the dossier's fees only for the change they could hold back (``returned``, where the
    procedure does not let the result go first): the other events of an unpaid dossier go through without them."""
    gw.clock.set(vn(2026, 10, 5, 9))
    code = (await gw.submitted(submission()))["code"]  # 1.009794, fee LP1 of 150 000 VND, unpaid
    reads: list[str] = []

    def noted(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if re.match(r"\s*SELECT\b.*\bFROM fees\b", statement, re.DOTALL):
            reads.append(statement)

    answers, read = {}, {}
    sqlalchemy_event.listen(gw.db.engine, "before_cursor_execute", noted)
    try:
        for minutes, status in enumerate(("received", "processing", "completed", "returned"), start=1):
            gw.clock.set(vn(2026, 10, 5, 9, minutes))
            reads.clear()
            answers[status] = (await gw.event(code, status)).status_code
            read[status] = len(reads)
    finally:
        sqlalchemy_event.remove(gw.db.engine, "before_cursor_execute", noted)
    assert answers == {"received": 200, "processing": 200, "completed": 200, "returned": 409}
    assert read == {"received": 0, "processing": 0, "completed": 0, "returned": 1}


async def test_a_procedure_may_let_the_result_go_before_the_fees(gw: Gateway) -> None:
    code = await submitted(gw, vn(2026, 10, 5, 9), WAIVED)
    for minutes, status in enumerate(("received", "processing", "completed", "returned"), start=1):
        view = await event(gw, code, status, vn(2026, 10, 5, 9, minutes))
    assert view["status"] == "returned" and view["fees_after_result"] is True and view["payment_status"] == "unpaid"


async def test_no_delivery_by_post_is_ordered_until_the_fees_are_paid(tmp_path: Path) -> None:
    db = open_store(tmp_path)
    ctx = context_for(db, subscriptions(postal_settings()))
    at = vn(2026, 10, 5, 9)
    code = await submit(ctx, at=at, originals_check_required=False)  # by post, fee LP1 unpaid
    for minutes, status in enumerate(("received", "processing", "completed"), start=1):
        await move(ctx, code, status, at + timedelta(minutes=minutes))
    assert order_messages(db) == []
    assert steps(db, code)[-1] == ("completed", "delivery_withheld")

    def pay(uow: UnitOfWork) -> None:  # what the settlement of the payment records
        dossier = find_dossier(uow.session, code)
        dossier.fees[0].paid = True
        details = {"step": "fee_paid", "payment": f"{code}-P1", "amount": 150000}
        record_change(
            uow, dossier, status=Status.COMPLETED, at=at + timedelta(hours=1), actor="payment:vnpay", note="Fees paid",
            details=details, calendar=ctx.calendar, now=at + timedelta(hours=1),
        )  # fmt: skip

    await in_unit(db, ctx.bus, pay)
    assert [m.payload["kind"] for m in order_messages(db)] == ["delivery"]
    assert steps(db, code).count(("completed", "delivery_withheld")) == 1
    db.dispose()


# -- liên thông ---------------------------------------------------------------------------------------------------


async def test_three_agencies_each_with_its_own_deadline(gw: Gateway) -> None:
    code = await submitted(gw, vn(2026, 10, 5, 6, 30), TRIPLE)
    view = await event(gw, code, "received", vn(2026, 10, 5, 7))
    assert view["due_at"] == "2026-10-19T17:00:00+07:00"  # 10 working days: 88 hours of sessions from Monday 07:00
    # The receiver, the agency still to come and the lead share the 88 hours 1:1:2: 22 hours for the second agency.
    await event(gw, code, "processing", vn(2026, 10, 5, 7), transfer_to=AGENCY2)
    assert document_for(gw, code, AGENCY2)["agency_due_at"] == "2026-10-07T15:00:00+07:00"
    # 69 hours left at 10:00 on Wednesday, shared 1:2 with the lead: 23 hours for the third agency.
    gw.clock.set(vn(2026, 10, 7, 10))
    moved = await gw.event(code, "processing", token=AGENCY2_AUTH, agency=AGENCY2, transfer_to=AGENCY3)
    assert moved.status_code == 200, moved.text
    assert document_for(gw, code, AGENCY3)["agency_due_at"] == "2026-10-12T09:00:00+07:00"
    gw.clock.set(vn(2026, 10, 13, 10))  # a day late, back to the lead
    back = await gw.event(code, "processing", token=AGENCY3_AUTH, agency=AGENCY3, transfer_to=AGENCY)
    assert back.status_code == 200, back.text
    in_flight = await gw.get(code)
    assert [(h["agency_code"], h["overdue"]) for h in in_flight["hops"]] == [
        (AGENCY, False),
        (AGENCY2, False),
        (AGENCY3, True),
        (AGENCY, False),
    ]
    view = await event(gw, code, "completed", vn(2026, 10, 14, 10))

    assert view["due_at"] == "2026-10-19T17:00:00+07:00" and view["overdue"] is False  # the lead's deadline unchanged
    assert view["hops"] == [
        {"agency_code": AGENCY, "lead": True, "started_at": "2026-10-05T06:30:00+07:00",
         "ended_at": "2026-10-05T07:00:00+07:00", "due_at": "2026-10-19T17:00:00+07:00", "overdue": False},
        {"agency_code": AGENCY2, "lead": False, "started_at": "2026-10-05T07:00:00+07:00",
         "ended_at": "2026-10-07T10:00:00+07:00", "due_at": "2026-10-07T15:00:00+07:00", "overdue": False},
        {"agency_code": AGENCY3, "lead": False, "started_at": "2026-10-07T10:00:00+07:00",
         "ended_at": "2026-10-13T10:00:00+07:00", "due_at": "2026-10-12T09:00:00+07:00", "overdue": True},
        {"agency_code": AGENCY, "lead": True, "started_at": "2026-10-13T10:00:00+07:00",
         "ended_at": "2026-10-14T10:00:00+07:00", "due_at": "2026-10-19T17:00:00+07:00", "overdue": False},
    ]  # fmt: skip
    # Each agency's document carries its own deadline, the lead's the legal one; each was sent one.
    assert document_for(gw, code, AGENCY)["agency_due_at"] == "2026-10-19T17:00:00+07:00"
    assert [m.target for m in outbox(gw, messages.AGENCY_DELIVER)] == [AGENCY, AGENCY2, AGENCY3]  # the lead has it
    transfers = [item for item in view["history"] if item.get("transfer_to")]
    assert [item["transfer_to"] for item in transfers] == [AGENCY2, AGENCY3, AGENCY]


async def test_a_wait_during_a_hop_moves_that_agencys_deadline(gw: Gateway) -> None:
    code = await submitted(gw, vn(2026, 10, 5, 6, 30), TRIPLE)
    await event(gw, code, "received", vn(2026, 10, 5, 7))
    await event(gw, code, "processing", vn(2026, 10, 5, 7), transfer_to=AGENCY2)
    gw.clock.set(vn(2026, 10, 6, 7))
    asked = await gw.event(
        code, "supplement_requested", token=AGENCY2_AUTH, agency=AGENCY2, reason="Thiếu bản vẽ", components=["TP1"]
    )
    assert asked.status_code == 200, asked.text
    view = await gw.get(code)
    assert view["clock"] == "paused"
    assert view["history"][-1]["components"] == ["TP1"] and view["history"][-1]["reason"] == "Thiếu bản vẽ"
    gw.clock.set(vn(2026, 10, 7, 7))  # a full working day later
    supplemented = await gw.client.post(
        f"/api/v1/dossiers/{code}/supplements", json={"components": [component("TP1")]}, headers=PORTAL
    )
    assert supplemented.status_code == 200, supplemented.text
    view = await gw.get(code)
    assert view["due_at"] == "2026-10-20T17:00:00+07:00"  # one working day waited
    hop = view["hops"][1]
    assert hop["agency_code"] == AGENCY2 and hop["due_at"] == "2026-10-08T15:00:00+07:00" and hop["ended_at"] is None


# -- refusals and suspension ------------------------------------------------------------------------------------------


async def test_a_refusal_carries_its_signed_notice_to_the_portal(gw: Gateway, pki: Any) -> None:
    code = await submitted(gw, vn(2026, 10, 5, 9), ONE_DAY)
    await event(gw, code, "received", vn(2026, 10, 5, 10))
    notice = await asyncio.to_thread(sign_pdf, pdf("Thong bao tu choi so 45/TB"), pki.good)
    result = {"notice_number": "45/TB", "files": [{"filename": "thong-bao.pdf", "content_base64": b64(notice)}]}
    view = await event(gw, code, "refused", vn(2026, 10, 6, 9), reason="Không thuộc thẩm quyền", result=result)
    assert view["status"] == "refused" and view["clock"] == "stopped"
    [stored] = view["result"]["files"]
    assert stored["filename"] == "thong-bao.pdf" and stored["verification"]["verdict"] == "valid"
    assert view["result"]["notice_number"] == "45/TB"

    hooks = [m.payload["event"] for m in outbox(gw, messages.PORTAL_WEBHOOK)]
    assert [hook["status"] for hook in hooks] == ["submitted", "received", "refused"]
    refusal = hooks[-1]
    assert refusal["reason"] == "Không thuộc thẩm quyền"
    [sent] = refusal["result"]["files"]
    assert base64.b64decode(sent["content_base64"]) == notice and sent["verification"]["verdict"] == "valid"
    assert "result" not in hooks[1]

    bad = await gw.event(code, "withdrawn", result={"files": []})
    assert bad.status_code == 422


async def test_suspension_as_a_final_stop(gw: Gateway) -> None:
    code = await submitted(gw, vn(2026, 10, 5, 9), STOPPING)
    await event(gw, code, "received", vn(2026, 10, 5, 10))
    view = await event(gw, code, "suspended", vn(2026, 10, 6, 10), reason="Có tranh chấp")
    assert (view["clock"], view["suspension"], view["overdue"]) == ("stopped", "stop", False)
    lookup = (await gw.client.get(f"/api/v1/lookup/{code}")).json()
    assert lookup["status_label"] == "Dừng xử lý"
    gw.clock.set(vn(2026, 10, 20, 10))  # long after the due date: a stopped dossier is not late
    assert (await gw.get(code))["overdue"] is False
    resumed = await gw.event(code, "processing")
    assert resumed.status_code == 409 and resumed.json()["error"]["code"] == "illegal_transition"
    assert "none, it is terminal" in resumed.json()["error"]["message"]


async def test_a_final_suspension_is_finished_for_the_watch_and_the_reports(gw: Gateway) -> None:
    stopped = await submitted(gw, vn(2026, 10, 5, 9), STOPPING)
    await event(gw, stopped, "received", vn(2026, 10, 5, 10))
    await event(gw, stopped, "suspended", vn(2026, 10, 14, 10), reason="Có tranh chấp")  # after its due date
    paused = await submitted(gw, vn(2026, 10, 5, 9), ONE_DAY)
    await event(gw, paused, "received", vn(2026, 10, 5, 10))
    await event(gw, paused, "suspended", vn(2026, 10, 14, 10), reason="Chờ ý kiến")  # after its due date too
    now = vn(2026, 11, 2, 10)
    gw.clock.set(now)
    with gw.db.unit_of_work() as session:
        items = watch_items(session, gw.runtime.calendar, now, near_due=timedelta(hours=8))
    assert [(item.dossier_code, item.condition.value) for item in items] == [(paused, "overdue")]

    async def row(period: str, procedure: str) -> dict[str, Any] | None:
        params = {"period": period, "procedure": procedure}
        document = (await gw.client.get("/api/v1/reports", params=params, headers=ADMIN)).json()
        return next(iter(document["rows"]), None)

    october = await row("2026-10", STOPPING)
    assert october is not None and (october["stopped"], october["in_progress"]["total"]) == (1, 0)
    assert (october["completed"]["total"], october["refused"]) == (0, 0)
    assert await row("2026-11", STOPPING) is None  # finished: not carried over
    october = await row("2026-10", ONE_DAY)
    assert october is not None and (october["stopped"], october["in_progress"]["overdue"]) == (0, 1)
    november = await row("2026-11", ONE_DAY)
    assert november is not None and november["carried_over"] == 1


async def test_suspension_as_a_pause_resumes(gw: Gateway) -> None:
    code = await submitted(gw, vn(2026, 10, 5, 9), ONE_DAY)
    await event(gw, code, "received", vn(2026, 10, 5, 10))
    view = await event(gw, code, "suspended", vn(2026, 10, 5, 11), reason="Chờ ý kiến")
    assert (view["clock"], view["suspension"]) == ("paused", "pause")
    view = await event(gw, code, "processing", vn(2026, 10, 6, 11))
    assert view["clock"] == "running" and view["due_at"] == "2026-10-07T17:00:00+07:00"  # one working day later
