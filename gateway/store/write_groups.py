"""Short writes committed together on SQLite (a group commit).

SQLite lets one writer in at a time, and a durable commit waits for the disk (``fsync``). The short units of work of
one event loop (:meth:`~gateway.store.database.Database.write` with ``short=True``) that come in while the write lock
is held by an earlier group wait together; then they run one after the other in one transaction, each in a savepoint
of its own, and one commit makes them all durable: one wait for the disk for the whole group.

- Each unit of work is what it would be alone: its changes are kept or taken back whole. One that fails is rolled
  back to its savepoint, the others' changes stay, and its caller gets its exception.
- No caller hears of its unit of work before the group's commit is done: an answer given is as durable as before.
  When the commit fails, every caller of the group gets the error and nothing of the group is kept. So does a failure
  that ends the whole transaction (SQLite rolls it back on a full disk or an I/O error, say).
- The units of work run in the order they came: a later one sees an earlier one's changes, as it would have after
  the earlier one's commit.
- A caller that stops waiting (its task is cancelled) before its group began is left out of it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from .engine import BUSY_TIMEOUT_MS

#: Units of work in one group at most: the first of a group hears of its commit only after the last one ran.
MOST_IN_A_GROUP = 16

#: What a unit of work gave: its result, or the exception it raised (then ``None`` as the result).
Outcome = tuple[Any, BaseException | None]
Work = Callable[[Session], Any]


@dataclass(eq=False)
class _Waiting:
    work: Work
    answer: asyncio.Future[Any]


class WriteGroups:
    """The short writes of one event loop (see the module's notes): :meth:`write` queues one and waits for its
    group's commit; the group runs under ``lane`` (the loop's turn at the write lock) through ``run_group``, which
    gives one outcome per unit of work, in order, or raises what befell the whole group."""

    def __init__(self, lane: anyio.CapacityLimiter, run_group: Callable[[Sequence[Work]], Awaitable[list[Outcome]]]):
        self._lane = lane
        self._run_group = run_group
        self._waiting: list[_Waiting] = []
        self._drainer: asyncio.Task[None] | None = None

    async def write(self, work: Work) -> Any:
        loop = asyncio.get_running_loop()
        waiting = _Waiting(work, loop.create_future())
        self._waiting.append(waiting)
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await waiting.answer

    async def _drain(self) -> None:
        """Run groups while units of work wait."""
        group: list[_Waiting] = []
        try:
            while self._waiting:
                group = [waiting for waiting in self._waiting[:MOST_IN_A_GROUP] if not waiting.answer.done()]
                del self._waiting[:MOST_IN_A_GROUP]
                if group:
                    await self._run(group)
                group = []
        finally:
            self._drainer = None
            for waiting in [*group, *self._waiting]:  # the loop is closing: nobody is left waiting for ever
                waiting.answer.cancel()
            self._waiting.clear()

    async def _run(self, group: list[_Waiting]) -> None:
        try:
            async with self._lane:
                outcomes = await self._run_group([waiting.work for waiting in group])
        except Exception as exc:  # noqa: BLE001 - the whole group failed: each of its callers hears why
            for waiting in group:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            return
        for waiting, (result, error) in zip(group, outcomes, strict=True):
            if waiting.answer.done():
                continue
            if error is None:
                waiting.answer.set_result(result)
            else:
                waiting.answer.set_exception(error)


def take_write_lock(connection: Connection, *, wait: bool) -> bool:
    """Begin ``connection``'s transaction with SQLite's write lock (``BEGIN IMMEDIATE``): waiting for it (up to the
    busy timeout) when ``wait``, otherwise only if no other connection holds it. Whether it was taken."""
    connection.begin()
    raw = connection.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    if wait:
        raw.execute("BEGIN IMMEDIATE")
        return True
    raw.execute("PRAGMA busy_timeout=0")
    try:
        raw.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorname != "SQLITE_BUSY":
            raise
        connection.rollback()
        return False
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return True


def close(connection: Connection) -> None:
    """Close a group's connection, rolling back what its transaction left: after a failed commit the pool would
    take the connection back with its transaction still open (SQLAlchemy counts a commit tried as a transaction
    ended), and its next user would see the group's changes, or commit them."""
    raw = connection.connection.dbapi_connection if not connection.invalidated else None
    try:
        if isinstance(raw, sqlite3.Connection) and raw.in_transaction:
            raw.rollback()
    finally:
        connection.close()


def run_members(
    connection: Connection, works: Sequence[Work], session_on: Callable[[Connection, dict[str, Any]], Session]
) -> Iterator[Outcome]:
    """Run ``works`` in order in ``connection``'s transaction, each in a savepoint of its own (when there are more
    than one), giving what each gave as it is done (a caller on the event loop lets other tasks run in between: a
    group does not hold the loop for all its units of work at once). ``session_on`` gives a session that uses the
    transaction without ending it (its commit only writes what it holds, its close leaves the transaction alone),
    with the group's memo (:mod:`~gateway.store.memo`), emptied when a unit of work is rolled back. A failure that
    ended the transaction itself is raised, and so is a lone unit of work's failure: the whole group is lost."""
    raw = connection.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    alone = len(works) == 1
    shared: dict[str, Any] = {}
    for work in works:
        session = session_on(connection, shared)
        try:
            if not alone:
                raw.execute("SAVEPOINT unit_of_work")
            result = work(session)
            session.commit()  # its rows are written: they wait for the group's commit
        except Exception as exc:
            session.close()
            if alone or not raw.in_transaction:  # (SQLite ends a transaction on a full disk, say)
                raise
            raw.execute("ROLLBACK TO unit_of_work")
            raw.execute("RELEASE unit_of_work")
            shared.clear()  # it may hold what the unit of work rolled back read or changed
            yield None, exc
            continue
        session.close()
        if not alone:
            raw.execute("RELEASE unit_of_work")
        yield result, None
