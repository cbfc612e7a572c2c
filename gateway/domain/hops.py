"""Inter-agency (*liên thông*) processing: each agency's own part of the legal time, and whether it kept to it.

A dossier starts with its lead agency (which returns the result) and may be handed on (``processing`` with
``transfer_to``) any number of times. Rules:

- *A receiving agency's deadline* (:func:`transfer_deadline`): the working time left until the dossier's due date
  is split between the agencies still to act, in this order: the receiver, the agencies the procedure's
  ``transfer_shares`` names that have not had the dossier yet (in the catalogue's order), and the lead, each by its
  weight (1 when not named; equal shares when the procedure names none). The receiver's deadline is the end of its
  share; it is never after the dossier's due date. A dossier handed back to the lead has the lead's deadline: the
  dossier's due date, which a transfer never changes.
- *Hops* (:func:`agency_hops`): the dossier's stay with each agency, from the history. A non-lead hop's deadline
  moves later by the working time the dossier waited for the applicant during the hop (as the due date does), never
  past the due date; a lead hop's deadline is the due date.
- *Overdue per agency* (:meth:`Hop.overdue`): the moment the hop ended (handed on, finished), or, while the
  applicant is awaited, the start of that wait, or now, is after the hop's deadline.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from gateway.domain.calendar import OfficeCalendar
from gateway.domain.status import WAITING_STATUSES, Status

__all__ = ["Hop", "HopEntry", "agency_hops", "transfer_deadline"]


def transfer_deadline(
    calendar: OfficeCalendar,
    *,
    at: datetime,
    due_at: datetime,
    receiver: str,
    lead: str,
    shares: Mapping[str, float],
    order: Sequence[str],
    visited: Collection[str],
) -> datetime:
    """The deadline of ``receiver``, handed the dossier at ``at`` (see the module's rules)."""
    if receiver == lead:
        return calendar.local(due_at)
    still = [code for code in order if code in shares and code not in visited and code not in (receiver, lead)]
    chain = [receiver, *still, lead]
    return calendar.split_remaining(at, due_at, [float(shares.get(code, 1)) for code in chain])[0]


class HopEntry(NamedTuple):
    """What the hops need of one history entry: status, time, and for a transfer its receiver and deadline."""

    status: Status | str
    at: datetime
    transfer_to: str | None = None
    transfer_due_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Hop:
    """The dossier's stay with one agency."""

    agency_code: str
    lead: bool
    started_at: datetime
    due_at: datetime
    ended_at: datetime | None = None
    paused_since: datetime | None = None

    def overdue(self, now: datetime) -> bool:
        """Whether the agency is (or was) late with its part (see the module's rules)."""
        moment = self.ended_at or self.paused_since or now
        return moment > self.due_at


@dataclass
class _Open:
    agency_code: str
    started_at: datetime
    base_due: datetime
    waited: timedelta = timedelta(0)


def _close(open_hop: _Open, *, lead: str, due_at: datetime, calendar: OfficeCalendar, **ends: datetime | None) -> Hop:
    is_lead = open_hop.agency_code == lead
    due = due_at if is_lead else min(calendar.add_working_time(open_hop.base_due, open_hop.waited), due_at)
    return Hop(agency_code=open_hop.agency_code, lead=is_lead, started_at=open_hop.started_at, due_at=due, **ends)


def agency_hops(
    entries: Iterable[HopEntry],
    *,
    lead: str,
    due_at: datetime,
    calendar: OfficeCalendar,
    finished_at: datetime | None = None,
) -> list[Hop]:
    """The dossier's hops, oldest first (``due_at``: the dossier's due date; ``finished_at``: when its clock
    stopped for good, ending the last hop)."""
    hops: list[Hop] = []
    current: _Open | None = None
    wait_start: datetime | None = None
    due = calendar.local(due_at)
    for entry in entries:
        at = calendar.local(entry.at)
        if current is None:
            current = _Open(lead, at, due)
        if finished_at is not None and at > finished_at:
            break
        if Status(entry.status) in WAITING_STATUSES:
            wait_start = wait_start or at
            continue
        if wait_start is not None:
            current.waited += calendar.working_time_between(max(wait_start, current.started_at), at)
            wait_start = None
        if entry.transfer_to is not None:
            hops.append(_close(current, lead=lead, due_at=due, calendar=calendar, ended_at=at))
            base = due if entry.transfer_to == lead else calendar.local(entry.transfer_due_at or due)
            current = _Open(entry.transfer_to, at, base)
    if current is not None:
        end = calendar.local(finished_at) if finished_at is not None else None
        hops.append(_close(current, lead=lead, due_at=due, calendar=calendar, ended_at=end, paused_since=wait_start))
    return hops
