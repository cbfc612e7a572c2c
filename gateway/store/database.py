"""The database handle and the unit of work.

``Database`` owns the engine and a session factory; ``with db.unit_of_work() as session:`` is one transaction that
commits on success and rolls back on any error, so a change and the outbox messages it causes land together or not
at all. Blocking SQLAlchemy calls run in worker threads from async code (``await db.run(fn)``, or
``await db.write(fn)`` for a unit of work that writes); on SQLite the short ones that come in together are committed
together (:mod:`~gateway.store.write_groups`), on the event loop's thread when they need not wait for the write lock.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import anyio
import anyio.to_thread
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from .engine import DEFAULT_URL, Migration, check_schema, has_tables, is_current, make_engine, upgrade
from .memo import MEMO
from .write_groups import Outcome, Work, WriteGroups, close, run_members, take_write_lock
from .written import TRACKED, note_added

T = TypeVar("T")


def lock_for_write(session: Session) -> None:
    """Take the database's write lock at the start of a unit of work that writes (SQLite: ``BEGIN IMMEDIATE``).

    SQLite lets one writer at a time in; a transaction that reads first and writes later fails when another writer
    committed in between (its snapshot is stale), so writers take the lock before their first read. It is a no-op on
    PostgreSQL (row locks and advisory locks serialise what must be) and when the transaction has already begun
    (pysqlite begins a deferred transaction only before the first write: a caller that already wrote holds the lock).
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    dbapi_connection = connection.connection.dbapi_connection
    if dbapi_connection is not None and not dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass
