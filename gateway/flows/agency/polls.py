"""The agencies' poll leases: which agency is due for a poll, and who polls it (one process at a time).

Every agency registered with ``status_updates.mode = "poll"`` gets an ``AgencyPoll`` row the first time it is seen,
its first poll placed at a fixed offset inside its interval (from a hash of its code). :func:`claim_due` leases the
due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the write lock on SQLite); :func:`release` records the outcome
and drops the lease, only for its holder: a poll whose lease expired and was taken over writes nothing.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.audit import lock_for_write
from gateway.domain.status import TERMINAL_STATUSES, Status
from gateway.registry import Registration
from gateway.store.models import Agency, AgencyPoll, Dossier

__all__ = ["Claim", "claim_due", "first_poll_at", "release"]

log = logging.getLogger("gateway.poller")

_ERROR_LIMIT = 500


def first_poll_at(agency_code: str, interval_seconds: int, now: datetime) -> datetime:
    """When an agency newly registered for polling is first polled: a fixed offset inside its interval."""
    offset_ms = zlib.crc32(agency_code.encode("utf-8")) % (interval_seconds * 1000)
    return now + timedelta(milliseconds=offset_ms)


@dataclass(frozen=True)
class Claim:
    """One agency's poll, leased: what polling it needs, read in the claim's unit of work."""

    agency_code: str
    document: dict[str, Any] = field(repr=False)
    protocol: str
    interval: timedelta
    lease_until: datetime
    since: datetime
    position: datetime | None
    open_dossiers: tuple[str, ...] = ()


def _polled_agencies(session: Session) -> dict[str, Registration]:
    """Every agency registered for polling, by code (a registration that no longer validates is passed over)."""
    found: dict[str, Registration] = {}
    for row in session.scalars(select(Agency).order_by(Agency.code)):
        try:
            registration = Registration.model_validate(row.document)
        except ValidationError:
            log.warning("stored registration is invalid: not polled", extra={"agency_code": row.code})
            continue
        updates = registration.status_updates
        if updates.mode == "poll" and updates.interval_seconds:
            found[registration.code] = registration
    return found


def _insert_missing(session: Session, registrations: dict[str, Registration], now: datetime) -> None:
    known = set(session.scalars(select(AgencyPoll.agency_code)))
    rows = [
        {
            "agency_code": code,
            "next_poll_at": first_poll_at(code, int(registration.status_updates.interval_seconds or 0), now),
        }
        for code, registration in registrations.items()
        if code not in known
    ]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, AgencyPoll.__table__)
    statement = insert(table).values(rows).on_conflict_do_nothing(index_elements=["agency_code"])
    session.execute(statement)


def _open_dossiers(session: Session, agency_code: str) -> list[tuple[str, datetime]]:
    """``(code, submitted_at)`` of the open dossiers ``agency_code`` handles now, oldest first."""
    open_statuses = [s.value for s in Status if s not in TERMINAL_STATUSES]
    statement = (
        select(Dossier.code, Dossier.submitted_at)
        .where(Dossier.agency_code == agency_code, Dossier.status.in_(open_statuses))
        .order_by(Dossier.submitted_at, Dossier.id)
    )
    return [(code, submitted_at) for code, submitted_at in session.execute(statement)]


def claim_due(session: Session, *, now: datetime, lease: timedelta) -> list[Claim]:
    lock_for_write(session)
    registrations = _polled_agencies(session)
    if not registrations:
        return []
    _insert_missing(session, registrations, now)
    due = and_(
        AgencyPoll.agency_code.in_(list(registrations)),
        AgencyPoll.next_poll_at <= now,
        or_(AgencyPoll.lease_until.is_(None), AgencyPoll.lease_until < now),
    )
    statement = select(AgencyPoll).where(due).order_by(AgencyPoll.next_poll_at, AgencyPoll.agency_code)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    claims = []
    for row in session.scalars(statement):
        registration = registrations[row.agency_code]
        row.lease_until = now + lease
        dossiers = _open_dossiers(session, row.agency_code)
        since = row.position or (dossiers[0][1] if dossiers else now)
        claims.append(
            Claim(
                agency_code=row.agency_code,
                document=registration.document(),
                protocol=registration.protocol,
                interval=timedelta(seconds=int(registration.status_updates.interval_seconds or 0)),
                lease_until=row.lease_until,
                since=since,
                position=row.position,
                open_dossiers=tuple(code for code, _ in dossiers),
            )
        )
    session.flush()
    return claims


#: The longest an agency's ``Retry-After`` may put its next poll off (beyond its interval).
LONGEST_ASKED_WAIT = timedelta(hours=1)


def release(
    claim: Claim,
    session: Session,
    *,
    now: datetime,
    position: datetime | None,
    error: str | None,
    asked_wait: float | None = None,
) -> bool:
    """Record the poll's outcome and drop its lease: ``False`` when the lease was lost (nothing written). The next
    poll is an interval later, or later still when the agency asked to be left alone longer (``asked_wait``
    seconds: its ``Retry-After``, at most :data:`LONGEST_ASKED_WAIT`)."""
    lock_for_write(session)
    statement = select(AgencyPoll).where(AgencyPoll.agency_code == claim.agency_code)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    row = session.scalars(statement).one_or_none()
    if row is None or row.lease_until != claim.lease_until:
        return False
    if position is not None and (row.position is None or position > row.position):
        row.position = position
    row.last_polled_at = now
    wait = claim.interval
    if asked_wait is not None:
        wait = max(wait, min(timedelta(seconds=min(asked_wait, 1e9)), LONGEST_ASKED_WAIT))
    row.next_poll_at = now + wait
    row.lease_until = None
    row.last_error = error[:_ERROR_LIMIT] if error else None
    return True
