"""The transactional outbox, storage side.

Work for the world outside the database (delivery to an agency, national portal sync, a payment request…) is written
as an :class:`~gateway.store.models.OutboxMessage` in the same unit of work as the change that caused it, so the two
land together or not at all. Workers (:mod:`gateway.workers`) then claim due messages, deliver them, and record the
outcome. Every function here is synchronous and runs inside the caller's session (``db.unit_of_work()`` or
``db.run``); none commits.

Life of a message::

    pending ──claim──► in_flight ──complete──► done
       ▲                  │ fail (retryable, attempts left): next_attempt_at = now + backoff
       └──────────────────┤ release (graceful shutdown): attempts not counted
                          │ lease expired: claimable again by any worker (a crashed worker's claim is retaken)
                          └ fail (permanent, or attempts used up) ──► dead ──redrive──► pending

**Claims.** A claim sets ``state = in_flight``, ``claimed_by``, ``lease_until = now + lease`` and counts one attempt.
Only the claim's holder may ``complete``/``fail``/``renew`` it: the UPDATE's WHERE checks ``state``, ``claimed_by``
and the attempt number the claim was made with (a fencing token: every claim increments it), so a worker whose lease
expired and whose message was retaken cannot overwrite the newer claim, even when both workers share an id.

- PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED``. Concurrent claimers skip each other's locked rows, and a row that
  another claim committed meanwhile is re-checked against the state/lease conditions (which sit on the locked row
  itself), so two processes never claim the same row.
- SQLite (one writer at a time): the claim transaction starts with ``BEGIN IMMEDIATE``, taking the database's write
  lock before it reads, so claims by threads or processes are serialised and each sees the previous one's result.

**Ordering and dead letters.** Messages sharing an ``ordering_key`` (the dossier code) are delivered one at a time in
``id`` order: a message is claimable only when no earlier message with the same key is ``pending``, ``in_flight`` or
``dead``. A dead letter therefore holds back the *later messages of its own dossier* (delivering "supplement" or
"withdraw" to an agency that never received the dossier would be wrong, and would make the agency's state diverge)
until an operator redrives it; it never holds back anything else: the same agency's other dossiers, and every other
agency, keep flowing. Messages without an ordering key are independent.

**Per-target limits.** ``claim(max_in_flight_per_target=…)`` counts the messages of each target (the agency) that are
in flight under a valid lease, across all workers, and claims only up to the limit; a limit of 0 (an open circuit
breaker) claims nothing for that target. On SQLite the count is exact (claims are serialised); on PostgreSQL two
claims racing may together exceed it by a little, each worker's own semaphore still bounding its share.

**Retries.** A retryable failure schedules ``next_attempt_at`` with exponential backoff and jitter computed by
tenacity's ``wait_exponential_jitter``; the retry *is* the row's next attempt time, never a sleeping loop.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import tenacity
from sqlalchemy import ColumnElement, Select, and_, bindparam, case, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from gateway.store.models import OutboxMessage, utcnow

if TYPE_CHECKING:
    from gateway.sections import OutboxSection

PENDING = "pending"
IN_FLIGHT = "in_flight"
DONE = "done"
DEAD = "dead"
STATES = (PENDING, IN_FLIGHT, DONE, DEAD)

#: States of an earlier message of the same ordering key that hold a later one back.
_BLOCKING = (PENDING, IN_FLIGHT, DEAD)
#: ``last_error`` is cut to this many characters.
MAX_ERROR_LENGTH = 2000
#: In a ``max_in_flight_per_target`` mapping, the limit for targets not named in it.
ANY_TARGET = "*"


def message_key(dossier_code: str, step: str) -> str:
    """The idempotency key of one step of one dossier (``000.00.23.H38-261122-0001:deliver``)."""
    return f"{dossier_code}:{step}"


# --------------------------------------------------------------------------------------------------------------------
# The retry policy


@functools.lru_cache(maxsize=32)
def _wait_strategy(initial: float, maximum: float, jitter: float) -> tenacity.wait.wait_base:
    # tenacity 9 renamed ``initial`` to ``multiplier`` (``initial`` warns); tenacity 8 knows only ``initial``.
    if "multiplier" in inspect.signature(tenacity.wait_exponential_jitter).parameters:
        return tenacity.wait_exponential_jitter(multiplier=initial, max=maximum, jitter=jitter)
    return tenacity.wait_exponential_jitter(initial=initial, max=maximum, jitter=jitter)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a message is retried (the ``[outbox]`` configuration section).

    Attempt *n* failing transiently is retried after ``initial · 2^(n-1) + uniform(0, jitter)`` seconds, at most
    ``max_seconds``; after ``max_attempts`` attempts the message is dead.
    """

    max_attempts: int = 8
    initial_seconds: float = 2.0
    max_seconds: float = 600.0
    jitter_seconds: float = 2.0
    lease_seconds: float = 60.0
    concurrency_per_agency: int = 4

    def __post_init__(self) -> None:
        fields = (
            ("attempts", self.max_attempts),
            ("backoff_initial_seconds", self.initial_seconds),
            ("backoff_max_seconds", self.max_seconds),
            ("jitter_seconds", self.jitter_seconds),
            ("lease_seconds", self.lease_seconds),
            ("concurrency_per_agency", self.concurrency_per_agency),
        )
        for key, value in fields:
            if not _is_number(value):
                raise ValueError(f"[outbox] {key} must be a number, got {value!r}")
        rules = (
            ("attempts", self.max_attempts, isinstance(self.max_attempts, int) and self.max_attempts >= 1, "≥ 1"),
            ("backoff_initial_seconds", self.initial_seconds, self.initial_seconds > 0, "> 0"),
            ("backoff_max_seconds", self.max_seconds, self.max_seconds >= self.initial_seconds, "≥ the initial"),
            ("jitter_seconds", self.jitter_seconds, self.jitter_seconds >= 0, "≥ 0"),
            ("lease_seconds", self.lease_seconds, self.lease_seconds > 0, "> 0"),
            (
                "concurrency_per_agency",
                self.concurrency_per_agency,
                isinstance(self.concurrency_per_agency, int) and self.concurrency_per_agency >= 1,
                "≥ 1",
            ),
        )
        for key, value, ok, rule in rules:
            if not ok:
                raise ValueError(f"[outbox] {key} must be {rule}, got {value!r}")

    @classmethod
    def of(cls, outbox: OutboxSection) -> RetryPolicy:
        """The policy of the ``[outbox]`` section."""
        return cls(
            max_attempts=outbox.max_attempts,
            initial_seconds=outbox.initial_seconds,
            max_seconds=outbox.max_seconds,
            jitter_seconds=outbox.jitter_seconds,
            lease_seconds=outbox.lease_seconds,
            concurrency_per_agency=outbox.concurrency_per_agency,
        )

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)

    def backoff_seconds(self, attempt: int) -> float:
        """The wait after attempt number ``attempt`` (1 = the first delivery) failed, jitter included."""
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempt)
        return float(_wait_strategy(self.initial_seconds, self.max_seconds, self.jitter_seconds)(state))

    def backoff_bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest wait ``backoff_seconds(attempt)`` can give."""
        try:
            base = self.initial_seconds * 2 ** (max(1, attempt) - 1)
        except OverflowError:
            base = self.max_seconds
        return min(base, self.max_seconds), min(base + self.jitter_seconds, self.max_seconds)


# --------------------------------------------------------------------------------------------------------------------
# Writing


def _insert_ignoring(insert: Any) -> Any:
    """``INSERT INTO outbox … ON CONFLICT (idempotency_key) DO NOTHING``."""
    return insert(OutboxMessage.__table__).on_conflict_do_nothing(index_elements=["idempotency_key"])


#: The insert of each supported engine, built once (the values are bound at execution): as is for :func:`add`, and
#: with ``RETURNING *`` and its row loaded as a message for :func:`enqueue`.
_ADD = {"postgresql": _insert_ignoring(postgresql.insert), "sqlite": _insert_ignoring(sqlite.insert)}
_ENQUEUE = {
    name: select(OutboxMessage).from_statement(insert.returning(*OutboxMessage.__table__.c))
    for name, insert in _ADD.items()
}


def _values(session: Session, statements: dict[str, Any], message: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The statement for the session's database and the values of a new ``message``."""
    dialect = session.get_bind().dialect.name
    if dialect not in statements:  # pragma: no cover - only SQLite and PostgreSQL are supported (gateway.store.engine)
        raise RuntimeError(f"outbox: unsupported database {dialect!r}")
    now = utcnow()
    times = {"next_attempt_at": message.pop("not_before") or now, "created_at": now, "updated_at": now}
    return statements[dialect], {**message, "state": PENDING, "attempts": 0, **times}


