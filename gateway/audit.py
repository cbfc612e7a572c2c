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

import getpass
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from .store.models import AuditEntry, utcnow

__all__ = [
    "GENESIS",
    "ChainCheck",
    "Problem",
    "append",
    "check_chain",
    "count",
    "count_since",
    "entries_since",
    "entry_document",
    "entry_hash",
    "head",
    "lock_for_write",
    "operator",
    "verify",
]

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


@dataclass(frozen=True)
class Problem:
    """One break of the chain: the entry it names (``None`` for the recorded head), what happened, one sentence."""

    entry_id: int | None
    kind: Literal["altered", "inserted", "removed"]
    message: str


@dataclass(frozen=True)
class ChainCheck:
    """The outcome of :func:`check_chain`: how many entries were read, the newest hash, every problem in order."""

    entries: int
    head: str
    problems: tuple[Problem, ...]

    @property
    def intact(self) -> bool:
        return not self.problems


def _recomputed(entry: AuditEntry) -> str:
    return entry_hash(
        entry.prev_hash,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        subject=entry.subject,
        details=entry.details,
    )


def _ids(first: int, last: int) -> str:
    return f"entry {first} was" if first == last else f"entries {first} to {last} were"


class _Walk:
    """The state of a walk along the chain: the last entry taken into it, and the hash before that one."""

    def __init__(self) -> None:
        self.expected = GENESIS
        self.last: AuditEntry | None = None
        self.before_last: str | None = None
        self.problems: list[Problem] = []

    def take(self, entry: AuditEntry) -> None:
        self.before_last = self.expected
        self.expected = entry.hash
        self.last = entry

    def broken_link(self, entry: AuditEntry, following: AuditEntry | None) -> Problem | None:
        """Why ``entry`` does not follow the last entry taken; ``None`` when it is an insertion to step over."""
        last = self.last
        if following is not None and following.prev_hash == self.expected:
            after = f"entry {last.id}" if last is not None else "the start of the chain"
            return Problem(
                entry.id,
                "inserted",
                f"entry {entry.id} was inserted: it does not follow {after}, entry {following.id} does",
            )
        if last is not None and self.before_last is not None and entry.prev_hash == self.before_last:
            return Problem(
                last.id,
                "inserted",
                f"entry {last.id} was inserted: entry {entry.id} follows the entry before it, not entry {last.id}",
            )
        if entry.hash != _recomputed(entry):
            return Problem(
                entry.id, "altered", f"entry {entry.id}: its content does not match its hash (the entry was altered)"
            )
        if last is None:
            message = f"entry {entry.id}: the chain does not start here (earlier entries were removed)"
            if entry.id > 1:
                message = f"{_ids(1, entry.id - 1)} removed: {message}"
            return Problem(1 if entry.id > 1 else None, "removed", message)
        if entry.id > last.id + 1:
            return Problem(
                last.id + 1,
                "removed",
                f"{_ids(last.id + 1, entry.id - 1)} removed: entry {entry.id} does not follow entry {last.id}",
            )
        return Problem(
            last.id,
            "altered",
            f"entry {last.id} was altered and its hash recomputed, or an entry was removed or reordered: "
            f"entry {entry.id} does not follow it",
        )


def _pairs(entries: Iterable[AuditEntry]) -> Iterator[tuple[AuditEntry, AuditEntry | None]]:
    """Each entry with the one after it (``None`` after the last)."""
    iterator = iter(entries)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        yield current, following
        current = following


def count(session: Session) -> int:
    """How many entries the trail holds."""
    return session.scalar(select(func.count()).select_from(AuditEntry)) or 0


def check_chain(
    session: Session, *, expected_head: str | None = None, progress: Callable[[int], object] | None = None
) -> ChainCheck:
    """Walk the whole chain in ``id`` order and name every break: an entry whose content does not match its hash
    (altered), one the chain steps over (inserted), a gap in the links (removed). After a break the walk goes on
    from the entry that broke it, so one tampering is reported once. ``expected_head`` is a hash recorded earlier
    (an export's, a verification's): it must still be in the chain, else entries were removed from its end.
    ``progress`` is called with the number of entries read since its last call."""
    walk = _Walk()
    seen_head = expected_head is None
    read = 0
    rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=500))
    for entry, following in _pairs(rows):
        read += 1
        if progress is not None and read % 500 == 0:
            progress(500)
        if entry.prev_hash != walk.expected:
            problem = walk.broken_link(entry, following)
            if problem is not None:
                walk.problems.append(problem)
                if problem.kind == "inserted" and problem.entry_id == entry.id:
                    continue  # stepped over: the chain goes on from the entry before it
        elif entry.hash != _recomputed(entry):
            walk.problems.append(
                Problem(
                    entry.id,
                    "altered",
                    f"entry {entry.id}: its content does not match its hash (the entry was altered)",
                )
            )
        if entry.hash == expected_head:
            seen_head = True
        walk.take(entry)
    if progress is not None and read % 500:
        progress(read % 500)
    if not seen_head:
        walk.problems.append(
            Problem(None, "removed", "the recorded head entry is missing (entries were removed from the end)")
        )
    return ChainCheck(entries=read, head=walk.expected, problems=tuple(walk.problems))


def verify(session: Session, *, expected_head: str | None = None) -> list[str]:
    """Every problem found in the chain, one sentence each (empty: the chain is intact); see :func:`check_chain`."""
    return [problem.message for problem in check_chain(session, expected_head=expected_head).problems]


def entry_document(entry: AuditEntry) -> dict[str, Any]:
    """An entry as the archive keeps it (JSON): enough to verify the chain again from the archive alone."""
    return {
        "id": entry.id,
        "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def entries_since(session: Session, since: datetime | None = None) -> Iterator[AuditEntry]:
    """The entries from ``since`` on (all without it), in chain order, read in batches."""
    statement = select(AuditEntry).order_by(AuditEntry.id)
    if since is not None:
        statement = statement.where(AuditEntry.at >= since)
    yield from session.scalars(statement.execution_options(yield_per=500))


def count_since(session: Session, since: datetime | None = None) -> int:
    statement = select(func.count()).select_from(AuditEntry)
    if since is not None:
        statement = statement.where(AuditEntry.at >= since)
    return session.scalar(statement) or 0


def operator() -> str:
    """The actor of a change made from the command line: ``cli:<the operating-system user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
