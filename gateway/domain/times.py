"""How the gateway writes times: ISO 8601 in Vietnam's time with its offset, and a UTC key for comparing events.

Deadlines are defined in local office hours, so every time shown carries the +07:00 offset
(``2026-11-23T17:00:00+07:00``), to the second. Agencies' event times are compared as UTC strings to the microsecond.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.domain.calendar import VIETNAM_TZ

__all__ = ["aware", "iso", "utc_key"]


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in Vietnam's time with its offset, to the second (``2026-11-23T17:00:00+07:00``)."""
    if value is None:
        return None
    return value.astimezone(VIETNAM_TZ).isoformat(timespec="seconds")


def utc_key(value: datetime) -> str:
    """A time as a UTC string to the microsecond: equal instants give equal keys."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def aware(value: datetime | None) -> datetime | None:
    """A time without an offset read in Vietnam's time (agencies' systems often send local times)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=VIETNAM_TZ)
    return value