def add(
    session: Session,
    *,
    kind: str,
    target: str,
    payload: dict[str, Any],
    idempotency_key: str,
    ordering_key: str | None = None,
    not_before: datetime | None = None,
) -> None:
    """:func:`enqueue` for a caller that needs no message back: the same one statement (a repeated key keeps the
    first message as it was), without loading its row into the session."""
    message = {"kind": kind, "target": target, "payload": payload, "idempotency_key": idempotency_key}
    session.execute(*_values(session, _ADD, {**message, "ordering_key": ordering_key, "not_before": not_before}))


def enqueue(
    session: Session,
    *,
    kind: str,
    target: str,
    payload: dict[str, Any],
    idempotency_key: str,
    ordering_key: str | None = None,
    not_before: datetime | None = None,
) -> OutboxMessage:
    """Add a message (in the caller's transaction); the same ``idempotency_key`` again returns the existing row.

    A repeated key keeps the first message as it was (its payload is not replaced). One statement for a new key:
    ``INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING`` on both engines, which also makes a concurrent
    enqueue of the same key safe; only when it inserts nothing is the existing message read.
    """
    fields = {"kind": kind, "target": target, "payload": payload, "idempotency_key": idempotency_key}
    fields |= {"ordering_key": ordering_key, "not_before": not_before}
    message: OutboxMessage | None = session.scalars(*_values(session, _ENQUEUE, fields)).one_or_none()
    if message is None:
        message = _by_key(session, idempotency_key)
        assert message is not None
    return message


