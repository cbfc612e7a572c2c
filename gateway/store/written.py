"""New rows written at once: one ``INSERT`` each instead of the unit of work's flush.

A flush costs far more than the statements it writes: SQLAlchemy works out what changed across the whole session,
which rows depend on which, and in which order to write them. Where a unit of work knows that nothing else waits to
be written (no pending row, no savepoint), a new row can be inserted with a plain statement and then taken into the
session as a flush would have left it: persistent, its primary key and column defaults set, nothing pending. A
dossier's intake is written this way (the dossier, its components, fees and first history entry) and so are the
steps the flows add to it (an integration skipped): its unit of work has no flush at all. A status change's history
entry is too: its flush then writes only the dossier's row.

The sessions of a :class:`~gateway.store.database.Database` also note the kinds of rows added to them (:data:`ADDED`),
so that a read model knows which kinds a unit of work wrote; rows written at once are noted too.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, Table, UniqueConstraint, inspect
from sqlalchemy.orm import Mapper, Session, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict, set_committed_value

#: ``Session.info`` key, true in the sessions of a :class:`~gateway.store.database.Database`: they note in
#: :data:`ADDED` the class of every row added to them (directly or through a relationship).
TRACKED = "tracks_added_rows"
#: ``Session.info`` key: the set of the mapped classes of the rows added to the session.
ADDED = "added_row_classes"


@dataclass(frozen=True)
class _Columns:
    """How a mapped class's rows are inserted: its table's ``INSERT`` (built once; the engine caches its compiled form
    per set of columns given), each column as (attribute, column key, whether it has a server default), the keys of
    the primary key's columns in the table's order (that of ``CursorResult.inserted_primary_key``), and whether the
    table has no other unique constraint."""

    statement: Insert
    columns: tuple[tuple[str, str, bool], ...]
    primary_key: tuple[str, ...]
    #: No unique constraint or unique index besides the primary key.
    keyed_only: bool


_COLUMNS: dict[type, _Columns] = {}


def _columns_of(kind: type) -> _Columns:
    found = _COLUMNS.get(kind)
    if found is None:
        mapper: Mapper[Any] = inspect(kind)
        table = cast(Table, mapper.local_table)
        columns = tuple(
            (prop.key, column.key, column.server_default is not None)
            for prop in mapper.column_attrs
            for column in prop.columns[:1]
        )
        primary_key = tuple(column.key for column in table.primary_key)
        keyed_only = not any(isinstance(c, UniqueConstraint) for c in table.constraints) and not any(
            index.unique for index in table.indexes
        )
        found = _COLUMNS[kind] = _Columns(table.insert(), columns, primary_key, keyed_only)
    return found


def note_added(session: Session, instance: object) -> None:
    """Note that a row of ``instance``'s class was added to ``session`` (see :data:`ADDED`)."""
    session.info.setdefault(ADDED, set()).add(type(instance))


def added_nothing_of(session: Session, kind: type) -> bool:
    """Whether this unit of work is known to have added no row of ``kind`` through the session (``False`` when the
    session does not track what it adds)."""
    return bool(session.info.get(TRACKED)) and kind not in session.info.get(ADDED, ())


def nothing_waits(session: Session) -> bool:
    """Whether a new row may be written at once: the session holds no pending row, which a later flush would write
    after it (so with a higher id, where collections are in id order, or before a row it refers to), and no savepoint,
    whose rollback would not take back a row the session did not write itself."""
    return not session.new and not session.in_nested_transaction()


def writes_in_order(session: Session, parent: object, collection: str) -> bool:
    """Whether a new row of ``parent``'s one-to-many ``collection`` may be written at once (:func:`insert_row`, then
    :func:`adopt_written`) rather than by the next flush: ``parent`` is in the database with the collection loaded,
    and :func:`nothing_waits`."""
    state = inspect(parent)
    return state.persistent and collection not in state.unloaded and nothing_waits(session)


