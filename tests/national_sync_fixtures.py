"""Fixtures of the national portal flow tests: the simulated portal, the database, the gateway and its delivery.

The test modules that use them star-import this module: pytest finds fixtures among a module's names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.http import default_factory
from gateway.bootstrap.upstreams import sync_handler
from gateway.delivery import Deliveries
from gateway.outbox import RetryPolicy
from gateway.simulators.national_portal import NationalPortalSimulator
from gateway.simulators.national_portal import create_app as create_portal
from gateway.workers import CircuitBreakerSettings, OutboxWorker
from tests.databases import BACKENDS, postgres_schema_url
from tests.national_sync_support import (
    DSTCODE,
    MADONVI,
    PASSWORD,
    USERNAME,
    AgencyAccepted,
    Delivery,
    Gateway,
    close_gateway,
    open_gateway,
    portal_section,
)
from tests.servers import ServerThread

__all__ = ["database_url", "delivery", "gw", "gw_off", "portal_server", "sim"]


@pytest.fixture(scope="module")
def portal_server() -> Iterator[ServerThread]:
    app = create_portal(username=USERNAME, password=PASSWORD, dstcode=DSTCODE, madonvi=MADONVI, seed=3)
    with ServerThread(app) as server:
        yield server


@pytest.fixture
def sim(portal_server: ServerThread) -> Iterator[NationalPortalSimulator]:
    simulator: NationalPortalSimulator = portal_server.app.state.simulator
    simulator.reset()
    simulator.session_max_calls = None
    simulator.session_ttl_seconds = 1800.0
    simulator.error_rate = 0.0
    yield simulator
    simulator.reset()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    with postgres_schema_url() as url:
        yield url


@pytest.fixture
def gw(tmp_path: Path, database_url: str, portal_server: ServerThread, sim: Any) -> Iterator[Gateway]:
    """The gateway with the national portal configured (progress in batches of 3)."""
    gateway = open_gateway(tmp_path, database_url, portal_section(portal_server.base_url, tmp_path, batch_size=3))
    yield gateway
    close_gateway(gateway)


@pytest.fixture
def gw_off(tmp_path: Path, database_url: str) -> Iterator[Gateway]:
    """The gateway without ``[national_portal]``."""
    gateway = open_gateway(tmp_path, database_url, None)
    yield gateway
    close_gateway(gateway)


@pytest.fixture
async def delivery(gw: Gateway) -> AsyncIterator[Delivery]:
    assert gw.portal is not None
    dispatcher = Deliveries([sync_handler(gw.ctx, gw.portal, default_factory), AgencyAccepted()])
    worker = OutboxWorker(
        gw.db,
        dispatcher,
        policy=RetryPolicy(max_attempts=100, initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0.0),
        breaker=CircuitBreakerSettings(failure_threshold=1000, cooldown_seconds=0.05),
    )
    yield Delivery(gw, dispatcher, worker)
    await dispatcher.aclose()
