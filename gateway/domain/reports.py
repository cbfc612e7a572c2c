"""The periodic report's arithmetic: which dossiers count where, on plain data (no database).

A :class:`Period` is a month (``2026-10``), a quarter (``2026-Q4``), a half-year (``2026-H2``) or a year (``2026``),
from its first day's midnight to the next period's, in Vietnam's time. :func:`count_dossiers` turns the dossiers'
histories (:class:`DossierRecord`) into :class:`Figures` per agency and procedure, following the counting rules of
``docs/counting-rules.md``:

- *received* (by channel): the dossier arrived (its first history entry) in the period; counted for its lead agency.
- *carried over*: arrived before the period and not finished (completed, refused, withdrawn or stopped) before it.
- *completed* on time or late: the first ``completed`` entry is in the period; late when after the due date (the
  legal time from reception, moved by the time waited for the applicant) or when supplements were asked more than
  once (as the national evaluation counts it).
- *in progress* on time or overdue: arrived before the period's end (or now, for a period not over yet) and not
  finished by then; overdue when that moment is past its due date (a paused dossier's clock stopped when it paused).
- *refused*, *withdrawn*: the entry is in the period; refusals counted by reason.
- *stopped*: a procedure that makes suspension a final stop (``DossierRecord.suspension_final``): the dossier's
  ``suspended`` entry is in the period. Such a dossier is finished from that moment (never carried over or in
  progress afterwards), neither completed nor refused.
- *supplement requests*: each entry into ``supplement_requested`` in the period, counted by reason; *repeated
  supplements*: dossiers asked again in the period after an earlier request.
- *exempt from the originals check*: dossiers received in the period whose every component's signature was valid.
- *average processing days*: over dossiers completed in the period, the working time from reception to completion
  less the time waited for the applicant, in working days.
- *ratings* and *average rating*: the applicants' satisfaction ratings given in the period and the mean of their
  average scores (1 to 5), for the agency that returned the result.
- A *liên thông* dossier counts in every figure for its lead agency (which returns the result); each agency it was
  transferred to counts it once as *transferred in*, in the period of the transfer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from gateway.domain.calendar import VIETNAM_TZ, OfficeCalendar
from gateway.domain.deadlines import FINISHING_STATUSES, compute_deadlines, is_overdue
from gateway.domain.status import Status

__all__ = [
    "CHANNELS",
    "MONTHLY_DEADLINE_DAY",
    "DossierRecord",
    "Figures",
    "Period",
    "Step",
    "count_dossiers",
    "monthly_period",
    "scheduled_period",
]

#: The intake channels, as the submission gives them.
CHANNELS = ("online", "in_person", "post")
#: How many reasons are listed (the most frequent first).
TOP_REASONS = 5
#: How a refusal or a supplement request without a reason is counted.
NO_REASON = "(không nêu lý do)"

_PERIOD_RE = re.compile(r"^(\d{4})(?:-(?:(\d{2})|Q([1-4])|H([12])))?$")


@dataclass(frozen=True, order=True)
class Period:
    """A reporting period: ``kind`` is ``month``, ``quarter``, ``half`` or ``year``; ``start`` and ``end`` are its
    first day and the day after its last."""

    start: date
    end: date
    kind: str
    label: str

    @classmethod
    def parse(cls, text: str) -> Period:
        """``2026-10``, ``2026-Q4``, ``2026-H2`` or ``2026``; ``ValueError`` naming the accepted forms otherwise."""
        match = _PERIOD_RE.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{text!r} is not a period: give 2026-10 (month), 2026-Q4, 2026-H2 or 2026")
        year = int(match.group(1))
        month, quarter, half = match.group(2), match.group(3), match.group(4)
        if year < 2000 or year > 2999:
            raise ValueError(f"{text!r}: the year must be between 2000 and 2999")
        if month is not None:
            if not 1 <= int(month) <= 12:
                raise ValueError(f"{text!r}: the month must be 01 to 12")
            return cls._of(year, int(month), 1, "month", f"{year}-{int(month):02d}")
        if quarter is not None:
            return cls._of(year, 3 * int(quarter) - 2, 3, "quarter", f"{year}-Q{quarter}")
        if half is not None:
            return cls._of(year, 6 * int(half) - 5, 6, "half", f"{year}-H{half}")
        return cls._of(year, 1, 12, "year", str(year))

    @classmethod
    def _of(cls, year: int, first_month: int, months: int, kind: str, label: str) -> Period:
        last = first_month + months
        end = date(year + (last - 1) // 12, (last - 1) % 12 + 1, 1)
        return cls(start=date(year, first_month, 1), end=end, kind=kind, label=label)

    @property
    def start_at(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=VIETNAM_TZ)

    @property
    def end_at(self) -> datetime:
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=VIETNAM_TZ)

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    def contains(self, moment: datetime) -> bool:
        return self.start_at <= moment < self.end_at


def monthly_period(day: date) -> Period:
    """The month before ``day``'s month (the one a monthly report covers)."""
    previous = day.replace(day=1) - timedelta(days=1)
    return Period.parse(f"{previous.year}-{previous.month:02d}")


