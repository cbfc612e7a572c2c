"""Values, the wired gateway and fixtures of the postal return flow tests.

The fixtures (``__all__``) are star-imported by the test modules, pytest finds fixtures among a module's names; the
other names are imported by name.
"""

from __future__ import annotations

import asyncio
import json
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
from gateway.store.models import OutboxMessage, utcnow
from gateway.workers import OutboxWorker
from tests.api_support import (
    AGENCY,
    JOINT,
    PROCEDURE,
    Gateway,
    gateway_client,
    open_runtime,
    registration,
    submission,
)
from tests.databases import BACKENDS
from tests.servers import ServerThread, admin_post

__all__ = ["_agency_thread", "agency_server", "any_flow", "flow", "postal_server", "postal_sim", "secret_file"]


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
