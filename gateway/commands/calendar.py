"""``dvc-gateway calendar show [--year Y] [--json]`` and ``dvc-gateway calendar due --at DATETIME --days N``.

``show`` prints the working-day calendar in force for one year (default: this year in Vietnam): the weekdays off
and the weekend days worked (make-up days), each with its name and the layer it comes from (the ``[calendar]``
settings, the official calendar data shipped with the gateway, or the ``holidays`` package), the office sessions,
whether the year is decided, provisional or left to the package, and the calendar's version (the one dossiers'
deadlines record). ``due`` prints when a dossier received at DATETIME (without an offset: Vietnam's time) with N
processing days must be acknowledged and is due. ``--json`` prints one object (``docs/cli.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..domain.calendar import (
    DEFAULT_AFTERNOON,
    DEFAULT_MORNING,
    SOURCE_HOLIDAYS,
    SOURCE_OFFICIAL,
    VIETNAM_TZ,
    DayRule,
    OfficeCalendar,
    holidays_version,
)
from ..domain.times import iso
from ..errors import EXIT_OK, UsageError
from ..sections import office_calendar
from ..settings import load_settings
from .db import config_argument

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "calendar",
        help="the working-day calendar in force: days off, make-up days, due dates",
        description="Show the working-day calendar the gateway counts deadlines with.",
    )
    actions = parser.add_subparsers(dest="calendar_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True

    show = actions.add_parser(
        "show",
        help="days off, make-up working days and sessions of a year",
        description="List a year's weekdays off and weekend days worked, with where each comes from.",
    )
    show.add_argument("--year", type=int, metavar="Y", help="the year (default: this year)")
    show.add_argument("--json", action="store_true", help="print the calendar as JSON")
    config_argument(show)
    show.set_defaults(run=run_show)

    due = actions.add_parser(
        "due",
        help="acknowledgement and due time of a dossier received at a given time",
        description="When a dossier received at DATETIME with N processing days must be acknowledged and is due.",
    )
    due.add_argument("--at", required=True, metavar="DATETIME", help="reception time, ISO 8601 (no offset: Vietnam)")
    due.add_argument("--days", required=True, type=int, metavar="N", help="the procedure's processing days")
    due.add_argument("--json", action="store_true", help="print the answer as JSON")
    config_argument(due)
    due.set_defaults(run=run_due)


def _calendar(args: argparse.Namespace) -> OfficeCalendar:
    return office_calendar(load_settings(args.config).calendar)


def _source(calendar: OfficeCalendar, source: str) -> str:
    if source == SOURCE_OFFICIAL and calendar.official is not None:
        return f"{SOURCE_OFFICIAL}:{calendar.official.label}"
    if source == SOURCE_HOLIDAYS:
        return f"{SOURCE_HOLIDAYS}:{holidays_version()}"
    return source


def _day(calendar: OfficeCalendar, rule: DayRule) -> dict[str, Any]:
    return {
        "date": rule.day.isoformat(),
        "weekday": _WEEKDAYS[rule.day.weekday()],
        "name": rule.name,
        "source": _source(calendar, rule.source),
    }


def _session(pair: tuple[Any, Any]) -> str:
    return f"{pair[0]:%H:%M}-{pair[1]:%H:%M}"


def calendar_document(calendar: OfficeCalendar, year: int) -> dict[str, Any]:
    """What ``calendar show --json`` prints for ``year``."""
    rules = calendar.exceptions(year)
    entry = calendar.official.year(year) if calendar.official is not None else None
    default_sessions = (calendar.morning, calendar.afternoon) == (DEFAULT_MORNING, DEFAULT_AFTERNOON)
    return {
        "year": year,
        "calendar_version": calendar.version,
        "year_status": calendar.year_status(year),
        "decided_by": entry.note if entry is not None else None,
        "sources": {
            "official_data": calendar.official.label if calendar.official is not None else None,
            "holidays": holidays_version(),
            "settings": calendar.settings_digest,
        },
        "sessions": {
            "morning": _session(calendar.morning),
            "afternoon": _session(calendar.afternoon),
            "source": "default" if default_sessions else "settings",
        },
        "days_off": [_day(calendar, rule) for rule in rules if not rule.working],
        "working_days": [_day(calendar, rule) for rule in rules if rule.working],
    }


def _print_days(console: Console, title: str, days: list[dict[str, Any]]) -> None:
    if not days:
        console.print(f"{title}: none")
        return
    table = Table("Date", "Day", "Name", "Source", title=title, title_justify="left")
    for day in days:
        table.add_row(day["date"], day["weekday"], escape(day["name"] or "-"), escape(day["source"]))
    console.print(table)


def run_show(args: argparse.Namespace) -> int:
    calendar = _calendar(args)
    year = args.year if args.year is not None else datetime.now(VIETNAM_TZ).year
    if not 2000 <= year <= 2099:
        raise UsageError(f"--year {year}: expected a year from 2000 to 2099")
    document = calendar_document(calendar, year)
    if args.json:
        json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    console = Console(highlight=False, soft_wrap=True)
    status = document["year_status"]
    console.print(f"calendar {escape(document['calendar_version'])}: {year} is {status}")
    if document["decided_by"]:
        console.print(f"  {escape(document['decided_by'])}")
    sessions = document["sessions"]
    console.print(f"sessions: morning {sessions['morning']}, afternoon {sessions['afternoon']} ({sessions['source']})")
    _print_days(console, f"Weekdays off in {year}", document["days_off"])
    _print_days(console, f"Make-up working days in {year}", document["working_days"])
    return EXIT_OK


def _moment(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--at {text!r}: expected a date and time such as 2025-12-31T10:00 or 2025-12-31T10:00+07:00"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=VIETNAM_TZ)
    if not 2000 <= value.year <= 2099:
        raise UsageError(f"--at {text!r}: expected a time from 2000 to 2099")
    return value


def due_document(calendar: OfficeCalendar, received_at: datetime, days: int) -> dict[str, Any]:
    """What ``calendar due --json`` prints."""
    start = calendar.session_start_at_or_after(received_at)
    due = calendar.due_at(received_at, days)
    years = range(start.year, due.year + 1)
    return {
        "received_at": iso(received_at),
        "counts_from": iso(start),
        "acknowledge_by": iso(calendar.acknowledge_by(received_at)),
        "processing_days": days,
        "due_at": iso(due),
        "calendar_version": calendar.version,
        "not_decided": [year for year in years if calendar.year_status(year) != "decided"],
    }


def run_due(args: argparse.Namespace) -> int:
    if args.days < 0 or args.days > 3650:
        raise UsageError(f"--days {args.days}: expected a number of working days from 0 to 3650")
    calendar = _calendar(args)
    document = due_document(calendar, _moment(args.at), args.days)
    if args.json:
        json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    due = date.fromisoformat(document["due_at"][:10])
    plural = "" if args.days == 1 else "s"
    print(f"received        {document['received_at']}")
    print(f"counts from     {document['counts_from']}")
    print(f"acknowledge by  {document['acknowledge_by']}")
    print(f"due at          {document['due_at']} ({_WEEKDAYS[due.weekday()]}, {args.days} working day{plural})")
    print(f"calendar        {document['calendar_version']}")
    if document["not_decided"]:
        years = ", ".join(str(year) for year in document["not_decided"])
        print(f"note: the official days off of {years} are not decided yet; the due date may move", file=sys.stderr)
    return EXIT_OK
