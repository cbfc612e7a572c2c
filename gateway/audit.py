"""The audit trail: append-only and hash-chained.

Each :class:`~gateway.store.models.AuditEntry` belongs to a chain (``chain``; ``0`` unless concurrent writers needed
another) and carries ``prev_hash`` (the hash of the previous entry of its chain, or :data:`GENESIS` for the first)
and ``hash = sha256(prev_hash + "\\n" + canonical JSON of the entry)``, where the canonical JSON is the entry's ``at``
(UTC, microseconds), ``actor``, ``action``, ``subject``, ``details`` and, outside chain 0, ``chain``, with sorted keys
and no insignificant white space. Altering any field of an entry breaks its hash; removing or reordering entries
breaks the next entry's ``prev_hash`` in its chain; moving an entry to another chain breaks both chains; the unique
constraint on ``(chain, prev_hash)`` forbids forks. Removing the *newest* entries of a chain cannot be seen from the
chains alone: :func:`check_chain` takes the heads recorded elsewhere (a verification's output, an export) to detect
that.

Appends to one chain are serialised, appends to different chains are not. On PostgreSQL :func:`append` takes the
transaction-scoped advisory lock (keyed by the trail's schema and the chain) of the lowest-numbered chain no other
transaction holds (at most :data:`CHAINS`;
when all are taken it waits for chain 0), so concurrent writers never queue behind one global audit lock: a chain's
lock is held from the append to the commit (call it last in the unit of work). Written one at a time, entries all
land in chain 0. On SQLite the database lets one writer in at a time anyway: the unit of work takes the database's
write lock first (:func:`lock_for_write`) and every entry goes to chain 0. Details never carry personal data: codes,
counts, digests.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, Table, bindparam, func, insert, select, text
from sqlalchemy.orm import Session

from .store.database import lock_for_write
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
#: How many chains concurrent writers may spread over (PostgreSQL; SQLite writes chain 0 only).
CHAINS = 8
#: The first key of the chains' PostgreSQL advisory locks is a hash of this text and of the schema the trail lives in
#: (advisory locks are shared by a whole database, so two trails in two schemas of one database keep their locks
#: apart); the second key is the chain's number.
_ADVISORY_CLASS = "dvc-gateway audit chains in "
#: The lowest-numbered chain whose advisory lock is free, taking it (``LIMIT 1`` stops at the first lock taken).
_TRY_LOCK = text(
    "SELECT n FROM generate_series(0, :chains - 1) AS n"
    " WHERE pg_try_advisory_xact_lock(hashtext(:class || current_schema()), n) LIMIT 1"
)
#: Chain 0's lock, waiting for it.
_WAIT_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:class || current_schema()), 0)")


def _canonical(at: datetime, actor: str, action: str, subject: str, details: dict[str, Any], chain: int) -> bytes:
    document: dict[str, Any] = {
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
    }
    if chain:
        document["chain"] = chain
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(
    prev_hash: str,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
    chain: int = 0,
) -> str:
    """The hash of an entry of ``chain`` with these fields after ``prev_hash``."""
    digest = hashlib.sha256(prev_hash.encode("ascii") + b"\n")
    digest.update(_canonical(at, actor, action, subject, details, chain))
    return digest.hexdigest()


def _lock_chain(session: Session) -> int:
    """The chain this transaction appends to, locked until it ends (see the module's notes)."""
    if session.get_bind().dialect.name != "postgresql":
        return 0
    with session.no_autoflush:  # a lock depends on no row: the unit of work's rows wait for its next flush
        chain = session.execute(_TRY_LOCK, {"chains": CHAINS, "class": _ADVISORY_CLASS}).scalar()
        if chain is None:
            session.execute(_WAIT_LOCK, {"class": _ADVISORY_CLASS})
            chain = 0
    return int(chain)


_ENTRIES = cast(Table, AuditEntry.__table__)
#: The hash of a chain's newest entry (a plain statement, built once).
_HEAD = select(_ENTRIES.c.hash).where(_ENTRIES.c.chain == bindparam("chain")).order_by(_ENTRIES.c.id.desc()).limit(1)
#: A new entry (a plain statement, built once).
_APPEND = insert(_ENTRIES)


def head(session: Session, chain: int = 0) -> str:
    """The hash of ``chain``'s newest entry (:data:`GENESIS` for an empty chain).

    Only audit entries the session has not written yet can change the answer: those are flushed first, and nothing
    else is (the unit of work's other rows are written with its next flush, at the latest its commit).
    """
    if any(isinstance(row, AuditEntry) for row in session.new):
        session.flush()
    with session.no_autoflush:
        return session.execute(_HEAD, {"chain": chain}).scalar() or GENESIS


@dataclass(frozen=True)
class Appended:
    """An entry just added: its id, its chain, the hash it follows and its own."""

    id: int
    chain: int
    prev_hash: str
    hash: str


def append(
    session: Session,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> Appended:
    """Add an entry at the head of a chain (in the caller's transaction; see the module's notes): where it went."""
    details = json.loads(json.dumps(details or {}, ensure_ascii=False))  # as the JSON column will give it back
    at = (at or utcnow()).astimezone(UTC)
    chain = _lock_chain(session)
    prev_hash = head(session, chain)
    values: dict[str, Any] = {"chain": chain, "at": at, "actor": actor, "action": action, "subject": subject}
    values["details"] = details
    values |= {"prev_hash": prev_hash, "hash": entry_hash(prev_hash, **values)}
    # Written at once with a plain statement (built once): the entry is not a row of the session.
    written = cast(CursorResult[Any], session.execute(_APPEND, values))  # an INSERT gives a cursor result
    key = written.inserted_primary_key
    assert key is not None  # one row inserted
    return Appended(id=key[0], chain=chain, prev_hash=prev_hash, hash=values["hash"])


@dataclass(frozen=True)
class Problem:
    """One break of the chain: the entry it names (``None`` for the recorded head), what happened, one sentence."""

    entry_id: int | None
    kind: Literal["altered", "inserted", "removed"]
    message: str


@dataclass(frozen=True)
class ChainCheck:
    """The outcome of :func:`check_chain`: how many entries were read, the newest entry's hash, the hash of each
    chain's newest entry (by chain), every problem in order."""

    entries: int
    head: str
    heads: tuple[str, ...]
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
        chain=entry.chain,
    )


def _ids(first: int, last: int) -> str:
    return f"entry {first} was" if first == last else f"entries {first} to {last} were"


#: How many entries of chains other than the first argument have an ``id`` between the other two (exclusive).
Between = Callable[[int, int, int], int]


class _Walk:
    """The state of a walk along one chain: the last entry taken into it, and the hash before that one."""

    def __init__(self, chain: int, between: Between) -> None:
        self.chain = chain
        self.between = between
        self.expected = GENESIS
        self.last: AuditEntry | None = None
        self.before_last: str | None = None

    def take(self, entry: AuditEntry) -> None:
        self.before_last = self.expected
        self.expected = entry.hash
        self.last = entry

    def _where(self) -> str:
        return f" of chain {self.chain}" if self.chain else ""

    def _removed_before(self, entry: AuditEntry) -> Problem | None:
        """Entries missing between the last entry taken (the start without one) and ``entry``, if any."""
        first = self.last.id if self.last is not None else 0
        absent = entry.id - first - 1 - self.between(self.chain, first, entry.id)
        if self.last is None:
            message = f"entry {entry.id}: the chain{self._where()} does not start here (earlier entries were removed)"
            if absent > 0 and absent == entry.id - 1:
                message = f"{_ids(1, entry.id - 1)} removed: {message}"
            return Problem(1 if entry.id > 1 else None, "removed", message)
        if absent <= 0:
            return None
        if absent == entry.id - first - 1:
            removed = f"{_ids(first + 1, entry.id - 1)} removed"
        else:
            removed = (
                f"{absent} entr{'ies were' if absent > 1 else 'y was'} removed between entries {first} and {entry.id}"
            )
        return Problem(
            first + 1, "removed", f"{removed}: entry {entry.id} does not follow entry {first}{self._where()}"
        )

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
        removed = self._removed_before(entry)
        if removed is not None or last is None:
            return removed
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


def _walk_chain(session: Session, walk: _Walk, problems: list[Problem], counted: Callable[[AuditEntry], None]) -> None:
    """Walk one chain in ``id`` order, adding every break to ``problems`` (see :func:`check_chain`)."""
    statement = select(AuditEntry).where(AuditEntry.chain == walk.chain).order_by(AuditEntry.id)
    for entry, following in _pairs(session.scalars(statement.execution_options(yield_per=500))):
        counted(entry)
        if entry.prev_hash != walk.expected:
            problem = walk.broken_link(entry, following)
            if problem is not None:
                problems.append(problem)
                if problem.kind == "inserted" and problem.entry_id == entry.id:
                    continue  # stepped over: the chain goes on from the entry before it
        elif entry.hash != _recomputed(entry):
            problems.append(
                Problem(
                    entry.id,
                    "altered",
                    f"entry {entry.id}: its content does not match its hash (the entry was altered)",
                )
            )
        walk.take(entry)


def check_chain(
    session: Session,
    *,
    expected_head: str | None = None,
    expected_heads: Iterable[str] = (),
    progress: Callable[[int], object] | None = None,
) -> ChainCheck:
    """Walk every chain in ``id`` order and name every break: an entry whose content does not match its hash
    (altered), one the chain steps over (inserted), a gap in the links (removed). After a break the walk goes on
    from the entry that broke it, so one tampering is reported once. ``expected_head`` and ``expected_heads`` are
    hashes recorded earlier (a verification's heads, an export's): each must still be in the trail, else entries
    were removed from the end of its chain. ``progress`` is called with the number of entries read since its last
    call."""
    wanted = set(expected_heads) | ({expected_head} if expected_head else set())
    seen: set[str] = set()
    problems: list[Problem] = []
    heads: list[str] = []
    newest: tuple[int, str] = (0, GENESIS)
    read = 0

    def between(chain: int, first: int, last: int) -> int:  # on a break only
        others = (AuditEntry.id > first) & (AuditEntry.id < last) & (AuditEntry.chain != chain)
        return session.scalar(select(func.count()).select_from(AuditEntry).where(others)) or 0

    def counted(entry: AuditEntry) -> None:
        nonlocal read
        read += 1
        if entry.hash in wanted:
            seen.add(entry.hash)
        if progress is not None and read % 500 == 0:
            progress(500)

    chains = session.scalars(select(AuditEntry.chain).distinct().order_by(AuditEntry.chain)).all()
    for chain in chains:
        walk = _Walk(chain, between)
        _walk_chain(session, walk, problems, counted)
        heads.append(walk.expected)
        if walk.last is not None and walk.last.id > newest[0]:
            newest = (walk.last.id, walk.expected)
    if progress is not None and read % 500:
        progress(read % 500)
    if wanted - seen:
        problems.append(
            Problem(None, "removed", "the recorded head entry is missing (entries were removed from the end)")
        )
    return ChainCheck(entries=read, head=newest[1], heads=tuple(heads) or (GENESIS,), problems=tuple(problems))


def verify(session: Session, *, expected_head: str | None = None, expected_heads: Iterable[str] = ()) -> list[str]:
    """Every problem found in the trail, one sentence each (empty: it is intact); see :func:`check_chain`."""
    check = check_chain(session, expected_head=expected_head, expected_heads=expected_heads)
    return [problem.message for problem in check.problems]


def entry_document(entry: AuditEntry) -> dict[str, Any]:
    """An entry as the archive keeps it (JSON): enough to verify the chain again from the archive alone."""
    return {
        "id": entry.id,
        "chain": entry.chain,
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
