"""Resolving the deadline watch's alerts: a finding gone (received, moved on, answered, overdue instead of near due)
is posted once more, as resolved, after its alert."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import messages, outbox
from gateway.bootstrap import Composition, context_of
from gateway.flows import alerts
from gateway.runtime import Runtime
from gateway.services.watch import watch_items
from gateway.store.models import OutboxMessage
from gateway.workers import OutboxWorker
from tests.api_support import AGENCY3, AGENCY3_AUTH, PORTAL, gateway_client, open_runtime, registration
from tests.databases import BACKENDS
from tests.servers import ServerThread
from tests.test_citizens import QUESTION, _register
from tests.test_watch import CALENDAR, Receiver, _at


@pytest.fixture
def hook() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    with ServerThread(receiver.app) as server:
        yield receiver, f"{server.base_url}/hook"


def _alerts(session: Session) -> dict[str, OutboxMessage]:
    """The alert messages by idempotency key."""
    rows = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == messages.ALERT_WEBHOOK))
    return {row.idempotency_key: row for row in rows}


async def _alert_messages(runtime: Runtime) -> dict[str, dict[str, Any]]:
    """The alert messages' payloads by idempotency key."""
    return await runtime.db.run(lambda session: {key: dict(row.payload) for key, row in _alerts(session).items()})


def _routing(session: Session, keys: list[str]) -> list[tuple[str | None, str]]:
    """The ordering key and target of the alert messages of ``keys``."""
    found = _alerts(session)
    return [(found[key].ordering_key, found[key].target) for key in keys]


def _enqueue_as_before(session: Session, key: str, body: dict[str, Any]) -> None:
    """Enqueue an alert as older versions did: no ordering key (and no ``alert`` in ``body``)."""
    outbox.enqueue(
        session, kind=messages.ALERT_WEBHOOK, target=messages.ALERTS_TARGET, payload=body, idempotency_key=key
    )


async def _deliver(runtime: Runtime) -> None:
    """Run the outbox worker once: claim one batch and deliver it."""
    composition = Composition(runtime)
    worker = OutboxWorker.from_settings(runtime.db, composition, runtime.settings.outbox)
    try:
        await worker.run_once()
    finally:
        await composition.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_received_dossier_resolves_its_alert_once_and_a_persisting_one_stays_open(
    backend: str, tmp_path: Path
) -> None:
    with open_runtime(backend, tmp_path, alerts={"webhook_url": "http://127.0.0.1:9/hook"}) as runtime:
        async for gw in gateway_client(runtime):
            first, second = (await gw.submitted())["code"], (await gw.submitted())["code"]
            ctx, watch = context_of(runtime), runtime.settings.watch
            gw.clock.set(_at(24, 8))  # nobody received either by Monday 17:00
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult(fired=2)
            fired = await _alert_messages(runtime)
            key = f"{first}:alert:unacknowledged"
            assert fired[key]["alert"] == "firing"
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult()  # both still found

            assert (await gw.event(first, "received")).status_code < 300
            gw.clock.advance(minutes=5)
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult(resolved=1)
            found = await _alert_messages(runtime)
            assert set(found) == {key, f"{second}:alert:unacknowledged", f"{key}:resolved"}
            expected = {**fired[key], "alert": "resolved", "resolved_at": "2026-11-24T08:05:00+07:00"}
            assert found[f"{key}:resolved"] == expected
            assert found[key] == fired[key]  # the alert itself is left as it was

            routing = functools.partial(_routing, keys=[key, f"{key}:resolved"])
            assert await runtime.db.run(routing) == [(key, messages.ALERTS_TARGET)] * 2
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult()  # resolved once
            assert set(await _alert_messages(runtime)) == set(found)


async def test_near_due_then_overdue_resolves_near_due_and_fires_overdue(tmp_path: Path) -> None:
    with open_runtime("sqlite", tmp_path, alerts={"webhook_url": "http://127.0.0.1:9/hook"}) as runtime:
        async for gw in gateway_client(runtime):
            code = (await gw.submitted())["code"]  # Monday 23 at 09:00, fifteen working days
            assert (await gw.event(code, "received")).status_code < 300
            gw.clock.advance(minutes=30)
            assert (await gw.event(code, "processing")).status_code < 300
            due = CALENDAR.due_at(_at(23, 9), 15)
            ctx, watch = context_of(runtime), runtime.settings.watch
            gw.clock.set(due - timedelta(hours=2))
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult(fired=1)
            near_due = f"{code}:alert:near_due"
            assert set(await _alert_messages(runtime)) == {near_due}

            gw.clock.set(due + timedelta(days=1))
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult(fired=1, resolved=1)
            found = await _alert_messages(runtime)
            assert set(found) == {near_due, f"{near_due}:resolved", f"{code}:alert:overdue"}
            assert found[f"{near_due}:resolved"]["condition"] == "near_due"
            assert found[f"{near_due}:resolved"]["alert"] == "resolved"
            assert found[f"{code}:alert:overdue"]["alert"] == "firing"
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult()


