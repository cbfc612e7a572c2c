"""Postal return end to end: pickup of the originals at intake, delivery of the result on ``completed``, tracking by
the signed webhook and by polling, ``delivered`` → ``returned``; refusals, late and repeated events, the postal
service down, the integration off.

The gateway's API is served on 127.0.0.1 (the postal simulator pushes its webhooks to it), the agency and postal
simulators too; the outbox is driven by a worker in the test. Every wait has a limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import func, select

from adapters.postal import sign_body
from gateway import messages, outbox
from gateway.bootstrap import Composition
from gateway.outbox import RetryPolicy
from gateway.registry import RegistrySettings, register, validate_registration
from gateway.runtime import Runtime
from gateway.simulators.agency import create_app as create_agency
from gateway.simulators.postal import PostalSimulator
from gateway.simulators.postal import create_app as create_postal
from gateway.store.models import AuditEntry, Dossier, HistoryEntry, OutboxMessage, Shipment, utcnow
from gateway.workers import MessageView, OutboxWorker
from tests.api_support import (
    AGENCY,
    APPLICANT,
    BACKENDS,
    JOINT,
    PROCEDURE,
    Gateway,
    gateway_client,
    open_runtime,
    registration,
    submission,
)
from tests.servers import ServerThread, admin_post

SECRET = "postal-flow-shared-secret-0123456789"
OFFICE = {
    "office_name": "Bộ phận Một cửa Sở Xây dựng",
    "office_phone": "02393123456",
    "office_address": "1 Nguyễn Du, Hà Tĩnh",
}
POSTAL_STEPS = {"pickup_ordered", "shipped", "postal_skipped"}


def postal_trail(view: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The dossier's status changes and postal steps, in order (steps of other integrations left out)."""
    return [
        (item["status"], item.get("step"))
        for item in view["history"]
        if item.get("step") is None or item["step"] in POSTAL_STEPS or item["step"].startswith(("pickup_", "delivery_"))
    ]


def signed(event: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(event, ensure_ascii=False).encode()
    return raw, {"Content-Type": "application/json", "X-Signature": sign_body(raw, secret)}


def at(delta_minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=delta_minutes)).isoformat()


# ----------------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def postal_server() -> Iterator[ServerThread]:
    with ServerThread(create_postal(secret=SECRET)) as server:
        yield server


@pytest.fixture
def postal_sim(postal_server: ServerThread) -> Iterator[PostalSimulator]:
    simulator: PostalSimulator = postal_server.app.state.simulator
    simulator.reset()
    simulator.webhook_url = None
    yield simulator
    simulator.reset()
    simulator.webhook_url = None


@pytest.fixture(scope="module")
def _agency_thread() -> Iterator[ServerThread]:
    with ServerThread(create_agency()) as server:
        yield server


@pytest.fixture
def agency_server(_agency_thread: ServerThread) -> ServerThread:
    """The agency simulator, forgetting earlier tests' dossiers (each test's database reuses the same codes)."""
    _agency_thread.app.state.simulator.reset()
    return _agency_thread


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "postal-secret"
    path.write_text(SECRET + "\n", encoding="utf-8")
    return path


def postal_section(postal_server: ServerThread, secret_file: Path, **changes: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "base_url": postal_server.base_url,
        "secret": f"file:{secret_file}",
        "timeout_seconds": 5,
        "attempts": 1,
        "poll_interval_seconds": 60,
        "poll_after_seconds": 3600,
        **OFFICE,
    }
    section.update(changes)
    return section


