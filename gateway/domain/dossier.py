"""A dossier's rules for an agency's status event, as pure functions of its state: no database, no I/O.

:func:`decide_event` checks an event against the state machine and the rules every event must follow (required
fields, no time in the future, liên thông only while processing, a result only with completion or refusal) and
returns the :class:`Transition` to record: the target status, its time, note and history details. The use case
applies it to the stored dossier and raises the domain event.

Two rules depend on the procedure: :func:`unpaid_blocks_result` (fees before results: while a fee is unpaid the
result is not handed over, unless the procedure waives it; :func:`fees_hold_result` says whether a change is one the
fees could hold back) and ``suspension_final`` (status 8 as a final stop: no event moves the dossier out of it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gateway.domain.status import WAITING_STATUSES, IllegalTransition, Status, check_transition, required_fields
from gateway.domain.times import iso, utc_key

__all__ = [
    "FUTURE_TOLERANCE",
    "RESULT_STATUSES",
    "EventFacts",
    "Recorded",
    "Transition",
    "decide_event",
    "event_problems",
    "fees_hold_result",
    "is_repeat",
    "status_before_wait",
    "unpaid_blocks_result",
]

#: The statuses an agency's event may carry result files with (the result, or the signed refusal notice).
RESULT_STATUSES: frozenset[Status] = frozenset({Status.COMPLETED, Status.REFUSED})

#: How far in the future an agency's ``at`` may be (clocks apart) before the event is refused.
FUTURE_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class Recorded:
    """What the rules need of one history entry."""

    status: str
    actor: str | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EventFacts:
    """An agency's status event, as the rules see it."""

    status: Status
    at: datetime | None = None
    note: str | None = None
    reason: str | None = None
    due_at: datetime | None = None
    transfer_to: str | None = None
    components: tuple[str, ...] | None = None
    has_result: bool = False


@dataclass(frozen=True, kw_only=True)
class Transition:
    """The entry an accepted event records: target status, the event's time, note and details."""

    source: Status
    target: Status
    at: datetime
    note: str | None
    details: dict[str, Any]


def status_before_wait(history: Iterable[Status]) -> Status:
    """The last status that was not a wait (the one a wait resumes to); ``submitted`` when there is none."""
    found = Status.SUBMITTED
    for status in history:
        if status not in WAITING_STATUSES:
            found = status
    return found


def is_repeat(history: Sequence[Recorded], event: EventFacts, actor: str) -> bool:
    """Whether ``actor`` already sent this event (same status and time): a repeat changes nothing."""
    if event.at is None:
        return False
    key = utc_key(event.at)
    return any(
        entry.status == event.status.value and entry.actor == actor and entry.details.get("event_at") == key
        for entry in history
    )


def event_problems(
    event: EventFacts, *, now: datetime, component_problems: Sequence[dict[str, str]] = ()
) -> list[dict[str, str]]:
    """What an event lacks or carries wrongly, whatever the dossier's status (``component_problems``: what the
    procedure's catalogue entry says of the event's component codes)."""
    errors = []
    for name in sorted(required_fields(event.status)):
        if not getattr(event, name):
            what = "the codes of the components to add or fix" if name == "components" else "a reason"
            errors.append({"field": name, "message": f"required for status {event.status.value} ({what})"})
    errors += component_problems
    if event.transfer_to is not None and event.status is not Status.PROCESSING:
        errors.append({"field": "transfer_to", "message": "only with status processing"})
    if event.has_result and event.status not in RESULT_STATUSES:
        errors.append({"field": "result", "message": "only with status completed or refused"})
    at = event.at or now
    if at > now + FUTURE_TOLERANCE:
        errors.append({"field": "at", "message": f"{iso(at)} is in the future"})
    return errors


def fees_hold_result(target: Status, *, fees_after_result: bool) -> bool:
    """Whether a change to ``target`` waits for the fees to be paid: handing the result over (``returned``), unless
    the procedure lets the result go first (``fees_after_result``). Nothing else does, whatever is unpaid."""
    return target is Status.RETURNED and not fees_after_result


def unpaid_blocks_result(target: Status, unpaid_amount: int, *, fees_after_result: bool) -> bool:
    """Whether handing the result over (``returned``) must wait: fees before results, unless the procedure lets
    the result go first (``fees_after_result``)."""
    return unpaid_amount > 0 and fees_hold_result(target, fees_after_result=fees_after_result)


def decide_event(source: Status, event: EventFacts, *, now: datetime, suspension_final: bool = False) -> Transition:
    """The transition ``event`` makes from ``source``; :class:`~gateway.domain.status.IllegalTransition` when the
    state machine refuses it, or when ``source`` is a suspension the procedure makes final (``suspension_final``).
    The caller has checked :func:`event_problems` first."""
    if suspension_final and source is Status.SUSPENDED:
        raise IllegalTransition(source, event.status, frozenset())
    check_transition(source, event.status)
    at = event.at or now
    details: dict[str, Any] = {"event_at": utc_key(at), "from": source.value}
    note = event.note
    if event.reason:
        details["reason"] = event.reason
    if event.components:
        details["components"] = list(event.components)
    if event.due_at is not None:
        details["agency_due_at"] = iso(event.due_at)
        note = f"{note + ' ' if note else ''}(agency's due date: {iso(event.due_at)})"
    return Transition(source=source, target=event.status, at=at, note=note, details=details)
