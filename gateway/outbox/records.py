"""Writing messages, recording outcomes and reading the outbox: every function runs in the caller's session and none
commits."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, CursorResult, and_, bindparam, case, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.outbox.retry import RetryPolicy
from gateway.outbox.states import DEAD, DONE, IN_FLIGHT, MAX_ERROR_LENGTH, PENDING, STATES
from gateway.store.models import OutboxMessage, utcnow

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
    fields: dict[str, Any] = {"kind": kind, "target": target, "payload": payload, "idempotency_key": idempotency_key}
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


def _held(message_id: int, worker_id: str, attempt: int | None) -> ColumnElement[bool]:
    conditions = [
        OutboxMessage.id == message_id,
        OutboxMessage.state == IN_FLIGHT,
        OutboxMessage.claimed_by == worker_id,
    ]
    if attempt is not None:
        conditions.append(OutboxMessage.attempts == attempt)
    return and_(*conditions)


def _update(session: Session, condition: ColumnElement[bool], **values: Any) -> int:
    statement = update(OutboxMessage).where(condition).values(**values).execution_options(synchronize_session="fetch")
    result = cast(CursorResult[Any], session.execute(statement))  # an UPDATE gives a cursor result
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


#: Several held claims completed at once: each ``(id, attempts)`` pair is a claim with its fencing token.
_COMPLETE_MANY = (
    update(OutboxMessage)
    .where(
        OutboxMessage.state == IN_FLIGHT,
        OutboxMessage.claimed_by == bindparam("worker_id"),
        tuple_(OutboxMessage.id, OutboxMessage.attempts).in_(bindparam("claims", expanding=True)),
    )
    .values(state=DONE, done_at=bindparam("done"), lease_until=None, last_error=None)
    .returning(OutboxMessage.id)
    .execution_options(synchronize_session=False)
)


def forget_changed(session: Session, ids: Collection[int]) -> None:
    """Expire the objects ``session`` holds of the messages ``ids``, which a statement run past the ORM changed: the
    next read of them loads the row as it is now."""
    if not session.identity_map:
        return
    for key in [key for key in session.identity_map.keys() if key[0] is OutboxMessage and key[1][0] in ids]:
        session.expire(session.identity_map[key])


def complete_many(
    session: Session, worker_id: str, claims: Mapping[int, int], *, now: datetime | None = None
) -> set[int]:
    """Mark several delivered messages ``done`` in one statement; ``claims`` maps each message id to its ``attempts``
    as the claim returned it (the fencing token). Returns the ids completed: a message whose claim ``worker_id`` no
    longer holds (retaken under a newer attempt) is left as it is, exactly as :func:`complete` would.

    The statement runs on the session's connection, past the ORM (whose handling of it cost as much as the statement
    itself)."""
    if not claims:
        return set()
    session.flush()
    values = {"worker_id": worker_id, "claims": sorted(claims.items()), "done": now or utcnow()}
    completed = set(session.connection().execute(_COMPLETE_MANY, values).scalars())
    forget_changed(session, completed)
    return completed


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
    retry_after: float | None = None,
) -> Literal["pending", "dead"] | None:
    """Record a failed delivery: back to ``pending`` at ``now + backoff``, or ``dead`` when the error is permanent or
    the attempts are used up. ``retry_after``: the seconds the upstream asked to wait, which the backoff never
    undercuts (up to the policy's longest delay). Returns the new state, or None (nothing changes) when the claim
    is no longer held."""
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
    retry_at = now + timedelta(seconds=policy.retry_wait(attempts, retry_after))
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
