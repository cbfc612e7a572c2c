"""The deadline watch over the database: every open dossier's findings now (:mod:`gateway.domain.watch`), per agency.

:func:`watch_items` reads the open dossiers with their history (deadlines are recomputed from it, so a wait in
progress is seen as it is now) and returns one :class:`WatchItem` per dossier and condition: no personal data, only
codes, statuses and times. Citizens' questions still unanswered past their due time are items too (condition
``question_unanswered``, ``question_id`` set, no dossier code). :func:`counts_by_agency` folds them into the figures
metrics and the console show.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from gateway.domain.calendar import OfficeCalendar
from gateway.domain.questions import is_late
from gateway.domain.status import Status
from gateway.domain.watch import FINISHED_STATUSES, Condition, findings
from gateway.services.changes import deadlines_of
from gateway.store.models import Dossier, Question

__all__ = ["WatchItem", "counts_by_agency", "watch_items"]


@dataclass(frozen=True)
class WatchItem:
    """One condition of one dossier (``deadline``: the moment missed, or about to be)."""

    dossier_code: str
    agency_code: str
    procedure_code: str
    status: str
    condition: Condition
    deadline: datetime
    due_at: datetime | None
    #: Set for an unanswered question (then ``dossier_code`` is empty).
    question_id: int | None = None

    def alert_body(self, now: datetime) -> dict[str, str | int | None]:
        """The JSON body of this item's alert (codes and times only); ``alert`` is ``firing`` (a resolution, sent
        once the finding is gone, repeats the body with ``resolved`` and ``resolved_at``)."""
        extra: dict[str, str | int | None] = {} if self.question_id is None else {"question_id": self.question_id}
        return {
            **extra,
            "type": "deadline_watch",
            "alert": "firing",
            "condition": self.condition.value,
            "dossier_code": self.dossier_code,
            "agency_code": self.agency_code,
            "procedure_code": self.procedure_code,
            "status": self.status,
            "deadline": self.deadline.isoformat(timespec="seconds"),
            "due_at": None if self.due_at is None else self.due_at.isoformat(timespec="seconds"),
            "detected_at": now.isoformat(timespec="seconds"),
        }


def watch_items(
    session: Session,
    calendar: OfficeCalendar,
    now: datetime,
    *,
    near_due: timedelta,
    agency_code: str | None = None,
) -> list[WatchItem]:
    """Every open dossier's findings at ``now`` (of one agency when given), oldest deadline first."""
    open_statuses = [s.value for s in Status if s not in FINISHED_STATUSES]
    statement = select(Dossier).where(Dossier.status.in_(open_statuses)).options(selectinload(Dossier.history))
    if agency_code is not None:
        statement = statement.where(Dossier.agency_code == agency_code)
    items: list[WatchItem] = []
    for dossier in session.scalars(statement.order_by(Dossier.id)):
        deadlines = deadlines_of(session, dossier, calendar)
        if deadlines is None:
            continue
        for finding in findings(Status(dossier.status), deadlines, now, calendar, near_due=near_due):
            items.append(
                WatchItem(
                    dossier_code=dossier.code,
                    agency_code=dossier.agency_code,
                    procedure_code=dossier.procedure_code,
                    status=dossier.status,
                    condition=finding.condition,
                    deadline=calendar.local(finding.deadline),
                    due_at=calendar.local(deadlines.due_at),
                )
            )
    items += _late_questions(session, calendar, now, agency_code)
    items.sort(key=lambda item: (item.deadline, item.dossier_code, item.condition.value, item.question_id or 0))
    return items


def _late_questions(
    session: Session, calendar: OfficeCalendar, now: datetime, agency_code: str | None
) -> list[WatchItem]:
    statement = select(Question).where(Question.answered_at.is_(None), Question.answer_by < now)
    if agency_code is not None:
        statement = statement.where(Question.agency_code == agency_code)
    return [
        WatchItem(
            dossier_code="",
            agency_code=question.agency_code,
            procedure_code=question.procedure_code or "",
            status="unanswered",
            condition=Condition.QUESTION_UNANSWERED,
            deadline=calendar.local(question.answer_by),
            due_at=calendar.local(question.answer_by),
            question_id=question.id,
        )
        for question in session.scalars(statement.order_by(Question.id))
        if is_late(question.answer_by, question.answered_at, now)
    ]


def counts_by_agency(items: Iterable[WatchItem]) -> dict[str, dict[str, int]]:
    """``{agency: {condition: count}}``, every condition present (zero included) for each agency listed."""
    counted = Counter((item.agency_code, item.condition.value) for item in items)
    result: dict[str, dict[str, int]] = {}
    for (agency, condition), count in counted.items():
        result.setdefault(agency, dict.fromkeys((c.value for c in Condition), 0))[condition] = count
    return result