def find_by_key(session: Session, idempotency_key: str) -> OutboxMessage | None:
    """The message enqueued with ``idempotency_key``, if any."""
    return _by_key(session, idempotency_key)


_BY_KEY = select(OutboxMessage).where(OutboxMessage.idempotency_key == bindparam("idempotency_key"))


def _by_key(session: Session, idempotency_key: str) -> OutboxMessage | None:
    return session.scalars(_BY_KEY, {"idempotency_key": idempotency_key}).one_or_none()


def _serialise_writers(session: Session) -> None:
    """On SQLite, take the write lock now (``BEGIN IMMEDIATE``) so that this transaction's reads are current."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    dbapi_connection = connection.connection.dbapi_connection
    # pysqlite begins a (deferred) transaction only before the first write; if the caller already wrote, the
    # transaction already holds the write lock.
    if dbapi_connection is not None and not dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _due(now: datetime) -> ColumnElement[bool]:
    """``pending`` and due, or ``in_flight`` under an expired lease (a claim whose holder crashed or stalled)."""
    outbox = OutboxMessage
    return or_(
        and_(outbox.state == PENDING, outbox.next_attempt_at <= now),
        and_(outbox.state == IN_FLIGHT, outbox.lease_until < now),
    )


def _held_back() -> ColumnElement[bool]:
    """An earlier message of the same ordering key is still ``pending``, ``in_flight`` or ``dead``."""
    earlier = aliased(OutboxMessage, name="earlier")
    return exists().where(
        earlier.ordering_key == OutboxMessage.ordering_key,
        earlier.id < OutboxMessage.id,
        earlier.state.in_(_BLOCKING),
    )


def _in_flight_by_target(session: Session, now: datetime) -> dict[str, int]:
    """How many messages of each target are in flight under a valid lease, across all workers."""
    outbox = OutboxMessage
    rows = session.execute(
        select(outbox.target, func.count())
        .where(outbox.state == IN_FLIGHT, outbox.lease_until >= now)
        .group_by(outbox.target)
    ).all()
    return {target: count for target, count in rows}


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
    outbox = OutboxMessage
    eligible = and_(_due(now), ~_held_back())
    if max_in_flight_per_target is None:
        return list(session.scalars(select(outbox.id).where(eligible).order_by(outbox.id).limit(limit)))
    in_flight = _in_flight_by_target(session, now)
    capacity, default_capacity = _capacities(max_in_flight_per_target, in_flight, limit)
    open_targets = [target for target, bound in capacity.items() if bound > 0]
    if default_capacity <= 0 and not open_targets:
        return []
    chosen: list[int] = []
    taken: dict[str, int] = {}
    page, after = max(4 * limit, 64), 0
    while len(chosen) < limit:
        full = [t for t, n in taken.items() if n >= capacity.get(t, default_capacity)]
        full += [t for t, bound in capacity.items() if bound <= 0]
        condition = and_(eligible, outbox.id > after)
        if full:
            condition = and_(condition, outbox.target.not_in(full))
        if default_capacity <= 0:
            condition = and_(condition, outbox.target.in_(open_targets))
        rows = session.execute(select(outbox.id, outbox.target).where(condition).order_by(outbox.id).limit(page)).all()
        for message_id, target in rows:
            if taken.get(target, 0) < capacity.get(target, default_capacity):
                taken[target] = taken.get(target, 0) + 1
                chosen.append(message_id)
                if len(chosen) == limit:
                    break
        if len(rows) < page:
            break
        after = rows[-1][0]
    return chosen


def _locking(session: Session, statement: Select[Any]) -> Select[Any]:
    """On PostgreSQL, ``statement`` locking the rows it selects and skipping those a concurrent claim holds.

    The state/lease conditions are on the locked row itself, so PostgreSQL re-checks them against a row a concurrent
    claim committed meanwhile; rows locked by a concurrent claim are skipped."""
    if session.get_bind().dialect.name != "postgresql":
        return statement
    return statement.with_for_update(skip_locked=True, of=OutboxMessage)


def claim(
    session: Session,
    *,
    worker_id: str,
    limit: int,
    lease: timedelta,
    now: datetime | None = None,
    max_in_flight_per_target: int | Mapping[str, int] | None = None,
) -> list[OutboxMessage]:
    """Claim up to ``limit`` due messages for ``worker_id``, in ``id`` order.

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
    _serialise_writers(session)
    chosen = _chosen(session, now, limit, max_in_flight_per_target)
    if not chosen:
        return []
    # Locked (skipping rows a concurrent claim holds) and re-checked: another claim may have taken one meanwhile.
    locked = _locking(session, select(OutboxMessage.id).where(OutboxMessage.id.in_(chosen), _due(now)))
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(locked.scalar_subquery()))
        .values(
            state=IN_FLIGHT,
            claimed_by=worker_id,
            lease_until=now + lease,
            attempts=OutboxMessage.attempts + 1,
        )
        .returning(OutboxMessage)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return sorted(session.scalars(statement), key=lambda message: message.id)


