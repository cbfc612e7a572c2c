"""Dossier codes (``docs/architecture.md``): ``<agency code>-<yymmdd>-<4-digit daily sequence>``, e.g.
``000.00.23.H38-261122-0001``.

- The **agency code** is the agency's official electronic identifier (*mã định danh điện tử*, as the national
  standard for agency identifiers shapes them: ``000.00.23.H38`` for a provincial department, ``H38.12`` for a
  district unit, ``G22.103`` for a ministry's unit): ASCII letters and digits in dot-separated groups, no leading,
  trailing or doubled dot, 2 to 40 characters in all (:data:`AGENCY_CODE_RE`). It never contains ``-``, so the
  code splits unambiguously. The code is kept as given (no case folding).
- ``yymmdd`` is the day the code was assigned, in Asia/Ho_Chi_Minh (years 2000–2099).
- The **daily sequence** runs from ``0001`` to ``9999`` per agency and day; a 10 000th dossier is refused rather
  than given a longer code.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

__all__ = [
    "AGENCY_CODE_RE",
    "MAX_DAILY_SEQUENCE",
    "DossierCode",
    "format_dossier_code",
    "is_valid_agency_code",
    "parse_dossier_code",
]

_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MAX_DAILY_SEQUENCE = 9999

#: An official agency identifier: dot-separated groups of ASCII letters and digits, 2–40 characters.
AGENCY_CODE_RE = re.compile(r"(?=.{2,40}\Z)[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*\Z", re.ASCII)
_DOSSIER_CODE_RE = re.compile(r"(?P<agency>[A-Za-z0-9.]+)-(?P<day>[0-9]{6})-(?P<seq>[0-9]{4})\Z", re.ASCII)


class DossierCode(NamedTuple):
    """A parsed dossier code; ``str()`` gives the code back."""

    agency_code: str
    day: date
    sequence: int

    def __str__(self) -> str:
        return format_dossier_code(self.agency_code, self.day, self.sequence)


def is_valid_agency_code(value: object) -> bool:
    """Whether ``value`` has the shape of an official agency identifier."""
    return isinstance(value, str) and AGENCY_CODE_RE.match(value) is not None


def _check_agency(agency_code: object) -> str:
    if not isinstance(agency_code, str) or AGENCY_CODE_RE.match(agency_code) is None:
        raise ValueError(
            f"invalid agency code {agency_code!r}: expected dot-separated letters and digits, 2–40 characters"
        )
    return agency_code


def format_dossier_code(agency_code: str, day: date, sequence: int) -> str:
    """The code of the ``sequence``-th dossier of ``agency_code`` on ``day``.

    ``day`` is a date, or an aware datetime taken as its date in Asia/Ho_Chi_Minh (a naive datetime is refused).
    """
    agency = _check_agency(agency_code)
    if isinstance(day, datetime):
        if day.utcoffset() is None:
            raise ValueError(f"day must be a date or an aware datetime, got naive {day.isoformat()}")
        day = day.astimezone(_TZ).date()
    if not isinstance(day, date):
        raise TypeError(f"day must be a date, not {type(day).__name__}")
    if not 2000 <= day.year <= 2099:
        raise ValueError(f"dossier codes cover the years 2000–2099, got {day.isoformat()}")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 1 <= sequence <= MAX_DAILY_SEQUENCE:
        raise ValueError(f"daily sequence must be an integer from 1 to {MAX_DAILY_SEQUENCE}, got {sequence!r}")
    return f"{agency}-{day:%y%m%d}-{sequence:04d}"


def parse_dossier_code(code: str) -> DossierCode:
    """The agency code, day and daily sequence of a dossier code; ``ValueError`` for anything else."""
    match = _DOSSIER_CODE_RE.match(code) if isinstance(code, str) else None
    if match is None:
        raise ValueError(f"invalid dossier code {code!r}: expected <agency code>-<yymmdd>-<4-digit sequence>")
    agency = _check_agency(match["agency"])
    raw_day = match["day"]
    try:
        day = date(2000 + int(raw_day[:2]), int(raw_day[2:4]), int(raw_day[4:]))
    except ValueError:
        raise ValueError(f"invalid dossier code {code!r}: {raw_day} is not a date (yymmdd)") from None
    sequence = int(match["seq"])
    if sequence == 0:
        raise ValueError(f"invalid dossier code {code!r}: the daily sequence starts at 0001")
    return DossierCode(agency, day, sequence)
