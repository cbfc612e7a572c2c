"""The deadline watch's periodic job: each new finding becomes one ``alert.webhook`` outbox message, and each finding
gone becomes one resolution.

Every ``[watch] interval_seconds`` the watch is read (:func:`gateway.services.watch.watch_items`) and each finding is
enqueued with the idempotency key ``<dossier code>:alert:<condition>`` (``question:<id>:alert:<condition>`` for an
unanswered question): the outbox remembers what was sent, so a
dossier's condition is alerted once, by one process, however often the job runs and however many processes run it.
The outbox then delivers it with its retries and dead letters, like any other upstream.

An alert enqueued (whatever its delivery state: pending, in flight, delivered or dead) whose finding is no longer among
the current ones (the dossier was received, moved on, finished, went from near due to overdue; the question was
answered) is resolved: one more message, key ``<alert key>:resolved``, the alert's body with ``"alert": "resolved"``
and ``resolved_at``. The alert and its resolution share the ordering key (the alert key), so the resolution is never
delivered before its alert: it waits while the alert is pending, in flight or dead. Alerts enqueued more than
:data:`RESOLVE_WITHIN` ago are no longer looked at.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from gateway import messages, outbox
from gateway.periodic import PeriodicJob
from gateway.sections import AlertsSection, WatchSection
from gateway.services.context import Context
from gateway.services.watch import WatchItem, watch_items
from gateway.store.models import OutboxMessage, utcnow

__all__ = [
    "RESOLVED_SUFFIX",
    "RESOLVE_WITHIN",
    "ScanResult",
    "alert_key",
    "enqueue_alerts",
    "periodic_jobs",
    "resolution_key",
    "resolve_alerts",
    "scan",
]

log = logging.getLogger("gateway.alerts")

#: The end of a resolution's idempotency key (``<alert key>:resolved``).
RESOLVED_SUFFIX = ":resolved"
#: How far back an alert still open is resolved: older alerts are left as they are.
RESOLVE_WITHIN = timedelta(days=400)


@dataclass(frozen=True)
class ScanResult:
    """What one run of the watch's job enqueued: new alerts and resolutions of alerts whose finding is gone."""

    fired: int = 0
    resolved: int = 0


def alert_key(item: WatchItem) -> str:
    """The idempotency key of ``item``'s alert: one per dossier (or question) and condition."""
    if item.question_id is not None:
        return f"question:{item.question_id}:alert:{item.condition.value}"
    return outbox.message_key(item.dossier_code, f"alert:{item.condition.value}")


def resolution_key(key: str) -> str:
    """The idempotency key of the resolution of the alert enqueued with ``key``."""
    return f"{key}{RESOLVED_SUFFIX}"


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
            ordering_key=key,
        )
        new += 1
    return new


def resolve_alerts(session: Session, items: list[WatchItem], now: datetime) -> int:
    """Enqueue the resolution of every alert enqueued since ``now - RESOLVE_WITHIN``, not resolved yet, whose finding
    is not among ``items``; how many.

    Only alerts that carry their own key as ordering key are resolved: every alert since resolutions exist does, so
    the resolution is delivered after its alert; alerts of older versions (no ordering key) are left as they were
    rather than resolved all at once after an upgrade."""
    current = {alert_key(item) for item in items}
    alert, resolution = aliased(OutboxMessage), aliased(OutboxMessage)
    statement = (
        select(alert.idempotency_key, alert.target, alert.payload)
        .outerjoin(resolution, resolution.idempotency_key == alert.idempotency_key.concat(RESOLVED_SUFFIX))
        .where(
            alert.kind == messages.ALERT_WEBHOOK,
            alert.created_at >= now - RESOLVE_WITHIN,
            alert.ordering_key == alert.idempotency_key,
            resolution.id.is_(None),
        )
        .order_by(alert.id)
    )
    gone = [row for row in session.execute(statement) if row.idempotency_key not in current]
    resolved_at = now.isoformat(timespec="seconds")
    for row in gone:
        payload: dict[str, Any] = {**row.payload, "alert": "resolved", "resolved_at": resolved_at}
        outbox.add(
            session,
            kind=messages.ALERT_WEBHOOK,
            target=row.target,
            payload=payload,
            idempotency_key=resolution_key(row.idempotency_key),
            ordering_key=row.idempotency_key,
        )
    return len(gone)


def _record(session: Session, items: list[WatchItem], now: datetime) -> ScanResult:
    resolved = resolve_alerts(session, items, now)
    return ScanResult(fired=enqueue_alerts(session, items, now), resolved=resolved)


async def scan(ctx: Context, settings: WatchSection, now: datetime | None = None) -> ScanResult:
    """Read the watch at ``now``, enqueue the alerts not sent yet and resolve those whose finding is gone."""
    now = now or utcnow()
    near_due = timedelta(hours=settings.near_due_hours)
    items = await ctx.db.run(functools.partial(watch_items, calendar=ctx.calendar, now=now, near_due=near_due))
    result = await ctx.db.run(functools.partial(_record, items=items, now=now))
    if result.fired or result.resolved:
        log.info(
            "deadline watch alerts queued",
            extra={"alerts": result.fired, "resolved": result.resolved, "findings": len(items)},
        )
    return result


def periodic_jobs(
    ctx: Context, alerts: AlertsSection, watch: WatchSection, *, clock: Callable[[], datetime] = utcnow
) -> list[PeriodicJob]:
    """The watch's alert job, every ``[watch] interval_seconds`` (none without ``[alerts] webhook_url``)."""
    if alerts.webhook_url is None:
        return []

    async def run() -> ScanResult:
        return await scan(ctx, watch, clock())

    return [PeriodicJob("deadline-watch", watch.interval_seconds, run)]