async def test_the_receiver_gets_the_alert_before_its_resolution(tmp_path: Path, hook: tuple[Receiver, str]) -> None:
    receiver, url = hook
    with open_runtime("sqlite", tmp_path, alerts={"webhook_url": url}) as runtime:
        async for gw in gateway_client(runtime):
            code = (await gw.submitted())["code"]
            ctx, watch = context_of(runtime), runtime.settings.watch
            gw.clock.set(_at(24, 8))
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult(fired=1)
            assert (await gw.event(code, "received")).status_code < 300
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult(resolved=1)
            # Both pending: the resolution waits for its alert (the dossier's delivery to its agency fails meanwhile).
            key = f"{code}:alert:unacknowledged"
            await _deliver(runtime)  # one batch: the resolution is not claimed while its alert is pending
            assert [(body["alert"], sent_key) for body, sent_key in receiver.received] == [("firing", key)]
            await _deliver(runtime)
            assert [(body["alert"], sent_key) for body, sent_key in receiver.received] == [
                ("firing", key),
                ("resolved", f"{key}:resolved"),
            ]
            assert receiver.received[1][0]["resolved_at"] == "2026-11-24T08:00:00+07:00"


async def test_an_alert_of_an_older_version_is_left_as_it_was(tmp_path: Path) -> None:
    """An alert enqueued before resolutions existed (no ordering key, no ``alert``) is not resolved: an upgrade does
    not send a burst of resolutions for a year of old alerts."""
    with open_runtime("sqlite", tmp_path, alerts={"webhook_url": "http://127.0.0.1:9/hook"}) as runtime:
        async for gw in gateway_client(runtime):
            code = (await gw.submitted())["code"]
            ctx, watch = context_of(runtime), runtime.settings.watch
            gw.clock.set(_at(24, 8))
            [item] = await runtime.db.run(
                functools.partial(
                    watch_items,
                    calendar=runtime.calendar,
                    now=gw.clock.now,
                    near_due=timedelta(hours=watch.near_due_hours),
                )
            )
            key = alerts.alert_key(item)
            body = {name: value for name, value in item.alert_body(gw.clock.now).items() if name != "alert"}
            await runtime.db.run(functools.partial(_enqueue_as_before, key=key, body=body))
            assert (await gw.event(code, "received")).status_code < 300
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult()
            assert set(await _alert_messages(runtime)) == {key}


async def test_an_unanswered_question_answered_later_is_resolved(tmp_path: Path) -> None:
    with open_runtime("sqlite", tmp_path, alerts={"webhook_url": "http://127.0.0.1:9/hook"}) as runtime:
        soap = {**registration(AGENCY3, ["2.001610"]), "protocol": "soap", "endpoint": None}
        _register(runtime, {**soap, "wsdl": "http://127.0.0.1:9/soap?wsdl"})
        async for gw in gateway_client(runtime):
            body = {"agency_code": AGENCY3, "question": QUESTION}
            asked = (await gw.client.post("/api/v1/questions", json=body, headers=PORTAL)).json()
            ctx, watch = context_of(runtime), runtime.settings.watch
            gw.clock.advance(days=10)
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult(fired=1)
            key = f"question:{asked['id']}:alert:question_unanswered"
            fired = (await _alert_messages(runtime))[key]
            assert fired["alert"] == "firing" and fired["question_id"] == asked["id"]

            path = f"/api/v1/agencies/{AGENCY3}/questions/{asked['id']}/answer"
            assert (await gw.client.post(path, json={"answer": "Đã trả lời."}, headers=AGENCY3_AUTH)).status_code == 200
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult(resolved=1)
            resolved = (await _alert_messages(runtime))[f"{key}:resolved"]
            assert resolved == {**fired, "alert": "resolved", "resolved_at": gw.clock.now.isoformat(timespec="seconds")}
            assert await alerts.scan(ctx, watch, gw.clock.now) == alerts.ScanResult()
