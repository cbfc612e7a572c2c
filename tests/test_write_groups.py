"""Short writes that come in together on SQLite are committed together (``gateway.store.write_groups``).

Which writes make a group is not left to chance here: tasks started together all queue their writes before the
group's runner, started by the first of them, gets its turn (asyncio runs ready tasks in the order they became
ready).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.store.database import Database
from gateway.store.memo import memo
from gateway.store.models import DaySequence
from gateway.store.write_groups import MOST_IN_A_GROUP
from tests.databases import open_database


def _insert(agency: str) -> Callable[[Session], str]:
    def work(session: Session) -> str:
        session.execute(
            text("INSERT INTO day_sequences (agency_code, day, last) VALUES (:a, '301231', 1)"), {"a": agency}
        )
        return agency

    return work


def _agencies(session: Session) -> list[str]:
    return list(session.execute(text("SELECT agency_code FROM day_sequences ORDER BY agency_code")).scalars())


def _commits(db: Database) -> list[int]:
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda _connection: commits.append(1))
    return commits


def _together(db: Database, works: list[Callable[[Session], Any]]) -> list[Any]:
    """Start a short write of each of ``works`` at once; what each gave (its result, or the exception it raised)."""

    async def main() -> list[Any]:
        return await asyncio.gather(*(db.write(work, short=True) for work in works), return_exceptions=True)

    return asyncio.run(main())


def test_short_writes_that_come_in_together_are_committed_together(tmp_path: Path) -> None:
    with open_database("sqlite", tmp_path) as db:
        commits = _commits(db)
        results = _together(db, [_insert(agency) for agency in "ABCDE"])
        assert len(commits) == 1
        assert results == list("ABCDE")
        assert asyncio.run(db.run(_agencies)) == list("ABCDE")


def test_a_group_holds_so_many_writes_at_most(tmp_path: Path) -> None:
    agencies = [f"A{index:02d}" for index in range(MOST_IN_A_GROUP + 4)]
    with open_database("sqlite", tmp_path) as db:
        commits = _commits(db)
        assert _together(db, [_insert(agency) for agency in agencies]) == agencies
        assert len(commits) == 2
        assert asyncio.run(db.run(_agencies)) == agencies


def test_a_write_that_fails_is_taken_back_alone_and_its_caller_hears_why(tmp_path: Path) -> None:
    def fails(session: Session) -> None:
        _insert("F")(session)
        raise RuntimeError("refused")

    with open_database("sqlite", tmp_path) as db:
        commits = _commits(db)
        # "B" again breaks the table's key: only that statement fails, and the write that made it is taken back.
        results = _together(db, [_insert("A"), fails, _insert("B"), _insert("B"), _insert("C")])
        assert len(commits) == 1
        assert results[0] == "A"
        assert isinstance(results[1], RuntimeError)
        assert results[2] == "B"
        assert isinstance(results[3], IntegrityError)
        assert results[4] == "C"
        assert asyncio.run(db.run(_agencies)) == ["A", "B", "C"]


def test_rows_a_write_left_for_its_commit_are_written_with_its_group(tmp_path: Path) -> None:
    """A unit of work may leave new rows in its session for the commit to write (no flush of its own): its group
    writes them before the next unit of work runs."""

    def adds(agency: str) -> Callable[[Session], str]:
        def work(session: Session) -> str:
            session.add(DaySequence(agency_code=agency, day="301231", last=1))
            return agency

        return work

    with open_database("sqlite", tmp_path) as db:
        assert _together(db, [adds("A"), _agencies, adds("B")]) == ["A", ["A"], "B"]
        assert asyncio.run(db.run(_agencies)) == ["A", "B"]


def test_a_write_sees_what_the_writes_before_it_in_its_group_changed(tmp_path: Path) -> None:
    with open_database("sqlite", tmp_path) as db:
        results = _together(db, [_insert("A"), _agencies, _insert("B"), _agencies])
        assert results == ["A", ["A"], "B", ["A", "B"]]


def test_a_groups_units_of_work_share_what_they_read_until_one_is_rolled_back(tmp_path: Path) -> None:
    """The transaction's memo (``gateway.store.memo``) is the group's: what one unit of work read, the next may
    reuse; a unit of work rolled back empties it, since it may hold what that one changed."""

    def keeps(value: str) -> Callable[[Session], list[str]]:
        def work(session: Session) -> list[str]:
            seen = list(memo(session).get("read", []))
            memo(session).setdefault("read", []).append(value)
            return seen

        return work

    def keeps_then_fails(session: Session) -> None:
        keeps("rolled back")(session)
        raise RuntimeError("refused")

    with open_database("sqlite", tmp_path) as db:
        results = _together(db, [keeps("A"), keeps("B"), keeps_then_fails, keeps("C")])
        assert results[:2] == [[], ["A"]]
        assert isinstance(results[2], RuntimeError)
        assert results[3] == []
        # A group of its own later: a new memo.
        assert _together(db, [keeps("D")]) == [[]]


def test_when_the_groups_commit_fails_every_caller_hears_it_and_nothing_is_kept(tmp_path: Path) -> None:
    with open_database("sqlite", tmp_path) as db:

        def refuse(_connection: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        event.listen(db.engine, "commit", refuse)
        results = _together(db, [_insert("A"), _insert("B")])
        event.remove(db.engine, "commit", refuse)
        assert [str(result) for result in results] == ["disk I/O error"] * 2
        assert asyncio.run(db.run(_agencies)) == []
        # The next group goes in as usual.
        assert _together(db, [_insert("C")]) == ["C"]
        assert asyncio.run(db.run(_agencies)) == ["C"]


def test_a_failure_that_ends_the_transaction_fails_the_whole_group(tmp_path: Path) -> None:
    def ends_the_transaction(session: Session) -> None:
        raw = session.connection().connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        raw.rollback()  # as SQLite does itself on a full disk or an I/O error
        raise sqlite3.OperationalError("database or disk is full")

    with open_database("sqlite", tmp_path) as db:
        results = _together(db, [_insert("A"), ends_the_transaction, _insert("B")])
        assert [str(result) for result in results] == ["database or disk is full"] * 3
        assert asyncio.run(db.run(_agencies)) == []


def test_a_caller_that_stops_waiting_before_its_write_ran_is_left_out(tmp_path: Path) -> None:
    ran: list[str] = []

    def noted(agency: str) -> Callable[[Session], str]:
        def work(session: Session) -> str:
            ran.append(agency)
            return _insert(agency)(session)

        return work

    with open_database("sqlite", tmp_path) as db:

        async def main() -> list[Any]:
            tasks = [asyncio.create_task(db.write(noted(agency), short=True)) for agency in "ABC"]
            await asyncio.sleep(0)  # each task has queued its write; the group has not run yet
            tasks[1].cancel()
            return await asyncio.gather(*tasks, return_exceptions=True)

        results = asyncio.run(main())
        assert results[0] == "A"
        assert isinstance(results[1], asyncio.CancelledError)
        assert results[2] == "C"
        assert ran == ["A", "C"]
        assert asyncio.run(db.run(_agencies)) == ["A", "C"]


@pytest.mark.parametrize("short", [True, False])
def test_short_and_other_writes_take_turns(tmp_path: Path, short: bool) -> None:
    """A group and a write on a worker thread share the loop's turn at the write lock: each lands, in order."""
    with open_database("sqlite", tmp_path) as db:

        async def main() -> list[Any]:
            return await asyncio.gather(
                db.write(_insert("A"), short=True), db.write(_insert("B"), short=short), db.write(_insert("C"))
            )

        assert asyncio.run(main()) == ["A", "B", "C"]
        assert asyncio.run(db.run(_agencies)) == ["A", "B", "C"]