def insert_row(session: Session, row: object) -> None:
    """Insert the new (transient) ``row`` with one ``INSERT`` of the column values it holds, and set on it what the
    database and the columns' defaults gave the others (its primary key, a default's value; ``None`` for a column
    with neither). A column with only a server default stays unloaded: read, it is loaded. The row stays out of the
    session: take it in with :func:`adopt_written` or :func:`write_new`."""
    plan = _columns_of(type(row))
    values = instance_dict(row)
    given = {column: values[attribute] for attribute, column, _ in plan.columns if attribute in values}
    written = cast(CursorResult[Any], session.execute(plan.statement, given))
    key = written.inserted_primary_key
    assert key is not None  # one row inserted
    keys = dict(zip(plan.primary_key, key, strict=True))
    used = cast(dict[str, Any], written.last_inserted_params())  # one row: one mapping
    for attribute, column, server_default in plan.columns:
        if attribute in values:
            continue
        if column in keys:
            value = keys[column]
        elif column in used:
            value = used[column]
        elif server_default:
            continue  # unknown here: loaded when read
        else:
            value = None
        set_committed_value(row, attribute, value)


def _references(parent: object, collection: str) -> list[tuple[str, Any]]:
    """The attributes by which a row of ``parent``'s one-to-many ``collection`` refers to it, with their values."""
    mapper = inspect(type(parent))
    relationship = mapper.relationships[collection]
    return [
        (relationship.mapper.get_property_by_column(many).key, getattr(parent, mapper.get_property_by_column(one).key))
        for one, many in relationship.local_remote_pairs
    ]


def append_new(session: Session, parent: object, collection: str, child: object) -> None:
    """Append the new ``child`` to ``parent``'s one-to-many ``collection``: written at once when
    :func:`writes_in_order` (:func:`insert_row`, then :func:`adopt_written`), otherwise by the unit of work's next
    flush, as an append always was.

    Changes waiting on rows already in the database (the parent's new status, say) stay for the next flush, which
    writes them with whatever else the unit of work changes, unless ``child``'s table has a unique constraint besides
    its key: then they are flushed first, since the order of the two could matter to it."""
    if not writes_in_order(session, parent, collection):
        getattr(parent, collection).append(child)
        return
    for attribute, value in _references(parent, collection):
        setattr(child, attribute, value)
    with session.no_autoflush if _columns_of(type(child)).keyed_only else nullcontext():
        insert_row(session, child)
    adopt_written(session, parent, collection, child)


def adopt_written(session: Session, parent: object, collection: str, child: object) -> None:
    """Make ``child``, whose row this transaction has just inserted (:func:`insert_row`), a row of the session at the
    end of ``parent``'s loaded ``collection``, as a flush would have left it (see :func:`writes_in_order`)."""
    make_transient_to_detached(child)
    session.add(child)
    set_committed_value(parent, collection, [*getattr(parent, collection), child])
    back = inspect(type(parent)).relationships[collection].back_populates
    if back:
        set_committed_value(child, back, parent)
    note_added(session, child)


def write_new(session: Session, row: object, collections: Sequence[str] = ()) -> None:
    """Write the new ``row`` and every row of its one-to-many ``collections`` (new rows, given with it) now.

    When :func:`nothing_waits`, each is inserted at once (:func:`insert_row`: the row first, then its collections'
    rows in order, each referring to it) and taken into the session as a flush would have left them, the collections
    loaded; otherwise ``row`` is added to the session and flushed. Either way the rows have their ids afterwards.
    ``ValueError`` when another of ``row``'s relationships holds something (it would not be written at once).
    """
    mapper = inspect(type(row))
    values = instance_dict(row)
    others = [name for name in mapper.relationships.keys() if name not in collections and values.get(name)]
    if others:
        raise ValueError(f"write_new: {type(row).__name__}.{', '.join(others)} not among the collections written")
    if not nothing_waits(session):
        session.add(row)
        session.flush()
        return
    insert_row(session, row)
    written = [row]
    for name in collections:
        references = _references(row, name)
        for child in getattr(row, name):
            for attribute, value in references:
                setattr(child, attribute, value)
            insert_row(session, child)
            written.append(child)
    for each in written:
        make_transient_to_detached(each)
    for each in written:
        session.add(each)
        note_added(session, each)