#: Monthly reports are due before this day of the month.
MONTHLY_DEADLINE_DAY = 20


def scheduled_period(day: date, schedule_day: int) -> Period | None:
    """The month whose report is due on ``day`` (last month, from ``schedule_day`` until the 19th), else ``None``."""
    if schedule_day <= day.day < MONTHLY_DEADLINE_DAY:
        return monthly_period(day)
    return None


@dataclass(frozen=True)
class Step:
    """One entry of a dossier's history, as the report needs it."""

    status: str
    at: datetime
    reason: str | None = None
    transfer_to: str | None = None


@dataclass(frozen=True)
class DossierRecord:
    """A dossier and its whole history (oldest first), as plain data."""

    code: str
    procedure_code: str
    lead_agency_code: str
    channel: str
    originals_check_required: bool
    processing_days: int
    history: tuple[Step, ...]
    #: When the applicant rated the service, and the rating's average score (none: not rated).
    rated_at: datetime | None = None
    rating_average: float | None = None
    #: The procedure makes ``suspended`` a final stop (the catalogue's ``suspension = "stop"``).
    suspension_final: bool = False


@dataclass
class Figures:
    """The counts of one agency and procedure (or a total). ``processing_seconds`` over ``completed`` gives
    :attr:`average_processing_days`; everything else is a plain count."""

    received: Counter[str] = field(default_factory=Counter)
    transferred_in: int = 0
    carried_over: int = 0
    completed_on_time: int = 0
    completed_late: int = 0
    in_progress_on_time: int = 0
    in_progress_overdue: int = 0
    refused: int = 0
    refusal_reasons: Counter[str] = field(default_factory=Counter)
    supplement_requests: int = 0
    supplement_reasons: Counter[str] = field(default_factory=Counter)
    withdrawn: int = 0
    stopped: int = 0
    repeated_supplements: int = 0
    originals_exempt: int = 0
    processing_seconds: float = 0.0
    ratings: int = 0
    rating_points: float = 0.0
    working_day_seconds: float = 8 * 3600.0

    @property
    def received_total(self) -> int:
        return sum(self.received.values())

    @property
    def completed(self) -> int:
        return self.completed_on_time + self.completed_late

    @property
    def average_processing_days(self) -> float | None:
        if not self.completed:
            return None
        return round(self.processing_seconds / self.completed / self.working_day_seconds, 2)

    @property
    def average_rating(self) -> float | None:
        return round(self.rating_points / self.ratings, 2) if self.ratings else None

    @property
    def originals_exempt_share(self) -> float | None:
        total = self.received_total
        return round(self.originals_exempt / total, 4) if total else None

    def add(self, other: Figures) -> None:
        for name in ("received", "refusal_reasons", "supplement_reasons"):
            getattr(self, name).update(getattr(other, name))
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.processing_seconds += other.processing_seconds
        self.rating_points += other.rating_points

    def to_json(self) -> dict[str, Any]:
        return {
            "received": {
                **{channel: self.received.get(channel, 0) for channel in CHANNELS},
                "total": self.received_total,
            },
            "transferred_in": self.transferred_in,
            "carried_over": self.carried_over,
            "completed": {"on_time": self.completed_on_time, "late": self.completed_late, "total": self.completed},
            "in_progress": {
                "on_time": self.in_progress_on_time,
                "overdue": self.in_progress_overdue,
                "total": self.in_progress_on_time + self.in_progress_overdue,
            },
            "refused": self.refused,
            "refusal_reasons": _top(self.refusal_reasons),
            "supplement_requests": self.supplement_requests,
            "supplement_reasons": _top(self.supplement_reasons),
            "withdrawn": self.withdrawn,
            "stopped": self.stopped,
            "repeated_supplements": self.repeated_supplements,
            "originals_exempt": self.originals_exempt,
            "originals_exempt_share": self.originals_exempt_share,
            "average_processing_days": self.average_processing_days,
            "ratings": self.ratings,
            "average_rating": self.average_rating,
        }


_COUNTS = (
    "transferred_in",
    "carried_over",
    "completed_on_time",
    "completed_late",
    "in_progress_on_time",
    "in_progress_overdue",
    "refused",
    "supplement_requests",
    "withdrawn",
    "stopped",
    "repeated_supplements",
    "originals_exempt",
    "ratings",
)


def _top(reasons: Counter[str]) -> list[dict[str, Any]]:
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:TOP_REASONS]
    return [{"reason": reason, "count": count} for reason, count in ranked]


def _entries_into(history: Sequence[Step], status: Status) -> list[Step]:
    """Entries that moved the dossier into ``status`` (not the steps recorded while it stayed there)."""
    found, previous = [], None
    for step in history:
        if step.status == status.value and previous != status.value:
            found.append(step)
        previous = step.status
    return found


