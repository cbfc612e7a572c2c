"""The audit trail: hash-chained, append-only; verification detects altered, removed and reordered entries."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from gateway import audit
from gateway.store.database import Database
from gateway.store.models import AuditEntry
from tests.api_support import Gateway
from tests.databases import BACKENDS, open_database

pytest_plugins = ("tests.api_fixtures",)  # the gw, any_gw and signed_gw fixtures

AT = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path):
    with open_database(request.param, tmp_path) as database:
        yield database


def fill(db: Database, n: int = 5) -> list[str]:
    hashes = []
    for i in range(n):
        with db.unit_of_work() as session:
            audit.lock_for_write(session)
            entry = audit.append(session, "admin", "agency.registered", f"000.00.{i}.H38", {"n": i, "vi": "Sở"}, at=AT)
            hashes.append(entry.hash)
    return hashes


def problems(db: Database, **kwargs) -> list[str]:
    with db.unit_of_work() as session:
        return audit.verify(session, **kwargs)


def test_an_intact_chain_verifies(db: Database) -> None:
    hashes = fill(db)
    assert problems(db) == []
    assert problems(db, expected_head=hashes[-1]) == []
    with db.unit_of_work() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert entries[0].prev_hash == audit.GENESIS
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
        assert audit.head(session) == hashes[-1]


def test_an_empty_trail_verifies(db: Database) -> None:
    assert problems(db) == []


@pytest.mark.parametrize(
    "change",
    [
        {"details": {"n": 2, "vi": "Sở", "extra": True}},
        {"actor": "intruder"},
        {"action": "agency.removed"},
        {"subject": "X"},
        {"at": datetime(2026, 11, 23, 2, 0, 1, tzinfo=UTC)},
    ],
)
def test_an_altered_entry_is_detected(db: Database, change: dict) -> None:
    fill(db)
    with db.unit_of_work() as session:
        third = session.scalars(select(AuditEntry.id).order_by(AuditEntry.id).offset(2).limit(1)).one()
        session.execute(update(AuditEntry).where(AuditEntry.id == third).values(**change))
    [problem] = problems(db)
    assert f"entry {third}" in problem and "altered" in problem


def test_an_altered_entry_with_a_recomputed_hash_breaks_the_next_link(db: Database) -> None:
    fill(db)
    with db.unit_of_work() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        target = entries[1]
        forged = audit.entry_hash(
            target.prev_hash,
            at=target.at,
            actor="intruder",
            action=target.action,
            subject=target.subject,
            details=target.details,
        )
        session.execute(update(AuditEntry).where(AuditEntry.id == target.id).values(actor="intruder", hash=forged))
        follower = entries[2].id
    [problem] = problems(db)
    assert f"entry {follower}" in problem and "removed or reordered" in problem


def test_a_removed_entry_is_detected(db: Database) -> None:
    fill(db)
    with db.unit_of_work() as session:
        ids = session.scalars(select(AuditEntry.id).order_by(AuditEntry.id)).all()
        session.execute(delete(AuditEntry).where(AuditEntry.id == ids[2]))
    [problem] = problems(db)
    assert f"entry {ids[3]}" in problem and "removed" in problem


def test_a_removed_first_entry_is_detected(db: Database) -> None:
    fill(db)
    with db.unit_of_work() as session:
        first = session.scalars(select(AuditEntry.id).order_by(AuditEntry.id).limit(1)).one()
        session.execute(delete(AuditEntry).where(AuditEntry.id == first))
    [problem] = problems(db)
    assert "earlier entries were removed" in problem


def test_removing_the_newest_entries_is_detected_against_a_recorded_head(db: Database) -> None:
    hashes = fill(db)
    with db.unit_of_work() as session:
        last = session.scalars(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1)).one()
        session.execute(delete(AuditEntry).where(AuditEntry.id == last))
    assert problems(db) == []  # the chain alone cannot tell...
    assert problems(db, expected_head=hashes[-1]) == [
        "the recorded head entry is missing (entries were removed from the end)"
    ]


def test_concurrent_appends_keep_one_chain(db: Database) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def append(i: int) -> None:
        try:
            barrier.wait()
            with db.unit_of_work() as session:
                audit.lock_for_write(session)
                audit.append(session, "portal", "dossier.submitted", f"code-{i}", {"i": i})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert problems(db) == []
    with db.unit_of_work() as session:
        assert len(session.scalars(select(AuditEntry)).all()) == 20


async def test_the_api_writes_a_verifiable_trail(gw: Gateway) -> None:
    code = (await gw.submitted())["code"]
    await gw.event(code, "received")
    await gw.client.post(
        f"/api/v1/dossiers/{code}/withdraw",
        json={"reason": "Không cần nữa"},
        headers={"Authorization": "Bearer portal-token-0123456789abcdef"},
    )
    with gw.db.unit_of_work() as session:
        assert audit.verify(session) == []
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert [e.action for e in entries] == ["dossier.submitted", "dossier.received", "dossier.withdrawn"]
        assert all(e.subject == code for e in entries)
        session.execute(update(AuditEntry).where(AuditEntry.id == entries[1].id).values(details={}))
    with gw.db.unit_of_work() as session:
        assert len(audit.verify(session)) == 1
