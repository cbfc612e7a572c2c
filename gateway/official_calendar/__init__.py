"""The official calendar data shipped with the gateway (``vn.json``), read and checked into the domain's
:class:`~gateway.domain.calendar.OfficialCalendar`.

The file is versioned data, not code: when the Government decides a year (Tết, day swaps), the year is written as
``decided`` with every weekday off and every weekend day worked, and the file's ``version`` goes up, so every
dossier's deadlines say which data computed them. A year still ``provisional`` lists only what is certain; the
``holidays`` package's estimate fills in the rest. :func:`load_official_calendar` refuses a malformed file in one
line naming the year and the date. A province may point ``[calendar] official_data`` at a newer file of the same
format (:func:`load_official_calendar_file`) before the gateway's next release ships it.
"""

from __future__ import annotations

import json
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from gateway.domain.calendar import NamedDay, OfficialCalendar, OfficialYear
from gateway.validation import validation_errors

__all__ = [
    "SHIPPED",
    "OfficialDataError",
    "load_official_calendar",
    "load_official_calendar_file",
    "parse_official_calendar",
]

#: The data file shipped in this package.
SHIPPED = "vn.json"


class OfficialDataError(ValueError):
    """The official calendar data cannot be used; ``str()`` is one line naming the year and the date."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Day(_Strict):
    date: date
    name: Annotated[StrictStr, Field(min_length=1)]


class _Year(_Strict):
    status: Literal["decided", "provisional"]
    decided_by: Annotated[StrictStr, Field(min_length=1)]
    days_off: list[_Day] = Field(default_factory=list)
    working_days: list[_Day] = Field(default_factory=list)


class _File(_Strict):
    name: Annotated[StrictStr, Field(pattern=r"^[a-z]{2,8}$")]
    version: Annotated[StrictStr, Field(pattern=r"^[0-9]{4}\.[0-9]+$")]
    description: StrictStr = ""
    years: dict[int, _Year]


def _year(number: int, data: _Year, source: str) -> OfficialYear:
    where = f"{source}: {number}"
    for day in data.days_off:
        if day.date.weekday() >= 5:
            raise OfficialDataError(f"{where}: days_off: {day.date.isoformat()} is a weekend day (list weekdays only)")
    for day in data.working_days:
        if day.date.weekday() < 5:
            raise OfficialDataError(f"{where}: working_days: {day.date.isoformat()} is a weekday, not a make-up day")
    try:
        return OfficialYear(
            year=number,
            decided=data.status == "decided",
            days_off=tuple(NamedDay(d.date, d.name) for d in sorted(data.days_off, key=lambda d: d.date)),
            working_days=tuple(NamedDay(d.date, d.name) for d in sorted(data.working_days, key=lambda d: d.date)),
            note=data.decided_by,
        )
    except ValueError as exc:
        raise OfficialDataError(f"{source}: {exc}") from None


def parse_official_calendar(text: str, *, source: str = SHIPPED) -> OfficialCalendar:
    """The official calendar of a data file's text; :class:`OfficialDataError` in one line."""
    try:
        data = _File.model_validate(json.loads(text))
    except ValueError as exc:  # JSONDecodeError and ValidationError alike
        if isinstance(exc, ValidationError):
            first = validation_errors(exc)[0]
            raise OfficialDataError(f"{source}: {first['field']}: {first['message']}") from None
        raise OfficialDataError(f"{source}: not valid JSON: {exc}") from None
    years = tuple(_year(number, entry, source) for number, entry in sorted(data.years.items()))
    return OfficialCalendar(version=data.version, years=years, name=data.name)


@lru_cache(maxsize=1)
def load_official_calendar() -> OfficialCalendar:
    """The official calendar data shipped with the gateway (read once per process)."""
    text = resources.files(__name__).joinpath(SHIPPED).read_text(encoding="utf-8")
    return parse_official_calendar(text)


def _version_key(version: str) -> tuple[int, int]:
    year, number = version.split(".")
    return int(year), int(number)


@lru_cache(maxsize=4)
def load_official_calendar_file(path: Path) -> OfficialCalendar:
    """The official calendar of a data file given in the configuration, in place of the shipped one: refused in one
    line when it cannot be read, is malformed, names another country, or is older than the shipped data."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OfficialDataError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    given = parse_official_calendar(text, source=path.name)
    shipped = load_official_calendar()
    if given.name != shipped.name:
        raise OfficialDataError(f"{path.name}: name {given.name!r} is not the shipped data's {shipped.name!r}")
    if _version_key(given.version) < _version_key(shipped.version):
        raise OfficialDataError(
            f"{path.name}: version {given.version} is older than the shipped data's {shipped.version}; "
            "remove official_data to use the shipped file"
        )
    return given
