"""New rows written at once (``gateway.store.written.write_new``): the same rows, and the same objects in the session,
as the unit of work's flush would have left, without a flush; a flush instead when something else waits for one.

On SQLite and (when ``DVC_GATEWAY_TEST_POSTGRES_URL`` is set) on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint, cast, event, inspect, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from gateway.runtime import Runtime
from gateway.services.files import store_blob
from gateway.store.models import Component, Dossier, Fee, HistoryEntry
from gateway.store.written import ADDED, append_new, write_new
from tests.api_support import AGENCY, PROCEDURE, open_runtime
from tests.databases import BACKENDS

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
COLLECTIONS = ("components", "fees", "history")
#: Columns that differ between two dossiers written the same way: their own ids, codes and references.
OWN = {"id", "code", "dossier_id"}


@pytest.fixture(params=BACKENDS)
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    with open_runtime(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
def statements(runtime: Runtime) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.append(sql.split(None, 1)[0].upper())

    event.listen(runtime.db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", before)


def _dossier(session: Session, code: str) -> Dossier:
    """A new dossier with two components (their files stored), two fees and its first history entry; several columns
    left to their defaults (channel, extra, received_at, result, version...)."""
    digest = store_blob(session, b"%PDF-1.7 one")
    signature = store_blob(session, b"detached signature")
    components = [
        Component(
            code=f"TP{i}",
            name="Đơn đề nghị",
            filename=f"tp{i}.pdf",
            content_type="application/pdf",
            size=12,
            sha256=digest,
            detached_signature_sha256=signature if i == 2 else None,
            verification={"verdict": "valid" if i == 1 else "unsigned", "signers": []},
            created_at=NOW,
        )
        for i in (1, 2)
    ]
    dossier = Dossier(
        code=code,
        procedure_code=PROCEDURE,
        agency_code=AGENCY,
        lead_agency_code=AGENCY,
        status="submitted",
        applicant={"kind": "citizen", "full_name": "Nguyễn Văn A", "id_number": "001099012345"},
        summary="Cấp giấy phép",
        delivery_address=None,  # given as None: JSON's null, where a column left to its default None is SQL NULL
        originals_check_required=False,
        submitted_at=NOW,
        due_at=NOW,
        updated_at=NOW,
        components=components,
        fees=[Fee(code="LP1", name="Lệ phí", amount=150000), Fee(code="LP2", amount=0, paid=True, paid_at=NOW)],
    )
    dossier.history.append(HistoryEntry(status="submitted", at=NOW, actor="portal", note=None, details={}))
    return dossier


def _columns(row: object) -> dict[str, Any]:
    return {prop.key: getattr(row, prop.key) for prop in inspect(type(row)).column_attrs if prop.key not in OWN}


def _graph(dossier: Dossier) -> dict[str, Any]:
    """Every column value of the dossier and of its collections' rows (ids and codes aside)."""
    return {
        "dossier": _columns(dossier),
        **{name: [_columns(row) for row in getattr(dossier, name)] for name in COLLECTIONS},
    }


def _raw(runtime: Runtime, code: str) -> dict[str, list[tuple[Any, ...]]]:
    """The stored rows as the database holds them (JSON columns as their text: JSON's null is not SQL NULL)."""
    tables = {"dossier": Dossier, "components": Component, "fees": Fee, "history": HistoryEntry}
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with runtime.db.unit_of_work() as session:
        dossier_id = session.scalars(select(Dossier.id).where(Dossier.code == code)).one()
        for name, kind in tables.items():
            table = inspect(kind).local_table
            columns = [
                cast(column, Text) if isinstance(column.type, JSON) else column
                for column in table.columns
                if column.key not in OWN
            ]
            owner = table.c.id if kind is Dossier else table.c.dossier_id
            query = select(*columns).where(owner == dossier_id).order_by(table.c.id)
            rows[name] = [tuple(row) for row in session.execute(query)]
    return rows


def _stored(runtime: Runtime, code: str) -> dict[str, Any]:
    with runtime.db.unit_of_work() as session:
        dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one()
        return _graph(dossier)


def test_written_at_once_as_a_flush_would_have_left_it(
    runtime: Runtime, statements: list[str], flushes: list[Session]
) -> None:
    with runtime.db.unit_of_work() as session:
        flushed = _dossier(session, "FLUSHED")
        session.add(flushed)
        session.flush()
        left_by_flush = _graph(flushed)
    flushes.clear()
    with runtime.db.unit_of_work() as session:
        dossier = _dossier(session, "AT-ONCE")
        statements.clear()
        write_new(session, dossier, COLLECTIONS)
        # One INSERT a row, no flush, and nothing left for one.
        assert statements == ["INSERT"] * 6
        assert flushes == []
        assert not session.new and not session.dirty
        rows = [dossier, *dossier.components, *dossier.fees, *dossier.history]
        assert all(inspect(row).persistent and row.id is not None for row in rows)
        assert {c.dossier_id for c in rows[1:]} == {dossier.id}
        assert all(c.dossier is dossier for c in rows[1:])
        assert [h.id for h in dossier.history] == sorted(h.id for h in dossier.history)
        assert {Dossier, Component, Fee, HistoryEntry} <= session.info[ADDED]
        statements.clear()
        in_session = _graph(dossier)  # every column and collection loaded: read without a statement
        assert statements == []
        assert in_session == left_by_flush
        assert dossier.version == 1 and dossier.channel == "online" and dossier.extra == {}
        assert dossier.received_at is None and dossier.result is None
    assert flushes == []
    assert _stored(runtime, "AT-ONCE") == _stored(runtime, "FLUSHED")
    assert _raw(runtime, "AT-ONCE") == _raw(runtime, "FLUSHED")


