"""The database handle and the unit of work.

``Database`` owns the engine and a session factory; ``with db.unit_of_work() as session:`` is one transaction that
commits on success and rolls back on any error, so a change and the outbox messages it causes land together or not
at all. Blocking SQLAlchemy calls run in worker threads from async code (``await db.run(fn)``, or
``await db.write(fn)`` for a unit of work that writes).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from .engine import DEFAULT_URL, Migration, check_schema, has_tables, is_current, make_engine, upgrade

T = TypeVar("T")

#: ``Session.info`` key, true in the sessions of a :class:`Database`: they note in :data:`ADDED` the class of every
#: row added to them (directly or through a relationship), so that a read model knows which kinds of rows the unit of
#: work wrote.
TRACKED = "tracks_added_rows"
#: ``Session.info`` key: the set of the mapped classes of the rows added to the session.
ADDED = "added_row_classes"


def _note_added(session: Session, instance: object) -> None:
    session.info.setdefault(ADDED, set()).add(type(instance))


def added_nothing_of(session: Session, kind: type) -> bool:
    """Whether this unit of work is known to have added no row of ``kind`` through the session (``False`` when the
    session does not track what it adds)."""
    return bool(session.info.get(TRACKED)) and kind not in session.info.get(ADDED, ())


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


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False, info={TRACKED: True})
        event.listen(self._sessions, "transient_to_pending", _note_added)
        # SQLite admits one writer at a time: on it, the process's writing units of work take turns on one thread
        # (one lane per event loop) instead of each waiting on a thread of its own in SQLite's busy handler.
        self._lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] | None = (
            weakref.WeakKeyDictionary() if engine.dialect.name == "sqlite" else None
        )

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

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in one unit of work on a worker thread, off the event loop."""
        return await self._on_thread(work, None)

    async def write(self, work: Callable[[Session], T]) -> T:
        """:meth:`run` for a unit of work that writes.

        On SQLite the process's writers run one at a time, in the order they came, on one worker thread: the
        database would let only one of them write anyway, and the others would each hold a thread polling its busy
        handler (with sleeps) and compete for the interpreter's lock. On PostgreSQL, which writes concurrently, it is
        :meth:`run`. The transaction, its isolation and its locks are the same either way.
        """
        lane = None
        if self._lanes is not None:
            loop = asyncio.get_running_loop()
            lane = self._lanes.get(loop)
            if lane is None:
                lane = self._lanes[loop] = anyio.CapacityLimiter(1)
        return await self._on_thread(work, lane)

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
