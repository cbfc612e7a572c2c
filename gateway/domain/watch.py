"""The deadline watch's rules: which of a dossier's deadlines need an operator's attention now.

Four conditions, each decided from the dossier's status and deadlines alone (times aware; the calendar's office
sessions count the working time):

- ``unacknowledged``: still ``submitted`` after ``acknowledge_by`` (reception must answer within half a working day).
- ``not_processing``: still ``received`` after half a working day counted from reception (the end of the session
  after the one reception counts from): the dossier was not handed to the specialist unit.
- ``near_due``: open, not waiting for the applicant, not yet late, and due within ``near_due`` working time.
- ``overdue``: open and late (:func:`gateway.domain.deadlines.is_overdue`: a paused dossier is late when its clock
  stopped after the due date).

Finished dossiers (completed, returned, refused, withdrawn, and suspended for a procedure that makes suspension a
final stop: their clock stopped for good, ``deadlines.finished_at``) are never watched.

A fifth condition concerns citizens' questions, not dossiers: ``question_unanswered``, a question still unanswered
after its due time (:func:`gateway.domain.questions.is_late`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from gateway.domain.calendar import OfficeCalendar
from gateway.domain.deadlines import Deadlines, is_overdue
from gateway.domain.status import WAITING_STATUSES, Status

__all__ = ["FINISHED_STATUSES", "WATCH_LABELS_VI", "Condition", "Finding", "findings"]

#: Statuses the watch ignores: nothing is due any more.
FINISHED_STATUSES: frozenset[Status] = frozenset({Status.COMPLETED, Status.RETURNED, Status.REFUSED, Status.WITHDRAWN})


class Condition(StrEnum):
    """What the watch found (the value is what metrics, alerts and the API carry)."""

    UNACKNOWLEDGED = "unacknowledged"
    NOT_PROCESSING = "not_processing"
    NEAR_DUE = "near_due"
    OVERDUE = "overdue"
    QUESTION_UNANSWERED = "question_unanswered"


#: The operators' words for each condition (console, alerts).
WATCH_LABELS_VI: dict[str, str] = {
    Condition.UNACKNOWLEDGED: "Quá hạn tiếp nhận",
    Condition.NOT_PROCESSING: "Chưa chuyển xử lý",
    Condition.NEAR_DUE: "Sắp đến hạn",
    Condition.OVERDUE: "Quá hạn giải quyết",
    Condition.QUESTION_UNANSWERED: "Câu hỏi quá hạn trả lời",
}


@dataclass(frozen=True)
class Finding:
    """One condition of one dossier: ``deadline`` is the moment that was (or is about to be) missed."""

    condition: Condition
    deadline: datetime


def findings(
    status: Status, deadlines: Deadlines, now: datetime, calendar: OfficeCalendar, *, near_due: timedelta
) -> list[Finding]:
    """The watch's findings for a dossier in ``status`` with ``deadlines`` at ``now`` (none once its clock stopped
    for good: a final suspension counts as finished)."""
    if status in FINISHED_STATUSES or deadlines.finished_at is not None:
        return []
    found: list[Finding] = []
    if status is Status.SUBMITTED and now > deadlines.acknowledge_by:
        found.append(Finding(Condition.UNACKNOWLEDGED, deadlines.acknowledge_by))
    if status is Status.RECEIVED and deadlines.received_at is not None:
        handover_by = calendar.acknowledge_by(deadlines.received_at)
        if now > handover_by:
            found.append(Finding(Condition.NOT_PROCESSING, handover_by))
    if is_overdue(deadlines, now):
        found.append(Finding(Condition.OVERDUE, deadlines.due_at))
    elif status not in WAITING_STATUSES and calendar.working_time_between(now, deadlines.due_at) <= near_due:
        found.append(Finding(Condition.NEAR_DUE, deadlines.due_at))
    return found
