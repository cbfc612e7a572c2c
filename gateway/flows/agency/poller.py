"""Polling the agencies registered with ``status_updates.mode = "poll"``: their status changes fed into the same
use case as callbacks.

One periodic job (``agency-poll``, every ``[poller] tick_seconds``) runs :meth:`Poller.poll_due`:

1. **Claim** the agencies whose poll is due (:mod:`gateway.flows.agency.polls`): two processes never poll the same
   agency at once; a process that dies mid-poll leaves a lease that expires.
2. **Poll** the claimed agencies concurrently (at most ``[poller] concurrency``) through the agencies' shared
   clients: SOAP ``LayTrangThaiHoSo`` with ``TuThoiDiem`` = the agency's position (every dossier changed since);
   REST ``GET {endpoint}/dossiers/{code}`` for each open dossier the agency handles now.
3. **Apply** each change, oldest first, in a unit of work of its own, through
   :func:`gateway.services.events.record_event` as the agency. Repeats, ``submitted`` echoes, statuses the dossier
   already has, unknown dossiers and other agencies' dossiers are passed over; an illegal transition or an invalid
   event is logged and passed over, never retried. The poller remembers the changes it settled, so an agency that
   keeps reporting the same latest status costs neither a transaction nor a log line at each poll.
4. **Release**: the position moves to the latest change time seen; a failed poll keeps the position.

The reference status operation reports each dossier's *latest* status: an agency that moves a dossier twice within
one interval shows only the second move. Agencies that need every step seen should use callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from adapters.errors import UpstreamError
from adapters.onestop.port import AgencyStatus
from gateway.audit import lock_for_write
from gateway.auth import AGENCY, Principal
from gateway.domain.status import IllegalTransition, Status
from gateway.errors import Conflict, Forbidden, Invalid, NotFound
from gateway.flows.agency.polls import Claim, claim_due, release
from gateway.flows.agency.ports import AgencyClients, ChangeFeed
from gateway.periodic import PeriodicJob
from gateway.sections import PollerSection
from gateway.services.changes import find_dossier
from gateway.services.context import Context
from gateway.services.events import AgencyEvent, prepare_result_files, record_event
from gateway.services.files import PreparedFile
from gateway.store.models import Dossier, utcnow
from gateway.unit_of_work import UnitOfWork, unit
from gateway.validation import parse_model

__all__ = ["Poller", "periodic_jobs", "poll_due"]

log = logging.getLogger("gateway.poller")
events_log = logging.getLogger("gateway.events")

#: How many settled changes a poller remembers.
SETTLED_MAX = 10_000


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


def _change_key(agency_code: str, change: AgencyStatus) -> tuple[str, ...] | None:
    """What identifies a reported change (none without a time: it cannot be told from a later one)."""
    if change.at is None:
        return None
    at = change.at.astimezone(UTC).isoformat()
    return (agency_code, change.dossier_code, change.status, at, change.transfer_to or "")


class Poller:
    """Polls due agencies; remembers the changes it settled (per process)."""

    def __init__(self, ctx: Context, clients: AgencyClients, settings: PollerSection) -> None:
        self.ctx = ctx
        self.clients = clients
        self.settings = settings
        self._settled: OrderedDict[tuple[str, ...], None] = OrderedDict()

    def _apply(
        self, principal: Principal, change: AgencyStatus, files: Sequence[PreparedFile], now: datetime, uow: UnitOfWork
    ) -> bool:
        """Apply one reported change as ``principal``: ``True`` when it changed the dossier; :class:`_PassedOver`
        (logged) when it is refused, so that nothing of it is kept."""
        session: Session = uow.session
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
            event = parse_model(AgencyEvent, _event_document(change))
            return record_event(
                uow, dossier, event, actor=principal, calendar=self.ctx.calendar, now=now, result_files=files
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
        except Conflict as exc:  # a result handed over while a fee is unpaid
            events_log.warning("event refused: %s", exc.code, extra={**extra, "to": change.status})
        raise _PassedOver

    async def _prepared_files(self, change: AgencyStatus) -> list[PreparedFile]:
        """A completed change's result files, decoded and verified before its unit of work (as callbacks' are)."""
        if not (isinstance(change.result, dict) and change.result.get("files")):
            return []
        try:
            return await prepare_result_files(self.ctx, parse_model(AgencyEvent, _event_document(change)))
        except Invalid:
            return []  # refused again, and logged, when applied

    async def _changes(self, claim: Claim) -> list[AgencyStatus]:
        changes: list[AgencyStatus] = []
        async with self.clients.use(claim.agency_code, claim.document) as client:
            if claim.protocol == "soap" and isinstance(client, ChangeFeed):
                changes = await client.changes_since(claim.since)
            else:
                for code in claim.open_dossiers:
                    try:
                        changes.append(await client.get_status(code))
                    except UpstreamError as exc:
                        if exc.status_code != 404:
                            raise
                        log.info("the agency does not know an open dossier", extra={"agency_code": claim.agency_code})
        earliest = claim.since - timedelta(days=365 * 100)
        return sorted(changes, key=lambda change: (change.at or earliest, change.dossier_code))

    async def _settle(self, principal: Principal, change: AgencyStatus, now: datetime) -> bool:
        key = _change_key(principal.agency_code or "", change)
        applied = False
        if key is None or key not in self._settled:
            files = await self._prepared_files(change)
            work = unit(self.ctx.bus, functools.partial(self._apply, principal, change, files, now))
            with contextlib.suppress(_PassedOver):
                applied = await self.ctx.db.write(work)
            if key is not None:
                self._settled[key] = None
                while len(self._settled) > SETTLED_MAX:
                    self._settled.popitem(last=False)
        return applied

    async def _poll(self, claim: Claim, now: datetime) -> int:
        principal = Principal(AGENCY, claim.agency_code)
        applied = 0
        position = claim.position
        error: str | None = None
        asked_wait: float | None = None
        try:
            changes = await self._changes(claim)
            for change in changes:
                applied += await self._settle(principal, change, now)
                if change.at is not None and (position is None or change.at > position):
                    position = change.at
            extra = {"agency_code": claim.agency_code, "changes": len(changes), "applied": applied}
            log.info("agency polled", extra=extra)
        except UpstreamError as exc:
            error, asked_wait = str(exc), exc.retry_after
            log.warning("agency poll failed", extra={"agency_code": claim.agency_code, "error": error})
        except Exception as exc:  # noqa: BLE001 - one agency's failure never stops the others' polls
            error = f"{type(exc).__name__} while polling"
            log.warning("agency poll failed", extra={"agency_code": claim.agency_code, "error": error})
        if error is not None:
            position = claim.position  # asked again from where it was
        done = functools.partial(release, claim, now=now, position=position, error=error, asked_wait=asked_wait)
        if not await self.ctx.db.write(done):
            log.warning(
                "agency poll outlived its lease: outcome not recorded", extra={"agency_code": claim.agency_code}
            )
        return applied

    async def poll_due(self, *, now: datetime | None = None) -> int:
        """Poll every agency whose poll is due (one round): the number of changes applied."""
        now = now or utcnow()
        lease = timedelta(seconds=self.settings.lease_seconds)
        claims = await self.ctx.db.write(functools.partial(claim_due, now=now, lease=lease))
        if not claims:
            return 0
        limit = asyncio.Semaphore(self.settings.concurrency)

        async def one(claim: Claim) -> int:
            async with limit:
                return await self._poll(claim, now)

        return sum(await asyncio.gather(*(one(claim) for claim in claims)))


async def poll_due(poller: Poller, *, now: datetime | None = None) -> int:
    """One round of ``poller`` (see :meth:`Poller.poll_due`)."""
    return await poller.poll_due(now=now)


def periodic_jobs(poller: Poller) -> list[PeriodicJob]:
    """The poller's job: a round every ``[poller] tick_seconds`` (agencies registered later included)."""
    return [PeriodicJob("agency-poll", poller.settings.tick_seconds, poller.poll_due)]
