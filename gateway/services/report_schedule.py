"""The monthly reports the daemon writes: last month's report of every registered agency, once, from the configured
day of the month until the 19th (reports are due before the 20th).

Each written report is an audit entry (``report.written``, subject ``<period>/<agency>``): that is how a restarted
daemon, or another process on the same database, knows it is done. The files (``<directory>/<period>/``, a workbook
and the JSON document per agency) are written before the entry, replacing a half-written one from a crash.
"""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import datetime
from pathlib import Path

import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.reports import Period, scheduled_period
from gateway.services.report_files import render
from gateway.services.reports import build_report
from gateway.store.database import Database
from gateway.store.models import Agency, AuditEntry

__all__ = ["ACTION", "ACTOR", "write_due_reports", "write_due_reports_sync"]

log = logging.getLogger("gateway.reports")

ACTION = "report.written"
ACTOR = "gateway"
#: The files written per agency.
_FORMATS = ("xlsx", "json")


def _subject(period: Period, agency: str) -> str:
    return f"{period.label}/{agency}"


def _written(session: Session, period: Period) -> set[str]:
    statement = select(AuditEntry.subject).where(
        AuditEntry.action == ACTION, AuditEntry.subject.startswith(f"{period.label}/")
    )
    return set(session.scalars(statement))


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _write_files(directory: Path, period: Period, agency: str, document: dict) -> dict[str, str]:
    folder = directory / period.label
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in _FORMATS:
        data = render(document, fmt)
        path = folder / f"bao-cao-{period.label}-{agency}.{fmt}"
        _write_atomically(path, data)
        written[path.name] = hashlib.sha256(data).hexdigest()
    return written


def write_due_reports_sync(
    db: Database, calendar: OfficeCalendar, *, schedule_day: int, directory: Path, now: datetime
) -> list[str]:
    """Write the reports due at ``now`` that are not written yet; the agencies written for (none when none is due)."""
    period = scheduled_period(calendar.local(now).date(), schedule_day)
    if period is None:
        return []
    with db.unit_of_work() as session:
        agencies = list(session.scalars(select(Agency.code).order_by(Agency.code)))
        done = _written(session, period)
    written = []
    for agency in agencies:
        if _subject(period, agency) in done:
            continue
        with db.unit_of_work() as session:
            document = build_report(session, period, calendar, now=now, agency=agency).to_json()
        files = _write_files(directory, period, agency, document)
        with db.unit_of_work() as session:
            audit.lock_for_write(session)
            if _subject(period, agency) in _written(session, period):
                continue  # another process wrote it meanwhile (the same figures)
            audit.append(session, ACTOR, ACTION, _subject(period, agency), {"files": files}, at=now)
        log.info("monthly report written", extra={"period": period.label, "agency": agency})
        written.append(agency)
    return written


async def write_due_reports(
    db: Database, calendar: OfficeCalendar, *, schedule_day: int, directory: Path, now: datetime
) -> list[str]:
    """:func:`write_due_reports_sync` in a worker thread (the periodic job)."""
    return await anyio.to_thread.run_sync(
        lambda: write_due_reports_sync(db, calendar, schedule_day=schedule_day, directory=directory, now=now)
    )