@dataclass
class Flow:
    """A gateway (API served on loopback), its outbox worker, and the postal simulator."""

    gw: Gateway
    runtime: Runtime
    dispatcher: Composition
    worker: OutboxWorker
    sim: PostalSimulator
    postal_url: str
    webhook_url: str

    async def drain(self) -> dict[str, int]:
        """Run the worker until nothing is pending or in flight (dead letters stay dead)."""
        with anyio.fail_after(30):
            while True:
                await self.worker.run_once()
                with self.runtime.db.unit_of_work() as session:
                    stats = outbox.stats(session)
                if stats.get(outbox.PENDING, 0) + stats.get(outbox.IN_FLIGHT, 0) == 0:
                    return stats
                await asyncio.sleep(0.01)

    async def submit(self, **overrides: Any) -> str:
        self.gw.clock.set(utcnow())
        return (await self.gw.submitted(submission(**overrides)))["code"]

    async def event(self, code: str, status: str, **fields: Any) -> None:
        self.gw.clock.set(utcnow())
        response = await self.gw.event(code, status, **fields)
        assert response.status_code == 200, response.text

    async def complete(self, code: str) -> None:
        for status in ("received", "processing"):
            await self.event(code, status)
        await self.event(code, "completed", fees_paid=True)  # fees before results: paid at the agency's counter

    async def view(self, code: str) -> dict[str, Any]:
        return await self.gw.get(code)

    async def shipment(self, code: str, kind: str) -> dict[str, Any]:
        found = [s for s in (await self.view(code))["shipments"] if s["kind"] == kind]
        assert len(found) == 1, found
        return found[0]

    async def advance(self, order_code: str, status: str | None = None, note: str | None = None) -> dict[str, Any]:
        body = {key: value for key, value in (("status", status), ("note", note)) if value is not None}
        return await admin_post(self.postal_url, f"/_sim/orders/{order_code}/advance", body)

    async def post_event(self, event: dict[str, Any], secret: str = SECRET) -> httpx.Response:
        raw, headers = signed(event, secret)
        return await self.gw.client.post("/api/v1/postal/events", content=raw, headers=headers)

    def count(self, model: Any, *conditions: Any) -> int:
        with self.runtime.db.unit_of_work() as session:
            return session.scalar(select(func.count()).select_from(model).where(*conditions))

    def postal_messages(self) -> list[OutboxMessage]:
        with self.runtime.db.unit_of_work() as session:
            statement = select(OutboxMessage).where(OutboxMessage.kind == messages.POSTAL_ORDER)
            return list(session.scalars(statement.order_by(OutboxMessage.id)))


def register_agency(runtime: Runtime, endpoint: str) -> None:
    document = registration(AGENCY, [PROCEDURE, JOINT])
    document["endpoint"] = endpoint
    settings = RegistrySettings(allow_private_endpoints=True)
    with runtime.db.unit_of_work() as session:
        register(
            session,
            validate_registration(document, settings=settings, known_procedures={PROCEDURE, JOINT}),
            replace=True,
        )


async def open_flow(
    kind: str, tmp_path: Path, agency_server: ServerThread, postal_server: ServerThread, sim: PostalSimulator, **postal
) -> AsyncIterator[Flow]:
    with open_runtime(kind, tmp_path, postal=postal) as runtime:
        register_agency(runtime, agency_server.base_url)
        async for gw in gateway_client(runtime):
            with ServerThread(gw.app) as served:
                dispatcher = Composition(runtime)
                policy = RetryPolicy(max_attempts=5, initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0)
                worker = OutboxWorker(runtime.db, dispatcher, policy=policy)
                try:
                    yield Flow(
                        gw=gw,
                        runtime=runtime,
                        dispatcher=dispatcher,
                        worker=worker,
                        sim=sim,
                        postal_url=postal_server.base_url,
                        webhook_url=f"{served.base_url}/api/v1/postal/events",
                    )
                finally:
                    await dispatcher.aclose()


@pytest.fixture(params=BACKENDS)
async def any_flow(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    agency_server: ServerThread,
    postal_server: ServerThread,
    postal_sim: PostalSimulator,
    secret_file: Path,
) -> AsyncIterator[Flow]:
    section = postal_section(postal_server, secret_file)
    async for flow in open_flow(request.param, tmp_path, agency_server, postal_server, postal_sim, **section):
        yield flow


@pytest.fixture
async def flow(
    tmp_path: Path,
    agency_server: ServerThread,
    postal_server: ServerThread,
    postal_sim: PostalSimulator,
    secret_file: Path,
) -> AsyncIterator[Flow]:
    section = postal_section(postal_server, secret_file)
    async for opened in open_flow("sqlite", tmp_path, agency_server, postal_server, postal_sim, **section):
        yield opened


async def delivered_by_webhook(flow: Flow) -> tuple[str, str]:
    """A dossier completed, its delivery ordered and delivered through the simulator's webhooks."""
    flow.sim.webhook_url = flow.webhook_url
    code = await flow.submit()
    await flow.complete(code)
    await flow.drain()
    order_code = (await flow.shipment(code, "delivery"))["order_code"]
    await flow.advance(order_code)  # in_transit
    await flow.advance(order_code)  # delivered
    return code, order_code


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
