"""Postal return: late and repeated events, tracking by polling when webhooks never come, the postal service down,
refused orders.

The gateway, the agency and postal simulators are those of ``tests/test_shipments_flow.py``
(``tests/shipments_flow_support.py``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from gateway import outbox
from gateway.simulators.postal import PostalSimulator
from gateway.store.models import AuditEntry, HistoryEntry, Shipment, utcnow
from gateway.workers import MessageView
from tests.servers import ServerThread, admin_post
from tests.shipments_flow_support import *  # noqa: F403  (the fixtures: pytest finds them in this module)
from tests.shipments_flow_support import (
    Flow,
    at,
    delivered_by_webhook,
    open_flow,
    postal_section,
    postal_trail,
)

# ----------------------------------------------------------------------------------------------------------------------
# Late and repeated events


async def test_events_out_of_order_never_move_the_shipment_backwards(flow: Flow) -> None:
    code, order_code = await delivered_by_webhook(flow)
    trail = postal_trail(await flow.view(code))
    # The simulator sends its in_transit event again, after delivered.
    pushed = await admin_post(flow.postal_url, f"/_sim/orders/{order_code}/push", {"index": 1})
    assert pushed["event"]["status"] == "in_transit" and pushed["webhook"]["status_code"] == 200
    # An older "failed" and an "accepted" arrive late too.
    for status in ("failed", "accepted"):
        response = await flow.post_event({"order_code": order_code, "status": status, "at": at(-30), "note": None})
        assert response.status_code == 200 and response.json()["outcome"] == "late"
    view = await flow.view(code)
    assert view["status"] == "returned"
    assert (await flow.shipment(code, "delivery"))["status"] == "delivered"
    assert postal_trail(view) == trail
    # Kept in the shipment's event log, marked not applied.
    with flow.runtime.db.unit_of_work() as session:
        log = session.scalars(select(Shipment).where(Shipment.order_code == order_code)).one().details["events"]
    assert [(e["status"], e["applied"]) for e in log] == [
        ("in_transit", True),
        ("delivered", True),
        ("failed", False),
        ("accepted", False),
    ]


async def test_delivered_arriving_before_in_transit(flow: Flow) -> None:
    code = await flow.submit()
    await flow.complete(code)
    await flow.drain()
    order_code = (await flow.shipment(code, "delivery"))["order_code"]
    delivered = await flow.post_event({"order_code": order_code, "status": "delivered", "at": at(20), "note": None})
    assert delivered.json() == {
        "order_code": order_code,
        "kind": "delivery",
        "status": "delivered",
        "outcome": "applied",
        "dossier_code": code,
        "dossier_status": "returned",
    }
    late = await flow.post_event({"order_code": order_code, "status": "in_transit", "at": at(10), "note": None})
    assert late.json()["outcome"] == "late" and late.json()["status"] == "delivered"
    view = await flow.view(code)
    assert view["status"] == "returned"
    assert [step for _, step in postal_trail(view)][-2:] == ["shipped", "delivery_delivered"]


async def test_duplicate_events_are_idempotent(flow: Flow) -> None:
    await admin_post(flow.postal_url, "/_sim/faults", {"duplicate_webhooks": True})
    code, order_code = await delivered_by_webhook(flow)
    assert [(w["status"], w["status_code"]) for w in flow.sim.webhooks] == [
        ("in_transit", 200),
        ("in_transit", 200),
        ("delivered", 200),
        ("delivered", 200),
    ]
    changes = AuditEntry.action != "dossier.read"  # reading the view is audited, and changes nothing
    audit_count = flow.count(AuditEntry, changes)
    history_count = flow.count(HistoryEntry)
    last = flow.sim.orders[order_code]["events"][-1]
    again = await flow.post_event(last)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    view = await flow.view(code)
    assert [step for _, step in postal_trail(view)][-3:] == ["shipped", "delivery_in_transit", "delivery_delivered"]
    assert (flow.count(AuditEntry, changes), flow.count(HistoryEntry)) == (audit_count, history_count)
    # The order itself is placed once, however often its message is delivered.
    [message] = [m for m in flow.postal_messages() if m.payload["kind"] == "delivery"]
    handler = flow.dispatcher.postal
    await handler.handle(MessageView.of(message))
    assert sum(o["kind"] == "delivery" for o in flow.sim.orders.values()) == 1


# ----------------------------------------------------------------------------------------------------------------------
# Polling and failures


async def test_polling_picks_up_events_when_webhooks_never_come(any_flow: Flow) -> None:
    flow = any_flow
    code = await flow.submit()
    await flow.complete(code)
    await flow.drain()
    pickup = (await flow.shipment(code, "pickup"))["order_code"]
    delivery = (await flow.shipment(code, "delivery"))["order_code"]
    for order_code in (pickup, delivery, delivery):
        await flow.advance(order_code)  # no webhook URL: the gateway hears nothing
    assert (await flow.view(code))["status"] == "completed"
    assert flow.sim.webhooks == []

    [job] = [job for job in flow.dispatcher.periodic_jobs() if job.name == "postal-tracking"]
    assert job.interval_seconds == 60
    handler = flow.dispatcher.postal
    assert await handler.poll() == 0  # heard of less than poll_after_seconds ago: not polled
    assert flow.sim.counters["requests"] == 2  # the two orders, no tracking call
    later = utcnow() + timedelta(hours=2)
    # New events: both orders' first "accepted" (no step: the order said so), the pickup's in_transit, the
    # delivery's in_transit and delivered.
    assert await handler.poll(later) == 5
    view = await flow.view(code)
    assert view["status"] == "returned"
    assert {s["kind"]: s["status"] for s in view["shipments"]} == {"pickup": "in_transit", "delivery": "delivered"}
    delivery_steps = [step for _, step in postal_trail(view) if step and step.startswith(("shipped", "delivery_"))]
    assert delivery_steps == ["shipped", "delivery_in_transit", "delivery_delivered"]
    assert [step for _, step in postal_trail(view) if step and step.startswith("pickup_")] == [
        "pickup_ordered",
        "pickup_in_transit",
    ]
    # Polled again later: the delivered order is over and not tracked; the pickup is, and nothing new is applied.
    requests = flow.sim.counters["requests"]
    assert await handler.poll(later + timedelta(hours=2)) == 0
    assert flow.sim.counters["requests"] == requests + 1


async def test_postal_service_down_the_outbox_retries_then_succeeds(flow: Flow) -> None:
    code = await flow.submit(return_method="post")
    await admin_post(flow.postal_url, "/_sim/faults", {"fail_next": 2, "fail_status": 503})
    stats = await flow.drain()
    assert stats.get(outbox.DEAD, 0) == 0
    [message] = flow.postal_messages()
    assert message.state == outbox.DONE and message.attempts == 3
    assert flow.sim.counters["faults"] == 2 and flow.sim.counters["orders_created"] == 1
    # An answer lost on the way back: retried with the same key, still one order.
    await flow.complete(code)
    await admin_post(flow.postal_url, "/_sim/faults", {"lose_next": 1})
    await flow.drain()
    assert flow.sim.counters["orders_created"] == 2 and flow.sim.counters["replayed"] == 1
    view = await flow.view(code)
    assert [step for _, step in postal_trail(view) if step] == ["pickup_ordered", "shipped"]
    assert all(s["order_code"] in flow.sim.orders for s in view["shipments"])


async def test_a_refused_order_is_a_dead_letter_with_its_reason(
    tmp_path: Path,
    agency_server: ServerThread,
    postal_server: ServerThread,
    postal_sim: PostalSimulator,
    secret_file: Path,
) -> None:
    section = postal_section(postal_server, secret_file, secret="wrong-secret")
    async for flow in open_flow("sqlite", tmp_path, agency_server, postal_server, postal_sim, **section):
        await flow.submit()
        stats = await flow.drain()
        assert stats[outbox.DEAD] == 1
        [message] = flow.postal_messages()
        assert message.state == outbox.DEAD and message.attempts == 1 and "AuthError" in (message.last_error or "")
        assert "wrong-secret" not in (message.last_error or "")
    section = postal_section(postal_server, secret_file, office_phone="")
    (tmp_path / "2").mkdir()
    agency_server.app.state.simulator.reset()  # the new database gives the dossier the same code
    async for flow in open_flow("sqlite", tmp_path / "2", agency_server, postal_server, postal_sim, **section):
        await flow.submit()
        await flow.drain()
        [message] = flow.postal_messages()
        assert message.state == outbox.DEAD and "office_name, office_phone and office_address" in message.last_error
