"""The console's read models: plain dictionaries the templates render, never personal data.

- :func:`flow_by_agency`: each agency's dossiers by status, and what the deadline watch finds there.
- :func:`outbox_rows`: outbox messages (what each is for, its attempts, its last error; never its payload, which may
  carry an applicant's reason).
- :func:`agency_health`: each registered agency, how it reports back, and how its deliveries and polls are going.
- :func:`report_bars`: the periodic report's figures per agency as bar chart rows.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ... import outbox
from ...domain.status import Status
from ...domain.times import iso
from ...registry import list_agencies
from ...services.watch import WatchItem, counts_by_agency
from ...store.models import AgencyPoll, Dossier, OutboxMessage

__all__ = ["REPORT_SERIES", "agency_health", "flow_by_agency", "outbox_rows", "report_bars"]

#: Statuses in the order the flow table shows them.
FLOW_STATUSES = [s.value for s in Status]
_ERROR_SHOWN = 300


def _agency_names(session: Session) -> dict[str, str]:
    return {r.code: r.name for r in list_agencies(session)}


def flow_by_agency(session: Session, watch: list[WatchItem]) -> list[dict[str, Any]]:
    """One row per agency (registered or holding dossiers): dossiers by status, open ones, the watch's counts."""
    names = _agency_names(session)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    rows = session.execute(
        select(Dossier.agency_code, Dossier.status, func.count()).group_by(Dossier.agency_code, Dossier.status)
    )
    for agency, status, count in rows:
        counts[agency][status] = int(count)
    found = counts_by_agency(watch)
    result = []
    for code in sorted(set(names) | set(counts)):
        by_status = counts.get(code, {})
        finished = sum(by_status.get(s, 0) for s in ("completed", "returned", "refused", "withdrawn"))
        result.append(
            {
                "code": code,
                "name": names.get(code, ""),
                "by_status": {s: by_status.get(s, 0) for s in FLOW_STATUSES},
                "total": sum(by_status.values()),
                "open": sum(by_status.values()) - finished,
                "watch": found.get(code, {}),
            }
        )
    return result


def _dossier_of(message: OutboxMessage) -> str | None:
    code = message.payload.get("dossier_code") if isinstance(message.payload, dict) else None
    return code if isinstance(code, str) else (message.ordering_key or "").split("#")[0] or None


def outbox_rows(session: Session, state: str | None, *, limit: int = 200) -> list[dict[str, Any]]:
    """The outbox's messages (of one state when given), newest first."""
    statement = select(OutboxMessage)
    if state is not None:
        statement = statement.where(OutboxMessage.state == state)
    rows = []
    for message in session.scalars(statement.order_by(OutboxMessage.id.desc()).limit(limit)):
        error = message.last_error or ""
        rows.append(
            {
                "id": message.id,
                "kind": message.kind,
                "target": message.target,
                "dossier_code": _dossier_of(message),
                "state": message.state,
                "attempts": message.attempts,
                "last_error": error if len(error) <= _ERROR_SHOWN else error[: _ERROR_SHOWN - 1] + "…",
                "created_at": iso(message.created_at),
                "updated_at": iso(message.updated_at),
            }
        )
    return rows


def agency_health(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Each registered agency with its outbox figures, its last delivery error and its polling state."""
    pending: dict[str, dict[str, Any]] = defaultdict(dict)
    undelivered = (outbox.PENDING, outbox.IN_FLIGHT, outbox.DEAD)
    grouped = session.execute(
        select(OutboxMessage.target, OutboxMessage.state, func.count())
        .where(OutboxMessage.state.in_(undelivered))
        .group_by(OutboxMessage.target, OutboxMessage.state)
    )
    for target, state, count in grouped:
        pending[target][state] = int(count)
    polls = {p.agency_code: p for p in session.scalars(select(AgencyPoll))}
    result = []
    for registration in list_agencies(session):
        code = registration.code
        figures = pending.get(code, {})
        failing = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.target == code, OutboxMessage.last_error.is_not(None))
            .where(OutboxMessage.state.in_(undelivered))
            .order_by(OutboxMessage.updated_at.desc())
            .limit(1)
        ).first()
        poll = polls.get(code)
        dead = figures.get(outbox.DEAD, 0)
        retrying = failing is not None and failing.state != outbox.DEAD
        result.append(
            {
                "code": code,
                "name": registration.name,
                "protocol": registration.protocol,
                "mode": registration.status_updates.mode,
                "procedures": list(registration.procedures),
                "pending": figures.get(outbox.PENDING, 0) + figures.get(outbox.IN_FLIGHT, 0),
                "dead": dead,
                "health": "error" if dead else ("degraded" if retrying or (poll and poll.last_error) else "ok"),
                "last_error": (failing.last_error or "")[:_ERROR_SHOWN] if failing is not None else None,
                "last_polled_at": iso(poll.last_polled_at) if poll else None,
                "poll_error": (poll.last_error or "")[:_ERROR_SHOWN] if poll and poll.last_error else None,
            }
        )
    return result


#: The report's figures the bar chart shows: (label, where in an agency's figures, colour).
REPORT_SERIES = (
    ("Tiếp nhận", ("received", "total"), "#1f5fa8"),
    ("Đúng hạn", ("completed", "on_time"), "#1b7a34"),
    ("Trễ hạn", ("completed", "late"), "#d98e04"),
    ("Đang quá hạn", ("in_progress", "overdue"), "#9e1b1b"),
    ("Từ chối", ("refused",), "#52606d"),
)


def _figure(figures: dict[str, Any], path: tuple[str, ...]) -> int:
    value: Any = figures
    for key in path:
        value = value.get(key, 0) if isinstance(value, dict) else 0
    return int(value) if isinstance(value, int | float) else 0


def report_bars(document: dict[str, Any]) -> dict[str, Any]:
    """The periodic report's figures per agency as bar chart rows, and the largest value (the chart's scale)."""
    rows = [
        {
            "name": agency.get("agency_name") or agency.get("agency_code"),
            "values": [(label, _figure(agency, path), colour) for label, path, colour in REPORT_SERIES],
        }
        for agency in document.get("agencies", [])
    ]
    top = max([value for row in rows for _, value, _ in row["values"]] + [1])
    return {"rows": rows, "top": top, "series": [(label, colour) for label, _, colour in REPORT_SERIES]}
