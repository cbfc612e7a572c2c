"""Claiming due messages: :func:`claim`.

The statements are built once, with bound parameters (the time, the page, the targets to pass over, the chosen
ids), so a claim only binds values and runs them: building SQLAlchemy expressions costs more than running these
statements on a small backlog. They run on the session's connection, as plain statements: the ORM's handling of an
``UPDATE … RETURNING`` of mapped rows (refreshing the session's objects, building new ones) cost a third of a claim,
and a claim needs none of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Row,
    Select,
    String,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from gateway.outbox.records import forget_changed
from gateway.outbox.states import ANY_TARGET, BLOCKING, IN_FLIGHT, PENDING
from gateway.store.database import lock_for_write
from gateway.store.models import OUTBOX_OPEN_INDEX, OutboxMessage, utcnow

__all__ = ["claim"]

_OUTBOX = OutboxMessage
_NOW: BindParameter[datetime] = bindparam("now")


def _one_of(state: Any, names: tuple[str, ...]) -> ColumnElement[bool]:
    """``state IN ('pending', …)``, the states written out rather than bound: a planner matches a partial index only
    to a term that implies its predicate, and it sees which states are asked for even in a plan it keeps for every
    execution (PostgreSQL's generic plans of prepared statements)."""
    written: list[ColumnElement[str]] = [literal_column(f"'{name}'", String()) for name in names]
    return state == written[0] if len(written) == 1 else state.in_(written)


#: ``state IN ('pending', 'in_flight')``, as the partial index ``ix_outbox_open`` says (``OUTBOX_OPEN_SQL``).
_OPEN = _one_of(_OUTBOX.state, (PENDING, IN_FLIGHT))


def _due() -> ColumnElement[bool]:
    """``pending`` and due, or ``in_flight`` under an expired lease (a claim whose holder crashed or stalled).

    The open states are named first, so that the claim reads the open messages (on PostgreSQL from the partial index
    ``ix_outbox_open``, on SQLite from ``ix_outbox_due``) instead of passing over every delivered message."""
    return and_(
        _OPEN,
        or_(
            and_(_one_of(_OUTBOX.state, (PENDING,)), _OUTBOX.next_attempt_at <= _NOW),
            and_(_one_of(_OUTBOX.state, (IN_FLIGHT,)), _OUTBOX.lease_until < _NOW),
        ),
    )


def _held_back() -> ColumnElement[bool]:
    """An earlier message of the same ordering key is still ``pending``, ``in_flight`` or ``dead``: one look-up in
    the partial index ``ix_outbox_blocking``, whose predicate the states' term repeats."""
    earlier = aliased(OutboxMessage, name="earlier")
    return exists().where(
        earlier.ordering_key == _OUTBOX.ordering_key,
        earlier.id < _OUTBOX.id,
        _one_of(earlier.state, BLOCKING),
    )


_ELIGIBLE = and_(_due(), ~_held_back())
_S = TypeVar("_S", bound=Select)


def _in_id_order(query: _S) -> _S:
    """``query`` reading the open messages in ``id`` order from ``ix_outbox_open`` on SQLite too, so that it stops at
    its limit: left to itself, SQLite's planner reads every due message through the states' index and sorts them
    all (a claim's cost then grows with the backlog: 2.5 ms a claim over 2,000 due messages, against 0.1 ms)."""
    return query.with_hint(OutboxMessage, f"INDEXED BY {OUTBOX_OPEN_INDEX}", dialect_name="sqlite")


#: Without per-target limits: the first ``limit`` eligible messages.
_FIRST = _in_id_order(select(_OUTBOX.id).where(_ELIGIBLE).order_by(_OUTBOX.id).limit(bindparam("limit")))


def _page(*, passing_over: bool, only_open: bool) -> Select[int, str]:
    """A page of eligible messages after ``after``: passing over the targets ``full`` and/or only of ``open``."""
    condition = and_(_ELIGIBLE, _OUTBOX.id > bindparam("after"))
    if passing_over:
        condition = and_(condition, _OUTBOX.target.not_in(bindparam("full", expanding=True)))
    if only_open:
        condition = and_(condition, _OUTBOX.target.in_(bindparam("open", expanding=True)))
    return _in_id_order(
        select(_OUTBOX.id, _OUTBOX.target).where(condition).order_by(_OUTBOX.id).limit(bindparam("page"))
    )


_PAGES = {(full, only): _page(passing_over=full, only_open=only) for full in (False, True) for only in (False, True)}
_IN_FLIGHT_BY_TARGET = (
    select(_OUTBOX.target, func.count())
    .where(_one_of(_OUTBOX.state, (IN_FLIGHT,)), _OUTBOX.lease_until >= _NOW)
    .group_by(_OUTBOX.target)
)


def _take(*, lock: bool) -> Any:
    """The claim itself: the chosen messages still due, locked (on PostgreSQL skipping rows a concurrent claim
    holds) and taken in one ``UPDATE … RETURNING``.

    The state/lease conditions are on the locked row itself, so PostgreSQL re-checks them against a row a concurrent
    claim committed meanwhile."""
    chosen = select(_OUTBOX.id).where(_OUTBOX.id.in_(bindparam("ids", expanding=True)), _due())
    if lock:
        chosen = chosen.with_for_update(skip_locked=True, of=OutboxMessage)
    return (
        update(OutboxMessage)
        .where(_OUTBOX.id.in_(chosen.scalar_subquery()))
        .values(
            state=IN_FLIGHT,
            claimed_by=bindparam("worker_id"),
            lease_until=bindparam("lease_end"),
            attempts=_OUTBOX.attempts + 1,
        )
        .returning(*OutboxMessage.__table__.columns)
    )


_TAKE = {"postgresql": _take(lock=True), "sqlite": _take(lock=False)}


def _in_flight_by_target(session: Session, now: datetime) -> dict[str, int]:
    """How many messages of each target are in flight under a valid lease, across all workers."""
    return {target: count for target, count in session.connection().execute(_IN_FLIGHT_BY_TARGET, {"now": now})}


def _capacities(
    max_in_flight_per_target: int | Mapping[str, int], in_flight: Mapping[str, int], limit: int
) -> tuple[dict[str, int], int]:
    """How many messages this claim may take of each target it must treat apart (at most ``limit``, never below 0),
    and of any other target."""
    if isinstance(max_in_flight_per_target, int):
        default_bound: int | None = max_in_flight_per_target
        bounds: dict[str, int] = {}
    else:
        default_bound = max_in_flight_per_target.get(ANY_TARGET)
        bounds = {t: n for t, n in max_in_flight_per_target.items() if t != ANY_TARGET}
    capacity: dict[str, int] = {}
    for target in set(in_flight) | set(bounds):
        bound = bounds.get(target, default_bound)
        if bound is not None:
            capacity[target] = max(0, min(bound - in_flight.get(target, 0), limit))
    default_capacity = limit if default_bound is None else max(0, min(default_bound, limit))
    return capacity, default_capacity


def _chosen(
    session: Session, now: datetime, limit: int, max_in_flight_per_target: int | Mapping[str, int] | None
) -> list[int]:
    """The ids of the messages to claim now, in ``id`` order: due, not held back, and within their target's limit.

    Eligible messages are read in ``id`` order a page at a time, passing over those of targets at their limit (left
    out of the query from the next page on), so a claim reads about as many rows as it takes whatever the backlog,
    and a target at its limit (or with a long backlog) never crowds the others out."""
    connection = session.connection()
    if max_in_flight_per_target is None:
        return list(connection.execute(_FIRST, {"now": now, "limit": limit}).scalars())
    in_flight = _in_flight_by_target(session, now)
    capacity, default_capacity = _capacities(max_in_flight_per_target, in_flight, limit)
    open_targets = [target for target, bound in capacity.items() if bound > 0]
    if default_capacity <= 0 and not open_targets:
        return []
    chosen: list[int] = []
    taken: dict[str, int] = {}
    values: dict[str, Any] = {"now": now, "page": max(4 * limit, 64), "after": 0, "open": open_targets}
    while len(chosen) < limit:
        full = [t for t, n in taken.items() if n >= capacity.get(t, default_capacity)]
        full += [t for t, bound in capacity.items() if bound <= 0]
        values["full"] = full
        rows = connection.execute(_PAGES[bool(full), default_capacity <= 0], values).all()
        for message_id, target in rows:
            if taken.get(target, 0) < capacity.get(target, default_capacity):
                taken[target] = taken.get(target, 0) + 1
                chosen.append(message_id)
                if len(chosen) == limit:
                    break
        if len(rows) < values["page"]:
            break
        values["after"] = rows[-1][0]
    return chosen


def claim(
    session: Session,
    *,
    worker_id: str,
    limit: int,
    lease: timedelta,
    now: datetime | None = None,
    max_in_flight_per_target: int | Mapping[str, int] | None = None,
) -> list[Row[Any]]:
    """Claim up to ``limit`` due messages for ``worker_id``, in ``id`` order: their rows as the claim left them (every
    column of :class:`~gateway.store.models.OutboxMessage`, by name: ``row.id``, ``row.attempts``...).

    Due: ``pending`` with ``next_attempt_at <= now``, or ``in_flight`` with ``lease_until < now`` (a claim whose
    holder crashed or stalled), and not held back by an earlier message of the same ordering key (see the module
    documentation). ``max_in_flight_per_target`` bounds the messages of one target in flight under a valid lease,
    across workers: an int for every target, or a mapping by target (``"*"`` for the others; targets it does not
    name and no ``"*"`` are unbounded). Each claimed row is ``in_flight`` with ``claimed_by = worker_id``,
    ``lease_until = now + lease`` and one more attempt.

    The rows are chosen (:func:`_chosen`), then locked (on PostgreSQL ``FOR UPDATE SKIP LOCKED``, re-checking that
    each is still due) and taken in one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING …``
    statement.
    """
    if limit <= 0:
        return []
    now = now or utcnow()
    lock_for_write(session)
    session.flush()  # what this unit of work changed before counts, as the ORM would have flushed it
    chosen = _chosen(session, now, limit, max_in_flight_per_target)
    if not chosen:
        return []
    dialect = session.get_bind().dialect.name
    if dialect not in _TAKE:  # pragma: no cover - only SQLite and PostgreSQL are supported (gateway.store.engine)
        raise RuntimeError(f"outbox: unsupported database {dialect!r}")
    # Locked (skipping rows a concurrent claim holds) and re-checked: another claim may have taken one meanwhile.
    values = {"ids": chosen, "now": now, "worker_id": worker_id, "lease_end": now + lease}
    taken = sorted(session.connection().execute(_TAKE[dialect], values), key=lambda message: message.id)
    forget_changed(session, {message.id for message in taken})
    return taken
