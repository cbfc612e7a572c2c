"""Administration: the agency registry over HTTP and the outbox's dead letters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gateway import audit, outbox
from gateway.catalogue import get_procedure, import_procedures
from gateway.store.models import AuditEntry, utcnow
from tests.api_support import (
    ADMIN,
    AGENCY,
    AGENCY2,
    AGENCY3,
    AGENCY_AUTH,
    PORTAL,
    PROCEDURE,
    Gateway,
    registration,
)

pytest_plugins = ("tests.api_fixtures",)  # the gw, any_gw and signed_gw fixtures

NEW = "000.00.30.H38"


def doc(**changes: Any) -> dict[str, Any]:
    body = registration(NEW, [PROCEDURE])
    body.update(changes)
    return body


def actions(gw: Gateway) -> list[str]:
    with gw.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def make_competent(gw: Gateway, *agencies: str) -> None:
    """The catalogue names ``agencies`` among the procedure's competent ones (registration requires it)."""
    with gw.db.unit_of_work() as session:
        spec = get_procedure(session, PROCEDURE)
        assert spec is not None
        import_procedures(session, [spec.model_copy(update={"agencies": [*spec.agencies, *agencies]})])


async def test_agencies_crud(gw: Gateway) -> None:
    make_competent(gw, NEW, "000.00.31.H38")
    listed = await gw.client.get("/api/v1/admin/agencies", headers=ADMIN)
    assert listed.status_code == 200
    assert [a["code"] for a in listed.json()["agencies"]] == sorted([AGENCY, AGENCY2, AGENCY3])

    created = await gw.client.post("/api/v1/admin/agencies", json=doc(), headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["code"] == NEW and created.json()["auth"] == {"type": "none"}

    duplicate = await gw.client.post("/api/v1/admin/agencies", json=doc(name="Tên khác"), headers=ADMIN)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["details"][0]["field"] == "code"

    replaced = await gw.client.post("/api/v1/admin/agencies?replace=true", json=doc(name="Tên mới"), headers=ADMIN)
    assert replaced.status_code == 200 and replaced.json()["name"] == "Tên mới"

    shown = await gw.client.get(f"/api/v1/admin/agencies/{NEW}", headers=ADMIN)
    assert shown.status_code == 200 and shown.json()["name"] == "Tên mới"

    put = await gw.client.put(f"/api/v1/admin/agencies/{NEW}", json=doc(name="Tên PUT"), headers=ADMIN)
    assert put.status_code == 200 and put.json()["name"] == "Tên PUT"
    other = "000.00.31.H38"
    put_new = await gw.client.put(
        f"/api/v1/admin/agencies/{other}", json=registration(other, [PROCEDURE]), headers=ADMIN
    )
    assert put_new.status_code == 201

    removed = await gw.client.delete(f"/api/v1/admin/agencies/{NEW}", headers=ADMIN)
    assert removed.status_code == 204 and removed.content == b""
    assert (await gw.client.get(f"/api/v1/admin/agencies/{NEW}", headers=ADMIN)).status_code == 404
    assert (await gw.client.delete(f"/api/v1/admin/agencies/{NEW}", headers=ADMIN)).status_code == 404

    assert actions(gw) == [
        "agency.registered",
        "agency.replaced",
        "agency.replaced",
        "agency.registered",
        "agency.removed",
    ]
    with gw.db.unit_of_work() as session:
        assert audit.verify(session) == []


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"endpoint": "ftp://motcua.example.vn/api"}, "endpoint", "scheme"),
        ({"endpoint": "http://169.254.169.254/latest"}, "endpoint", "link-local"),
        ({"procedures": ["9.999999"]}, "procedures", "not in the procedure catalogue"),
        ({"code": "not an agency code"}, "code", "agency code"),
        ({"protocol": "soap"}, "wsdl", "required"),
        ({"auth": {"type": "bearer", "token": "inline-secret"}}, "auth.token", "inline secret"),
        ({"unknown": 1}, "unknown", "unknown field"),
    ],
)
async def test_registration_refusals_are_422(gw: Gateway, changes: dict[str, Any], field: str, message: str) -> None:
    response = await gw.client.post("/api/v1/admin/agencies", json=doc(**changes), headers=ADMIN)
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert any(d["field"] == field and message in d["message"] for d in details), details
    assert "inline-secret" not in response.text
    assert (await gw.client.get(f"/api/v1/admin/agencies/{NEW}", headers=ADMIN)).status_code == 404


