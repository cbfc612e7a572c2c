"""Units of work that write (``Database.write``): on SQLite the process's writers take turns on one thread, in the
order they came; on PostgreSQL they run side by side. Either way each is one transaction, committed or rolled back.
Short units of work (``short=True``) run on the event loop's thread on SQLite, unless they would wait for another
connection's write lock.

The order is shown with events, not timings: the first writer waits for the second to start. On SQLite the second
cannot start while the first runs, so the first's short wait runs out whatever the machine's speed; on PostgreSQL the
first's wait (bounded, long) ends as soon as the second starts.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from gateway.store.database import CommitPlace, Database
from tests.databases import BACKENDS, open_database

#: How long the first writer waits for the second one to start: on SQLite the wait always runs out (it only makes
#: room for a second writer that should not start); on PostgreSQL it ends when the second starts.
WAIT = {"sqlite": 0.5, "postgresql": 60.0}


def _two_writers(db: Database, wait: float) -> tuple[bool, list[str]]:
    """Two concurrent writes; whether the first saw the second start while it ran, and the order of their steps."""
    steps: list[str] = []
    first_started, second_started = threading.Event(), threading.Event()

    def first(session: Session) -> bool:
        steps.append("first began")
        first_started.set()
        saw = second_started.wait(wait)
        session.execute(text("UPDATE day_sequences SET last = last WHERE 1 = 0"))
        steps.append("first ended")
        return saw

    def second(session: Session) -> None:
        steps.append("second began")
        second_started.set()
        session.execute(text("UPDATE day_sequences SET last = last WHERE 1 = 0"))
        steps.append("second ended")

    async def main() -> bool:
        one = asyncio.create_task(db.write(first))
        await asyncio.to_thread(first_started.wait, 10)
        two = asyncio.create_task(db.write(second))
        saw = await one
        await two
        return saw

    return asyncio.run(main()), steps


@pytest.mark.parametrize("kind", BACKENDS)
def test_writers_take_turns_on_sqlite_and_run_together_on_postgresql(kind: str, tmp_path: Path) -> None:
    with open_database(kind, tmp_path) as db:
        saw_second, steps = _two_writers(db, WAIT[kind])
    if kind == "sqlite":
        assert not saw_second
        assert steps == ["first began", "first ended", "second began", "second ended"]
    else:
        assert saw_second
        assert steps[:2] == ["first began", "second began"]


def test_a_failed_write_rolls_back_and_lets_the_next_writer_in(tmp_path: Path) -> None:
    with open_database("sqlite", tmp_path) as db:

        def fails(session: Session) -> None:
            session.execute(text("INSERT INTO day_sequences (agency_code, day, last) VALUES ('A', '301231', 7)"))
            raise RuntimeError("refused")

        def reads(session: Session) -> list[int]:
            return list(session.execute(text("SELECT last FROM day_sequences")).scalars())

        def writes(session: Session) -> None:
            session.execute(text("INSERT INTO day_sequences (agency_code, day, last) VALUES ('B', '301231', 1)"))

        async def main() -> list[int]:
            with pytest.raises(RuntimeError, match="refused"):
                await db.write(fails)
            await asyncio.wait_for(db.write(writes), 10)
            return await db.run(reads)

        assert asyncio.run(main()) == [1]
        # A new event loop (as each command or test has) gets a lane of its own: nothing is left held.
        assert asyncio.run(asyncio.wait_for(db.write(reads), 10)) == [1]


# -- short units of work (SQLite) ------------------------------------------------------------------------------------


def _commit_threads(db: Database) -> list[int]:
    """The thread of every commit of ``db``'s engine, in order."""
    threads: list[int] = []
    event.listen(db.engine, "commit", lambda _connection: threads.append(threading.get_ident()))
    return threads


def _insert(agency: str) -> Callable[[Session], int]:
    def work(session: Session) -> int:
        session.execute(
            text("INSERT INTO day_sequences (agency_code, day, last) VALUES (:a, '301231', 1)"), {"a": agency}
        )
        return threading.get_ident()

    return work


def _agencies(session: Session) -> list[str]:
    return list(session.execute(text("SELECT agency_code FROM day_sequences ORDER BY agency_code")).scalars())


