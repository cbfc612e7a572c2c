"""What a claim reads: only the outbox's open messages, however many delivered ones the table keeps.

A gateway running for months keeps every delivered message (the operators' record of what was sent), and the
delivered ones are the oldest: the lowest ids. A claim reads eligible messages in id order; it must not pass over
the delivered past to find them (on PostgreSQL, with the table's statistics up to date, a plain walk of the primary
key from the lowest id looks cheapest to the planner, and visits every delivered message at every claim). The plans
are read back from the database itself (``EXPLAIN``) while the claim runs its own statements.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select, text, update

from gateway import outbox
from gateway.store.database import Database
from gateway.store.models import OutboxMessage
from tests.databases import BACKENDS, open_database
from tests.test_outbox import LEASE, NOW

#: Delivered messages (the past: the lowest ids), then open ones, each of a dossier of its own.
PAST, OPEN = 1600, 400


def _enqueue(db: Database, keys: list[str]) -> None:
    """One pending message per ordering key of ``keys``, in order (in one statement: a backlog arrives in bursts)."""
    rows = [
        {"kind": "deliver", "target": "A", "payload": {}, "idempotency_key": f"k{n}", "ordering_key": key}
        for n, key in enumerate(keys)
    ]
    with db.unit_of_work() as session:
        session.execute(insert(OutboxMessage), rows)


def _backlog(db: Database) -> list[int]:
    """The delivered past and the open messages after it: the open ones' ids."""
    _enqueue(db, [f"D-{n}" for n in range(PAST + OPEN)])
    with db.unit_of_work() as session:
        ids = list(session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id)))
        session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids[:PAST])).values(state=outbox.DONE))
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("ANALYZE outbox"))  # as autovacuum would: the planner knows what the table holds
    return ids[PAST:]


@contextmanager
def _plans_of_claims(db: Database, explain: str) -> Iterator[list[Any]]:
    """The plans of the claim's reads of eligible messages, collected while the claim runs."""
    plans: list[Any] = []

    def listener(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().startswith("SELECT outbox.id"):
            cursor.execute(explain + statement, parameters)
            plans.append(cursor.fetchall())

    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        yield plans
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_database(request.param, tmp_path) as database:
        yield database


def test_a_claim_reads_only_open_messages_however_long_the_past(db: Database) -> None:
    open_ids = _backlog(db)
    postgres = db.engine.dialect.name == "postgresql"
    explain = "EXPLAIN (ANALYZE, FORMAT JSON) " if postgres else "EXPLAIN QUERY PLAN "
    for max_in_flight in (None, 10):  # the plain claim, and the claim by pages with per-target limits
        with _plans_of_claims(db, explain) as plans, db.unit_of_work() as session:
            claimed = outbox.claim(
                session, worker_id="w1", limit=5, lease=LEASE, now=NOW, max_in_flight_per_target=max_in_flight
            )
            assert [m.id for m in claimed] == open_ids[:5]
            session.rollback()  # the next round claims them again
        assert plans, "the claim ran no read of eligible messages"
        for rows in plans:
            if postgres:
                document = rows[0][0]
                root = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
                for node in _nodes(root):
                    if node.get("Relation Name") == "outbox" and node.get("Alias") == "outbox":
                        visited = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
                        visited += node.get("Rows Removed by Index Recheck", 0)
                        assert visited <= OPEN, (node.get("Index Name"), visited)  # never the 1,600 delivered ones
            else:
                steps = [row[-1] for row in rows]
                reads = [step for step in steps if step.startswith(("SCAN outbox", "SEARCH outbox"))]
                # from the partial index of what is open, in id order: never a walk of the table or of its primary
                # key, nor every due message sorted
                assert reads and all("ix_outbox_open" in step for step in reads), steps
                assert not any("TEMP B-TREE" in step for step in steps), steps


def _claim_steps(db: Database, max_in_flight: int | None) -> int:
    """How much work SQLite's virtual machine does for one claim of 5 (its instructions, in hundreds)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    with db.unit_of_work() as session:
        sqlite_connection = session.connection().connection.driver_connection
        sqlite_connection.set_progress_handler(count, 100)
        try:
            claimed = outbox.claim(
                session, worker_id="w1", limit=5, lease=LEASE, now=NOW, max_in_flight_per_target=max_in_flight
            )
        finally:
            sqlite_connection.set_progress_handler(None, 0)
        assert len(claimed) == 5
        session.rollback()
    return steps


@pytest.mark.parametrize("max_in_flight", [None, 10], ids=["plain", "per-target"])
def test_a_claim_on_sqlite_reads_about_as_many_messages_as_it_takes(tmp_path: Path, max_in_flight: int | None) -> None:
    """Left to itself, SQLite's planner read every due message through the states' index and sorted them all, so a
    claim of five cost nine times more over 2,000 due messages than over 200; read in id order from the partial index
    of open messages, it stops once it has its five (counted in SQLite's own instructions, which do not depend on the
    machine's speed)."""
    steps = {}
    for backlog in (200, 2000):
        with open_database("sqlite", tmp_path / str(backlog)) as db:
            _enqueue(db, [f"D-{n}" for n in range(backlog)])
            steps[backlog] = _claim_steps(db, max_in_flight)
    assert steps[2000] < 1.5 * steps[200], steps


#: Dossiers with two messages each, both pending: the first is eligible, the second held back by it.
KEYS = 2500


def test_the_look_up_of_earlier_messages_stays_within_the_key_on_a_fresh_table(db: Database) -> None:
    """A burst just enqueued (no statistics yet): each candidate's look-up of an earlier message still blocking it
    reads its own key's messages, never every open message (PostgreSQL had intersected the ordering key's index with
    the states' index for each candidate: a claim of seconds on a backlog of thousands)."""
    _enqueue(db, [f"D-{n % KEYS}" for n in range(KEYS * 2)])
    postgres = db.engine.dialect.name == "postgresql"
    explain = "EXPLAIN (ANALYZE, FORMAT JSON) " if postgres else "EXPLAIN QUERY PLAN "
    for max_in_flight in (None, 10):
        with _plans_of_claims(db, explain) as plans, db.unit_of_work() as session:
            claimed = outbox.claim(
                session, worker_id="w1", limit=5, lease=LEASE, now=NOW, max_in_flight_per_target=max_in_flight
            )
            assert [m.payload for m in claimed] == [{}] * 5
            assert len({m.ordering_key for m in claimed}) == 5  # one per dossier: the second of each waits
            session.rollback()
        assert plans
        for rows in plans:
            if postgres:
                document = rows[0][0]
                root = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
                for node in _nodes(root):
                    if node.get("Actual Loops", 1) > 1:  # the look-up, once per candidate
                        visited = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
                        assert visited <= 2, (node.get("Node Type"), node.get("Index Name"), visited)
            else:
                lookups = [row[-1] for row in rows if row[-1].startswith("SEARCH earlier")]
                assert lookups and all("ix_outbox_blocking" in step for step in lookups), rows


def test_the_claim_writes_the_open_states_as_the_partial_index_does() -> None:
    """The claim's term and the index's predicate are written alike (a planner matches them as written)."""
    from sqlalchemy.dialects import postgresql, sqlite

    from gateway.outbox.claims import _OPEN
    from gateway.store.models import OUTBOX_OPEN_SQL

    for dialect in (sqlite.dialect(), postgresql.dialect()):
        assert str(_OPEN.compile(dialect=dialect)) == f"outbox.{OUTBOX_OPEN_SQL}"
