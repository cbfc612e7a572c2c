"""The periodic report: the dossiers' histories and the outbox read from the database, counted by
:mod:`gateway.domain.reports`.

:func:`build_report` gives a :class:`Report` for a period, optionally one agency and/or one procedure; its
:meth:`Report.to_json` is what the API answers, the CLI prints and the files hold. The figures of the system (outbox
deliveries, retries, dead letters) are the outbox's rows as they stand when the report is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, selectinload

from gateway.domain.calendar import OfficeCalendar
from gateway.domain.ratings import average
from gateway.domain.reports import DossierRecord, Figures, Period, Step, count_dossiers
from gateway.domain.status import TERMINAL_STATUSES
from gateway.domain.times import iso
from gateway.outbox import DEAD, DONE
from gateway.store.models import Agency, Dossier, OutboxMessage, Procedure, Rating

__all__ = ["Report", "build_report"]

#: Dossiers changed this long before a period may still have an entry in it (agencies' clocks run a little apart).
_MARGIN = timedelta(days=1)


@dataclass
class Report:
    """The figures of one period: per agency and procedure, per agency, in all, and the system's."""

    period: Period
    generated_at: datetime
    agency: str | None
    procedure: str | None
    rows: dict[tuple[str, str], Figures]
    agency_names: dict[str, str]
    procedure_names: dict[str, str]
    system: dict[str, Any]
    left_out: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, Figures]:
        by_agency: dict[str, Figures] = {}
        for (agency, _), figures in sorted(self.rows.items()):
            by_agency.setdefault(agency, Figures(working_day_seconds=figures.working_day_seconds)).add(figures)
        return by_agency

    def total(self) -> Figures:
        total = Figures()
        for figures in self.rows.values():
            total.working_day_seconds = figures.working_day_seconds
            total.add(figures)
        return total

    def to_json(self) -> dict[str, Any]:
        period = self.period
        return {
            "period": period.label,
            "kind": period.kind,
            "from": period.start.isoformat(),
            "to": period.last_day.isoformat(),
            "generated_at": iso(self.generated_at),
            "agency": self.agency,
            "procedure": self.procedure,
            "rows": [
                {
                    "agency_code": agency,
                    "agency_name": self.agency_names.get(agency),
                    "procedure_code": procedure,
                    "procedure_name": self.procedure_names.get(procedure),
                    **figures.to_json(),
                }
                for (agency, procedure), figures in sorted(self.rows.items())
            ],
            "agencies": [
                {"agency_code": agency, "agency_name": self.agency_names.get(agency), **figures.to_json()}
                for agency, figures in self.totals().items()
            ],
            "total": self.total().to_json(),
            "system": self.system,
            "left_out": self.left_out,
        }


def _steps(dossier: Dossier) -> tuple[Step, ...]:
    steps = []
    for entry in dossier.history:
        details = entry.details or {}
        reason = details.get("reason")
        transfer_to = details.get("transfer_to")
        steps.append(
            Step(
                status=entry.status,
                at=entry.at,
                reason=reason if isinstance(reason, str) else None,
                transfer_to=transfer_to if isinstance(transfer_to, str) else None,
            )
        )
    return tuple(steps)


def _dossiers(session: Session, period: Period, procedure: str | None) -> list[Dossier]:
    """The dossiers that may have something in ``period``: arrived before its end, and open, changed since a
    little before its start, or rated in it."""
    rated = select(Rating.dossier_id).where(Rating.rated_at >= period.start_at, Rating.rated_at < period.end_at)
    statement = (
        select(Dossier)
        .where(
            Dossier.submitted_at < period.end_at,
            or_(
                Dossier.status.not_in([s.value for s in TERMINAL_STATUSES]),
                Dossier.updated_at >= period.start_at - _MARGIN,
                Dossier.id.in_(rated),
            ),
        )
        .options(selectinload(Dossier.history))
        .order_by(Dossier.id)
    )
    if procedure is not None:
        statement = statement.where(Dossier.procedure_code == procedure)
    return list(session.scalars(statement))


