"""The deadline watch's periodic job: each new finding becomes one ``alert.webhook`` outbox message.

Every ``[watch] interval_seconds`` the watch is read (:func:`gateway.services.watch.watch_items`) and each finding is
enqueued with the idempotency key ``<dossier code>:alert:<condition>`` (``question:<id>:alert:<condition>`` for an
unanswered question): the outbox remembers what was sent, so a
dossier's condition is alerted once, by one process, however often the job runs and however many processes run it.
The outbox then delivers it with its retries and dead letters, like any other upstream.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from gateway import messages, outbox
from gateway.periodic import PeriodicJob
from gateway.sections import AlertsSection, WatchSection
from gateway.services.context import Context
from gateway.services.watch import WatchItem, watch_items
from gateway.store.models import utcnow

__all__ = ["alert_key", "enqueue_alerts", "periodic_jobs", "scan"]

log = logging.getLogger("gateway.alerts")


def alert_key(item: WatchItem) -> str:
    """The idempotency key of ``item``'s alert: one per dossier (or question) and condition."""
    if item.question_id is not None:
        return f"question:{item.question_id}:alert:{item.condition.value}"
    return outbox.message_key(item.dossier_code, f"alert:{item.condition.value}")


def enqueue_alerts(session: Session, items: list[WatchItem], now: datetime) -> int:
    """Enqueue the alerts of ``items`` not enqueued before; how many are new."""
    new = 0
    for item in items:
        key = alert_key(item)
        if outbox.find_by_key(session, key) is not None:
            continue
        outbox.enqueue(
            session,
            kind=messages.ALERT_WEBHOOK,
            target=messages.ALERTS_TARGET,
            payload=item.alert_body(now),
            idempotency_key=key,
        )
        new += 1
    return new


async def scan(ctx: Context, settings: WatchSection, now: datetime | None = None) -> int:
    """Read the watch at ``now`` and enqueue the alerts not sent yet; how many were enqueued."""
    now = now or utcnow()
    near_due = timedelta(hours=settings.near_due_hours)
    items = await ctx.db.run(functools.partial(watch_items, calendar=ctx.calendar, now=now, near_due=near_due))
    if not items:
        return 0
    new = await ctx.db.run(functools.partial(enqueue_alerts, items=items, now=now))
    if new:
        log.info("deadline watch alerts queued", extra={"alerts": new, "findings": len(items)})
    return new


def periodic_jobs(
    ctx: Context, alerts: AlertsSection, watch: WatchSection, *, clock: Callable[[], datetime] = utcnow
) -> list[PeriodicJob]:
    """The watch's alert job, every ``[watch] interval_seconds`` (none without ``[alerts] webhook_url``)."""
    if alerts.webhook_url is None:
        return []

    async def run() -> int:
        return await scan(ctx, watch, clock())

    return [PeriodicJob("deadline-watch", watch.interval_seconds, run)]
