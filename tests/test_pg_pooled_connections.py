"""Pooled PostgreSQL connections: one the server ended while it sat in the pool is replaced at checkout, unseen by the
unit of work; a live one is used again (``DVC_GATEWAY_TEST_POSTGRES_URL``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from gateway.store.engine import make_engine
from tests.api_support import PG_ENV, PG_SKIP

pytestmark = pytest.mark.skipif(not os.environ.get(PG_ENV), reason=PG_SKIP)


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = make_engine(os.environ[PG_ENV])
    try:
        yield engine
    finally:
        engine.dispose()


def _backend(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _end_sessions(pids: list[int]) -> None:
    """End the backends ``pids`` from another engine's session and wait until the server has let them go."""
    admin = make_engine(os.environ[PG_ENV])
    try:
        with admin.connect() as session:
            session.execute(
                text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"), {"pids": pids}
            )
            deadline = time.monotonic() + 30
            left = text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(CAST(:pids AS int[]))")
            while session.execute(left, {"pids": pids}).scalar_one():
                assert time.monotonic() < deadline, "the ended sessions are still there"
                time.sleep(0.05)
    finally:
        admin.dispose()


def test_a_live_pooled_connection_is_used_again(engine):
    assert _backend(engine) == _backend(engine) == _backend(engine)


def test_a_connection_the_server_ended_in_the_pool_is_replaced_at_checkout(engine):
    first = _backend(engine)
    _end_sessions([first])
    assert _backend(engine) != first


def test_every_connection_the_server_ended_is_replaced(engine):
    """As after a restart of the server: all the pooled connections are dead, and the next units of work all work."""
    with engine.connect() as a, engine.connect() as b, engine.connect() as c:
        pids = [int(x.execute(text("SELECT pg_backend_pid()")).scalar_one()) for x in (a, b, c)]
    _end_sessions(pids)
    with engine.connect() as a, engine.connect() as b, engine.connect() as c:
        answers = [x.execute(text("SELECT 1")).scalar_one() for x in (a, b, c)]
        fresh = {int(x.execute(text("SELECT pg_backend_pid()")).scalar_one()) for x in (a, b, c)}
    assert answers == [1, 1, 1]
    assert not fresh & set(pids)
