"""Citizens' channels end to end: a satisfaction rating synced to the national portal simulator and counted in the
report; a question routed to the REST agency simulator, answered by the agency and relayed to a portal webhook
receiver; a question an agency fetches itself, unanswered past its due time, in the deadline watch. Refusals: 409s,
403s, 422s. Every server binds 127.0.0.1; every wait has a limit.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.bootstrap import Composition
from gateway.domain.watch import Condition
from gateway.flows.alerts.jobs import alert_key
from gateway.outbox import RetryPolicy
from gateway.registry import RegistrySettings, register, validate_registration
from gateway.runtime import Runtime
from gateway.services.watch import watch_items
from gateway.simulators.agency import AgencySimulator
from gateway.simulators.agency import create_app as create_agency
from gateway.simulators.national_portal import NationalPortalSimulator
from gateway.simulators.national_portal import create_app as create_national_portal
from gateway.store.models import AuditEntry, OutboxMessage
from gateway.workers import OutboxWorker
from tests.api_support import (
    ADMIN,
    AGENCY,
    AGENCY2_AUTH,
    AGENCY3,
    AGENCY3_AUTH,
    AGENCY_AUTH,
    JOINT,
    PERSONAL_STRINGS,
    PORTAL,
    PROCEDURE,
    Gateway,
    gateway_client,
    joint_submission,
    open_runtime,
    registration,
)
from tests.servers import ServerThread

pytest_plugins = ("tests.api_fixtures",)

QUESTION = "Xây nhà 3 tầng trên đất ở tại phường Hàng Bài có cần giấy phép xây dựng không?"
CONTACT = {"full_name": PERSONAL_STRINGS[0], "email": "nhung@example.vn", "phone": PERSONAL_STRINGS[2]}


class PortalReceiver:
    """The provincial portal's webhook: keeps every body and its Idempotency-Key."""

    def __init__(self) -> None:
        self.received: list[tuple[str | None, dict[str, Any]]] = []

        async def hook(request: Request) -> JSONResponse:
            self.received.append((request.headers.get("Idempotency-Key"), json.loads(await request.body())))
            return JSONResponse({"ok": True})

        self.app = Starlette(routes=[Route("/hooks/dvc", hook, methods=["POST"])])


@dataclass
class Upstreams:
    agency_url: str
    agency: AgencySimulator
    national_url: str
    national: NationalPortalSimulator
    portal_url: str
    portal: PortalReceiver


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    agency, national, portal = create_agency(), create_national_portal(), PortalReceiver()
    with ServerThread(agency) as a, ServerThread(national) as n, ServerThread(portal.app) as p:
        yield Upstreams(a.base_url, agency.state.simulator, n.base_url, national.state.simulator, p.base_url, portal)


@pytest.fixture
async def flow(tmp_path: Path, upstreams: Upstreams) -> AsyncIterator[Gateway]:
    """A gateway whose agency is the REST simulator, with the national portal simulator and a portal webhook."""
    upstreams.agency.reset()
    upstreams.national.reset()
    upstreams.portal.received.clear()
    national = {
        "base_url": upstreams.national_url,
        "username": "lgsp",
        "password": "lgsp-secret",
        "dstcode": "H38",
        "madonvi": "000.00.00.H38",
    }
    portal = {"webhook_url": f"{upstreams.portal_url}/hooks/dvc"}
    with open_runtime("sqlite", tmp_path, national_portal=national, portal=portal) as runtime:
        _register(runtime, {**registration(AGENCY, [PROCEDURE, JOINT]), "endpoint": upstreams.agency_url})
        async for gateway in gateway_client(runtime):
            yield gateway


def _register(runtime: Runtime, document: dict[str, Any]) -> None:
    settings = RegistrySettings(allow_private_endpoints=True)
    with runtime.db.unit_of_work() as session:
        known = {PROCEDURE, JOINT, "2.001610"}
        register(session, validate_registration(document, settings=settings, known_procedures=known), replace=True)


