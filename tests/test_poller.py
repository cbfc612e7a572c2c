"""The poller: agencies registered with ``status_updates.mode = "poll"`` asked for their changes at their interval
(SOAP ``LayTrangThaiHoSo`` with ``TuThoiDiem``; REST ``GET /dossiers/{code}``), each change fed into the state
machine once, the position remembered, leases so that two processes never poll one agency at once (SQLite and, when
configured, PostgreSQL), refusals logged once and never retried, failures kept for the next interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.bootstrap import Composition
from gateway.catalogue import known_procedure_codes
from gateway.config import ConfigError
from gateway.flows.agency import periodic_jobs, poll_due, polls
from gateway.flows.agency.polls import first_poll_at
from gateway.registry import RegistrySettings, register, validate_registration
from gateway.runtime import Runtime
from gateway.sections import PollerSection
from gateway.settings import Settings
from gateway.simulators.agency import create_app as create_rest_simulator
from gateway.simulators.soap_agency import create_soap_app
from gateway.store.database import Database
from gateway.store.models import AgencyPoll
from tests.api_support import AGENCY, JOINT, NOW, PROCEDURE, Gateway, gateway_client, open_runtime
from tests.databases import BACKENDS
from tests.servers import ServerThread, admin_post
from tests.test_soap_end_to_end import deliver_all

INTERVAL = 60


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    with open_runtime("sqlite", tmp_path) as runtime:
        async for gateway in gateway_client(runtime):
            yield gateway


def polled(base_url: str, *, protocol: str = "soap", interval: int = INTERVAL) -> dict[str, Any]:
    document: dict[str, Any] = {
        "code": AGENCY,
        "name": "Sở Xây dựng",
        "protocol": protocol,
        "procedures": [PROCEDURE, JOINT],
        "status_updates": {"mode": "poll", "interval_seconds": interval},
    }
    if protocol == "soap":
        document["wsdl"] = f"{base_url}/soap?wsdl"
    else:
        document["endpoint"] = base_url
    return document


def register_document(runtime: Runtime, document: dict[str, Any]) -> None:
    with runtime.db.unit_of_work() as session:
        known = known_procedure_codes(session)
        registration = validate_registration(
            document, settings=RegistrySettings(allow_private_endpoints=True), known_procedures=known
        )
        register(session, registration, replace=True)


def poll_row(runtime: Runtime, code: str = AGENCY) -> AgencyPoll:
    with runtime.db.unit_of_work() as session:
        row = session.get(AgencyPoll, code)
        assert row is not None
        session.expunge(row)
        return row


async def clerk(base_url: str, code: str, status: str, at: datetime, **fields: Any) -> None:
    """The agency's clerk changes the dossier's status in its own system (no callback: the gateway polls)."""
    await admin_post(base_url, f"/_sim/dossiers/{code}/events", {"status": status, "at": at.isoformat(), **fields})


def asked_since(request: bytes) -> datetime:
    root = etree.fromstring(request)
    [value] = [node.text for node in root.iter() if etree.QName(node).localname == "TuThoiDiem"]
    return datetime.fromisoformat(value)


async def delivered(gw: Gateway, sim: Any, dispatcher: Composition) -> str:
    code = (await gw.submitted())["code"]
    dossiers = sim.core.dossiers if hasattr(sim, "core") else sim.dossiers
    await deliver_all(gw.runtime, dispatcher, lambda: code in dossiers)
    return code


async def first_due(runtime: Runtime, dispatcher: Composition, start: datetime) -> datetime:
    """Run a round at ``start`` (the agency is seen, its first poll placed in its interval): that first poll's time."""
    assert await poll_due(dispatcher.poller, now=start) == 0
    due = poll_row(runtime).next_poll_at
    assert due == first_poll_at(AGENCY, INTERVAL, start)
    assert start < due < start + timedelta(seconds=INTERVAL)  # spread inside the interval, not at once
    return due


def changes_of(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(item["status"], item["actor"]) for item in view["history"] if "step" not in item]


