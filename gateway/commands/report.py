"""``dvc-gateway report --period 2026-10|2026-Q4|2026-H2|2026 [--agency CODE] [--procedure CODE]
[--format table|csv|json|xlsx] [--output FILE]``: the periodic report per agency and procedure.

``table`` (the default) is for people on a terminal; ``csv``, ``json`` and ``xlsx`` are written to ``--output`` or to
standard output (``xlsx`` only to a file). The counting rules are in ``docs/counting-rules.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..domain.reports import Period
from ..errors import EXIT_OK, UsageError
from ..sections import office_calendar
from ..services.report_files import COLUMNS, FORMATS, cell_text, period_line, render, table_rows
from ..services.reports import build_report
from ..settings import load_settings
from ..store.models import utcnow
from .db import config_argument, open_database

#: The columns the terminal table shows (the files have them all).
_TABLE_COLUMNS = (
    "agency_code",
    "procedure_code",
    "received.total",
    "transferred_in",
    "carried_over",
    "completed.on_time",
    "completed.late",
    "in_progress.on_time",
    "in_progress.overdue",
    "refused",
    "supplement_requests",
    "withdrawn",
    "stopped",
    "repeated_supplements",
    "originals_exempt_share",
    "average_processing_days",
    "average_rating",
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="the periodic report per agency and procedure (month, quarter, half-year, year)",
        description="The report of a month (2026-10), quarter (2026-Q4), half-year (2026-H2) or year (2026).",
    )
    parser.add_argument("--period", required=True, type=_period, help="2026-10, 2026-Q4, 2026-H2 or 2026")
    parser.add_argument("--agency", metavar="CODE", help="one agency only")
    parser.add_argument("--procedure", metavar="CODE", help="one procedure only")
    parser.add_argument("--format", choices=("table", *FORMATS), default="table", help="default: table")
    parser.add_argument("--output", metavar="FILE", type=Path, help="write to FILE (default: standard output)")
    config_argument(parser)
    parser.set_defaults(run=run_report)


def _period(value: str) -> Period:
    try:
        return Period.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print_table(document: dict) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    headings = dict(COLUMNS)
    indexes = [i for i, (path, _) in enumerate(COLUMNS) if path in _TABLE_COLUMNS]
    table = Table(title=period_line(document))
    for index in indexes:
        table.add_column(headings[COLUMNS[index][0]], justify="left" if index < 4 else "right", overflow="fold")
    for row in table_rows(document):
        table.add_row(*(escape(str(row[i])) for i in indexes))
    console.print(table)
    for row in document["agencies"]:
        for key, heading in (("refusal_reasons", "Lý do từ chối"), ("supplement_reasons", "Lý do yêu cầu bổ sung")):
            if row[key]:
                console.print(f"{escape(row['agency_code'])}: {heading}: {escape(cell_text(row[key]))}")
    system = document["system"]
    console.print(
        f"Hệ thống: {system['deliveries']} lần chuyển thành công, {system['retries']} lần gửi lại, "
        f"{system['dead_letters']} thông điệp không chuyển được"
    )


def run_report(args: argparse.Namespace) -> int:
    if args.format == "xlsx" and args.output is None:
        raise UsageError("--format xlsx needs --output FILE (a workbook is not written to a terminal)")
    if args.format == "table" and args.output is not None:
        raise UsageError("--output needs --format csv, json or xlsx")
    settings = load_settings(args.config)
    db = open_database(settings)
    try:
        with Console(stderr=True).status(f"Counting {args.period.label}", spinner="dots"), db.unit_of_work() as session:
            report = build_report(
                session,
                args.period,
                office_calendar(settings.calendar),
                now=utcnow(),
                agency=args.agency,
                procedure=args.procedure,
            )
    finally:
        db.dispose()
    document = report.to_json()
    if args.format == "table":
        _print_table(document)
        return EXIT_OK
    data = render(document, args.format)
    if args.output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return EXIT_OK
    try:
        args.output.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"report {report.period.label} written to {args.output}", file=sys.stderr)
    return EXIT_OK
