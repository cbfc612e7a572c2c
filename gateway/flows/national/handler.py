"""Delivering ``national.sync`` messages: the national portal brought up to a dossier's history entry, at least.

The handler reads the dossier and its whole history when a message is handled and sends the portal what it does not
have yet, so work that queued up while the portal was down goes in a few batched calls. The ``national_sync`` row
records what the portal accepted, for ``isUpdating``, half-accepted batches and reconciliation.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.errors import PermanentError, TransientError, UpstreamError
from adapters.national_portal import DossierRecord, NationalPortal, ProgressRecord, RecordFailure, wire
from gateway import messages
from gateway.domain.status import national_code
from gateway.flows.national.ratings import deliver_rating
from gateway.flows.national.records import dossier_record, is_local_step, progress_record
from gateway.flows.national.settings import NationalPortalSettings
from gateway.services.context import Context
from gateway.store.models import Dossier, NationalSync, utcnow
from gateway.workers import MessageView

__all__ = ["NationalSyncHandler"]

log = logging.getLogger("gateway.national_sync")

UPSTREAM = messages.NATIONAL_TARGET

#: Per-record codes after which the same record may be accepted later (not stored; the dossier not there yet).
_RETRYABLE_RECORD_CODES = frozenset({wire.CODE_SYSTEM_ERROR, wire.CODE_NOT_FOUND})


@dataclass
class _Plan:
    """What one message sends, read in one unit of work."""

    dossier: DossierRecord | None
    updating: bool
    progress: list[tuple[int, ProgressRecord]]
    #: Every history entry, in order (the watermark moves along them).
    entry_ids: list[int]
    #: Entries never sent (gateway-only steps): they count as accepted.
    local_ids: set[int]
    full: bool


@dataclass
class _Outcome:
    status_code: int | None = None
    accepted: set[int] = field(default_factory=set)
    error: str | None = None


def _plan(code: str, history_id: int, resync: bool, full: bool, session: Session) -> _Plan | None:
    dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one_or_none()
    if dossier is None:
        raise PermanentError(f"no dossier {code}", upstream=UPSTREAM)
    entries = list(dossier.history)
    if all(entry.id != history_id for entry in entries):
        raise PermanentError(f"dossier {code} has no history entry {history_id}", upstream=UPSTREAM)
    row = session.get(NationalSync, code)
    if full:
        row = None
    elif row is not None and not resync and row.history_id >= history_id:
        return None  # the portal is already up to this entry (or past it)
    watermark = row.history_id if row is not None else 0
    accepted = set(row.accepted_ids or []) if row is not None else set()
    target = national_code(entries[-1].status)
    send_dossier = resync or row is None or row.status_code != str(target)
    local_ids = {e.id for e in entries if is_local_step(e)}
    try:
        progress = [
            (e.id, progress_record(dossier, e))
            for e in entries
            if e.id > watermark and e.id not in accepted and e.id not in local_ids
        ]
        record = dossier_record(session, dossier, entries) if send_dossier else None
    except ValueError as exc:  # a value the portal's record cannot carry: sending it again will not help
        raise PermanentError(f"dossier {code} cannot be sent: {exc}", upstream=UPSTREAM) from None
    return _Plan(
        dossier=record,
        updating=row is not None and row.status_code is not None,
        progress=progress,
        entry_ids=[e.id for e in entries],
        local_ids=local_ids,
        full=full,
    )


def _save(code: str, plan: _Plan, outcome: _Outcome, now: datetime, session: Session) -> None:
    row = session.get(NationalSync, code)
    if row is None:
        row = NationalSync(dossier_code=code, history_id=0, accepted_ids=[])
        session.add(row)
    if plan.full:
        row.history_id, row.accepted_ids = 0, []
    if outcome.status_code is not None:
        row.status_code = str(outcome.status_code)
    accepted = set(row.accepted_ids or []) | outcome.accepted | plan.local_ids
    watermark = row.history_id or 0
    for entry_id in plan.entry_ids:
        if entry_id <= watermark:
            continue
        if entry_id not in accepted:
            break
        watermark = entry_id
    row.history_id = watermark
    row.accepted_ids = sorted(i for i in accepted if i > watermark)
    if outcome.error is None:
        row.last_error = None
        row.synced_at = now
    else:
        row.last_error = outcome.error[:2000]


def _refusal(what: str, failures: Sequence[RecordFailure[Any]]) -> UpstreamError:
    """The error a refused record makes of the message: transient when sending it again may succeed."""
    codes = sorted({failure.code for failure in failures})
    first = failures[0]
    text = f"{what}: {len(failures)} record(s) refused (error_code {', '.join(codes)}: {first.message})"
    if all(failure.code in _RETRYABLE_RECORD_CODES for failure in failures):
        return TransientError(text, upstream=UPSTREAM)
    return PermanentError(text, upstream=UPSTREAM)


class NationalSyncHandler:
    """Delivers ``national.sync`` messages (payload ``{"dossier_code", "history_id"}``) through ``portal``.

    * ``DongBoHoSoMC`` with the dossier and its current status (``TrangThaiHoSo``), when that code is not the one
      the portal last accepted; ``isUpdating`` when the :class:`~gateway.store.models.NationalSync` row says the
      portal has the dossier (the client sends it the other way if the portal disagrees);
    * ``CapNhatTienDoHoSoMC`` with every history entry the portal has not accepted yet, in history order, in
      batches of ``batch_size``; the records of a half-accepted batch that the portal accepted are remembered
      (``NationalSync.accepted_ids``), so the next attempt sends only the refused ones; steps about the gateway
      itself (an integration skipped) are never sent and count as accepted;
    * the ``NationalSync`` row (``status_code``, ``history_id`` — the entry up to which everything was accepted —,
      ``synced_at``, ``last_error``) is updated in one unit of work after the calls, failed or not.

    ``national.rating`` messages (payload ``{"dossier_code", "rating_id"}``) send one satisfaction rating
    (:func:`~gateway.flows.national.ratings.deliver_rating`).

    A message for an entry the portal already has changes nothing. ``"resync": true`` sends the dossier again
    whatever the row says; with ``"full": true`` too (the portal lost it), the whole history is sent again.

    Errors, as the outbox expects them (:func:`gateway.workers.classify`): the portal unreachable, 5xx, its system
    error or a record refused with ``99`` (not stored) or ``13`` (not found yet) are transient: the message is
    retried with backoff and the dossier's later syncs wait behind it. Refused credentials, a record refused as
    invalid (``11``, ``12``), an unknown dossier or history entry are permanent: the message is dead until an
    operator redrives it.

    The portal client is built by the composition root; ``close``, when given, releases what it holds (its HTTP
    client) when the handler is closed.
    """

    kinds = frozenset({messages.NATIONAL_SYNC, messages.NATIONAL_RATING})

    def __init__(
        self,
        ctx: Context,
        portal: NationalPortal,
        settings: NationalPortalSettings,
        *,
        close: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.portal = portal
        self.settings = settings
        self._close = close
        self.clock: Callable[[], datetime] = utcnow

    async def aclose(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            await close()

    async def handle(self, message: MessageView) -> None:
        if message.kind == messages.NATIONAL_RATING:
            await deliver_rating(self.ctx, self.portal, message, self.clock())
            return
        payload = message.payload
        code, history_id = payload.get("dossier_code"), payload.get("history_id")
        if not isinstance(code, str) or not code or isinstance(history_id, bool) or not isinstance(history_id, int):
            raise PermanentError("the message names no dossier or history entry", upstream=UPSTREAM)
        resync, full = payload.get("resync") is True, payload.get("full") is True
        plan = await self.ctx.db.run(functools.partial(_plan, code, history_id, resync, full))
        if plan is None:
            log.info("national portal already up to date", extra={"dossier_code": code, "history_id": history_id})
            return
        outcome = _Outcome()
        try:
            await self._send(plan, outcome)
        except UpstreamError as exc:
            outcome.error = str(exc)
            await self.ctx.db.run(functools.partial(_save, code, plan, outcome, self.clock()))
            raise
        await self.ctx.db.run(functools.partial(_save, code, plan, outcome, self.clock()))
        log.info(
            "national portal synced",
            extra={
                "dossier_code": code,
                "history_id": history_id,
                "status_code": outcome.status_code,
                "progress": len(outcome.accepted),
            },
        )

    async def _send(self, plan: _Plan, outcome: _Outcome) -> None:
        if plan.dossier is not None:
            synced = await self.portal.sync_dossiers([plan.dossier], updating=plan.updating)
            if synced.failed:
                raise _refusal(wire.SERVICE_SYNC, synced.failed)
            outcome.status_code = plan.dossier.status_code
        if not plan.progress:
            return
        ids = {id(record): entry_id for entry_id, record in plan.progress}
        failed: list[RecordFailure[ProgressRecord]] = []
        size = self.settings.batch_size
        # One batch per call here, so that a failure on a later batch keeps what the earlier ones had accepted.
        for start in range(0, len(plan.progress), size):
            result = await self.portal.update_progress([record for _, record in plan.progress[start : start + size]])
            outcome.accepted.update(ids[id(record)] for record in result.accepted)
            failed.extend(result.failed)
        if failed:
            raise _refusal(wire.SERVICE_PROGRESS, failed)