class CommitPlace:
    """Where a group of short units of work commits on SQLite (:meth:`Database.write`): on the event loop's thread
    while the last commit measured there took less than ``limit`` seconds (the ``fsync`` of a fast disk), on a worker
    thread otherwise, so that a slow disk, or a commit that checkpoints the log, does not hold up the loop. While
    commits go to a worker thread, one in ``probe_every`` still runs on the loop's thread, to notice when they are
    quick again (a commit timed on a worker thread would also count its waits for the interpreter's lock)."""

    limit: float = 0.002
    probe_every: int = 64
    last: float = 0.0
    skipped: int = 0

    def on_loop(self) -> bool:
        if self.last < self.limit:
            return True
        self.skipped += 1
        if self.skipped < self.probe_every:
            return False
        self.skipped = 0
        return True

    def took(self, seconds: float) -> None:
        self.last = seconds


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.commit_place = CommitPlace()
        self._sessions = sessionmaker(engine, expire_on_commit=False, info={TRACKED: True})
        event.listen(self._sessions, "transient_to_pending", note_added)
        # SQLite admits one writer at a time: on it, the process's writing units of work take turns on one thread
        # (one lane per event loop) instead of each waiting on a thread of its own in SQLite's busy handler, and
        # the short ones are committed in groups (one group writer per event loop).
        self._lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] | None = (
            weakref.WeakKeyDictionary() if engine.dialect.name == "sqlite" else None
        )
        self._groups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WriteGroups] = weakref.WeakKeyDictionary()

    @classmethod
    def connect(cls, url: str = DEFAULT_URL) -> Database:
        return cls(make_engine(url))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """One transaction: committed when the block ends normally, rolled back otherwise."""
        with self._sessions() as session, session.begin():
            yield session

    async def run(self, work: Callable[[Session], T], *, short: bool = False) -> T:
        """Run ``work(session)`` in one unit of work on a worker thread, off the event loop. ``short``: a read of a
        few rows, run on the event loop's thread on SQLite (readers never wait for writers there: WAL)."""
        if short and self._lanes is not None:
            with self.unit_of_work() as session:
                return work(session)
        return await self._on_thread(work, None)

    async def write(self, work: Callable[[Session], T], *, short: bool = False) -> T:
        """:meth:`run` for a unit of work that writes.

        On SQLite the process's writers run one at a time, in the order they came: the database would let only one
        of them write anyway, and the others would each hold a thread polling its busy handler (with sleeps) and
        compete for the interpreter's lock. ``short`` units of work (a few statements about one dossier: nothing
        that loops over a backlog or waits on anything but the database) that come in together are committed
        together, each in a savepoint of its own (:mod:`~gateway.store.write_groups`): one commit, one wait for
        the disk, for the group. A group runs on the event loop's thread when the database's write lock is free at
        once, sparing the hand-off of its statements to a worker thread; its commit runs there too while commits
        are quick (:class:`CommitPlace`). When another process holds the lock, the group waits for it on a worker
        thread like any other writer: the event loop never waits for another process. On PostgreSQL, which writes
        concurrently, it is :meth:`run`. Each unit of work's changes are kept or taken back whole, and no caller
        hears of its unit of work before the commit that keeps it.
        """
        if self._lanes is None:
            return await self._on_thread(work, None)
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lanes[loop] = anyio.CapacityLimiter(1)
        if not short:
            return await self._on_thread(work, lane)
        groups = self._groups.get(loop)
        if groups is None:
            groups = self._groups[loop] = WriteGroups(lane, self._run_group)
        return cast(T, await groups.write(work))

    async def _run_group(self, works: Sequence[Work]) -> list[Outcome]:
        """Short units of work in one transaction, the lane held (see :meth:`write`)."""
        connection = self.engine.connect()
        try:
            if not take_write_lock(connection, wait=False):
                return await anyio.to_thread.run_sync(self._run_group_waiting, works)
            outcomes: list[Outcome] = []
            for outcome in run_members(connection, works, self._joined):
                outcomes.append(outcome)
                if len(outcomes) < len(works):
                    await asyncio.sleep(0)  # the loop's other tasks run between two units of work
            await self._commit(connection)
            return outcomes
        finally:
            close(connection)

    def _run_group_waiting(self, works: Sequence[Work]) -> list[Outcome]:
        """:meth:`_run_group` waiting for another connection's write lock (on a worker thread)."""
        connection = self.engine.connect()
        try:
            take_write_lock(connection, wait=True)
            outcomes = list(run_members(connection, works, self._joined))
            connection.commit()
            return outcomes
        finally:
            close(connection)

    def _joined(self, connection: Connection, shared: dict[str, Any]) -> Session:
        """A session in ``connection``'s transaction that never ends it (:func:`run_members` does), with the memo
        ``shared`` by its group."""
        return self._sessions(bind=connection, join_transaction_mode="rollback_only", info={MEMO: shared})

    async def _commit(self, connection: Connection) -> None:
        """Commit a group where :attr:`commit_place` says."""
        if not self.commit_place.on_loop():
            await anyio.to_thread.run_sync(connection.commit)
            return
        start = time.perf_counter()
        connection.commit()
        self.commit_place.took(time.perf_counter() - start)

    async def _on_thread(self, work: Callable[[Session], T], limiter: anyio.CapacityLimiter | None) -> T:
        """``work`` in one unit of work on a worker thread (``limiter``: whose thread; ``None``: anyio's pool)."""

        def call() -> T:
            with self.unit_of_work() as session:
                return work(session)

        return await anyio.to_thread.run_sync(call, limiter=limiter)

    @property
    def embedded(self) -> bool:
        """True for SQLite, the embedded database: migrated whenever a command opens it."""
        return self.dialect == "sqlite"

    def upgrade(self) -> list[Migration]:
        """Apply the pending migrations; the ones applied, oldest first."""
        return upgrade(self.engine)

    def ensure_schema(self) -> None:
        """Apply migrations (the embedded default is upgraded on start)."""
        upgrade(self.engine)

    def check_schema(self) -> None:
        """Nothing when the schema is at the newest migration, else :class:`~gateway.store.engine.SchemaError`."""
        check_schema(self.engine)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - readiness: any failure means not ready
            return False
        return True

    def is_current(self) -> bool:
        return has_tables(self.engine) and is_current(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
