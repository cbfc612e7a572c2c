"""Citizens' questions to the competent agency (*hỏi đáp*): the reply channels and when an answer is late.

A question is due ``[questions] answer_within_days`` working days after it was asked (at the end of that day's
afternoon session, as a dossier's due date is counted); an unanswered question past that moment is late and the
deadline watch lists it.
"""

from __future__ import annotations

from datetime import datetime

from gateway.domain.calendar import OfficeCalendar

__all__ = ["REPLY_CHANNELS", "answer_by", "is_late"]

#: The reply channels the applicant may choose: the portal's account, e-mail, SMS or post (the portal relays).
REPLY_CHANNELS = ("portal", "email", "sms", "post")


def answer_by(asked_at: datetime, days: int, calendar: OfficeCalendar) -> datetime:
    """When an answer to a question asked at ``asked_at`` is due: ``days`` working days later."""
    return calendar.due_at(asked_at, days)


def is_late(due: datetime, answered_at: datetime | None, now: datetime) -> bool:
    """Unanswered and past its due time."""
    return answered_at is None and now > due
