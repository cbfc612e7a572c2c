"""What ``/metrics`` reads from the database at each scrape: the outbox by upstream and state, and the deadline watch
by agency (every registered agency listed, so a series reads 0 rather than vanishing when its last dossier is done).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import outbox
from ..domain.calendar import OfficeCalendar
from ..domain.watch import Condition
from ..metrics import Snapshot
from ..services.watch import counts_by_agency, watch_items
from ..store.models import Agency, OutboxMessage

__all__ = ["UNDELIVERED", "outbox_by_upstream", "snapshot"]

#: The states of messages still to deliver.
UNDELIVERED = (outbox.PENDING, outbox.IN_FLIGHT, outbox.DEAD)


def outbox_by_upstream(session: Session, now: datetime) -> dict[tuple[str, str], tuple[int, float]]:
    """``(upstream, state) -> (messages, age in seconds of the oldest)`` for the messages still to deliver."""
    rows = session.execute(
        select(OutboxMessage.target, OutboxMessage.state, func.count(), func.min(OutboxMessage.created_at))
        .where(OutboxMessage.state.in_(UNDELIVERED))
        .group_by(OutboxMessage.target, OutboxMessage.state)
    ).all()
    result: dict[tuple[str, str], tuple[int, float]] = {}
    for target, state, count, oldest in rows:
        age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
        result[(target, state)] = (int(count), age)
    return result


def snapshot(session: Session, calendar: OfficeCalendar, now: datetime, *, near_due: timedelta) -> Snapshot:
    """The database's figures for one scrape."""
    watch = counts_by_agency(watch_items(session, calendar, now, near_due=near_due))
    for code in session.scalars(select(Agency.code)):
        watch.setdefault(code, dict.fromkeys((c.value for c in Condition), 0))
    return Snapshot(
        outbox_states=outbox.stats(session), outbox_by_upstream=outbox_by_upstream(session, now), watch=watch
    )