def _held(message_id: int, worker_id: str, attempt: int | None):
    conditions = [
        OutboxMessage.id == message_id,
        OutboxMessage.state == IN_FLIGHT,
        OutboxMessage.claimed_by == worker_id,
    ]
    if attempt is not None:
        conditions.append(OutboxMessage.attempts == attempt)
    return and_(*conditions)


def _update(session: Session, condition, **values: Any) -> int:
    result = session.execute(
        update(OutboxMessage).where(condition).values(**values).execution_options(synchronize_session="fetch")
    )
    return result.rowcount or 0


def complete(
    session: Session, message_id: int, worker_id: str, *, attempt: int | None = None, now: datetime | None = None
) -> bool:
    """Mark a delivered message ``done``; False (and nothing changes) when ``worker_id`` no longer holds the claim.

    ``attempt`` is the message's ``attempts`` as the claim returned it: given, it also fences off an older claim of
    the same worker id. A claim whose lease expired but was not retaken is still completed (nobody else has it).
    """
    now = now or utcnow()
    done = _update(
        session,
        _held(message_id, worker_id, attempt),
        state=DONE,
        done_at=now,
        lease_until=None,
        last_error=None,
    )
    return done == 1


def complete_many(
    session: Session, worker_id: str, claims: Mapping[int, int], *, now: datetime | None = None
) -> set[int]:
    """Mark several delivered messages ``done`` in one statement; ``claims`` maps each message id to its ``attempts``
    as the claim returned it (the fencing token). Returns the ids completed: a message whose claim ``worker_id`` no
    longer holds (retaken under a newer attempt) is left as it is, exactly as :func:`complete` would."""
    if not claims:
        return set()
    now = now or utcnow()
    held = and_(
        OutboxMessage.state == IN_FLIGHT,
        OutboxMessage.claimed_by == worker_id,
        or_(*(and_(OutboxMessage.id == i, OutboxMessage.attempts == a) for i, a in claims.items())),
    )
    statement = (
        update(OutboxMessage)
        .where(held)
        .values(state=DONE, done_at=now, lease_until=None, last_error=None)
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    return set(session.scalars(statement))


def _error_text(error: str | BaseException) -> str:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def fail(
    session: Session,
    message_id: int,
    worker_id: str,
    error: str | BaseException,
    *,
    retryable: bool,
    now: datetime | None = None,
    policy: RetryPolicy | None = None,
    attempt: int | None = None,
) -> Literal["pending", "dead"] | None:
    """Record a failed delivery: back to ``pending`` at ``now + backoff``, or ``dead`` when the error is permanent or
    the attempts are used up. Returns the new state, or None (nothing changes) when the claim is no longer held."""
    now = now or utcnow()
    policy = policy or RetryPolicy()
    select_held = select(OutboxMessage.attempts).where(_held(message_id, worker_id, attempt))
    if session.get_bind().dialect.name == "postgresql":
        select_held = select_held.with_for_update()
    attempts = session.scalar(select_held)
    if attempts is None:
        return None
    held = _held(message_id, worker_id, attempts)
    text = _error_text(error)
    if not retryable or attempts >= policy.max_attempts:
        changed = _update(session, held, state=DEAD, lease_until=None, last_error=text)
        return DEAD if changed else None
    retry_at = now + timedelta(seconds=policy.backoff_seconds(attempts))
    changed = _update(
        session, held, state=PENDING, next_attempt_at=retry_at, claimed_by=None, lease_until=None, last_error=text
    )
    return PENDING if changed else None


def renew(
    session: Session,
    message_id: int,
    worker_id: str,
    *,
    lease: timedelta,
    now: datetime | None = None,
    attempt: int | None = None,
) -> bool:
    """Extend a held claim's lease to ``now + lease`` (a long delivery); False when the claim is no longer held."""
    now = now or utcnow()
    held = and_(_held(message_id, worker_id, attempt), OutboxMessage.lease_until >= now)
    return _update(session, held, lease_until=now + lease) == 1


def release(session: Session, worker_id: str, *, ids: list[int] | None = None) -> int:
    """Give back ``worker_id``'s in-flight messages (graceful shutdown): ``pending`` again, the attempt not counted.

    ``ids`` limits it to those messages. Returns how many were released.
    """
    condition = and_(OutboxMessage.state == IN_FLIGHT, OutboxMessage.claimed_by == worker_id)
    if ids is not None:
        if not ids:
            return 0
        condition = and_(condition, OutboxMessage.id.in_(ids))
    return _update(
        session,
        condition,
        state=PENDING,
        claimed_by=None,
        lease_until=None,
        attempts=case((OutboxMessage.attempts > 0, OutboxMessage.attempts - 1), else_=0),
    )


def redrive(
    session: Session, message_id: int | None = None, *, all_dead: bool = False, now: datetime | None = None
) -> int:
    """Put a dead message (or, with ``all_dead=True``, every dead message) back to ``pending``, due now, with its
    attempts reset; its ``last_error`` is kept until the next outcome. Returns how many were redriven (0 when the
    message does not exist or is not dead)."""
    if (message_id is None) == (not all_dead):
        raise ValueError("redrive: give a message id or all_dead=True, not both")
    now = now or utcnow()
    condition = OutboxMessage.state == DEAD
    if message_id is not None:
        condition = and_(condition, OutboxMessage.id == message_id)
    return _update(
        session,
        condition,
        state=PENDING,
        attempts=0,
        next_attempt_at=now,
        claimed_by=None,
        lease_until=None,
        done_at=None,
    )


# --------------------------------------------------------------------------------------------------------------------
# Reading


def get(session: Session, message_id: int) -> OutboxMessage | None:
    return session.get(OutboxMessage, message_id)


def list_messages(
    session: Session, state: str | None = None, limit: int = 100, *, target: str | None = None, after_id: int = 0
) -> list[OutboxMessage]:
    """Messages in ``id`` order, optionally of one state and/or target; ``after_id`` pages on."""
    if state is not None and state not in STATES:
        raise ValueError(f"unknown outbox state {state!r} (one of {', '.join(STATES)})")
    statement = select(OutboxMessage).where(OutboxMessage.id > after_id)
    if state is not None:
        statement = statement.where(OutboxMessage.state == state)
    if target is not None:
        statement = statement.where(OutboxMessage.target == target)
    return list(session.scalars(statement.order_by(OutboxMessage.id).limit(limit)))


def stats(session: Session) -> dict[str, int]:
    """How many messages are in each state (every state present, zero included)."""
    counts = dict.fromkeys(STATES, 0)
    rows = session.execute(select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)).all()
    for state, count in rows:
        counts[state] = count
    return counts
