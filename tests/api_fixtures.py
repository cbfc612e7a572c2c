"""Fixtures of the API tests (load with ``pytest_plugins = ("tests.api_fixtures",)``): gateways on a temporary SQLite
database, on each configured database, and trusting the test PKI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import Gateway, gateway_client, open_runtime, signing_section
from tests.databases import BACKENDS


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway on SQLite, without trust anchors."""
    with open_runtime("sqlite", tmp_path) as runtime:
        async for gateway in gateway_client(runtime):
            yield gateway


@pytest.fixture(params=BACKENDS)
async def any_gw(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway on SQLite and, when configured, on PostgreSQL."""
    with open_runtime(request.param, tmp_path) as runtime:
        async for gateway in gateway_client(runtime):
            yield gateway


@pytest.fixture
async def signed_gw(tmp_path: Path, pki: Any) -> AsyncIterator[Gateway]:
    """A gateway on SQLite trusting the test PKI's root."""
    with open_runtime("sqlite", tmp_path, signing=signing_section(pki)) as runtime:
        async for gateway in gateway_client(runtime):
            yield gateway
