"""Reading dossiers, supplements, withdrawal and the public lookup."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from gateway.domain.calendar import VIETNAM_TZ
from gateway.store.models import Component, OutboxMessage
from tests.api_support import (
    ADMIN,
    AGENCY,
    AGENCY2_AUTH,
    AGENCY3_AUTH,
    AGENCY_AUTH,
    APPLICANT,
    PERSONAL_STRINGS,
    PORTAL,
    Gateway,
    component,
    pdf,
    submission,
)

pytest_plugins = ("tests.api_fixtures",)  # the gw, any_gw and signed_gw fixtures

RECEPTION = datetime(2026, 11, 25, 10, 0, tzinfo=VIETNAM_TZ)


def outbox_rows(gw: Gateway, kind: str) -> list[OutboxMessage]:
    with gw.db.unit_of_work() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)))


async def supplement_requested(gw: Gateway) -> str:
    dossier = await gw.submitted()
    gw.clock.set(RECEPTION)
    assert (await gw.event(dossier["code"], "received")).status_code == 200
    gw.clock.advance(hours=1)
    response = await gw.event(dossier["code"], "supplement_requested", reason="Bản sao mờ", components=["TP2"])
    assert response.status_code == 200
    gw.clock.advance(hours=2)
    return dossier["code"]


# ---------------------------------------------------------------------------------------------------------------------
# Reading


async def test_the_portal_and_the_owning_agency_read_a_dossier(gw: Gateway) -> None:
    code = (await gw.submitted())["code"]
    for headers in (PORTAL, AGENCY_AUTH):
        assert (await gw.client.get(f"/api/v1/dossiers/{code}", headers=headers)).status_code == 200
    for headers, status in (
        (AGENCY2_AUTH, 403),
        (AGENCY3_AUTH, 403),
        (ADMIN, 403),
        ({}, 401),
        ({"Authorization": "Bearer wrong-token-0123456789"}, 401),
        ({"Authorization": "Basic cG9ydGFsOnBvcnRhbA=="}, 401),
    ):
        response = await gw.client.get(f"/api/v1/dossiers/{code}", headers=headers)
        assert response.status_code == status, headers
        assert set(response.json()["error"]) == {"code", "message", "details"}
        if status == 401:
            assert response.headers["www-authenticate"] == "Bearer"
    response = await gw.client.get(f"/api/v1/dossiers/{AGENCY}-261123-0999", headers=PORTAL)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


async def test_the_intake_answer_is_the_dossier_as_read(any_gw: Gateway) -> None:
    """The answer to a submission is what a read of the dossier answers at the same time, byte for byte."""
    for number, body in enumerate((submission(), submission(fees=None, return_method=None, delivery_address=None))):
        response = await any_gw.submit(body, key=f"same-as-read-{number}")
        assert response.status_code == 201, response.text
        read = await any_gw.client.get(f"/api/v1/dossiers/{response.json()['code']}", headers=PORTAL)
        assert read.content == response.content


# ---------------------------------------------------------------------------------------------------------------------
# Supplements


async def test_a_supplement_adds_a_revision_and_resumes_the_dossier(any_gw: Gateway) -> None:
    gw = any_gw
    code = await supplement_requested(gw)
    new = pdf("Ban sao ro net")
    body = {"components": [component("TP2", data=new, filename="ban-sao-moi.pdf")], "note": "Đã chụp lại"}
    response = await gw.client.post(f"/api/v1/dossiers/{code}/supplements", json=body, headers=PORTAL)
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "received"
    tp2 = next(c for c in view["components"] if c["code"] == "TP2")
    assert tp2["revision"] == 2 and tp2["filename"] == "ban-sao-moi.pdf" and tp2["size"] == len(new)
    last = view["history"][-1]
    assert last["status"] == "received" and last["actor"] == "portal" and "Supplement received: TP2" in last["note"]
    with gw.db.unit_of_work() as session:
        revisions = session.scalars(select(Component).where(Component.code == "TP2").order_by(Component.id)).all()
        assert [(c.revision, c.current) for c in revisions] == [(1, False), (2, True)]
    [message] = outbox_rows(gw, "agency.supplement")
    assert message.target == AGENCY and message.idempotency_key == f"{code}:supplement:1"
    assert message.payload == {"dossier_code": code, "agency_code": AGENCY, "components": ["TP2"]}


async def test_supplements_only_after_a_request(gw: Gateway) -> None:
    code = (await gw.submitted())["code"]
    body = {"components": [component("TP2")]}
    response = await gw.client.post(f"/api/v1/dossiers/{code}/supplements", json=body, headers=PORTAL)
    assert response.status_code == 409
    assert "supplement_requested" in response.json()["error"]["message"]
    assert outbox_rows(gw, "agency.supplement") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"components": []}, "components"),
        ({"components": [component("TP9")]}, "components[0].code"),
        ({"components": [component("TP2"), component("TP2")]}, "components[1].code"),
        ({"components": [component("TP2", content_base64="??")]}, "components[0].content_base64"),
        ({"components": [component("TP2")], "extra": 1}, "extra"),
    ],
)
async def test_bad_supplements_are_422(gw: Gateway, body: dict[str, Any], field: str) -> None:
    code = await supplement_requested(gw)
    response = await gw.client.post(f"/api/v1/dossiers/{code}/supplements", json=body, headers=PORTAL)
    assert response.status_code == 422, response.text
    assert any(d["field"] == field for d in response.json()["error"]["details"]), response.json()
    assert (await gw.get(code))["status"] == "supplement_requested"


async def test_a_repeated_supplement_key_is_applied_once(gw: Gateway) -> None:
    code = await supplement_requested(gw)
    body = {"components": [component("TP2", data=pdf("TP2 lan 2"))]}
    headers = {**PORTAL, "Idempotency-Key": "supp-1"}
    first = await gw.client.post(f"/api/v1/dossiers/{code}/supplements", json=body, headers=headers)
    again = await gw.client.post(f"/api/v1/dossiers/{code}/supplements", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len(outbox_rows(gw, "agency.supplement")) == 1


async def test_supplements_are_for_the_portal(gw: Gateway) -> None:
    code = await supplement_requested(gw)
    body = {"components": [component("TP2")]}
    response = await gw.client.post(f"/api/v1/dossiers/{code}/supplements", json=body, headers=AGENCY_AUTH)
    assert response.status_code == 403


# ---------------------------------------------------------------------------------------------------------------------
# Withdrawal


async def test_the_applicant_withdraws(any_gw: Gateway) -> None:
    gw = any_gw
    code = (await gw.submitted())["code"]
    gw.clock.advance(hours=1)
    response = await gw.client.post(
        f"/api/v1/dossiers/{code}/withdraw", json={"reason": "Nộp nhầm thủ tục"}, headers=PORTAL
    )
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "withdrawn" and view["national_status_code"] == 7
    assert view["history"][-1] == {
        "status": "withdrawn",
        "at": "2026-11-23T10:00:00+07:00",
        "actor": "portal",
        "note": "Nộp nhầm thủ tục",
        "reason": "Nộp nhầm thủ tục",
    }
    [message] = outbox_rows(gw, "agency.withdraw")
    assert message.target == AGENCY and message.idempotency_key == f"{code}:withdraw"
    assert message.payload == {"dossier_code": code, "agency_code": AGENCY, "reason": "Nộp nhầm thủ tục"}
    again = await gw.client.post(f"/api/v1/dossiers/{code}/withdraw", json={"reason": "lần nữa"}, headers=PORTAL)
    assert again.status_code == 409 and again.json()["error"]["code"] == "illegal_transition"
    # The agency can no longer move it either.
    assert (await gw.event(code, "received")).status_code == 409


async def test_withdrawal_needs_a_reason(gw: Gateway) -> None:
    code = (await gw.submitted())["code"]
    for body in ({}, {"reason": ""}, {"reason": 5}):
        response = await gw.client.post(f"/api/v1/dossiers/{code}/withdraw", json=body, headers=PORTAL)
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["field"] == "reason"
    missing = await gw.client.post(
        f"/api/v1/dossiers/{AGENCY}-261123-0777/withdraw", json={"reason": "x"}, headers=PORTAL
    )
    assert missing.status_code == 404


async def test_completed_dossiers_cannot_be_withdrawn(gw: Gateway) -> None:
    code = (await gw.submitted())["code"]
    gw.clock.set(RECEPTION)
    for status in ("received", "completed"):
        assert (await gw.event(code, status)).status_code == 200
        gw.clock.advance(minutes=10)
    response = await gw.client.post(f"/api/v1/dossiers/{code}/withdraw", json={"reason": "muộn"}, headers=PORTAL)
    assert response.status_code == 409
    assert outbox_rows(gw, "agency.withdraw") == []


# ---------------------------------------------------------------------------------------------------------------------
# Public lookup


async def test_the_public_lookup_shows_no_personal_data(gw: Gateway) -> None:
    signed = await gw.submitted()
    code = signed["code"]
    gw.clock.set(RECEPTION)
    await gw.event(code, "received")
    response = await gw.client.get(f"/api/v1/lookup/{code}")  # no token
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "code": code,
        "status": "received",
        "status_label": "Đã tiếp nhận",
        "national_status_code": 2,
        "received_at": "2026-11-25T10:00:00+07:00",
        "due_at": "2026-12-16T17:00:00+07:00",
        "overdue": False,
    }
    text = response.text
    for personal in [*PERSONAL_STRINGS, APPLICANT["email"], "tp1.pdf", "applicant", "components", "history"]:
        assert personal not in text
    # Nor in its escaped JSON form.
    import json

    for personal in PERSONAL_STRINGS:
        assert json.dumps(personal)[1:-1] not in text


async def test_lookup_of_unknown_or_malformed_codes_is_404(gw: Gateway) -> None:
    for code in (f"{AGENCY}-261123-0001", "not-a-code", "%27%20OR%201=1", f"{AGENCY}-261399-0001"):
        response = await gw.client.get(f"/api/v1/lookup/{code}")
        assert response.status_code == 404, code
        assert response.json()["error"]["code"] == "not_found"


async def test_lookup_shows_overdue(gw: Gateway) -> None:
    code = (await gw.submitted())["code"]
    gw.clock.set(RECEPTION)
    await gw.event(code, "received")
    gw.clock.set(datetime(2026, 12, 17, 8, 0, tzinfo=VIETNAM_TZ))
    body = (await gw.client.get(f"/api/v1/lookup/{code}")).json()
    assert body["overdue"] is True and body["status_label"] == "Đã tiếp nhận"


async def test_the_signed_submission_view_carries_every_contract_field(gw: Gateway) -> None:
    view = await gw.submitted(submission())
    required = {
        "code",
        "status",
        "national_status_code",
        "procedure_code",
        "agency_code",
        "lead_agency_code",
        "received_at",
        "acknowledge_by",
        "due_at",
        "overdue",
        "repeated_supplement",
        "originals_check_required",
        "components",
        "fees",
        "history",
    }
    assert required <= set(view)
    assert {"code", "name", "filename", "content_type", "size", "sha256", "revision", "verification"} <= set(
        view["components"][0]
    )
    assert set(view["fees"][0]) == {"code", "name", "amount", "paid"}
    assert {"status", "at", "actor", "note"} <= set(view["history"][0])