@pytest.mark.parametrize(("limit", "commit_on_loop"), [(float("inf"), True), (0.0, False)])
def test_a_short_write_runs_on_the_loops_thread_and_commits_where_its_commit_place_says(
    tmp_path: Path, limit: float, commit_on_loop: bool
) -> None:
    with open_database("sqlite", tmp_path) as db:
        db.commit_place = CommitPlace(limit=limit, last=0.0 if commit_on_loop else 1.0, probe_every=10**6)
        commits = _commit_threads(db)

        async def main() -> tuple[int, int, list[str]]:
            worked_on = await db.write(_insert("A"), short=True)
            return threading.get_ident(), worked_on, await db.run(_agencies)

        loop_thread, worked_on, stored = asyncio.run(main())
    assert worked_on == loop_thread
    assert stored == ["A"]
    assert (commits[0] == loop_thread) is commit_on_loop


def test_a_short_write_waits_for_another_connections_lock_off_the_loop(tmp_path: Path) -> None:
    """While another connection (another process, say) holds the write lock, the short write waits for it on a worker
    thread: the loop goes on (the test's own task runs again before the lock is let go), and the write lands
    afterwards."""
    with open_database("sqlite", tmp_path) as db:
        holder = sqlite3.connect(tmp_path / "gw.db", isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        loop_ran = threading.Event()

        def let_go() -> None:
            loop_ran.wait(30)  # a loop blocked by the write would never set it: the lock is let go after 30 s anyway
            holder.execute("INSERT INTO day_sequences (agency_code, day, last) VALUES ('H', '301231', 1)")
            holder.execute("COMMIT")

        off_the_loop = threading.Event()

        async def main() -> tuple[bool, int, int, list[str]]:
            loop_thread = threading.get_ident()

            def checked_out(*_args: object) -> None:
                if threading.get_ident() != loop_thread:
                    off_the_loop.set()  # the write went to a worker thread to wait for the lock

            event.listen(db.engine, "checkout", checked_out)
            releaser = threading.Thread(target=let_go)
            releaser.start()
            writing = asyncio.create_task(db.write(_insert("W"), short=True))
            # Waiting for the lock on the loop's thread, the write would hold this task up until the lock is let go.
            await asyncio.to_thread(off_the_loop.wait, 30)
            loop_ran.set()
            ran_first = not writing.done()
            worked_on = await asyncio.wait_for(writing, 60)
            releaser.join()
            event.remove(db.engine, "checkout", checked_out)
            return ran_first, loop_thread, worked_on, await db.run(_agencies)

        try:
            ran_first, loop_thread, worked_on, stored = asyncio.run(main())
        finally:
            holder.close()
    assert off_the_loop.is_set()
    assert ran_first
    assert worked_on != loop_thread
    assert stored == ["H", "W"]


def test_a_failed_short_write_rolls_back_and_lets_the_next_one_in(tmp_path: Path) -> None:
    with open_database("sqlite", tmp_path) as db:

        def fails(session: Session) -> None:
            _insert("F")(session)
            raise RuntimeError("refused")

        async def main() -> list[str]:
            with pytest.raises(RuntimeError, match="refused"):
                await db.write(fails, short=True)
            await asyncio.wait_for(db.write(_insert("N"), short=True), 10)
            return await db.run(_agencies)

        assert asyncio.run(main()) == ["N"]


def test_commits_go_back_to_the_loop_once_a_probe_finds_them_quick() -> None:
    place = CommitPlace(limit=0.002, probe_every=3)
    assert place.on_loop()
    place.took(0.010)  # a slow commit (a slow disk, a checkpoint): the next ones go to a worker thread
    assert [place.on_loop() for _ in range(3)] == [False, False, True]  # the third is a probe, on the loop
    place.took(0.010)
    assert [place.on_loop() for _ in range(3)] == [False, False, True]
    place.took(0.0005)  # quick again
    assert [place.on_loop() for _ in range(3)] == [True, True, True]


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_short_read_runs_on_the_loops_thread_on_sqlite_only(kind: str, tmp_path: Path) -> None:
    """SQLite's readers never wait for its writers (WAL): a short read needs no worker thread there."""
    with open_database(kind, tmp_path) as db:

        def read(session: Session) -> tuple[int, list[str]]:
            return threading.get_ident(), _agencies(session)

        async def main() -> tuple[int, tuple[int, list[str]], tuple[int, list[str]]]:
            await db.write(_insert("R"))
            return threading.get_ident(), await db.run(read, short=True), await db.run(read)

        loop_thread, (short_on, short_rows), (long_on, long_rows) = asyncio.run(main())
    assert short_rows == long_rows == ["R"]
    assert long_on != loop_thread
    assert (short_on == loop_thread) is (kind == "sqlite")
