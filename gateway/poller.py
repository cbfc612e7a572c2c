"""Polling the agencies registered with ``status_updates.mode = "poll"`` (DESIGN.md §4.3): their status changes
fed into the same state machine as callbacks.

One periodic job (``agency-poll``, every ``[poller] tick_seconds``, default 10) runs :func:`poll_due`:

1. **Claim** (one unit of work): every agency registered for polling gets an ``AgencyPoll`` row the first time it
   is seen, its first poll placed at a fixed offset inside its interval (from a hash of its code), so agencies
   registered together do not all poll at the same instant; the rows that are due (``next_poll_at <= now``) and not
   leased are leased (``lease_until = now + [poller] lease_seconds``, default 300). On PostgreSQL the rows are
   selected ``FOR UPDATE SKIP LOCKED``, on SQLite the transaction takes the write lock first (``BEGIN IMMEDIATE``),
   so two processes never poll the same agency at once; a process that dies mid-poll leaves a lease that expires.
2. **Poll**, the claimed agencies concurrently (at most ``[poller] concurrency``, default 8), each through the
   dispatcher's cached client of that agency (the same factory, address policy, credentials and recording as
   deliveries):

   * SOAP: ``LayTrangThaiHoSo`` with ``TuThoiDiem`` = the agency's position (the latest change time it reported;
     at first, the submission time of the oldest open dossier it handles): every dossier whose status changed since;
   * REST (the reference REST contract has no "changes since"): ``GET {endpoint}/dossiers/{code}`` for each open
     dossier the agency handles now.
3. **Apply** each change, oldest first, in a unit of work of its own, through
   :func:`gateway.dossiers.apply_agency_event` as the agency (with the fan-out of the configuration, as callbacks
   are). A change already applied is recognised (same dossier, status, time and agency) and changes nothing; a
   ``submitted`` status (the agency echoing the delivery), a status the dossier already has, a dossier the gateway
   does not know or that another agency handles now are passed over; an illegal transition or an invalid event is
   logged (``illegal transition refused``, as callbacks are) and passed over, never retried: the process remembers
   the changes it settled (by agency, dossier, status, time and transfer), so an agency that keeps reporting the
   same latest status costs neither a transaction nor a log line at each poll (after a restart, one of each).
4. **Release**: the position moves to the latest change time seen, ``next_poll_at`` to ``now + interval``, the
   lease is dropped (only by its holder: a poll whose lease expired and was taken over writes nothing). A poll that
   failed (the agency unreachable, a bad answer) keeps the position, so the changes are asked for again at the next
   interval; the error is logged and kept in ``last_error``.

The reference status operation reports each dossier's *latest* status: an agency that moves a dossier twice within
one interval shows only the second move, which the state machine may refuse (for instance ``submitted`` straight to
``processing``). Agencies that need every step seen should use callbacks, or a shorter interval.

:func:`poll_due` runs one round (tests pass ``now``); it returns how many changes were applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from adapters.errors import UpstreamError
from adapters.onestop.port import AgencyStatus

from .audit import lock_for_write
from .auth import AGENCY, Principal
from .config import ConfigError
from .domain.status import TERMINAL_STATUSES, IllegalTransition, Status
from .fanout import Fanout
from .periodic import PeriodicJob
from .registry import Registration
from .store.models import Agency, AgencyPoll, Dossier, utcnow

if TYPE_CHECKING:
    from .dispatch import GatewayDispatcher
    from .runtime import Runtime

__all__ = ["PollerSettings", "first_poll_at", "periodic_jobs", "poll_due"]

log = logging.getLogger("gateway.poller")
events_log = logging.getLogger("gateway.events")

DEFAULT_TICK_SECONDS = 10.0
DEFAULT_LEASE_SECONDS = 300.0
DEFAULT_CONCURRENCY = 8
_ERROR_LIMIT = 500


@dataclass(frozen=True)
class PollerSettings:
    """``[poller]``: how often due agencies are looked for, how long a poll's lease lasts, how many at once."""

    tick_seconds: float = DEFAULT_TICK_SECONDS
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    concurrency: int = DEFAULT_CONCURRENCY

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> PollerSettings:
        unknown = sorted(set(section) - {"tick_seconds", "lease_seconds", "concurrency"})
        if unknown:
            raise ConfigError(f"[poller] unknown key {unknown[0]!r}")
        values: dict[str, Any] = {}
        for key in ("tick_seconds", "lease_seconds"):
            if key in section:
                value = section[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise ConfigError(f"[poller] {key} must be a positive number of seconds")
                values[key] = float(value)
        if "concurrency" in section:
            value = section["concurrency"]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError("[poller] concurrency must be a positive integer")
            values["concurrency"] = value
        return cls(**values)


def periodic_jobs(runtime: Runtime, dispatcher: GatewayDispatcher) -> list[PeriodicJob]:
    """The poller's job: :func:`poll_due` every ``[poller] tick_seconds`` (agencies registered later included)."""
    settings = PollerSettings.from_config(runtime.config.section("poller"))

    async def run() -> int:
        return await poll_due(runtime, dispatcher, settings=settings)

    return [PeriodicJob("agency-poll", settings.tick_seconds, run)]


def first_poll_at(agency_code: str, interval_seconds: int, now: datetime) -> datetime:
    """When an agency newly registered for polling is first polled: a fixed offset inside its interval."""
    offset_ms = zlib.crc32(agency_code.encode("utf-8")) % (interval_seconds * 1000)
    return now + timedelta(milliseconds=offset_ms)


# ----------------------------------------------------------------------------------------------------------------------
# Claims


@dataclass(frozen=True)
class _Claim:
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
    statement = insert(AgencyPoll.__table__).values(rows).on_conflict_do_nothing(index_elements=["agency_code"])
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


def _claim(session: Session, *, now: datetime, lease: timedelta) -> list[_Claim]:
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
            _Claim(
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


def _release(claim: _Claim, session: Session, *, now: datetime, position: datetime | None, error: str | None) -> bool:
    """Record the poll's outcome and drop its lease: ``False`` when the lease was lost (nothing written)."""
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
    row.next_poll_at = now + claim.interval
    row.lease_until = None
    row.last_error = error[:_ERROR_LIMIT] if error else None
    return True


# ----------------------------------------------------------------------------------------------------------------------
# Changes


def _event_document(change: AgencyStatus) -> dict[str, Any]:
    """The agency event a reported status stands for (the REST event's fields)."""
    values: dict[str, Any] = {
        "dossier_code": change.dossier_code,
        "status": change.status,
        "at": change.at,
        "note": change.note,
        "reason": change.reason,
        "due_at": change.due_at,
        "transfer_to": change.transfer_to,
    }
    if isinstance(change.result, dict) and change.result:
        values["result"] = dict(change.result)
    components = change.body.get("components") if isinstance(change.body, dict) else None
    if isinstance(components, list) and all(isinstance(c, str) for c in components) and components:
        values["components"] = components
    return {key: value for key, value in values.items() if value is not None}


def _passed_over(change: AgencyStatus, dossier: Dossier) -> str | None:
    """Why a change is not an event for the state machine (``None``: it is one)."""
    if change.status == Status.SUBMITTED:
        return "the agency reports the dossier as submitted (the delivery)"
    if change.status == dossier.status and (change.status != Status.PROCESSING or change.at is None):
        return "the dossier already has this status"
    return None


class _PassedOver(Exception):
    """A change refused by the state machine or the event's checks: its unit of work is rolled back."""


def _apply_change(
    runtime: Runtime,
    principal: Principal,
    change: AgencyStatus,
    files: Sequence[Any],
    fanout: Fanout,
    now: datetime,
    session: Session,
) -> bool:
    """Apply one reported change as ``principal``: ``True`` when it changed the dossier.

    Raises :class:`_PassedOver` (logged) when the change is refused, so that nothing of it is kept.
    """
    from . import dossiers
    from .intake import Forbidden, Invalid, NotFound, find_dossier, parse_model

    lock_for_write(session)
    extra = {"dossier_code": change.dossier_code, "agency": principal.agency_code, "channel": "poll"}
    try:
        dossier = find_dossier(session, change.dossier_code, for_update=True)
    except NotFound:
        log.debug("change of an unknown dossier passed over", extra=extra)
        return False
    reason = _passed_over(change, dossier)
    if reason is not None:
        log.debug("change passed over: %s", reason, extra=extra)
        return False
    try:
        event = parse_model(dossiers.AgencyEvent, _event_document(change))
        return dossiers.apply_agency_event(
            session,
            dossier,
            event,
            actor=principal,
            calendar=runtime.calendar,
            now=now,
            result_files=files,
            fanout=fanout,
        )
    except Forbidden:
        log.debug("change of a dossier another agency handles passed over", extra=extra)
    except IllegalTransition as exc:
        events_log.warning(
            "illegal transition refused", extra={**extra, "from": exc.source.value, "to": exc.target.value}
        )
    except Invalid as exc:
        fields = ", ".join(sorted({str(e.get("field", "")) for e in exc.errors}))
        events_log.warning("invalid event from polling passed over", extra={**extra, "fields": fields})
    raise _PassedOver


#: Changes each dispatcher's process has settled (applied, recognised as repeats, passed over or refused), so that a
#: status an agency keeps reporting (its latest) is not taken through the state machine, or logged, at every poll.
_SETTLED: weakref.WeakKeyDictionary[Any, OrderedDict[tuple[str, ...], None]] = weakref.WeakKeyDictionary()
_SETTLED_MAX = 10_000


def _settled(dispatcher: GatewayDispatcher) -> OrderedDict[tuple[str, ...], None]:
    found = _SETTLED.get(dispatcher)
    if found is None:
        found = _SETTLED[dispatcher] = OrderedDict()
    return found


def _change_key(agency_code: str, change: AgencyStatus) -> tuple[str, ...] | None:
    """What identifies a reported change (none without a time: it cannot be told from a later one)."""
    if change.at is None:
        return None
    at = change.at.astimezone(UTC).isoformat()
    return (agency_code, change.dossier_code, change.status, at, change.transfer_to or "")


async def _prepared_files(runtime: Runtime, change: AgencyStatus) -> list[Any]:
    """A completed change's result files, decoded and verified before its unit of work (as callbacks' are)."""
    from . import dossiers, intake

    if not (isinstance(change.result, dict) and change.result.get("files")):
        return []
    try:
        event = intake.parse_model(dossiers.AgencyEvent, _event_document(change))
        items = dossiers.result_file_items(event)
    except intake.Invalid:
        return []  # refused again, and logged, when applied
    files, errors = await intake.prepare_files(items, max_bytes=runtime.max_file_bytes)
    if errors:
        return []
    await intake.verify_files(runtime.verifier, files)
    return files


async def _changes(dispatcher: GatewayDispatcher, claim: _Claim) -> list[AgencyStatus]:
    client = dispatcher.agency_client(claim.agency_code, claim.document)
    if claim.protocol == "soap":
        changes = await client.changes_since(claim.since)  # type: ignore[union-attr]
    else:
        changes = []
        for code in claim.open_dossiers:
            try:
                changes.append(await client.get_status(code))
            except UpstreamError as exc:
                if exc.status_code != 404:
                    raise
                log.info("the agency does not know an open dossier", extra={"agency_code": claim.agency_code})
    earliest = claim.since - timedelta(days=365 * 100)
    return sorted(changes, key=lambda change: (change.at or earliest, change.dossier_code))


async def _poll(runtime: Runtime, dispatcher: GatewayDispatcher, claim: _Claim, fanout: Fanout, now: datetime) -> int:
    principal = Principal(AGENCY, claim.agency_code)
    applied = 0
    position = claim.position
    error: str | None = None
    settled = _settled(dispatcher)
    try:
        changes = await _changes(dispatcher, claim)
        for change in changes:
            key = _change_key(claim.agency_code, change)
            if key is None or key not in settled:
                files = await _prepared_files(runtime, change)
                work = functools.partial(_apply_change, runtime, principal, change, files, fanout, now)
                with contextlib.suppress(_PassedOver):
                    if await runtime.db.run(work):
                        applied += 1
                if key is not None:
                    settled[key] = None
                    while len(settled) > _SETTLED_MAX:
                        settled.popitem(last=False)
            if change.at is not None and (position is None or change.at > position):
                position = change.at
        log.info(
            "agency polled",
            extra={"agency_code": claim.agency_code, "changes": len(changes), "applied": applied},
        )
    except UpstreamError as exc:
        error = str(exc)
        log.warning("agency poll failed", extra={"agency_code": claim.agency_code, "error": error})
    except Exception as exc:  # noqa: BLE001 - one agency's failure never stops the others' polls
        error = f"{type(exc).__name__} while polling"
        log.warning("agency poll failed", extra={"agency_code": claim.agency_code, "error": error})
    if error is not None:
        position = claim.position  # asked again from where it was
    released = await runtime.db.run(functools.partial(_release, claim, now=now, position=position, error=error))
    if not released:
        log.warning("agency poll outlived its lease: outcome not recorded", extra={"agency_code": claim.agency_code})
    return applied


async def poll_due(
    runtime: Runtime,
    dispatcher: GatewayDispatcher,
    *,
    now: datetime | None = None,
    settings: PollerSettings | None = None,
) -> int:
    """Poll every agency whose poll is due (one round, see the module notes): the number of changes applied."""
    now = now or utcnow()
    settings = settings or PollerSettings.from_config(runtime.config.section("poller"))
    lease = timedelta(seconds=settings.lease_seconds)
    claims = await runtime.db.run(functools.partial(_claim, now=now, lease=lease))
    if not claims:
        return 0
    fanout = Fanout.from_runtime(runtime)
    limit = asyncio.Semaphore(settings.concurrency)

    async def one(claim: _Claim) -> int:
        async with limit:
            return await _poll(runtime, dispatcher, claim, fanout, now)

    return sum(await asyncio.gather(*(one(claim) for claim in claims)))
