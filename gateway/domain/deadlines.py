"""A dossier's deadlines, computed from its status history alone (``docs/counting-rules.md``).

The history is the ordered list of ``(status, at)`` entries, the first being the dossier's arrival (normally
``submitted``); times are aware datetimes in non-decreasing order. Rules:

- ``acknowledge_by`` counts from the arrival (the first entry): reception answers within half a working day.
- The processing clock starts at reception: the first ``received`` entry. Until then ``received_at`` is ``None``
  and ``due_at`` is provisional, counted from the arrival (what the intake answer promises). Waiting that happens
  before reception (a supplement asked for at reception) does not move the due date: reception restarts the count.
- ``due_at`` is the calendar's due date for ``processing_days`` from the clock start, moved later by the working
  time spent waiting for the applicant: from entering a waiting status (``supplement_requested``,
  ``fee_requested``, ``suspended``) to the next non-waiting status (consecutive waiting statuses form one wait).
- A dossier whose last status is a waiting one is ``paused`` since ``paused_since``; its ``due_at`` does not yet
  include that open wait (it moves when the wait ends), and its clock is frozen at ``paused_since``.
- The clock stops for good at ``finished_at``: the first ``completed``, ``refused`` or ``withdrawn`` entry (a wait
  ended by a refusal or withdrawal still counts as waited), or the first ``suspended`` entry when the procedure says
  suspension is a final stop (``suspension_final``); otherwise ``suspended`` is a pause like the other waits.
- ``overdue`` is derived at read time (:func:`is_overdue`), never stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from gateway.domain.calendar import OfficeCalendar
from gateway.domain.status import WAITING_STATUSES, Status

__all__ = ["FINISHING_STATUSES", "Deadlines", "HistoryEntry", "compute_deadlines", "is_overdue", "repeated_supplement"]

#: Statuses that stop the processing clock for good.
FINISHING_STATUSES: frozenset[Status] = frozenset({Status.COMPLETED, Status.REFUSED, Status.WITHDRAWN})


class HistoryEntry(NamedTuple):
    """One entry of a dossier's status history."""

    status: Status
    at: datetime


@dataclass(frozen=True, kw_only=True)
class Deadlines:
    """A dossier's deadlines at one point of its history (times in Asia/Ho_Chi_Minh)."""

    received_at: datetime | None
    """First ``received`` entry: when the processing clock started; ``None`` while not yet received."""
    acknowledge_by: datetime
    """When reception must have answered (half a working day after arrival)."""
    due_at: datetime
    """When the result is due, moved by the working time waited so far."""
    paused: bool
    """The applicant is awaited now: the clock is stopped."""
    submitted_at: datetime
    """The first history entry: when the dossier arrived."""
    paused_since: datetime | None = None
    """Start of the open wait when ``paused``."""
    waited: timedelta = timedelta(0)
    """Working time spent waiting for the applicant since reception (closed waits only)."""
    finished_at: datetime | None = None
    """First ``completed``, ``refused`` or ``withdrawn`` entry: when the clock stopped for good."""


def _entries(history: Iterable[tuple[Status | str, datetime]]) -> list[HistoryEntry]:
    entries: list[HistoryEntry] = []
    for item in history:
        status, at = item
        try:
            status = Status(status)
        except ValueError:
            raise ValueError(f"history: unknown status {status!r}") from None
        if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"history: the time of {status.value!r} must be an aware datetime, got {at!r}")
        if entries and at < entries[-1].at:
            raise ValueError(f"history: {status.value!r} at {at.isoformat()} is earlier than the entry before it")
        entries.append(HistoryEntry(status, at))
    if not entries:
        raise ValueError("history must not be empty")
    return entries


def compute_deadlines(
    history: Iterable[tuple[Status | str, datetime]],
    processing_days: int,
    calendar: OfficeCalendar,
    *,
    suspension_final: bool = False,
) -> Deadlines:
    """The deadlines of a dossier with this status history and a procedure of ``processing_days`` working days
    (``suspension_final``: the procedure's ``suspended`` stops processing for good)."""
    finishing = FINISHING_STATUSES | {Status.SUSPENDED} if suspension_final else FINISHING_STATUSES
    entries = _entries(history)
    submitted_at = calendar.local(entries[0].at)
    received_at = next((calendar.local(e.at) for e in entries if e.status is Status.RECEIVED), None)
    clock_start = received_at or submitted_at

    waited = timedelta(0)
    wait_start: datetime | None = None
    finished_at: datetime | None = None
    for entry in entries:
        final = entry.status in finishing
        if entry.status in WAITING_STATUSES and not final:
            if wait_start is None:
                wait_start = entry.at
            continue
        if wait_start is not None:
            begin = max(wait_start, clock_start)
            if entry.at > begin:
                waited += calendar.working_time_between(begin, entry.at)
            wait_start = None
        if final:
            finished_at = calendar.local(entry.at)
            break

    due = calendar.add_working_time(calendar.due_at(clock_start, processing_days), waited)
    return Deadlines(
        received_at=received_at,
        acknowledge_by=calendar.acknowledge_by(submitted_at),
        due_at=due,
        paused=wait_start is not None,
        submitted_at=submitted_at,
        paused_since=calendar.local(wait_start) if wait_start is not None else None,
        waited=waited,
        finished_at=finished_at,
    )


def is_overdue(deadlines: Deadlines, now: datetime, completed_at: datetime | None = None) -> bool:
    """Whether the dossier is late: the moment its clock stopped, or ``now``, is after ``due_at``.

    The moment is ``completed_at`` when given, else ``deadlines.finished_at`` (completed, refused or withdrawn),
    else, while paused, ``paused_since`` (the clock is frozen while the applicant is awaited), else ``now``.
    """
    for name, value in (("now", now), ("completed_at", completed_at)):
        if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
            raise ValueError(f"{name} must be an aware datetime, got {value!r}")
    if completed_at is not None:
        moment = completed_at
    elif deadlines.finished_at is not None:
        moment = deadlines.finished_at
    elif deadlines.paused and deadlines.paused_since is not None:
        moment = deadlines.paused_since
    else:
        moment = now
    return moment > deadlines.due_at


def repeated_supplement(history: Iterable[tuple[Status | str, datetime]]) -> bool:
    """Whether the dossier was asked for supplements more than once (the national evaluation counts it as late)."""
    requests = 0
    previous: Status | None = None
    for status, _ in history:
        current = Status(status)
        if current is Status.SUPPLEMENT_REQUESTED and previous is not Status.SUPPLEMENT_REQUESTED:
            requests += 1
        previous = current
    return requests > 1
