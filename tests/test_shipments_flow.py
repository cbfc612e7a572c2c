"""Postal return end to end: pickup of the originals at intake, delivery of the result on ``completed``, tracking by
the signed webhook, ``delivered`` → ``returned``; refusals, the integration off. Late and repeated events, polling
and the postal service down are in ``tests/test_shipments_robustness.py``.

The gateway's API is served on 127.0.0.1 (the postal simulator pushes its webhooks to it), the agency and postal
simulators too; the outbox is driven by a worker in the test. Every wait has a limit.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.postal import sign_body
from gateway import messages
from gateway.simulators.postal import PostalSimulator
from gateway.store.models import AuditEntry, Dossier, OutboxMessage, Shipment
from tests.api_support import APPLICANT
from tests.servers import ServerThread
from tests.shipments_flow_support import *  # noqa: F403  (the fixtures: pytest finds them in this module)
from tests.shipments_flow_support import (
    OFFICE,
    POSTAL_STEPS,
    SECRET,
    Flow,
    at,
    open_flow,
    postal_trail,
    signed,
)

# ----------------------------------------------------------------------------------------------------------------------
# The whole way


async def test_post_return_from_intake_to_returned(any_flow: Flow) -> None:
    flow = any_flow
    flow.sim.webhook_url = flow.webhook_url
    code = await flow.submit()  # return by post, unsigned components: originals to check
    view = await flow.view(code)
    assert view["originals_check_required"] and view["return_method"] == "post"
    assert view["shipments"] == [{"order_code": None, "kind": "pickup", "status": "requested"}]
    [message] = flow.postal_messages()
    assert (message.target, message.payload) == (messages.POSTAL_TARGET, {"dossier_code": code, "kind": "pickup"})
    assert (message.idempotency_key, message.ordering_key) == (f"{code}:postal:pickup", f"{code}#postal")

    await flow.drain()
    pickup = await flow.shipment(code, "pickup")
    assert pickup["status"] == "accepted" and pickup["order_code"] in flow.sim.orders
    ordered = flow.sim.orders[pickup["order_code"]]["request"]
    assert ordered["kind"] == "pickup" and ordered["dossier_code"] == code
    assert ordered["sender"] == {
        "name": APPLICANT["full_name"],
        "phone": APPLICANT["phone"],
        "address": f"{APPLICANT['address']}, Hà Nội",  # the delivery address given
    }
    assert ordered["receiver"] == {
        "name": OFFICE["office_name"],
        "phone": OFFICE["office_phone"],
        "address": OFFICE["office_address"],
    }
    assert ordered["items"] and all(item["name"].startswith("Bản gốc") for item in ordered["items"])

    await flow.complete(code)
    assert (await flow.shipment(code, "delivery")) == {"order_code": None, "kind": "delivery", "status": "requested"}
    await flow.drain()
    delivery = await flow.shipment(code, "delivery")
    assert delivery["status"] == "accepted"
    request = flow.sim.orders[delivery["order_code"]]["request"]
    assert request["sender"]["name"] == OFFICE["office_name"] and request["receiver"]["name"] == APPLICANT["full_name"]
    assert request["items"] == [{"name": f"Kết quả giải quyết hồ sơ {code}", "quantity": 1}]

    moved = await flow.advance(delivery["order_code"])
    assert moved["event"]["status"] == "in_transit" and moved["webhook"]["status_code"] == 200
    assert (await flow.view(code))["status"] == "completed"
    moved = await flow.advance(delivery["order_code"])
    assert moved["event"]["status"] == "delivered" and moved["webhook"]["status_code"] == 200

    view = await flow.view(code)
    assert view["status"] == "returned" and view["national_status_code"] == 10
    assert {s["kind"]: s["status"] for s in view["shipments"]} == {"pickup": "accepted", "delivery": "delivered"}
    assert postal_trail(view) == [
        ("submitted", None),
        ("submitted", "pickup_ordered"),
        ("received", None),
        ("processing", None),
        ("completed", None),
        ("completed", "shipped"),
        ("completed", "delivery_in_transit"),
        ("returned", "delivery_delivered"),
    ]
    times = [item["at"] for item in view["history"]]
    assert times == sorted(times, key=datetime.fromisoformat)
    returned = view["history"][-1]
    assert returned["actor"] == "postal" and delivery["order_code"] in returned["note"]
    assert (await flow.gw.client.get(f"/api/v1/lookup/{code}")).json()["status"] == "returned"
    # Every step is in the audit trail.
    with flow.runtime.db.unit_of_work() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.subject == code).order_by(AuditEntry.id))
        actions = [e.action for e in entries if e.actor == "postal"]
    assert actions == ["shipment.ordered", "shipment.ordered", "shipment.in_transit", "dossier.returned"]


async def test_failed_delivery_then_returned_to_sender_leaves_the_dossier_completed(flow: Flow) -> None:
    flow.sim.webhook_url = flow.webhook_url
    code = await flow.submit()
    await flow.complete(code)
    await flow.drain()
    order_code = (await flow.shipment(code, "delivery"))["order_code"]
    await flow.advance(order_code)
    await flow.advance(order_code, "failed", "Người nhận vắng nhà")
    await flow.advance(order_code)  # failed -> returned to the sender
    view = await flow.view(code)
    assert view["status"] == "completed"
    assert (await flow.shipment(code, "delivery"))["status"] == "returned"
    assert postal_trail(view)[-4:] == [
        ("completed", "shipped"),
        ("completed", "delivery_in_transit"),
        ("completed", "delivery_failed"),
        ("completed", "delivery_returned"),
    ]
    failed = next(item for item in view["history"] if item.get("step") == "delivery_failed")
    assert "Người nhận vắng nhà" in failed["note"]


async def test_pickup_events_update_the_pickup_only(flow: Flow) -> None:
    flow.sim.webhook_url = flow.webhook_url
    code = await flow.submit()
    await flow.drain()
    await flow.event(code, "received")
    order_code = (await flow.shipment(code, "pickup"))["order_code"]
    await flow.advance(order_code)
    await flow.advance(order_code)  # the originals reached the office
    view = await flow.view(code)
    assert view["status"] == "received"
    assert view["shipments"] == [{"order_code": order_code, "kind": "pickup", "status": "delivered"}]
    assert postal_trail(view) == [
        ("submitted", None),
        ("submitted", "pickup_ordered"),
        ("received", None),
        ("received", "pickup_in_transit"),
        ("received", "pickup_delivered"),
    ]


async def test_no_orders_without_post_or_without_originals_to_check(flow: Flow) -> None:
    in_person = await flow.submit(return_method="in_person")
    await flow.complete(in_person)
    await flow.drain()
    view = await flow.view(in_person)
    assert view["shipments"] == [] and view["status"] == "completed"
    assert all(item.get("step") not in POSTAL_STEPS for item in view["history"])
    assert flow.postal_messages() == [] and flow.sim.orders == {}
    # A dossier by post whose originals need no check: no pickup, only the delivery when completed.
    by_post = await flow.submit()
    with flow.runtime.db.unit_of_work() as session:
        session.query(Shipment).delete()
        session.query(OutboxMessage).filter(OutboxMessage.kind == messages.POSTAL_ORDER).delete()
    with flow.runtime.db.unit_of_work() as session:
        session.scalars(select(Dossier).where(Dossier.code == by_post)).one().originals_check_required = False
    await flow.complete(by_post)
    assert [m.payload["kind"] for m in flow.postal_messages()] == ["delivery"]


async def test_postal_off_is_shown_once_as_skipped(
    tmp_path: Path, agency_server: ServerThread, postal_server: ServerThread, postal_sim: PostalSimulator
) -> None:
    async for flow in open_flow("sqlite", tmp_path, agency_server, postal_server, postal_sim):
        code = await flow.submit()
        await flow.complete(code)
        await flow.drain()
        view = await flow.view(code)
        assert view["shipments"] == [] and view["status"] == "completed"
        skipped = [item for item in view["history"] if item.get("step") == "postal_skipped"]
        assert [(item["status"], "pickup" in item["note"]) for item in skipped] == [
            ("submitted", True),
            ("completed", False),
        ]
        assert flow.postal_messages() == [] and postal_sim.orders == {}
        assert [job.name for job in flow.dispatcher.periodic_jobs() if job.name == "postal-tracking"] == []
        response = await flow.post_event({"order_code": "EL1VN", "status": "delivered", "at": at(0), "note": None})
        assert response.status_code == 404 and "not configured" in response.json()["error"]["message"]


# ----------------------------------------------------------------------------------------------------------------------
# Refusals


async def test_a_bad_signature_is_refused_and_changes_nothing(flow: Flow, caplog: pytest.LogCaptureFixture) -> None:
    code = await flow.submit()
    await flow.complete(code)
    await flow.drain()
    order_code = (await flow.shipment(code, "delivery"))["order_code"]
    before = await flow.view(code)
    changes = AuditEntry.action != "dossier.read"  # reading the dossier is recorded, and changes nothing
    audit_before = flow.count(AuditEntry, changes)
    event = {"order_code": order_code, "status": "delivered", "at": at(5), "note": "Đã phát thành công"}
    raw, headers = signed(event)
    caplog.set_level(logging.INFO)
    attempts = [
        {"Content-Type": "application/json"},  # no signature
        signed(event, "not the shared secret")[1],
        {**headers, "X-Signature": "zz" * 32},
    ]
    for bad in attempts:
        response = await flow.gw.client.post("/api/v1/postal/events", content=raw, headers=bad)
        assert response.status_code == 401, response.text
        error = response.json()["error"]
        assert error["code"] == "unauthorized" and error["message"]
    tampered = raw.replace(b"delivered", b"failed")  # a signed body, changed
    response = await flow.gw.client.post("/api/v1/postal/events", content=tampered, headers=headers)
    assert response.status_code == 401
    assert await flow.view(code) == before
    assert flow.count(AuditEntry, changes) == audit_before
    refusals = [r for r in caplog.records if r.getMessage() == "postal event refused"]
    assert len(refusals) == 4
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert SECRET not in logged and "Đã phát" not in logged

    # Correctly signed, but wrong: malformed JSON, not an event, an order the gateway never placed.
    raw, headers = b"{not json", signed({})[1]
    headers["X-Signature"] = sign_body(raw, SECRET)
    assert (await flow.gw.client.post("/api/v1/postal/events", content=raw, headers=headers)).status_code == 400
    response = await flow.post_event({**event, "status": "lost"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_failed"
    response = await flow.post_event({**event, "order_code": "EL999999999VN"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert await flow.view(code) == before
