"""The periodic transaction query: the provider is asked about pending payments whose notification never came.

Every ``[payment] query_interval_seconds``, pending payments older than ``query_after_minutes`` and not asked about
for an interval are claimed (one process wins each) and queried (``querydr``); a paid answer is applied exactly as a
notification would be (idempotent), a failed one or one past its expiry marks the payment failed (and renews it
while the dossier awaits its fees). Each payment is asked of its own provider (``Payment.provider``); without the
VNPay-style provider configured (the national platform only) it is never asked, and its payments are left alone.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session

from adapters.errors import UpstreamError
from adapters.payment.port import PaymentProvider
from gateway.flows.payment.settings import PaymentSettings
from gateway.periodic import PeriodicJob
from gateway.services.context import Context
from gateway.services.payments import PENDING, SignPayment, online_payment
from gateway.services.settlement import settle_query
from gateway.store.models import Payment, utcnow

__all__ = ["QUERY_BATCH", "periodic_jobs", "query_pending"]

log = logging.getLogger("gateway.fees")

#: How many pending payments one run of the query job looks at.
QUERY_BATCH = 100


def _due_for_query(
    session: Session, now: datetime, settings: PaymentSettings, providers: list[str] | None
) -> list[tuple[int, str, str | None, str]]:
    created_before = now - timedelta(minutes=settings.query_after_minutes)
    checked_before = now - timedelta(seconds=settings.query_interval_seconds)
    rows = session.execute(
        select(Payment.id, Payment.reference, Payment.details, Payment.provider)
        .where(
            Payment.status == PENDING,
            Payment.created_at <= created_before,
            or_(Payment.last_checked_at.is_(None), Payment.last_checked_at <= checked_before),
            *([] if providers is None else [Payment.provider.in_(providers)]),
        )
        .order_by(Payment.id)
        .limit(QUERY_BATCH)
    ).all()
    return [(row.id, row.reference, (row.details or {}).get("create_date"), row.provider) for row in rows]


def _claim(session: Session, payment_id: int, now: datetime, settings: PaymentSettings) -> bool:
    """Take one payment's query for this run (compare-and-set on ``last_checked_at``: one process wins)."""
    checked_before = now - timedelta(seconds=settings.query_interval_seconds)
    statement = (
        update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.status == PENDING,
            or_(Payment.last_checked_at.is_(None), Payment.last_checked_at <= checked_before),
        )
        .values(last_checked_at=now)
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], session.execute(statement))  # an UPDATE gives a cursor result
    return result.rowcount == 1


async def query_pending(
    ctx: Context,
    settings: PaymentSettings | None,
    provider: PaymentProvider | None,
    now: datetime | None = None,
    *,
    sign: SignPayment | None,
    others: Mapping[str, PaymentProvider] | None = None,
) -> dict[str, int]:
    """One run of the query job: ask the provider about pending payments with no news; outcomes counted.

    The provider is asked with the payment's creation date (``transaction_date``: ``vnp_CreateDate``); ``sign``
    signs the payment that renews a failed one. A payment of another provider (``Payment.provider``) is asked of
    ``others[provider]`` when given. Without the VNPay-style ``provider`` (only the national platform configured)
    only the payments of ``others`` are asked about.
    """
    counts: dict[str, int] = {}
    others = others or {}
    if settings is None or sign is None or (provider is None and not others):
        return counts
    now = now or utcnow()
    online = online_payment(settings, sign)
    providers = None if provider is not None else sorted(others)
    due = await ctx.db.run(functools.partial(_due_for_query, now=now, settings=settings, providers=providers))
    for payment_id, reference, create_date, name in due:
        asked = others.get(name, provider)
        if asked is None:
            continue
        claimed = await ctx.db.run(functools.partial(_claim, payment_id=payment_id, now=now, settings=settings))
        if not claimed:
            continue
        try:
            status = await asked.query(reference, transaction_date=create_date)
        except UpstreamError as exc:
            log.warning("payment query failed", extra={"reference": reference, "error": f"{type(exc).__name__}: {exc}"})
            counts["error"] = counts.get("error", 0) + 1
            continue
        outcome = await settle_query(ctx, reference, status, online=online, now=now)
        counts[outcome] = counts.get(outcome, 0) + 1
    if due:
        log.info("payment queries done", extra={"counts": counts})
    return counts


def periodic_jobs(
    ctx: Context,
    settings: PaymentSettings | None,
    provider: PaymentProvider | None,
    *,
    sign: SignPayment | None,
    others: Mapping[str, PaymentProvider] | None = None,
) -> list[PeriodicJob]:
    """The transaction query job every ``[payment] query_interval_seconds`` (none when payment is off); without the
    VNPay-style ``provider`` it asks ``others`` only (none when there are none either)."""
    if settings is None or sign is None or (provider is None and not others):
        return []
    run = functools.partial(query_pending, ctx, settings, provider, sign=sign, others=others)
    return [PeriodicJob("payment-query", settings.query_interval_seconds, run)]
