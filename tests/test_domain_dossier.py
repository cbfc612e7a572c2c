"""The dossier's rules for an agency's event, as pure functions: no database, no clock but the one given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.domain.dossier import (
    FUTURE_TOLERANCE,
    EventFacts,
    Recorded,
    decide_event,
    event_problems,
    is_repeat,
    status_before_wait,
)
from gateway.domain.status import IllegalTransition, Status

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def test_a_wait_resumes_to_the_last_status_that_was_not_a_wait() -> None:
    history = [Status.SUBMITTED, Status.RECEIVED, Status.PROCESSING, Status.SUPPLEMENT_REQUESTED, Status.SUSPENDED]
    assert status_before_wait(history) is Status.PROCESSING
    assert status_before_wait([Status.SUBMITTED, Status.SUPPLEMENT_REQUESTED]) is Status.SUBMITTED
    assert status_before_wait([]) is Status.SUBMITTED


def test_an_event_is_a_repeat_only_from_the_same_agency_with_the_same_status_and_time() -> None:
    at = NOW - timedelta(hours=1)
    seen = [Recorded("received", "agency:A", {"event_at": at.isoformat(timespec="microseconds")})]
    event = EventFacts(status=Status.RECEIVED, at=at)
    assert is_repeat(seen, event, "agency:A")
    assert not is_repeat(seen, event, "agency:B")
    assert not is_repeat(seen, EventFacts(status=Status.PROCESSING, at=at), "agency:A")
    assert not is_repeat(seen, EventFacts(status=Status.RECEIVED, at=at + timedelta(seconds=1)), "agency:A")
    assert not is_repeat(seen, EventFacts(status=Status.RECEIVED), "agency:A")  # no time: never recognised


def test_problems_name_every_missing_or_misplaced_field() -> None:
    late = NOW + FUTURE_TOLERANCE + timedelta(seconds=1)
    event = EventFacts(status=Status.SUPPLEMENT_REQUESTED, at=late, transfer_to="B", has_result=True)
    fields = [p["field"] for p in event_problems(event, now=NOW)]
    assert fields == ["components", "reason", "transfer_to", "result", "at"]
    assert event_problems(EventFacts(status=Status.RECEIVED, at=NOW + FUTURE_TOLERANCE), now=NOW) == []


def test_component_problems_come_right_after_the_required_fields() -> None:
    event = EventFacts(status=Status.REFUSED, transfer_to="B")
    extra = [{"field": "components[0]", "message": "unknown component X"}]
    fields = [p["field"] for p in event_problems(event, now=NOW, component_problems=extra)]
    assert fields == ["reason", "components[0]", "transfer_to"]


def test_a_transition_carries_its_time_reason_and_the_agencys_due_date_in_the_note() -> None:
    due = NOW + timedelta(days=10)
    event = EventFacts(status=Status.RECEIVED, at=NOW - timedelta(minutes=5), note="ok", due_at=due)
    transition = decide_event(Status.SUBMITTED, event, now=NOW)
    assert transition.source is Status.SUBMITTED and transition.target is Status.RECEIVED
    assert transition.at == NOW - timedelta(minutes=5)
    assert transition.details["from"] == "submitted"
    assert transition.details["agency_due_at"] == "2026-12-03T10:00:00+07:00"
    assert transition.note == "ok (agency's due date: 2026-12-03T10:00:00+07:00)"


def test_an_event_without_time_takes_the_gateways_clock() -> None:
    event = EventFacts(status=Status.REFUSED, reason="incomplete")
    transition = decide_event(Status.RECEIVED, event, now=NOW)
    assert transition.at == NOW and transition.details["reason"] == "incomplete"


def test_the_state_machine_refuses_an_illegal_transition() -> None:
    with pytest.raises(IllegalTransition, match="from 'returned' to 'processing'"):
        decide_event(Status.RETURNED, EventFacts(status=Status.PROCESSING), now=NOW)