async def test_changes_are_applied_once_and_the_position_is_remembered(gw: Gateway) -> None:
    with ServerThread(create_soap_app()) as soap:
        sim = soap.app.state.simulator
        register_document(gw.runtime, polled(soap.base_url))
        dispatcher = Composition(gw.runtime)
        try:
            code = await delivered(gw, sim, dispatcher)
            due = await first_due(gw.runtime, dispatcher, NOW + timedelta(minutes=1))
            requests = sim.counters["requests"]
            received_at = NOW + timedelta(minutes=2)
            await clerk(soap.base_url, code, "received", received_at, note="Đủ hồ sơ")
            assert await poll_due(dispatcher.poller, now=due - timedelta(seconds=1)) == 0
            assert sim.counters["requests"] == requests  # not due yet: the agency is not asked

            assert await poll_due(dispatcher.poller, now=due) == 1
            view = await gw.get(code)
            assert view["status"] == "received" and view["received_at"] == received_at.isoformat()
            assert changes_of(view)[-1] == ("received", f"agency:{AGENCY}")
            row = poll_row(gw.runtime)
            assert row.position == received_at and row.last_polled_at == due
            assert row.next_poll_at == due + timedelta(seconds=INTERVAL)
            assert row.lease_until is None and row.last_error is None
            first_ask = asked_since(sim.exchanges[-1][0])
            assert first_ask == NOW  # at first: since the oldest open dossier was submitted

            # The next interval: the agency reports the same latest status again; nothing changes.
            history = len(view["history"])
            assert await poll_due(dispatcher.poller, now=due + timedelta(seconds=INTERVAL)) == 0
            assert asked_since(sim.exchanges[-1][0]) == received_at  # from the remembered position
            assert len((await gw.get(code))["history"]) == history

            processing_at = NOW + timedelta(minutes=4)
            await clerk(soap.base_url, code, "processing", processing_at, note="Chuyển phòng chuyên môn")
            assert await poll_due(dispatcher.poller, now=due + timedelta(seconds=2 * INTERVAL)) == 1
            view = await gw.get(code)
            assert view["status"] == "processing" and view["history"][-1]["note"] == "Chuyển phòng chuyên môn"
            assert poll_row(gw.runtime).position == processing_at
        finally:
            await dispatcher.aclose()