def _finishing(record: DossierRecord) -> frozenset[str]:
    """The statuses that finish ``record`` (``suspended`` too, when its procedure makes suspension final)."""
    statuses = FINISHING_STATUSES | {Status.SUSPENDED} if record.suspension_final else FINISHING_STATUSES
    return frozenset(status.value for status in statuses)


def _final_step(record: DossierRecord) -> Step | None:
    finishing = _finishing(record)
    return next((step for step in record.history if step.status in finishing), None)


def _pairs(history: Iterable[Step]) -> list[tuple[str, datetime]]:
    return [(step.status, step.at) for step in history]


class _Counting:
    """The lead agency's figures of one dossier in one period."""

    def __init__(self, record: DossierRecord, period: Period, calendar: OfficeCalendar, now: datetime) -> None:
        self.record = record
        self.period = period
        self.calendar = calendar
        self.until = min(period.end_at, now)

    def figures(self) -> Figures:
        record, period, history = self.record, self.period, self.record.history
        figures = Figures(working_day_seconds=_day_seconds(self.calendar))
        arrived = history[0].at
        final = _final_step(record)
        finished = None if final is None else final.at
        if period.contains(arrived):
            figures.received[record.channel] += 1
            figures.originals_exempt += 0 if record.originals_check_required else 1
        elif arrived < period.start_at and (finished is None or finished >= period.start_at):
            figures.carried_over += 1
        self._outcome(figures, final)
        self._supplements(figures)
        self._in_progress(figures, arrived, finished)
        if record.rated_at is not None and record.rating_average is not None and period.contains(record.rated_at):
            figures.ratings += 1
            figures.rating_points += record.rating_average
        return figures

    def _outcome(self, figures: Figures, final: Step | None) -> None:
        if final is None or not self.period.contains(final.at):
            return
        if final.status == Status.REFUSED.value:
            figures.refused += 1
            figures.refusal_reasons[final.reason or NO_REASON] += 1
        elif final.status == Status.WITHDRAWN.value:
            figures.withdrawn += 1
        elif final.status == Status.SUSPENDED.value:
            figures.stopped += 1
        else:
            pairs = _pairs(self.record.history)
            deadlines = compute_deadlines(
                pairs, self.record.processing_days, self.calendar, suspension_final=self.record.suspension_final
            )
            late = (
                is_overdue(deadlines, final.at)
                or len(_entries_into(self.record.history, Status.SUPPLEMENT_REQUESTED)) > 1
            )
            if late:
                figures.completed_late += 1
            else:
                figures.completed_on_time += 1
            start = deadlines.received_at or deadlines.submitted_at
            worked = self.calendar.working_time_between(start, final.at) - deadlines.waited
            figures.processing_seconds += max(worked, timedelta(0)).total_seconds()

    def _supplements(self, figures: Figures) -> None:
        requests = _entries_into(self.record.history, Status.SUPPLEMENT_REQUESTED)
        in_period = [s for s in requests if self.period.contains(s.at)]
        figures.supplement_requests += len(in_period)
        for step in in_period:
            figures.supplement_reasons[step.reason or NO_REASON] += 1
        if in_period and requests.index(in_period[-1]) > 0:
            figures.repeated_supplements += 1

    def _in_progress(self, figures: Figures, arrived: datetime, finished: datetime | None) -> None:
        until = self.until
        if arrived >= until or (finished is not None and finished < until):
            return
        known = [s for s in self.record.history if s.at <= until] or [self.record.history[0]]
        deadlines = compute_deadlines(
            _pairs(known), self.record.processing_days, self.calendar, suspension_final=self.record.suspension_final
        )
        if is_overdue(deadlines, until):
            figures.in_progress_overdue += 1
        else:
            figures.in_progress_on_time += 1


def _day_seconds(calendar: OfficeCalendar) -> float:
    day = date(2000, 1, 1)
    return sum(
        (datetime.combine(day, end) - datetime.combine(day, start)).total_seconds()
        for start, end in (calendar.morning, calendar.afternoon)
    )


def count_dossiers(
    records: Iterable[DossierRecord], period: Period, calendar: OfficeCalendar, *, now: datetime
) -> dict[tuple[str, str], Figures]:
    """The figures of every (agency, procedure) with something to count in ``period`` (``now``: the moment a period
    not over yet is counted up to)."""
    rows: dict[tuple[str, str], Figures] = {}

    def row(agency: str, procedure: str) -> Figures:
        return rows.setdefault((agency, procedure), Figures(working_day_seconds=_day_seconds(calendar)))

    for record in records:
        if not record.history:
            continue
        own = _Counting(record, period, calendar, now).figures()
        if own != Figures(working_day_seconds=own.working_day_seconds):
            row(record.lead_agency_code, record.procedure_code).add(own)
        for agency in {s.transfer_to for s in record.history if s.transfer_to and period.contains(s.at)}:
            row(agency, record.procedure_code).transferred_in += 1
    return rows
