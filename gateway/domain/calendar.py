"""The office calendar: working days, office sessions and working time (``docs/counting-rules.md``).

A **working day** is Monday to Friday, minus Vietnam's official days off, plus make-up working days. Three layers
decide a date, the first that speaks wins:

1. the ``[calendar]`` settings: ``makeup_working_days`` and extra days off (a date may not be in both);
2. the **official calendar data** shipped with the gateway (:class:`OfficialCalendar`, read outside the domain by
   :mod:`gateway.official_calendar`): for each year, the days off and make-up working days the Government decided.
   A *decided* year is complete: its days off and make-up days are exactly the listed ones, whatever the
   ``holidays`` package says (2 January 2026 off, Saturday 10 January 2026 worked). A *provisional* year (Tết 2027
   before the Government decides it) only adds its listed days to the package's estimate;
3. the ``holidays`` package's Vietnamese calendar (lunar Tết, Hùng Kings' day, observed days and the package's
   ``weekend_workdays``), for years the data does not decide.

:attr:`OfficeCalendar.version` names the layers (``vn-2026.1+holidays-0.109``, plus ``+settings-<digest>`` when the
settings add days or move sessions); a dossier's deadlines record it.

Office **sessions** default to 07:00–11:30 and 13:30–17:00, Asia/Ho_Chi_Minh. A session is the half-open interval
``[start, end)``: 11:30 is already outside the morning session. Half a working day is one session.

Rules (all inputs and outputs are aware datetimes; a naive datetime raises ``ValueError``; results are expressed in
the calendar's time zone, Asia/Ho_Chi_Minh):

- *Counting start* (:meth:`OfficeCalendar.session_start_at_or_after`): a moment inside a session counts from
  itself; a moment outside one counts from the start of the next session (17:05 → the next working morning 07:00;
  12:15 → 13:30 the same day; Saturday → Monday 07:00, unless Saturday is a make-up day).
- *Acknowledgement* (:meth:`OfficeCalendar.acknowledge_by`): reception must answer within half a working day: by
  the end of the session after the one the dossier counts from. 10:00 Wednesday → Wednesday
  17:00; 17:05 Tuesday → Wednesday 17:00; 12:15 → 11:30 the next working day; 15:00 Friday → Monday 11:30.
- *Due date* (:meth:`OfficeCalendar.due_at`): as in Vietnamese practice (and the Civil Code's rule for periods in
  days), the day of reception is not counted: a dossier whose counting start falls on working day D with ``n``
  processing days is due at the end of the afternoon session of the n-th working day after D. Counted from a
  working morning with 1 processing day, it is due at 17:00 on the next working day. ``n = 0`` (a same-day
  procedure) means the end of D's afternoon session.
- *Working time* (:meth:`OfficeCalendar.working_time_between`, :meth:`OfficeCalendar.add_working_time`): only time
  inside sessions counts; a full working day is 8 hours with the default sessions. Adding working time from a moment
  outside a session starts at the next session; a sum that ends exactly at a session's end ends there.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

import holidays

__all__ = [
    "DEFAULT_AFTERNOON",
    "DEFAULT_MORNING",
    "SOURCE_HOLIDAYS",
    "SOURCE_OFFICIAL",
    "SOURCE_SETTINGS",
    "VIETNAM_TZ",
    "DayRule",
    "NamedDay",
    "OfficeCalendar",
    "OfficialCalendar",
    "OfficialYear",
    "holidays_version",
    "official_holidays",
]

VIETNAM_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DEFAULT_MORNING: tuple[time, time] = (time(7, 0), time(11, 30))
DEFAULT_AFTERNOON: tuple[time, time] = (time(13, 30), time(17, 0))

#: More consecutive days than this without a working day means the calendar is broken, not that the office is shut.
_MAX_DAYS_WITHOUT_WORK = 400
#: How many days' verdicts a calendar remembers (about ten years' worth).
_MAX_REMEMBERED_DAYS = 4096


@lru_cache(maxsize=128)
def _national(year: int) -> holidays.HolidayBase:
    """Vietnam's official calendar for one year (cached; never expanded to other years, never mutated)."""
    return holidays.country_holidays("VN", years=year, expand=False)


def official_holidays(year: int) -> dict[date, str]:
    """Vietnam's official days off in ``year`` with their (English) names, as the ``holidays`` package lists them."""
    return dict(sorted(_national(year).items()))