def _ratings(session: Session, dossiers: list[Dossier]) -> dict[int, tuple[datetime, float]]:
    """``dossier id -> (rated at, average score)`` of the rated ones among ``dossiers``."""
    ids = [dossier.id for dossier in dossiers]
    found: dict[int, tuple[datetime, float]] = {}
    for start in range(0, len(ids), 500):
        statement = select(Rating).where(Rating.dossier_id.in_(ids[start : start + 500]))
        for rating in session.scalars(statement):
            scores = {key: int(value) for key, value in (rating.scores or {}).items()}
            if scores:
                found[rating.dossier_id] = (rating.rated_at, average(scores))
    return found


def _records(session: Session, dossiers: list[Dossier]) -> tuple[list[DossierRecord], list[str]]:
    rules = select(Procedure.code, Procedure.processing_days, Procedure.suspension)
    days = {code: (days, suspension == "stop") for code, days, suspension in session.execute(rules)}
    rated = _ratings(session, dossiers)
    records, left_out = [], []
    for dossier in dossiers:
        processing_days, suspension_final = days.get(dossier.procedure_code, (None, False))
        if processing_days is None or not dossier.history:
            left_out.append(dossier.code)  # its due date cannot be computed: the procedure left the catalogue
            continue
        records.append(
            DossierRecord(
                code=dossier.code,
                procedure_code=dossier.procedure_code,
                lead_agency_code=dossier.lead_agency_code,
                channel=dossier.channel,
                originals_check_required=dossier.originals_check_required,
                processing_days=processing_days,
                history=_steps(dossier),
                rated_at=rated[dossier.id][0] if dossier.id in rated else None,
                rating_average=rated[dossier.id][1] if dossier.id in rated else None,
                suspension_final=suspension_final,
            )
        )
    return records, left_out


def system_figures(session: Session, period: Period, agency: str | None = None) -> dict[str, Any]:
    """Deliveries (messages done in the period), retries (attempts after the first of the messages done or parked in
    the period), dead letters (messages parked in the period and still dead), by target."""
    start, end = period.start_at, period.end_at
    done = and_(OutboxMessage.state == DONE, OutboxMessage.done_at >= start, OutboxMessage.done_at < end)
    dead = and_(OutboxMessage.state == DEAD, OutboxMessage.updated_at >= start, OutboxMessage.updated_at < end)
    statement = select(
        OutboxMessage.target,
        func.count().filter(done),
        func.coalesce(func.sum(OutboxMessage.attempts - 1).filter(or_(done, dead)), 0),
        func.count().filter(dead),
    ).group_by(OutboxMessage.target)
    if agency is not None:
        statement = statement.where(OutboxMessage.target == agency)
    targets = [
        {"target": target, "deliveries": int(deliveries), "retries": max(int(retries), 0), "dead_letters": int(dead_n)}
        for target, deliveries, retries, dead_n in session.execute(statement.order_by(OutboxMessage.target))
        if deliveries or retries or dead_n
    ]
    return {
        "deliveries": sum(t["deliveries"] for t in targets),
        "retries": sum(t["retries"] for t in targets),
        "dead_letters": sum(t["dead_letters"] for t in targets),
        "by_target": targets,
        # Upstream availability is measured by the running processes (metrics), not recorded in the database.
        "upstream_availability": None,
    }


def build_report(
    session: Session,
    period: Period,
    calendar: OfficeCalendar,
    *,
    now: datetime,
    agency: str | None = None,
    procedure: str | None = None,
) -> Report:
    """The report of ``period`` (for one agency and/or one procedure when given), counted up to ``now``."""
    records, left_out = _records(session, _dossiers(session, period, procedure))
    rows = count_dossiers(records, period, calendar, now=now)
    if agency is not None:
        rows = {key: figures for key, figures in rows.items() if key[0] == agency}
    return Report(
        period=period,
        generated_at=now,
        agency=agency,
        procedure=procedure,
        rows=rows,
        agency_names={code: name for code, name in session.execute(select(Agency.code, Agency.name))},
        procedure_names={code: name for code, name in session.execute(select(Procedure.code, Procedure.name))},
        system=system_figures(session, period, agency),
        left_out=left_out,
    )