async def drain(runtime: Runtime, done: Callable[[], bool]) -> None:
    """Run the outbox through the real dispatcher until ``done()``."""
    dispatcher = Composition(runtime)
    worker = OutboxWorker(runtime.db, dispatcher, policy=RetryPolicy(max_attempts=3, initial_seconds=0.01))
    try:
        with anyio.fail_after(20):
            while not done():
                await worker.run_once()
                await asyncio.sleep(0.01)
    finally:
        await dispatcher.aclose()


def audit_actions(gw: Gateway) -> list[str]:
    with gw.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


async def completed(gw: Gateway) -> str:
    """A dossier of the one-component procedure without fees, completed."""
    code = (await gw.submitted(joint_submission()))["code"]
    for status in ("received", "processing", "completed"):
        gw.clock.advance(hours=1)
        assert (await gw.event(code, status)).status_code == 200
    return code


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"]["code"])


# ----------------------------------------------------------------------------------------------------------------------
# Ratings


async def test_rating_is_stored_synced_to_the_national_portal_and_counted(flow: Gateway, upstreams: Upstreams) -> None:
    gw = flow
    code = await completed(gw)
    path = f"/api/v1/dossiers/{code}/ratings"
    body = {"scores": {"access": 5, "staff": 4, "timeliness": 3}, "comment": "Cán bộ hướng dẫn tận tình"}
    assert error_code(await gw.client.post(path, json=body, headers=PORTAL), 409) == "not_returned"
    gw.clock.advance(hours=1)
    assert (await gw.event(code, "returned")).status_code == 200

    assert error_code(await gw.client.post(path, json=body, headers=AGENCY_AUTH), 403) == "forbidden"
    unknown = await gw.client.post(path, json={"scores": {"speed": 5}}, headers=PORTAL)
    assert error_code(unknown, 422) == "validation_failed"
    assert unknown.json()["error"]["details"][0]["field"] == "scores.speed"
    for scores in ({"access": 6}, {"access": 0}, {"access": True}, {}):
        assert error_code(await gw.client.post(path, json={"scores": scores}, headers=PORTAL), 422)
    missing = await gw.client.post("/api/v1/dossiers/000.00.23.H38-261123-9999/ratings", json=body, headers=PORTAL)
    assert missing.status_code == 404

    response = await gw.client.post(path, json=body, headers=PORTAL)
    assert response.status_code == 201, response.text
    rating = response.json()
    assert rating["average"] == 4.0 and rating["criteria"]["staff"] == "Thái độ, kỹ năng của công chức giải quyết"
    assert error_code(await gw.client.post(path, json=body, headers=PORTAL), 409) == "already_rated"
    assert (await gw.get(code))["rating"]["scores"] == body["scores"]
    assert "dossier.rated" in audit_actions(gw)

    await drain(gw.runtime, lambda: code in upstreams.national.ratings)
    sent = upstreams.national.ratings[code]
    assert sent["MaTTHC"] == JOINT and sent["MaCoQuan"] == AGENCY and sent["DiemTrungBinh"] == 4.0
    assert {"MaTieuChi": "staff", "Diem": 4} in sent["DanhSachTieuChi"]
    assert sent["NoiDungGopY"] == body["comment"]
    assert upstreams.national.dossier(code)["TrangThaiHoSo"] == 10  # synced before its rating
    view = await gw.get(code)
    assert view["rating"]["synced_at"] is not None

    report = await gw.client.get("/api/v1/reports", params={"period": "2026-11"}, headers=ADMIN)
    assert report.status_code == 200, report.text
    [row] = report.json()["rows"]
    assert (row["agency_code"], row["procedure_code"], row["ratings"], row["average_rating"]) == (
        AGENCY,
        JOINT,
        1,
        4.0,
    )
    assert report.json()["total"]["average_rating"] == 4.0
    csv = await gw.client.get("/api/v1/reports", params={"period": "2026-11", "format": "csv"}, headers=ADMIN)
    assert "Mức độ hài lòng bình quân" in csv.text
    december = await gw.client.get("/api/v1/reports", params={"period": "2026-12"}, headers=ADMIN)
    assert december.json()["total"]["ratings"] == 0


