"""Recording a change in a dossier's history: the one way a dossier's status or steps change after intake.

:func:`record_change` appends the history entry (never before the last one), sets the status, recomputes the
deadlines from the whole history and raises :class:`~gateway.domain.events.ChangeRecorded` for the flows.
:func:`record_step` appends a step that only informs (an integration skipped) and raises nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.catalogue import ProcedureSpec, get_procedure
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.deadlines import Deadlines, compute_deadlines
from gateway.domain.dossier import status_before_wait
from gateway.domain.events import ChangeRecorded
from gateway.domain.hops import Hop, HopEntry, agency_hops
from gateway.domain.status import Status
from gateway.errors import Conflict, NotFound
from gateway.store.models import Dossier, HistoryEntry
from gateway.store.written import append_new
from gateway.unit_of_work import UnitOfWork

__all__ = [
    "deadlines_of",
    "find_dossier",
    "history_pairs",
    "hops_of",
    "lock_dossier",
    "procedure_of",
    "record_change",
    "record_step",
    "resumable_status",
]


def find_dossier(session: Session, code: str, *, for_update: bool = False) -> Dossier:
    """The dossier ``code`` (locked for update on PostgreSQL when asked); :class:`NotFound` otherwise."""
    statement = select(Dossier).where(Dossier.code == code)
    if for_update and session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    dossier = session.scalars(statement).one_or_none()
    if dossier is None:
        raise NotFound(f"no dossier {code}")
    return dossier


def lock_dossier(session: Session, dossier_id: int) -> Dossier:
    """The dossier with id ``dossier_id``, re-read and locked for update on PostgreSQL."""
    statement = select(Dossier).where(Dossier.id == dossier_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return session.scalars(statement.execution_options(populate_existing=True)).one()


def procedure_of(session: Session, dossier: Dossier) -> ProcedureSpec:
    """The dossier's procedure; :class:`Conflict` when it left the catalogue."""
    spec = get_procedure(session, dossier.procedure_code)
    if spec is None:
        raise Conflict(f"procedure {dossier.procedure_code} of dossier {dossier.code} is no longer in the catalogue")
    return spec


def history_pairs(dossier: Dossier) -> list[tuple[str, datetime]]:
    return [(entry.status, entry.at) for entry in dossier.history]


def deadlines_of(session: Session, dossier: Dossier, calendar: OfficeCalendar) -> Deadlines | None:
    """The dossier's deadlines from its whole history (``None`` without a procedure or a history)."""
    spec = get_procedure(session, dossier.procedure_code)
    if spec is None or not dossier.history:
        return None
    final = spec.suspension == "stop"
    return compute_deadlines(history_pairs(dossier), spec.processing_days, calendar, suspension_final=final)


def _hop_entry(entry: HistoryEntry) -> HopEntry:
    details = entry.details or {}
    target = details.get("transfer_to")
    due = details.get("transfer_due_at")
    return HopEntry(
        entry.status,
        entry.at,
        target if isinstance(target, str) else None,
        datetime.fromisoformat(due) if isinstance(due, str) else None,
    )


def hops_of(dossier: Dossier, deadlines: Deadlines | None, calendar: OfficeCalendar) -> list[Hop]:
    """The dossier's stay with each agency (liên thông), each with its own deadline; none without a due date."""
    due = deadlines.due_at if deadlines is not None else dossier.due_at
    if due is None or not dossier.history:
        return []
    finished = deadlines.finished_at if deadlines is not None else None
    entries = [_hop_entry(entry) for entry in dossier.history]
    return agency_hops(entries, lead=dossier.lead_agency_code, due_at=due, calendar=calendar, finished_at=finished)


def resumable_status(dossier: Dossier) -> Status:
    """The status the dossier had before its current wait."""
    return status_before_wait(Status(entry.status) for entry in dossier.history)


def _recompute(session: Session, dossier: Dossier, calendar: OfficeCalendar) -> None:
    # Reading the procedure must not flush the change under way: it would be written twice (two version increments).
    with session.no_autoflush:
        deadlines = deadlines_of(session, dossier, calendar)
    if deadlines is None:
        return
    dossier.received_at = deadlines.received_at
    dossier.acknowledge_by = deadlines.acknowledge_by
    dossier.due_at = deadlines.due_at
    dossier.calendar_version = calendar.version


def record_change(
    uow: UnitOfWork,
    dossier: Dossier,
    *,
    status: Status,
    at: datetime,
    actor: str,
    note: str | None,
    details: dict[str, Any],
    calendar: OfficeCalendar,
    now: datetime,
) -> HistoryEntry:
    """Add a history entry (never before the last one), set the status, recompute deadlines, raise the event."""
    previous = dossier.status
    last = dossier.history[-1].at if dossier.history else at
    entry = HistoryEntry(status=status.value, at=max(at, last), actor=actor, note=note, details=details)
    append_new(uow.session, dossier, "history", entry)
    dossier.status = status.value
    dossier.updated_at = now
    _recompute(uow.session, dossier, calendar)
    uow.session.flush()
    uow.emit(changed(dossier, entry, previous=previous, now=now))
    return entry


def changed(dossier: Dossier, entry: HistoryEntry, *, previous: str | None, now: datetime) -> ChangeRecorded:
    """The event of a flushed history entry."""
    step = (entry.details or {}).get("step")
    return ChangeRecorded(
        dossier_code=dossier.code,
        dossier_id=dossier.id,
        history_id=entry.id,
        status=entry.status,
        previous=previous,
        step=step if isinstance(step, str) else None,
        at=entry.at,
        recorded_at=now,
    )


def record_step(
    session: Session, dossier: Dossier, *, step: str, at: datetime, actor: str, note: str, **details: Any
) -> HistoryEntry:
    """A history step that informs only (an integration skipped): the status stays, no event is raised.

    Written at once when nothing else waits for a flush (a dossier just taken in, the flows' reactions to it: one
    statement instead of a flush of the session), otherwise with the unit of work's next flush (at the latest its
    commit): no step needs its id."""
    entry = HistoryEntry(status=dossier.status, at=at, actor=actor, note=note, details={"step": step, **details})
    append_new(session, dossier, "history", entry)
    return entry


def has_step(dossier: Dossier, step: str, **details: Any) -> bool:
    """Whether the dossier's history already has ``step`` (with these details)."""
    for entry in dossier.history:
        found = entry.details or {}
        if found.get("step") == step and all(found.get(k) == v for k, v in details.items()):
            return True
    return False