async def test_a_refused_change_is_logged_once_and_not_retried(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with ServerThread(create_soap_app()) as soap:
        sim = soap.app.state.simulator
        register_document(gw.runtime, polled(soap.base_url))
        dispatcher = Composition(gw.runtime)
        try:
            code = await delivered(gw, sim, dispatcher)
            due = await first_due(gw.runtime, dispatcher, NOW + timedelta(minutes=1))
            completed_at = NOW + timedelta(minutes=2)
            await clerk(soap.base_url, code, "completed", completed_at)  # submitted → completed: illegal
            for round_ in range(3):
                now = due + timedelta(seconds=round_ * INTERVAL)
                assert await poll_due(dispatcher.poller, now=now) == 0
            refusals = [r for r in caplog.records if r.name == "gateway.events" and "illegal" in r.getMessage()]
            assert len(refusals) == 1
            assert refusals[0].dossier_code == code and refusals[0].channel == "poll"
            assert (await gw.get(code))["status"] == "submitted"
            row = poll_row(gw.runtime)
            assert row.position == completed_at and row.last_error is None  # the poll itself worked
        finally:
            await dispatcher.aclose()


async def test_a_failed_poll_keeps_its_position_for_the_next_interval(gw: Gateway) -> None:
    with ServerThread(create_soap_app()) as soap:
        sim = soap.app.state.simulator
        register_document(gw.runtime, polled(soap.base_url))
        dispatcher = Composition(gw.runtime)
        try:
            code = await delivered(gw, sim, dispatcher)
            due = await first_due(gw.runtime, dispatcher, NOW + timedelta(minutes=1))
            await clerk(soap.base_url, code, "received", NOW + timedelta(minutes=2))
            await admin_post(soap.base_url, "/_sim/faults", {"soap_server_fault": 1})
            assert await poll_due(dispatcher.poller, now=due) == 0
            row = poll_row(gw.runtime)
            assert row.last_error and "SOAP fault" in row.last_error
            assert row.position is None and row.lease_until is None
            assert row.next_poll_at == due + timedelta(seconds=INTERVAL)
            assert (await gw.get(code))["status"] == "submitted"
            assert await poll_due(dispatcher.poller, now=row.next_poll_at) == 1
            assert poll_row(gw.runtime).last_error is None
            assert (await gw.get(code))["status"] == "received"
        finally:
            await dispatcher.aclose()


async def test_a_rest_agency_is_polled_for_its_open_dossiers(gw: Gateway) -> None:
    with ServerThread(create_rest_simulator()) as rest:
        sim = rest.app.state.simulator
        register_document(gw.runtime, polled(rest.base_url, protocol="rest"))
        dispatcher = Composition(gw.runtime)
        try:
            code = await delivered(gw, sim, dispatcher)
            other = await delivered(gw, sim, dispatcher)
            due = await first_due(gw.runtime, dispatcher, NOW + timedelta(minutes=1))
            await clerk(rest.base_url, code, "received", NOW + timedelta(minutes=2))
            await clerk(
                rest.base_url,
                other,
                "supplement_requested",
                NOW + timedelta(minutes=3),
                reason="Bản vẽ thiếu chữ ký",
                components=["TP2"],
            )
            assert await poll_due(dispatcher.poller, now=due) == 2
            assert (await gw.get(code))["status"] == "received"
            view = await gw.get(other)
            assert view["status"] == "supplement_requested" and view["history"][-1]["reason"] == "Bản vẽ thiếu chữ ký"
            asked = sim.counters["requests"]
            assert await poll_due(dispatcher.poller, now=due + timedelta(seconds=INTERVAL)) == 0
            assert sim.counters["requests"] == asked + 2  # each open dossier asked again, nothing new applied
        finally:
            await dispatcher.aclose()


def busy_on_first_get(app: Any, retry_after: str) -> Any:
    """``app``, but its first ``GET`` is answered ``429`` with ``Retry-After: retry_after``."""
    left = [1]

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and left[0]:
            left[0] -= 1
            headers = [(b"retry-after", retry_after.encode()), (b"content-type", b"text/plain")]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": b"too many polls"})
            return
        await app(scope, receive, send)

    return wrapped


@pytest.mark.parametrize(("asked", "wait"), [("600", 600), ("30", INTERVAL), ("86400", 3600)])
async def test_an_agency_asking_to_be_left_alone_is_polled_again_after_its_wait(
    gw: Gateway, asked: str, wait: int
) -> None:
    rest_app = create_rest_simulator()
    with ServerThread(busy_on_first_get(rest_app, asked)) as rest:
        sim = rest_app.state.simulator
        register_document(gw.runtime, polled(rest.base_url, protocol="rest"))
        dispatcher = Composition(gw.runtime)
        try:
            code = await delivered(gw, sim, dispatcher)
            due = await first_due(gw.runtime, dispatcher, NOW + timedelta(minutes=1))
            await clerk(rest.base_url, code, "received", NOW + timedelta(minutes=2))
            assert await poll_due(dispatcher.poller, now=due) == 0
            row = poll_row(gw.runtime)
            assert row.last_error and "rate limited" in row.last_error
            # The longer of its interval and its wait (at most an hour).
            assert row.next_poll_at == due + timedelta(seconds=wait)
            assert await poll_due(dispatcher.poller, now=row.next_poll_at) == 1
            assert (await gw.get(code))["status"] == "received"
        finally:
            await dispatcher.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_processes_never_poll_one_agency_at_once(backend: str, tmp_path: Path) -> None:
    with open_runtime(backend, tmp_path) as runtime, ServerThread(create_soap_app()) as soap:
        sim = soap.app.state.simulator
        # A second process: its own engine on the same database.
        other = Runtime(settings=runtime.settings, db=Database.connect(runtime.settings.database.url))
        register_document(runtime, polled(soap.base_url))
        first, second = Composition(runtime), Composition(other)
        try:
            async for gw in gateway_client(runtime):
                code = await delivered(gw, sim, first)
            due = await first_due(runtime, first, NOW + timedelta(minutes=1))
            await clerk(soap.base_url, code, "received", NOW + timedelta(minutes=2))
            asked = sim.counters["requests"]
            results = await asyncio.gather(
                poll_due(first.poller, now=due), poll_due(second.poller, now=due), poll_due(second.poller, now=due)
            )
            assert sorted(results) == [0, 0, 1]
            assert sim.counters["requests"] == asked + 1  # one LayTrangThaiHoSo for the three rounds

            # A process that claimed and died: its lease keeps the others off until it expires.
            lease = timedelta(seconds=PollerSection().lease_seconds)
            later = due + timedelta(seconds=INTERVAL)
            claims = await runtime.db.run(lambda s: polls.claim_due(s, now=later, lease=lease))
            assert [c.agency_code for c in claims] == [AGENCY]
            assert await poll_due(second.poller, now=later + lease - timedelta(seconds=1)) == 0
            assert sim.counters["requests"] == asked + 1
            await poll_due(second.poller, now=later + lease + timedelta(seconds=1))
            assert sim.counters["requests"] == asked + 2  # taken over
            # The dead process's late release writes nothing.
            stale = await runtime.db.run(
                lambda s: polls.release(claims[0], s, now=later + lease, position=None, error="late")
            )
            assert stale is False and poll_row(runtime).last_error is None
        finally:
            await first.aclose()
            await second.aclose()
            other.db.dispose()


def test_the_periodic_job_and_its_settings(tmp_path: Path) -> None:
    db = Database.connect(f"sqlite:///{tmp_path}/gw.db")
    try:
        runtime = Runtime(settings=Settings.from_raw({"poller": {"tick_seconds": 5}}, tmp_path), db=db)
        [job] = periodic_jobs(Composition(runtime).poller)
        assert job.name == "agency-poll" and job.interval_seconds == 5
        for bad in ({"tick_seconds": 0}, {"concurrency": "8"}, {"interval": 5}):
            with pytest.raises(ConfigError, match=r"\[poller\]"):
                Settings.from_raw({"poller": bad}, tmp_path)
    finally:
        db.dispose()
