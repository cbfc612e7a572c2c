"""Deadlines from a dossier's status history: clock stops, overdue at read time, repeated supplements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.domain.calendar import VIETNAM_TZ, OfficeCalendar
from gateway.domain.deadlines import Deadlines, compute_deadlines, is_overdue, repeated_supplement
from gateway.domain.status import Status

S = Status
CAL = OfficeCalendar()
H = timedelta(hours=1)


def vn(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=VIETNAM_TZ)


# Monday 2 March 2026, a 5-working-day procedure: due Monday 9 March 17:00
RECEIVED = [(S.SUBMITTED, vn(2026, 3, 2, 8)), (S.RECEIVED, vn(2026, 3, 2, 9)), (S.PROCESSING, vn(2026, 3, 2, 10))]


def test_plain_dossier() -> None:
    d = compute_deadlines(RECEIVED, 5, CAL)
    assert d == Deadlines(
        received_at=vn(2026, 3, 2, 9),
        acknowledge_by=vn(2026, 3, 2, 17),  # arrived at 08:00, inside the morning session
        due_at=vn(2026, 3, 9, 17),
        paused=False,
        submitted_at=vn(2026, 3, 2, 8),
    )


def test_not_yet_received_has_a_provisional_due_date() -> None:
    d = compute_deadlines([(S.SUBMITTED, vn(2026, 3, 3, 17, 5))], 1, CAL)  # Tuesday after hours
    assert d.received_at is None
    assert d.acknowledge_by == vn(2026, 3, 4, 17)
    assert d.due_at == vn(2026, 3, 5, 17)
    assert not d.paused


def test_history_in_utc_and_strings() -> None:
    history = [("submitted", datetime(2026, 2, 13, 8, tzinfo=UTC)), ("received", datetime(2026, 2, 13, 8, tzinfo=UTC))]
    d = compute_deadlines(history, 15, CAL)
    assert d.received_at == vn(2026, 2, 13, 15)
    assert d.acknowledge_by == vn(2026, 2, 23, 11, 30)
    assert d.due_at == vn(2026, 3, 13, 17)


def test_supplement_for_exactly_two_working_days_moves_due_by_two_working_days() -> None:
    history = [
        *RECEIVED,
        (S.SUPPLEMENT_REQUESTED, vn(2026, 3, 3, 9)),  # Tuesday 09:00
        (S.PROCESSING, vn(2026, 3, 5, 9)),  # Thursday 09:00: two working days later
    ]
    d = compute_deadlines(history, 5, CAL)
    assert d.waited == 16 * H
    assert d.due_at == vn(2026, 3, 11, 17)
    assert not d.paused


def test_fee_request_over_a_weekend_counts_only_working_time() -> None:
    history = [
        *RECEIVED,
        (S.FEE_REQUESTED, vn(2026, 3, 6, 15)),  # Friday 15:00
        (S.PROCESSING, vn(2026, 3, 9, 10)),  # Monday 10:00: 2 h on Friday + 3 h on Monday
    ]
    d = compute_deadlines(history, 5, CAL)
    assert d.waited == 5 * H
    # Monday 17:00 + 5 h: Tuesday morning 4 h 30, then 30 min of the afternoon
    assert d.due_at == vn(2026, 3, 10, 14)


def test_suspension_and_several_waits_add_up() -> None:
    history = [
        *RECEIVED,
        (S.SUSPENDED, vn(2026, 3, 3, 7)),
        (S.PROCESSING, vn(2026, 3, 3, 17)),  # one working day
        (S.SUPPLEMENT_REQUESTED, vn(2026, 3, 4, 13, 30)),
        (S.RECEIVED, vn(2026, 3, 4, 17)),  # one afternoon: 3 h 30
    ]
    d = compute_deadlines(history, 5, CAL)
    assert d.received_at == vn(2026, 3, 2, 9)  # the first reception
    assert d.waited == timedelta(hours=11, minutes=30)
    assert d.due_at == vn(2026, 3, 11, 10, 30)  # Monday 17:00 + Tuesday 8 h + 3 h 30 from Wednesday 07:00


def test_open_wait_pauses_the_clock() -> None:
    history = [*RECEIVED, (S.SUPPLEMENT_REQUESTED, vn(2026, 3, 3, 9))]
    d = compute_deadlines(history, 5, CAL)
    assert d.paused
    assert d.paused_since == vn(2026, 3, 3, 9)
    assert d.due_at == vn(2026, 3, 9, 17)  # moves when the wait ends
    # the applicant takes a month: not overdue while awaited
    assert not is_overdue(d, now=vn(2026, 4, 10, 9))


def test_paused_after_the_due_date_stays_overdue() -> None:
    history = [*RECEIVED, (S.FEE_REQUESTED, vn(2026, 3, 10, 9))]  # already late when the fee was asked
    d = compute_deadlines(history, 5, CAL)
    assert d.paused
    assert is_overdue(d, now=vn(2026, 3, 10, 10))


def test_supplement_at_reception_does_not_move_the_due_date() -> None:
    history = [
        (S.SUBMITTED, vn(2026, 3, 2, 8)),
        (S.SUPPLEMENT_REQUESTED, vn(2026, 3, 2, 10)),  # incomplete at reception
        (S.RECEIVED, vn(2026, 3, 4, 9)),  # the clock starts here
    ]
    d = compute_deadlines(history, 5, CAL)
    assert d.acknowledge_by == vn(2026, 3, 2, 17)
    assert d.received_at == vn(2026, 3, 4, 9)
    assert d.waited == timedelta(0)
    assert d.due_at == vn(2026, 3, 11, 17)


def test_wait_ended_by_refusal_still_counts() -> None:
    history = [*RECEIVED, (S.SUPPLEMENT_REQUESTED, vn(2026, 3, 3, 9)), (S.REFUSED, vn(2026, 3, 20, 10))]
    d = compute_deadlines(history, 5, CAL)
    # Tue 3 Mar 09:00–17:00 is 6 h; 12 full working days (4–6, 9–13, 16–19 Mar) 96 h; Fri 20 Mar 07:00–10:00 3 h
    assert d.waited == 105 * H
    assert d.due_at == vn(2026, 3, 27, 8)
    assert d.finished_at == vn(2026, 3, 20, 10)
    assert not d.paused
    assert not is_overdue(d, now=vn(2026, 6, 1, 9))


def test_overdue_is_derived_at_read_time() -> None:
    d = compute_deadlines(RECEIVED, 5, CAL)  # due Monday 9 March 17:00
    assert not is_overdue(d, now=vn(2026, 3, 9, 16, 59))
    assert not is_overdue(d, now=vn(2026, 3, 9, 17))
    assert is_overdue(d, now=vn(2026, 3, 9, 17, 1))
    assert is_overdue(d, now=datetime(2026, 3, 10, 0, tzinfo=UTC))


def test_completed_before_due_is_not_overdue_later() -> None:
    history = [*RECEIVED, (S.COMPLETED, vn(2026, 3, 6, 10)), (S.RETURNED, vn(2026, 3, 20, 9))]
    d = compute_deadlines(history, 5, CAL)
    assert d.finished_at == vn(2026, 3, 6, 10)
    assert not is_overdue(d, now=vn(2026, 4, 1, 9))
    plain = compute_deadlines(RECEIVED, 5, CAL)
    assert not is_overdue(plain, now=vn(2026, 4, 1, 9), completed_at=vn(2026, 3, 9, 16))
    assert is_overdue(plain, now=vn(2026, 4, 1, 9), completed_at=vn(2026, 3, 10, 8))


def test_completed_late_is_overdue() -> None:
    d = compute_deadlines([*RECEIVED, (S.COMPLETED, vn(2026, 3, 10, 8))], 5, CAL)
    assert is_overdue(d, now=vn(2026, 3, 10, 9))


def test_overdue_refuses_naive_times() -> None:
    d = compute_deadlines(RECEIVED, 5, CAL)
    with pytest.raises(ValueError, match="now"):
        is_overdue(d, now=datetime(2026, 3, 10, 9))
    with pytest.raises(ValueError, match="completed_at"):
        is_overdue(d, now=vn(2026, 3, 10, 9), completed_at=datetime(2026, 3, 10, 9))


def test_repeated_supplement() -> None:
    once = [*RECEIVED, (S.SUPPLEMENT_REQUESTED, vn(2026, 3, 3, 9)), (S.PROCESSING, vn(2026, 3, 4, 9))]
    assert not repeated_supplement(RECEIVED)
    assert not repeated_supplement(once)
    twice = [*once, (S.SUPPLEMENT_REQUESTED, vn(2026, 3, 5, 9))]
    assert repeated_supplement(twice)
    at_reception_then_later = [
        (S.SUBMITTED, vn(2026, 3, 2, 8)),
        (S.SUPPLEMENT_REQUESTED, vn(2026, 3, 2, 9)),
        (S.RECEIVED, vn(2026, 3, 3, 9)),
        (S.SUPPLEMENT_REQUESTED, vn(2026, 3, 4, 9)),
    ]
    assert repeated_supplement(at_reception_then_later)
    assert not repeated_supplement([])


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ([], "empty"),
        ([(S.SUBMITTED, datetime(2026, 3, 2, 8))], "aware"),
        ([("done", vn(2026, 3, 2, 8))], "unknown status"),
        ([(S.SUBMITTED, vn(2026, 3, 2, 9)), (S.RECEIVED, vn(2026, 3, 2, 8))], "earlier"),
    ],
)
def test_bad_histories(history: list[tuple[Status, datetime]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_deadlines(history, 5, CAL)