# ----------------------------------------------------------------------------------------------------------------------
# Questions


async def test_question_reaches_the_rest_agency_and_its_answer_the_portal_webhook(
    flow: Gateway, upstreams: Upstreams, caplog: pytest.LogCaptureFixture
) -> None:
    gw = flow
    caplog.set_level(logging.DEBUG)
    body = {"procedure_code": PROCEDURE, "question": QUESTION, "reply_channel": "email", "contact": CONTACT}
    response = await gw.client.post("/api/v1/questions", json=body, headers=PORTAL)
    assert response.status_code == 201, response.text
    asked = response.json()
    qid = asked["id"]
    assert (asked["agency_code"], asked["route"], asked["overdue"]) == (AGENCY, "rest", False)
    assert asked["answer_by"] == "2026-12-01T17:00:00+07:00"  # 5 working days (24 November is a holiday)
    assert response.headers["Location"] == f"/api/v1/questions/{qid}"

    await drain(gw.runtime, lambda: str(qid) in upstreams.agency.questions)
    received = upstreams.agency.questions[str(qid)]
    assert received["question"] == QUESTION and received["answer_by"] == asked["answer_by"]
    assert not any(secret in json.dumps(received, ensure_ascii=False) for secret in PERSONAL_STRINGS)

    listed = await gw.client.get(f"/api/v1/agencies/{AGENCY}/questions", headers=AGENCY_AUTH)
    assert [q["id"] for q in listed.json()["questions"]] == [qid]
    assert "contact" not in listed.json()["questions"][0]
    other = await gw.client.get(f"/api/v1/agencies/{AGENCY}/questions", headers=AGENCY2_AUTH)
    assert error_code(other, 403) == "forbidden"

    answer = {"answer": "Có, cần giấy phép xây dựng theo Luật Xây dựng.", "answered_by": "Phòng Quản lý xây dựng"}
    path = f"/api/v1/agencies/{AGENCY}/questions/{qid}/answer"
    assert error_code(await gw.client.post(path, json=answer, headers=AGENCY2_AUTH), 403) == "forbidden"
    stolen = f"/api/v1/agencies/{AGENCY3}/questions/{qid}/answer"  # another agency, on its own path
    assert error_code(await gw.client.post(stolen, json=answer, headers=AGENCY3_AUTH), 403) == "forbidden"
    assert error_code(await gw.client.post(path, json={"answer": ""}, headers=AGENCY_AUTH), 422)
    assert (await gw.client.post(path, json=answer, headers=PORTAL)).status_code == 403
    gw.clock.advance(days=1)
    answered = await gw.client.post(path, json=answer, headers=AGENCY_AUTH)
    assert answered.status_code == 200, answered.text
    assert error_code(await gw.client.post(path, json=answer, headers=AGENCY_AUTH), 409) == "already_answered"
    assert (await gw.client.get(f"/api/v1/agencies/{AGENCY}/questions", headers=AGENCY_AUTH)).json()["questions"] == []

    await drain(gw.runtime, lambda: bool(upstreams.portal.received))
    [(key, notice)] = upstreams.portal.received
    assert key == f"question:{qid}:answer" and notice["type"] == "question_answered"
    assert notice["question"]["answer"] == answer["answer"] and notice["question"]["reply_channel"] == "email"
    assert not any(secret in json.dumps(notice, ensure_ascii=False) for secret in PERSONAL_STRINGS)

    view = (await gw.client.get(f"/api/v1/questions/{qid}", headers=PORTAL)).json()
    assert view["answer"] == answer["answer"] and view["contact"] == CONTACT and view["overdue"] is False
    assert (await gw.client.get("/api/v1/questions/999", headers=PORTAL)).status_code == 404
    assert (await gw.client.get(f"/api/v1/questions/{qid}", headers=AGENCY_AUTH)).status_code == 403
    assert ["question.asked", "question.answered", "question.read"] == [
        a for a in audit_actions(gw) if a.startswith("question.")
    ]
    logged = caplog.text
    assert QUESTION not in logged and not any(secret in logged for secret in PERSONAL_STRINGS)


