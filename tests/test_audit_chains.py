"""The audit trail's chains: concurrent writers on PostgreSQL append to different chains, and verification still
names every altered, removed or moved entry, in any chain, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from gateway import audit
from gateway.store.database import Database
from gateway.store.models import AuditEntry
from tests.databases import BACKENDS, PG_ENV, PG_SKIP, open_database

AT = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_database(request.param, tmp_path) as database:
        yield database


def write(db: Database) -> dict[int, list[int]]:
    """Four entries, seven on PostgreSQL, where three of them are written while another transaction holds chain 0,
    so they go to chain 1 (SQLite lets one writer in at a time: all go to chain 0). The ids of each chain's entries."""
    with db.unit_of_work() as holder:
        audit.lock_for_write(holder)
        audit.append(holder, "admin", "agency.registered", "000.00.0.H38", {"n": 0}, at=AT)
        if db.dialect == "postgresql":
            for i in range(1, 4):
                with db.unit_of_work() as other:
                    audit.append(other, "portal", "dossier.submitted", f"code-{i}", {"n": i}, at=AT)
    for i in range(4, 7):
        with db.unit_of_work() as session:
            audit.lock_for_write(session)
            audit.append(session, "portal", "dossier.submitted", f"code-{i}", {"n": i}, at=AT)
    with db.unit_of_work() as session:
        chains: dict[int, list[int]] = {}
        for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)):
            chains.setdefault(entry.chain, []).append(entry.id)
    expected = [0, 1] if db.dialect == "postgresql" else [0]
    assert sorted(chains) == expected
    return chains


def check(db: Database, heads: tuple[str, ...] = ()) -> audit.ChainCheck:
    with db.unit_of_work() as session:
        return audit.check_chain(session, expected_heads=heads)


def test_concurrent_writers_use_other_chains_and_every_chain_verifies(db: Database) -> None:
    chains = write(db)
    result = check(db)
    assert result.intact and result.entries == sum(len(ids) for ids in chains.values())
    assert len(result.heads) == len(chains)
    assert check(db, result.heads).intact


def test_an_altered_row_in_any_chain_is_detected(db: Database) -> None:
    chains = write(db)
    for ids in chains.values():
        target = ids[1]
        with db.unit_of_work() as session:
            session.execute(update(AuditEntry).where(AuditEntry.id == target).values(actor="intruder"))
        [problem] = check(db).problems
        assert problem.kind == "altered" and problem.entry_id == target
        with db.unit_of_work() as session:
            session.execute(update(AuditEntry).where(AuditEntry.id == target).values(actor="portal"))
        assert check(db).intact


def test_removed_and_moved_rows_in_any_chain_are_detected(db: Database) -> None:
    chains = write(db)
    heads = check(db).heads
    last_chain = max(chains)
    ids = chains[last_chain]
    with db.unit_of_work() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.id == ids[1]))
    [problem] = check(db).problems
    assert problem.kind == "removed" and f"entry {ids[2]} does not follow entry {ids[0]}" in problem.message
    with db.unit_of_work() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.id == ids[-1]))
    removed_tail = check(db, heads).problems
    assert removed_tail[-1].message == "the recorded head entry is missing (entries were removed from the end)"
    with db.unit_of_work() as session:  # an entry moved to another chain breaks both
        first = session.get(AuditEntry, chains[0][0])
        assert first is not None
        first.chain = 5
    kinds = {problem.kind for problem in check(db).problems}
    assert "removed" in kinds or "altered" in kinds


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=PG_SKIP)
def test_trails_in_two_schemas_of_one_database_do_not_share_chain_locks(tmp_path: Path) -> None:
    # PostgreSQL's advisory locks belong to the whole database: a writer holding chain 0 of one trail must not push
    # the writers of another schema's trail (another gateway, or another test run) onto other chains.
    with open_database("postgresql", tmp_path) as first, open_database("postgresql", tmp_path) as second:
        with first.unit_of_work() as holder:
            held = audit.append(holder, "admin", "agency.registered", "000.00.0.H38", {"n": 0}, at=AT)
            with second.unit_of_work() as other:
                elsewhere = audit.append(other, "portal", "dossier.submitted", "code-1", {"n": 1}, at=AT)
            with first.unit_of_work() as same_trail:
                beside = audit.append(same_trail, "portal", "dossier.submitted", "code-2", {"n": 2}, at=AT)
        assert (held.chain, elsewhere.chain, beside.chain) == (0, 0, 1)
