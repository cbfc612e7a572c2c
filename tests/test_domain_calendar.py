"""The office calendar on real dates: Tết, 30/4–1/5, Hùng Kings' day, make-up Saturdays, configured days."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import ConfigError, parse_section
from gateway.domain.calendar import VIETNAM_TZ, OfficeCalendar, official_holidays
from gateway.official_calendar import load_official_calendar
from gateway.sections import CalendarSection, office_calendar

CAL = OfficeCalendar(official=load_official_calendar())
H = timedelta(hours=1)


def vn(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=VIETNAM_TZ)


# -- working days ---------------------------------------------------------------------------------------------------


def test_tet_2026_and_surrounding_weekends() -> None:
    assert CAL.is_working_day(date(2026, 2, 13))  # Friday before Tết
    for day in range(14, 23):  # Sat 14 .. Sun 22 Feb: weekend, Tết 16–20, weekend
        assert not CAL.is_working_day(date(2026, 2, day)), day
    assert CAL.is_working_day(date(2026, 2, 23))
    assert {date(2026, 2, d) for d in range(16, 21)} <= set(official_holidays(2026))


def test_sessions_of_a_working_day_and_a_day_off() -> None:
    assert CAL.sessions(date(2026, 3, 4)) == [
        (vn(2026, 3, 4, 7), vn(2026, 3, 4, 11, 30)),
        (vn(2026, 3, 4, 13, 30), vn(2026, 3, 4, 17)),
    ]
    assert CAL.sessions(date(2026, 3, 7)) == []  # Saturday
    assert CAL.sessions(date(2026, 2, 17)) == []  # Tết


def test_hung_kings_day_2026_observed_on_monday() -> None:
    assert not CAL.is_working_day(date(2026, 4, 26))  # Sunday, the day itself
    assert not CAL.is_working_day(date(2026, 4, 27))  # observed
    assert CAL.is_working_day(date(2026, 4, 28))


def test_package_make_up_saturday_2026_08_22_is_a_working_day() -> None:
    assert CAL.is_working_day(date(2026, 8, 22))  # Saturday worked for Monday 31 August
    assert not CAL.is_working_day(date(2026, 8, 31))
    assert not CAL.is_working_day(date(2026, 8, 29))  # an ordinary Saturday
    assert CAL.is_working_day(date(2025, 4, 26))  # Saturday worked for Friday 2 May 2025
    assert not CAL.is_working_day(date(2025, 5, 2))


def test_is_working_day_of_an_aware_datetime_uses_the_local_date() -> None:
    assert not CAL.is_working_day(datetime(2026, 3, 6, 18, tzinfo=UTC))  # Saturday 01:00 in Vietnam
    with pytest.raises(ValueError, match="aware"):
        CAL.is_working_day(datetime(2026, 3, 6, 18))


# -- the intake rules -----------------------------------------------------------------------------------------------


def test_friday_afternoon_before_tet_2026_with_15_days() -> None:
    received = vn(2026, 2, 13, 15)
    assert CAL.session_start_at_or_after(received) == received
    # the following session is the next working morning: Monday 23 February (Saturday, Sunday and Tết skipped)
    assert CAL.acknowledge_by(received) == vn(2026, 2, 23, 11, 30)
    # 15 working days after Friday 13 February: 23–27 Feb, 2–6 Mar, 9–13 Mar
    assert CAL.due_at(received, 15) == vn(2026, 3, 13, 17)
    # the same moment given in UTC
    utc = datetime(2026, 2, 13, 8, tzinfo=UTC)
    assert CAL.due_at(utc, 15) == vn(2026, 3, 13, 17)
    assert CAL.due_at(utc, 15).tzinfo is VIETNAM_TZ


def test_friday_evening_before_tet_counts_from_after_tet() -> None:
    received = vn(2026, 2, 13, 17, 30)
    assert CAL.session_start_at_or_after(received) == vn(2026, 2, 23, 7)
    assert CAL.acknowledge_by(received) == vn(2026, 2, 23, 17)  # counts from the morning after Tết: its afternoon
    assert CAL.due_at(received, 15) == vn(2026, 3, 16, 17)
    assert CAL.acknowledge_by(vn(2026, 2, 14, 9)) == vn(2026, 2, 23, 17)  # Saturday 14 February


def test_after_hours_on_a_tuesday_counts_from_next_morning() -> None:
    received = vn(2026, 3, 3, 17, 5)  # Tuesday
    assert CAL.session_start_at_or_after(received) == vn(2026, 3, 4, 7)
    assert CAL.acknowledge_by(received) == vn(2026, 3, 4, 17)  # counts from Wednesday morning: by its afternoon's end
    assert CAL.due_at(received, 1) == vn(2026, 3, 5, 17)  # the day it counts from is not counted


def test_lunch_break_counts_from_the_afternoon() -> None:
    received = vn(2026, 3, 4, 12, 15)
    assert CAL.session_start_at_or_after(received) == vn(2026, 3, 4, 13, 30)
    assert CAL.acknowledge_by(received) == vn(2026, 3, 5, 11, 30)  # counts from the afternoon: next morning's end
    assert CAL.session_start_at_or_after(vn(2026, 3, 4, 11, 30)) == vn(2026, 3, 4, 13, 30)  # sessions are [start, end)
    assert CAL.session_start_at_or_after(vn(2026, 3, 4, 6, 59)) == vn(2026, 3, 4, 7)


def test_acknowledgement_is_the_end_of_the_session_after_the_one_it_counts_from() -> None:
    assert CAL.acknowledge_by(vn(2026, 3, 4, 7)) == vn(2026, 3, 4, 17)
    assert CAL.acknowledge_by(vn(2026, 3, 4, 11, 29)) == vn(2026, 3, 4, 17)
    assert CAL.acknowledge_by(vn(2026, 3, 4, 14)) == vn(2026, 3, 5, 11, 30)
    assert CAL.acknowledge_by(vn(2026, 3, 4, 6)) == vn(2026, 3, 4, 17)  # before opening: counts from 07:00


def test_due_date_counts_from_the_next_working_day() -> None:
    monday_morning = vn(2026, 3, 2, 8)
    assert CAL.due_at(monday_morning, 0) == vn(2026, 3, 2, 17)  # a same-day procedure
    assert CAL.due_at(monday_morning, 1) == vn(2026, 3, 3, 17)
    assert CAL.due_at(monday_morning, 5) == vn(2026, 3, 9, 17)
    with pytest.raises(ValueError, match="processing_days"):
        CAL.due_at(monday_morning, -1)
    with pytest.raises(ValueError, match="processing_days"):
        CAL.due_at(monday_morning, True)


def test_across_30_april_and_1_may_2026() -> None:
    received = vn(2026, 4, 29, 10)  # Wednesday
    assert CAL.acknowledge_by(received) == vn(2026, 4, 29, 17)
    # Thu 30/4 and Fri 1/5 are holidays, then the weekend: Mon 4, Tue 5, Wed 6 May
    assert CAL.due_at(received, 3) == vn(2026, 5, 6, 17)


def test_around_hung_kings_day_2026() -> None:
    received = vn(2026, 4, 24, 16)  # Friday afternoon
    assert CAL.acknowledge_by(received) == vn(2026, 4, 28, 11, 30)  # Monday 27 is the observed day off
    assert CAL.due_at(received, 1) == vn(2026, 4, 28, 17)
    assert CAL.session_start_at_or_after(vn(2026, 4, 26, 10)) == vn(2026, 4, 28, 7)


def test_received_on_the_package_make_up_saturday() -> None:
    received = vn(2026, 8, 22, 8)  # Saturday worked
    assert CAL.session_start_at_or_after(received) == received
    assert CAL.acknowledge_by(received) == vn(2026, 8, 22, 17)
    assert CAL.due_at(received, 1) == vn(2026, 8, 24, 17)
    assert CAL.acknowledge_by(vn(2026, 8, 21, 16)) == vn(2026, 8, 22, 11, 30)  # Friday afternoon → Saturday
    # 31 August (swapped), 1–2 September (National Day) are off
    assert CAL.due_at(vn(2026, 8, 28, 10), 2) == vn(2026, 9, 4, 17)


def test_received_on_a_configured_make_up_saturday() -> None:
    saturday = date(2026, 10, 10)
    assert not CAL.is_working_day(saturday)
    cal = OfficeCalendar(makeup_working_days=frozenset({saturday}))
    assert cal.is_working_day(saturday)
    assert cal.is_working_day(date(2026, 8, 22))  # the package's make-up days still apply
    assert cal.acknowledge_by(vn(2026, 10, 9, 16)) == vn(2026, 10, 10, 11, 30)
    assert cal.due_at(vn(2026, 10, 9, 16), 1) == vn(2026, 10, 10, 17)
    received = vn(2026, 10, 10, 9)
    assert cal.session_start_at_or_after(received) == received
    assert cal.acknowledge_by(received) == vn(2026, 10, 10, 17)
    assert cal.due_at(received, 1) == vn(2026, 10, 12, 17)
    assert CAL.due_at(received, 1) == vn(2026, 10, 13, 17)  # without it: counted from Monday 12


def test_configured_extra_day_off() -> None:
    cal = OfficeCalendar(extra_days_off=frozenset({date(2026, 11, 20)}))  # a Friday
    received = vn(2026, 11, 19, 10)  # Thursday
    assert CAL.due_at(received, 2) == vn(2026, 11, 23, 17)
    # Friday 20 (configured) and Tuesday 24 (Vietnam Cultural Day) are off: Monday 23, Wednesday 25
    assert cal.due_at(received, 2) == vn(2026, 11, 25, 17)
    assert cal.acknowledge_by(vn(2026, 11, 19, 15)) == vn(2026, 11, 23, 11, 30)
    assert not cal.is_working_day(date(2026, 11, 20))


# -- working time ---------------------------------------------------------------------------------------------------


def test_working_time_between() -> None:
    assert CAL.working_time_between(vn(2026, 3, 6, 15), vn(2026, 3, 9, 10)) == 5 * H  # Fri 2 h + Mon 3 h
    assert CAL.working_time_between(vn(2026, 3, 4, 11), vn(2026, 3, 4, 14)) == H  # lunch excluded
    assert CAL.working_time_between(vn(2026, 3, 2, 0), vn(2026, 3, 7, 0)) == 40 * H
    assert CAL.working_time_between(vn(2026, 2, 13, 17), vn(2026, 2, 23, 7)) == timedelta(0)  # Tết
    assert CAL.working_time_between(vn(2026, 3, 9, 10), vn(2026, 3, 6, 15)) == -5 * H
    assert CAL.working_time_between(vn(2026, 3, 4, 8), vn(2026, 3, 4, 8)) == timedelta(0)


def test_add_working_time() -> None:
    assert CAL.add_working_time(vn(2026, 3, 6, 17), 8 * H) == vn(2026, 3, 9, 17)
    assert CAL.add_working_time(vn(2026, 3, 9, 17), 16 * H) == vn(2026, 3, 11, 17)
    assert CAL.add_working_time(vn(2026, 3, 9, 11), H) == vn(2026, 3, 9, 14)
    assert CAL.add_working_time(vn(2026, 3, 4, 12), H) == vn(2026, 3, 4, 14, 30)  # from lunch: starts at 13:30
    assert CAL.add_working_time(vn(2026, 3, 4, 7), timedelta(hours=4, minutes=30)) == vn(2026, 3, 4, 11, 30)
    assert CAL.add_working_time(vn(2026, 2, 13, 16), 2 * H) == vn(2026, 2, 23, 8)  # over Tết
    assert CAL.add_working_time(vn(2026, 3, 4, 12), timedelta(0)) == vn(2026, 3, 4, 12)
    with pytest.raises(ValueError, match="negative"):
        CAL.add_working_time(vn(2026, 3, 4, 12), -H)


def test_split_remaining_equal_shares() -> None:
    now, due = vn(2026, 3, 2, 7), vn(2026, 3, 13, 17)  # 10 working days = 80 h
    assert CAL.split_remaining(now, due, [1, 1]) == [vn(2026, 3, 6, 17), due]
    # thirds of 80 h = 26 h 40 min: Thursday 09:40, then 53 h 20 min: Tuesday 10 March 14:20
    assert CAL.split_remaining(now, due, [1.0, 1.0, 1.0]) == [vn(2026, 3, 5, 9, 40), vn(2026, 3, 10, 14, 20), due]
    assert CAL.split_remaining(now, due, [1]) == [due]


def test_split_remaining_weighted() -> None:
    now, due = vn(2026, 3, 2, 7), vn(2026, 3, 13, 17)
    # a quarter of 80 h = 20 h: Monday 8 h, Tuesday 8 h, Wednesday 4 h → 11:00
    assert CAL.split_remaining(now, due, [0.25, 0.75]) == [vn(2026, 3, 4, 11), due]
    assert CAL.split_remaining(now, due, [1, 3]) == [vn(2026, 3, 4, 11), due]
    # counted from outside a session: Saturday counts from Monday 07:00
    assert CAL.split_remaining(vn(2026, 2, 28, 10), due, [1, 3]) == [vn(2026, 3, 4, 11), due]


def test_split_remaining_when_nothing_remains() -> None:
    due = vn(2026, 3, 13, 17)
    assert CAL.split_remaining(vn(2026, 3, 16, 9), due, [1, 1]) == [due, due]


@pytest.mark.parametrize("shares", [[], [0], [1, -1], [float("nan")], [float("inf")]])
def test_split_remaining_bad_shares(shares: list[float]) -> None:
    with pytest.raises(ValueError, match="shares"):
        CAL.split_remaining(vn(2026, 3, 2, 7), vn(2026, 3, 13, 17), shares)


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 3, 4, 9)
    aware = vn(2026, 3, 4, 9)
    calls = [
        lambda: CAL.session_start_at_or_after(naive),
        lambda: CAL.acknowledge_by(naive),
        lambda: CAL.due_at(naive, 1),
        lambda: CAL.working_time_between(naive, aware),
        lambda: CAL.working_time_between(aware, naive),
        lambda: CAL.add_working_time(naive, H),
        lambda: CAL.split_remaining(naive, aware, [1]),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="aware"):
            call()


# -- configuration --------------------------------------------------------------------------------------------------


def test_defaults_and_full_config() -> None:
    assert office_calendar(CalendarSection()) == CAL
    assert office_calendar(CalendarSection.model_validate({})) == CAL
    section = tomllib.loads(
        """
        [calendar]
        extra_holidays = ["2026-11-20", 2026-12-31]
        makeup_working_days = ["2026-10-10"]
        morning = "07:30-11:30"
        afternoon = "13:00 - 16:30"
        """
    )["calendar"]
    cal = office_calendar(CalendarSection.model_validate(section))
    assert cal.extra_days_off == {date(2026, 11, 20), date(2026, 12, 31)}
    assert cal.makeup_working_days == {date(2026, 10, 10)}
    assert cal.morning == (time(7, 30), time(11, 30))
    assert cal.afternoon == (time(13, 0), time(16, 30))
    assert cal.session_start_at_or_after(vn(2026, 3, 4, 7)) == vn(2026, 3, 4, 7, 30)
    assert cal.due_at(vn(2026, 3, 4, 9), 1) == vn(2026, 3, 5, 16, 30)
    assert cal.working_time_between(vn(2026, 3, 4, 0), vn(2026, 3, 5, 0)) == timedelta(hours=7, minutes=30)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"extra_holidays": "2026-13-01"}, "extra_holidays"),
        ({"extra_holidays": ["20/11/2026"]}, "extra_holidays"),
        ({"extra_holidays": [20261120]}, "extra_holidays"),
        ({"extra_holidays": {"a": 1}}, "extra_holidays"),
        ({"makeup_working_days": ["2026-02-30"]}, "makeup_working_days"),
        ({"makeup_working_days": [datetime(2026, 10, 10, 8)]}, "makeup_working_days"),
        ({"morning": "7-11"}, "morning"),
        ({"morning": "11:30-07:00"}, "morning"),
        ({"morning": "07:00-25:00"}, "morning"),
        ({"afternoon": 1330}, "afternoon"),
        ({"morning": "07:00-12:00", "afternoon": "11:00-17:00"}, "afternoon"),
        ({"extra_holidays": ["2026-10-10"], "makeup_working_days": ["2026-10-10"]}, "makeup_working_days"),
        ({"holidays": []}, "holidays"),
    ],
)
def test_invalid_config_names_the_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=r"\[calendar\]") as info:
        parse_section(CalendarSection, section, "calendar")
    message = str(info.value)
    assert key in message
    assert "\n" not in message


def test_the_constructor_refuses_an_inconsistent_calendar() -> None:
    day = date(2026, 10, 10)
    with pytest.raises(ValueError, match="also listed in extra_days_off"):
        OfficeCalendar(extra_days_off=frozenset({day}), makeup_working_days=frozenset({day}))
    with pytest.raises(ValueError, match=r"morning session ends \(12:00\)"):
        OfficeCalendar(morning=(time(7, 0), time(12, 0)), afternoon=(time(11, 0), time(17, 0)))
    with pytest.raises(ValueError, match="start < end"):
        OfficeCalendar(morning=(time(11, 0), time(7, 0)))


# -- properties -----------------------------------------------------------------------------------------------------

_moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC))
_CONFIGURED = OfficeCalendar(
    extra_days_off=frozenset({date(2026, 11, 20)}), makeup_working_days=frozenset({date(2026, 10, 10)})
)


@settings(max_examples=300, deadline=None)
@given(received=_moments, days=st.integers(0, 40), cal=st.sampled_from([CAL, _CONFIGURED]))
def test_due_at_is_the_end_of_a_working_afternoon_never_before_reception(
    received: datetime, days: int, cal: OfficeCalendar
) -> None:
    due = cal.due_at(received, days)
    assert due.tzinfo is VIETNAM_TZ
    assert due.time() == time(17, 0)
    assert cal.is_working_day(due.date())
    assert due == cal.sessions(due.date())[-1][1]
    assert due >= received
    start = cal.session_start_at_or_after(received)
    assert (
        sum(
            1 for n in range(1, (due.date() - start.date()).days + 1) if cal.is_working_day(start.date() + timedelta(n))
        )
        == days
    )


@settings(max_examples=200, deadline=None)
@given(received=_moments)
def test_acknowledgement_leaves_at_least_one_full_session(received: datetime) -> None:
    ack = CAL.acknowledge_by(received)
    assert ack > received
    assert ack.time() in (time(11, 30), time(17, 0))
    assert CAL.working_time_between(received, ack) >= timedelta(hours=3, minutes=30)


@settings(max_examples=200, deadline=None)
@given(start=_moments, minutes=st.integers(0, 200 * 60))
def test_add_working_time_inverts_working_time_between(start: datetime, minutes: int) -> None:
    delta = timedelta(minutes=minutes)
    end = CAL.add_working_time(start, delta)
    assert end >= start
    assert CAL.working_time_between(start, end) == delta