async def test_questions_that_cannot_be_routed_are_422(gw: Gateway) -> None:
    cases = [
        ({"question": QUESTION}, ""),
        ({"procedure_code": "9.999999", "question": QUESTION}, "procedure_code"),
        ({"procedure_code": PROCEDURE, "agency_code": AGENCY3, "question": QUESTION}, "agency_code"),
        ({"agency_code": "000.00.99.H38", "question": QUESTION}, "agency_code"),
        ({"agency_code": AGENCY, "question": QUESTION, "reply_channel": "sms"}, ""),
        ({"agency_code": AGENCY, "question": QUESTION, "reply_channel": "fax"}, "reply_channel"),
        ({"agency_code": AGENCY, "question": ""}, "question"),
    ]
    for body, field in cases:
        response = await gw.client.post("/api/v1/questions", json=body, headers=PORTAL)
        assert error_code(response, 422) == "validation_failed"
        assert response.json()["error"]["details"][0]["field"] == field, body
    with gw.db.unit_of_work() as session:
        assert session.scalars(select(OutboxMessage)).all() == []


async def test_an_unanswered_question_past_its_due_time_is_in_the_deadline_watch(tmp_path: Path) -> None:
    with open_runtime("sqlite", tmp_path, questions={"answer_within_days": 2}) as runtime:
        soap = {**registration(AGENCY3, ["2.001610"]), "protocol": "soap", "endpoint": None}
        _register(runtime, {**soap, "wsdl": "http://127.0.0.1:9/soap?wsdl"})
        async for gw in gateway_client(runtime):
            body = {"agency_code": AGENCY3, "question": QUESTION}
            asked = (await gw.client.post("/api/v1/questions", json=body, headers=PORTAL)).json()
            assert asked["route"] == "poll" and asked["answer_by"] == "2026-11-26T17:00:00+07:00"
            with gw.db.unit_of_work() as session:
                assert session.scalars(select(OutboxMessage)).all() == []  # the agency fetches it
            listed = await gw.client.get(f"/api/v1/agencies/{AGENCY3}/questions", headers=AGENCY3_AUTH)
            assert [q["id"] for q in listed.json()["questions"]] == [asked["id"]]

            near_due = timedelta(hours=8)
            read = functools.partial(watch_items, calendar=runtime.calendar, near_due=near_due)
            assert await runtime.db.run(functools.partial(read, now=gw.clock.now)) == []
            gw.clock.advance(days=3, hours=7)  # Thursday 16:00: not late yet
            assert await runtime.db.run(functools.partial(read, now=gw.clock.now)) == []
            gw.clock.advance(hours=2)  # Thursday 18:00
            [item] = await runtime.db.run(functools.partial(read, now=gw.clock.now))
            assert (item.condition, item.question_id, item.agency_code) == (
                Condition.QUESTION_UNANSWERED,
                asked["id"],
                AGENCY3,
            )
            assert alert_key(item) == f"question:{asked['id']}:alert:question_unanswered"
            assert item.alert_body(gw.clock.now)["question_id"] == asked["id"]
            view = (await gw.client.get(f"/api/v1/questions/{asked['id']}", headers=PORTAL)).json()
            assert view["overdue"] is True
            metrics = (await gw.client.get("/metrics", headers=ADMIN)).text
            assert f'dvc_gateway_deadline_watch_dossiers{{agency="{AGENCY3}",condition="question_unanswered"}} 1.0' in (
                metrics
            )

            path = f"/api/v1/agencies/{AGENCY3}/questions/{asked['id']}/answer"
            assert (await gw.client.post(path, json={"answer": "Đã trả lời."}, headers=AGENCY3_AUTH)).status_code == 200
            assert await runtime.db.run(functools.partial(read, now=gw.clock.now)) == []