async def test_put_needs_the_path_code(gw: Gateway) -> None:
    response = await gw.client.put(f"/api/v1/admin/agencies/{AGENCY}", json=doc(), headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "code"


async def test_an_agency_with_unfinished_dossiers_is_removed_only_by_force(gw: Gateway) -> None:
    await gw.submitted()
    response = await gw.client.delete(f"/api/v1/admin/agencies/{AGENCY}", headers=ADMIN)
    assert response.status_code == 409 and "unfinished" in response.json()["error"]["message"]
    forced = await gw.client.delete(f"/api/v1/admin/agencies/{AGENCY}?force=true", headers=ADMIN)
    assert forced.status_code == 204


async def test_admin_endpoints_need_the_admin_token(gw: Gateway) -> None:
    for method, path in (
        ("GET", "/api/v1/admin/agencies"),
        ("GET", f"/api/v1/admin/agencies/{AGENCY}"),
        ("POST", "/api/v1/admin/agencies"),
        ("PUT", f"/api/v1/admin/agencies/{NEW}"),
        ("DELETE", f"/api/v1/admin/agencies/{AGENCY}"),
        ("GET", "/api/v1/admin/outbox"),
        ("POST", "/api/v1/admin/outbox/1/redrive"),
    ):
        body = doc() if method in ("POST", "PUT") else None
        assert (await gw.client.request(method, path, json=body)).status_code == 401, path
        for headers in (PORTAL, AGENCY_AUTH):
            assert (await gw.client.request(method, path, json=body, headers=headers)).status_code == 403, path
    assert (await gw.client.get(f"/api/v1/admin/agencies/{AGENCY}", headers=ADMIN)).status_code == 200


def kill(gw: Gateway, message_id: int) -> None:
    with gw.db.unit_of_work() as session:
        [claimed] = outbox.claim(session, worker_id="w1", limit=1, lease=timedelta(seconds=30))
        assert claimed.id == message_id
        assert outbox.fail(session, message_id, "w1", "HTTP 410 from the agency", retryable=False) == "dead"


async def test_dead_letters_are_listed_and_redriven(any_gw: Gateway) -> None:
    gw = any_gw
    first = await gw.submitted()
    await gw.submitted()
    listing = await gw.client.get("/api/v1/admin/outbox", headers=ADMIN)
    assert listing.status_code == 200
    messages = listing.json()["messages"]
    assert [m["kind"] for m in messages] == ["agency.deliver", "agency.deliver"]
    assert listing.json()["stats"] == {"pending": 2, "in_flight": 0, "done": 0, "dead": 0}
    dead_id = messages[0]["id"]
    kill(gw, dead_id)

    dead = (await gw.client.get("/api/v1/admin/outbox?state=dead", headers=ADMIN)).json()
    [message] = dead["messages"]
    assert message["id"] == dead_id and message["state"] == "dead"
    assert message["last_error"] == "HTTP 410 from the agency"
    assert message["payload"] == {"dossier_code": first["code"], "agency_code": AGENCY}
    assert dead["stats"]["dead"] == 1

    redriven = await gw.client.post(f"/api/v1/admin/outbox/{dead_id}/redrive", headers=ADMIN)
    assert redriven.status_code == 200, redriven.text
    assert redriven.json()["state"] == "pending" and redriven.json()["attempts"] == 0
    assert (await gw.client.get("/api/v1/admin/outbox?state=dead", headers=ADMIN)).json()["messages"] == []
    again = await gw.client.post(f"/api/v1/admin/outbox/{dead_id}/redrive", headers=ADMIN)
    assert again.status_code == 409
    assert (await gw.client.post("/api/v1/admin/outbox/99999/redrive", headers=ADMIN)).status_code == 404
    assert "outbox.redrive" in actions(gw)


async def test_outbox_listing_parameters_are_checked(gw: Gateway) -> None:
    response = await gw.client.get("/api/v1/admin/outbox?state=lost", headers=ADMIN)
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "state"
    response = await gw.client.get("/api/v1/admin/outbox?after_id=-1", headers=ADMIN)
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "after_id"
    response = await gw.client.get("/api/v1/admin/outbox/1/redrive", headers=ADMIN)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    response = await gw.client.post("/api/v1/admin/outbox/abc/redrive", headers=ADMIN)
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "message_id"
    await gw.submitted()
    page = (await gw.client.get(f"/api/v1/admin/outbox?target={AGENCY}&limit=1", headers=ADMIN)).json()
    assert len(page["messages"]) == 1
    assert utcnow()  # the listing does not depend on the frozen clock
