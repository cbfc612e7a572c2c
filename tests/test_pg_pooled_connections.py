"""Pooled PostgreSQL connections: one the server ended while it sat in the pool is replaced at checkout, unseen by the
unit of work; a live one is used again (``DVC_GATEWAY_TEST_POSTGRES_URL``)."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from gateway.store.engine import make_engine
from tests.databases import PG_ENV, PG_SKIP

pytestmark = pytest.mark.skipif(not os.environ.get(PG_ENV), reason=PG_SKIP)


@dataclass
class _Pooled:
    engine: Engine
    opened: list[Any] = field(default_factory=list)  # the driver's connections, as the pool opened them

    def backend(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


@pytest.fixture
def pooled() -> Iterator[_Pooled]:
    engine = make_engine(os.environ[PG_ENV])
    result = _Pooled(engine)
    event.listen(engine, "connect", lambda dbapi_connection, _record: result.opened.append(dbapi_connection))
    try:
        yield result
    finally:
        engine.dispose()


def _end_sessions(pooled: _Pooled, pids: list[int]) -> None:
    """End the backends ``pids`` from another engine's session, and wait until the server has let them go and their
    connections' sockets say so (the server closes a session's socket a moment after it leaves the server's lists)."""
    admin = make_engine(os.environ[PG_ENV]).execution_options(isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 30
    try:
        with admin.connect() as session:  # each statement its own transaction: a fresh view of the sessions each time
            session.execute(
                text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"), {"pids": pids}
            )
            left = text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(CAST(:pids AS int[]))")
            while session.execute(left, {"pids": pids}).scalar_one():
                assert time.monotonic() < deadline, "the ended sessions are still there"
                time.sleep(0.05)
    finally:
        admin.dispose()
    ended = [c for c in pooled.opened if not c.closed and c.info.backend_pid in pids]
    assert len(ended) == len(pids)
    while not all(select.select([c.fileno()], [], [], 0)[0] for c in ended):
        assert time.monotonic() < deadline, "the ended sessions' sockets are still open"
        time.sleep(0.05)


def test_a_live_pooled_connection_is_used_again(pooled):
    assert pooled.backend() == pooled.backend() == pooled.backend()


def test_a_connection_the_server_ended_in_the_pool_is_replaced_at_checkout(pooled):
    first = pooled.backend()
    _end_sessions(pooled, [first])
    assert pooled.backend() != first


def test_every_connection_the_server_ended_is_replaced(pooled):
    """As after a restart of the server: all the pooled connections are dead, and the next units of work all work."""
    engine = pooled.engine
    with engine.connect() as a, engine.connect() as b, engine.connect() as c:
        pids = [int(x.execute(text("SELECT pg_backend_pid()")).scalar_one()) for x in (a, b, c)]
    _end_sessions(pooled, pids)
    with engine.connect() as a, engine.connect() as b, engine.connect() as c:
        answers = [x.execute(text("SELECT 1")).scalar_one() for x in (a, b, c)]
        fresh = {int(x.execute(text("SELECT pg_backend_pid()")).scalar_one()) for x in (a, b, c)}
    assert answers == [1, 1, 1]
    assert not fresh & set(pids)
