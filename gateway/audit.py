"""The audit trail: append-only and hash-chained.

Each :class:`~gateway.store.models.AuditEntry` carries ``prev_hash`` (the previous entry's hash, or
:data:`GENESIS` for the first) and ``hash = sha256(prev_hash + "\\n" + canonical JSON of the entry)``, where the
canonical JSON is the entry's ``at`` (UTC, microseconds), ``actor``, ``action``, ``subject`` and ``details`` with
sorted keys and no insignificant white space. Altering any field of an entry breaks its hash; removing or reordering
entries breaks the next entry's ``prev_hash``; the unique constraint on ``prev_hash`` forbids forks. Removing the
*newest* entries cannot be seen from the chain alone: :func:`verify` takes the head hash recorded elsewhere (an
export, a report) to detect that.

Appends are serialised: on PostgreSQL :func:`append` takes a transaction-scoped advisory lock before reading the
chain's head (held until commit, so call it last in the unit of work); on SQLite the unit of work must take the
database's write lock first (:func:`lock_for_write`). Details never carry personal data: codes, counts, digests.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from .store.models import AuditEntry, utcnow

__all__ = ["GENESIS", "append", "entry_hash", "head", "lock_for_write", "verify"]

GENESIS = "0" * 64
#: The PostgreSQL advisory lock key of the audit chain ("audit" as an integer, any stable constant would do).
_ADVISORY_KEY = 0x61756469740A


def lock_for_write(session: Session) -> None:
    """Take the database's write lock at the start of a unit of work that writes (SQLite: ``BEGIN IMMEDIATE``).

    SQLite lets one writer at a time in; a transaction that reads first and writes later fails when another writer
    committed in between (its snapshot is stale), so writers take the lock before their first read. It is a no-op on
    PostgreSQL (row locks and :func:`append`'s advisory lock serialise what must be) and when the transaction has
    already begun.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    dbapi_connection = connection.connection.dbapi_connection
    if dbapi_connection is not None and not dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _canonical(at: datetime, actor: str, action: str, subject: str, details: dict[str, Any]) -> bytes:
    document = {
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(prev_hash: str, *, at: datetime, actor: str, action: str, subject: str, details: dict[str, Any]) -> str:
    """The hash of an entry with these fields after ``prev_hash``."""
    digest = hashlib.sha256(prev_hash.encode("ascii") + b"\n")
    digest.update(_canonical(at, actor, action, subject, details))
    return digest.hexdigest()


def _lock_chain(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_KEY})


def head(session: Session) -> str:
    """The newest entry's hash (:data:`GENESIS` for an empty trail)."""
    last = session.scalars(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)).first()
    return last or GENESIS


def append(
    session: Session,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> AuditEntry:
    """Add an entry at the head of the chain (in the caller's transaction)."""
    details = json.loads(json.dumps(details or {}, ensure_ascii=False))  # as the JSON column will give it back
    at = (at or utcnow()).astimezone(UTC)
    _lock_chain(session)
    prev_hash = head(session)
    entry = AuditEntry(
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        details=details,
        prev_hash=prev_hash,
        hash=entry_hash(prev_hash, at=at, actor=actor, action=action, subject=subject, details=details),
    )
    session.add(entry)
    session.flush()
    return entry


def verify(session: Session, *, expected_head: str | None = None) -> list[str]:
    """Every problem found in the chain, one sentence each (empty: the chain is intact).

    ``expected_head`` is a hash recorded earlier (an export's last hash): it must still be in the chain, else
    entries were removed from its end.
    """
    problems: list[str] = []
    previous = GENESIS
    seen_head = expected_head is None
    for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)):
        if entry.prev_hash != previous:
            if previous == GENESIS:
                problems.append(f"entry {entry.id}: the chain does not start here (earlier entries were removed)")
            else:
                problems.append(
                    f"entry {entry.id}: does not follow the entry before it (an entry was removed or reordered)"
                )
        expected = entry_hash(
            entry.prev_hash,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            subject=entry.subject,
            details=entry.details,
        )
        if entry.hash != expected:
            problems.append(f"entry {entry.id}: its content does not match its hash (the entry was altered)")
        if entry.hash == expected_head:
            seen_head = True
        previous = entry.hash
    if not seen_head:
        problems.append("the recorded head entry is missing (entries were removed from the end)")
    return problems
