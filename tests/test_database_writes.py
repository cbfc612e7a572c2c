"""Units of work that write (``Database.write``): on SQLite the process's writers take turns on one thread, in the
order they came; on PostgreSQL they run side by side. Either way each is one transaction, committed or rolled back.

The order is shown with events, not timings: the first writer waits for the second to start. On SQLite the second
cannot start while the first runs, so the first's short wait runs out whatever the machine's speed; on PostgreSQL the
first's wait (bounded, long) ends as soon as the second starts.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from gateway.store.database import Database
from tests.test_outbox import BACKENDS, open_database

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