def holidays_version() -> str:
    """The installed ``holidays`` package's version (a due date in a year the official data does not decide
    depends on it)."""
    return str(holidays.__version__)


#: Where a day's rule comes from (:attr:`DayRule.source`).
SOURCE_SETTINGS, SOURCE_OFFICIAL, SOURCE_HOLIDAYS = "settings", "official", "holidays"


class NamedDay(NamedTuple):
    """A date and what it is (``Tết Nguyên đán Bính Ngọ``, ``Làm bù cho thứ Sáu 02/01/2026``)."""

    day: date
    name: str


@dataclass(frozen=True)
class OfficialYear:
    """One year of the official calendar data: the days off and make-up working days the Government decided.

    ``decided``: the lists are complete (the ``holidays`` package is not asked about this year); otherwise the
    year is provisional and the lists only add to the package's estimate.
    """

    year: int
    decided: bool
    days_off: tuple[NamedDay, ...] = ()
    working_days: tuple[NamedDay, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        for what, days in (("days_off", self.days_off), ("working_days", self.working_days)):
            strangers = [d.day.isoformat() for d in days if d.day.year != self.year]
            if strangers:
                raise ValueError(f"{self.year}: {what}: {', '.join(strangers)} not in {self.year}")
        both = {d.day for d in self.days_off} & {d.day for d in self.working_days}
        if both:
            raise ValueError(f"{self.year}: {', '.join(sorted(d.isoformat() for d in both))} both off and worked")


@dataclass(frozen=True)
class OfficialCalendar:
    """The official calendar data (a versioned file shipped with the gateway), year by year."""

    version: str
    years: tuple[OfficialYear, ...] = ()
    name: str = "vn"
    _off: dict[date, str] = field(init=False, repr=False, compare=False, hash=False)
    _worked: dict[date, str] = field(init=False, repr=False, compare=False, hash=False)
    _by_year: dict[int, OfficialYear] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_year: dict[int, OfficialYear] = {}
        for entry in self.years:
            if entry.year in by_year:
                raise ValueError(f"year {entry.year} given twice")
            by_year[entry.year] = entry
        object.__setattr__(self, "_by_year", by_year)
        object.__setattr__(self, "_off", {d.day: d.name for y in self.years for d in y.days_off})
        object.__setattr__(self, "_worked", {d.day: d.name for y in self.years for d in y.working_days})

    @property
    def label(self) -> str:
        """``vn-2026.1``: the data's name and version."""
        return f"{self.name}-{self.version}"

    def year(self, year: int) -> OfficialYear | None:
        """The data of ``year``, if the file has it."""
        return self._by_year.get(year)

    def verdict(self, d: date) -> tuple[bool, str] | None:
        """``(working, name)`` when the data decides ``d``; ``None`` when the package is to be asked."""
        if d in self._worked:
            return True, self._worked[d]
        if d in self._off:
            return False, self._off[d]
        entry = self._by_year.get(d.year)
        if entry is not None and entry.decided:
            return d.weekday() < 5, ""
        return None


class DayRule(NamedTuple):
    """Whether a date is worked, its name (a holiday's, a make-up day's; empty for an ordinary day) and the layer
    that decided it (:data:`SOURCE_SETTINGS`, :data:`SOURCE_OFFICIAL`, :data:`SOURCE_HOLIDAYS`)."""

    day: date
    working: bool
    name: str
    source: str


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (got naive {value.isoformat()})")
    return value


def _fmt(t: time) -> str:
    return t.strftime("%H:%M")


@dataclass(frozen=True)
class OfficeCalendar:
    """Working days and office sessions of the province's agencies. Immutable; safe to share between threads."""

    extra_days_off: frozenset[date] = frozenset()
    makeup_working_days: frozenset[date] = frozenset()
    morning: tuple[time, time] = DEFAULT_MORNING
    afternoon: tuple[time, time] = DEFAULT_AFTERNOON
    tz: ZoneInfo = VIETNAM_TZ
    official: OfficialCalendar | None = None
    #: The verdicts given so far, by date: they depend only on this immutable calendar (bounded: cleared when full).
    _working: dict[date, bool] = field(default_factory=dict, init=False, repr=False, compare=False)
    #: The day ``n`` working days after a day, by (day, n), as :meth:`due_at` counted them (bounded the same way).
    _counted: dict[tuple[date, int], date] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_days_off", frozenset(self.extra_days_off))
        object.__setattr__(self, "makeup_working_days", frozenset(self.makeup_working_days))
        for name in ("morning", "afternoon"):
            session = getattr(self, name)
            if (
                len(session) != 2
                or not all(isinstance(t, time) and t.tzinfo is None for t in session)
                or session[0] >= session[1]
            ):
                raise ValueError(f"{name} must be a (start, end) pair of naive times with start < end")
            object.__setattr__(self, name, tuple(session))
        if self.morning[1] > self.afternoon[0]:
            raise ValueError(f"afternoon must start at or after the morning session ends ({_fmt(self.morning[1])})")
        both = self.extra_days_off & self.makeup_working_days
        if both:
            days = ", ".join(d.isoformat() for d in sorted(both))
            raise ValueError(f"makeup_working_days: {days} also listed in extra_days_off")

    # -- days and sessions ------------------------------------------------------------------------------------------

    def local(self, t: datetime) -> datetime:
        """``t`` (aware) expressed in the calendar's time zone; ``ValueError`` for a naive datetime."""
        return _aware(t, "time").astimezone(self.tz)

    def is_working_day(self, d: date) -> bool:
        """Whether ``d`` is a working day (an aware datetime is taken as its local date)."""
        if isinstance(d, datetime):
            d = self.local(d).date()
        known = self._working
        working = known.get(d)
        if working is None:
            if len(known) >= _MAX_REMEMBERED_DAYS:
                known.clear()
            working = known[d] = self.rule(d).working
        return working

    def rule(self, d: date) -> DayRule:
        """Whether ``d`` is worked, what it is and which layer said so (for showing the calendar)."""
        if d in self.makeup_working_days:
            return DayRule(d, True, "make-up working day ([calendar] makeup_working_days)", SOURCE_SETTINGS)
        if d in self.extra_days_off:
            return DayRule(d, False, "day off ([calendar] extra_holidays)", SOURCE_SETTINGS)
        if self.official is not None:
            verdict = self.official.verdict(d)
            if verdict is not None:
                return DayRule(d, verdict[0], verdict[1], SOURCE_OFFICIAL)
        national = _national(d.year)
        return DayRule(d, national.is_working_day(d), national.get(d) or "", SOURCE_HOLIDAYS)

    def exceptions(self, year: int) -> list[DayRule]:
        """The days of ``year`` that are not ordinary: weekdays off and weekend days worked, in date order."""
        day, rules = date(year, 1, 1), []
        while day.year == year:
            rule = self.rule(day)
            if rule.working != (day.weekday() < 5):
                rules.append(rule)
            day += timedelta(days=1)
        return rules

    def year_status(self, year: int) -> str:
        """``decided`` (the official data decides the year), ``provisional`` (the data marks it so: the package's
        estimate with the data's additions) or ``package`` (the ``holidays`` package alone)."""
        entry = self.official.year(year) if self.official is not None else None
        if entry is None:
            return "package"
        return "decided" if entry.decided else "provisional"

    @property
    def settings_digest(self) -> str | None:
        """A short digest of what the settings change (extra days, make-up days, sessions); ``None`` for none."""
        if not (self.extra_days_off or self.makeup_working_days) and (self.morning, self.afternoon) == (
            DEFAULT_MORNING,
            DEFAULT_AFTERNOON,
        ):
            return None
        text = "|".join(
            [
                ",".join(sorted(d.isoformat() for d in self.extra_days_off)),
                ",".join(sorted(d.isoformat() for d in self.makeup_working_days)),
                "-".join(_fmt(t) for t in (*self.morning, *self.afternoon)),
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def version(self) -> str:
        """Which calendar this is: ``vn-2026.1+holidays-0.109`` (``+settings-<digest>`` when configured)."""
        parts = [self.official.label] if self.official is not None else []
        parts.append(f"holidays-{holidays_version()}")
        digest = self.settings_digest
        if digest is not None:
            parts.append(f"settings-{digest}")
        return "+".join(parts)

    def sessions(self, d: date) -> list[tuple[datetime, datetime]]:
        """The office sessions of day ``d`` as aware ``(start, end)`` pairs; empty on a day off."""
        if isinstance(d, datetime):
            d = self.local(d).date()
        if not self.is_working_day(d):
            return []
        return [
            (datetime.combine(d, start, tzinfo=self.tz), datetime.combine(d, end, tzinfo=self.tz))
            for start, end in (self.morning, self.afternoon)
        ]

    def _sessions_from(self, t: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Every session ending after ``t`` (local), in order, without end."""
        day = t.date()
        idle = 0
        while True:
            found = self.sessions(day)
            idle = 0 if found else idle + 1
            if idle > _MAX_DAYS_WITHOUT_WORK:
                raise ValueError(f"no working day within {_MAX_DAYS_WITHOUT_WORK} days after {t.date().isoformat()}")
            for start, end in found:
                if end > t:
                    yield start, end
            day += timedelta(days=1)

    def _next_working_day(self, d: date) -> date:
        for _ in range(_MAX_DAYS_WITHOUT_WORK):
            d += timedelta(days=1)
            if self.is_working_day(d):
                return d
        raise ValueError(f"no working day within {_MAX_DAYS_WITHOUT_WORK} days after {d.isoformat()}")

    # -- counting rules ---------------------------------------------------------------------------------------------

    def session_start_at_or_after(self, t: datetime) -> datetime:
        """The moment ``t`` counts from: ``t`` itself inside a session, else the start of the next session."""
        local = self.local(t)
        start, _ = next(self._sessions_from(local))
        return max(start, local)

    def acknowledge_by(self, received_at: datetime) -> datetime:
        """When reception must have answered (half a working day): the end of the session after the one the
        dossier counts from (the session it arrived in, or the next one when it arrived outside office hours)."""
        sessions = self._sessions_from(self.local(received_at))
        next(sessions)  # the session it counts from
        return next(sessions)[1]

    def due_at(self, received_at: datetime, processing_days: int) -> datetime:
        """The end of the afternoon session of the ``processing_days``-th working day after the counting start's day.

        The reception day itself is not counted (see the module's rules): 1 processing day from a Monday morning is
        Tuesday 17:00.
        """
        if isinstance(processing_days, bool) or not isinstance(processing_days, int) or processing_days < 0:
            raise ValueError(f"processing_days must be a non-negative integer, got {processing_days!r}")
        start = self.session_start_at_or_after(received_at).date()
        counted = self._counted
        day = counted.get((start, processing_days))
        if day is None:
            day = start
            for _ in range(processing_days):
                day = self._next_working_day(day)
            if len(counted) >= _MAX_REMEMBERED_DAYS:
                counted.clear()
            counted[(start, processing_days)] = day
        return datetime.combine(day, self.afternoon[1], tzinfo=self.tz)

    # -- working time -----------------------------------------------------------------------------------------------

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Office time inside sessions between ``a`` and ``b`` (negative when ``b`` is before ``a``)."""
        a, b = self.local(a), self.local(b)
        if b < a:
            return -self.working_time_between(b, a)
        total = timedelta(0)
        for start, end in self._sessions_from(a):
            if start >= b:
                break
            total += min(end, b) - max(start, a)
        return total

    def add_working_time(self, t: datetime, delta: timedelta) -> datetime:
        """The moment ``delta`` of working time after ``t`` (how a deadline moves by the working time waited)."""
        local = self.local(t)
        if delta < timedelta(0):
            raise ValueError(f"delta must not be negative, got {delta}")
        if not delta:
            return local
        remaining = delta
        for start, end in self._sessions_from(local):
            begin = max(start, local)
            available = end - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        raise AssertionError("unreachable: _sessions_from never ends")  # pragma: no cover

    def split_remaining(self, now: datetime, due_at: datetime, shares: Sequence[float]) -> list[datetime]:
        """Split the working time left between ``now`` and ``due_at`` between agencies (*liên thông*).

        ``shares`` are positive weights, one per agency in processing order (they need not add up to 1; equal
        shares, the default when the procedure's catalogue entry says nothing, are ``[1] * n``). The result is
        each agency's deadline: the i-th is ``now`` plus the first i+1 shares of the remaining working time,
        to the second; the last is ``due_at`` itself. When nothing remains (``now`` at or after ``due_at``), every
        deadline is ``due_at``.
        """
        weights = list(shares)
        if not weights:
            raise ValueError("shares must not be empty")
        if not all(isinstance(w, int | float) and math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"shares must be positive numbers, got {weights!r}")
        start, due = self.local(now), self.local(due_at)
        remaining = self.working_time_between(start, due)
        if remaining <= timedelta(0):
            return [due] * len(weights)
        total = sum(weights)
        seconds = remaining.total_seconds()
        deadlines: list[datetime] = []
        cumulative = 0.0
        for weight in weights[:-1]:
            cumulative += weight
            offset = timedelta(seconds=round(seconds * cumulative / total))
            deadlines.append(self.add_working_time(start, offset))
        deadlines.append(due)
        return deadlines