def test_a_row_written_at_once_is_updated_by_a_later_flush(runtime: Runtime) -> None:
    """The version counter and the loaded values are the database's: a later change is one versioned UPDATE."""
    with runtime.db.unit_of_work() as session:
        dossier = _dossier(session, "AT-ONCE")
        write_new(session, dossier, COLLECTIONS)
        dossier.status = "received"
        dossier.fees[0].paid = True
        dossier.history.append(HistoryEntry(status="received", at=NOW, actor="agency", details={}))
        session.flush()
        assert dossier.version == 2
    stored = _stored(runtime, "AT-ONCE")
    assert stored["dossier"]["status"] == "received" and stored["dossier"]["version"] == 2
    assert [fee["paid"] for fee in stored["fees"]] == [True, True]
    assert [entry["status"] for entry in stored["history"]] == ["submitted", "received"]


def test_rows_written_at_once_are_rolled_back_with_their_unit_of_work(runtime: Runtime) -> None:
    with pytest.raises(RuntimeError), runtime.db.unit_of_work() as session:
        write_new(session, _dossier(session, "AT-ONCE"), COLLECTIONS)
        raise RuntimeError("the unit of work fails after the dossier")
    with runtime.db.unit_of_work() as session:
        assert session.scalars(select(Dossier)).all() == []
        assert session.scalars(select(HistoryEntry)).all() == []


def test_behind_a_pending_row_the_flush_writes_them_in_order(runtime: Runtime, flushes: list[Session]) -> None:
    with runtime.db.unit_of_work() as session:
        first, second = _dossier(session, "FIRST"), _dossier(session, "SECOND")
        session.add(first)  # pending: written at once, the second dossier would come before it
        assert flushes == []
        write_new(session, second, COLLECTIONS)
        assert len(flushes) == 1
        assert first.id is not None and second.id is not None and first.id < second.id
    assert _stored(runtime, "SECOND") == _stored(runtime, "FIRST")


def test_in_a_savepoint_the_flush_writes_it_and_its_rollback_takes_it_back(
    runtime: Runtime, flushes: list[Session]
) -> None:
    with runtime.db.unit_of_work() as session:
        savepoint = session.begin_nested()
        dossier = _dossier(session, "IN-SAVEPOINT")
        write_new(session, dossier, COLLECTIONS)
        assert len(flushes) == 1 and dossier.id is not None
        savepoint.rollback()
        assert dossier not in session
    with runtime.db.unit_of_work() as session:
        assert session.scalars(select(Dossier)).all() == []


def test_a_relationship_left_out_is_refused_rather_than_left_unwritten(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        dossier = _dossier(session, "AT-ONCE")
        with pytest.raises(ValueError, match=r"Dossier\.fees not among the collections written"):
            write_new(session, dossier, ("components", "history"))
        assert dossier.id is None and not session.new
        write_new(session, dossier, COLLECTIONS)
        assert dossier.id is not None


# -- appending to a loaded collection while other changes wait --------------------------------------------------------


class _Base(DeclarativeBase):
    pass


class _Owner(_Base):
    __tablename__ = "t_written_owners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(32))
    tags: Mapped[list[_Tag]] = relationship(back_populates="owner", order_by="_Tag.id")
    notes: Mapped[list[_Note]] = relationship(order_by="_Note.id")


class _Tag(_Base):
    """A row whose table has a unique constraint besides its key: one label per owner."""

    __tablename__ = "t_written_tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("t_written_owners.id"))
    label: Mapped[str] = mapped_column(String(32))
    owner: Mapped[_Owner] = relationship(back_populates="tags")

    __table_args__ = (UniqueConstraint("owner_id", "label", name="uq_t_written_tags_label"),)


class _Note(_Base):
    """A row whose table has no unique constraint but its key, as a dossier's history entry."""

    __tablename__ = "t_written_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("t_written_owners.id"))
    text: Mapped[str] = mapped_column(Text)


def _owner(runtime: Runtime) -> int:
    _Base.metadata.create_all(runtime.db.engine)
    with runtime.db.unit_of_work() as session:
        owner = _Owner(name="owner", tags=[_Tag(label="a")])
        session.add(owner)
        session.flush()
        return owner.id


def test_changes_waiting_are_written_by_the_next_flush_behind_a_keyed_only_row(
    runtime: Runtime, statements: list[str]
) -> None:
    """A new row without unique constraints is written at once, and the change waiting on its parent goes with the
    next flush (one ``UPDATE`` with the others), not by an autoflush before the ``INSERT``."""
    owner_id = _owner(runtime)
    with runtime.db.unit_of_work() as session:
        owner = session.get_one(_Owner, owner_id)
        assert owner.notes == []  # loaded
        owner.name = "renamed"
        statements.clear()
        append_new(session, owner, "notes", _Note(text="first"))
        assert statements == ["INSERT"] and owner in session.dirty
        owner.name = "renamed again"
        session.flush()
        assert statements == ["INSERT", "UPDATE"]
    with runtime.db.unit_of_work() as session:
        owner = session.get_one(_Owner, owner_id)
        assert owner.name == "renamed again" and [n.text for n in owner.notes] == ["first"]


def test_a_row_with_a_unique_constraint_is_written_after_the_changes_waiting(runtime: Runtime) -> None:
    """Behind a unique constraint the order matters: the change waiting (freeing a label) is flushed before the new
    row takes the label."""
    owner_id = _owner(runtime)
    with runtime.db.unit_of_work() as session:
        owner = session.get_one(_Owner, owner_id)
        owner.tags[0].label = "b"
        append_new(session, owner, "tags", _Tag(label="a"))
    with runtime.db.unit_of_work() as session:
        assert [t.label for t in session.get_one(_Owner, owner_id).tags] == ["b", "a"]
