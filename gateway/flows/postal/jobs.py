"""The tracking poll: shipments not heard of for ``[postal] poll_after_seconds`` are asked about.

Every ``poll_interval_seconds``, open shipments with an order code and no news are claimed (another process polling
meanwhile skips them), their events read from the postal service and applied like the webhook's; a failed call is
logged and the shipment waits for the next round.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

from adapters.errors import UpstreamError
from adapters.postal import PostalService
from gateway.flows.postal.settings import PostalSettings
from gateway.periodic import PeriodicJob
from gateway.services.context import Context
from gateway.services.tracking import apply_tracked, claim_stale
from gateway.store.models import utcnow
from gateway.unit_of_work import in_unit

__all__ = ["periodic_jobs", "poll_tracking"]

log = logging.getLogger("gateway.shipments")


async def poll_tracking(
    ctx: Context, settings: PostalSettings, client: PostalService, now: datetime | None = None, *, limit: int = 50
) -> int:
    """Track the open shipments not heard of for ``poll_after_seconds``; how many new events were applied."""
    now = now or utcnow()
    after = timedelta(seconds=settings.poll_after_seconds)
    codes = await ctx.db.write(functools.partial(claim_stale, now=now, after=after, limit=limit))
    applied = 0
    for order_code in codes:
        try:
            events = await client.track(order_code)
        except (UpstreamError, ValueError) as exc:
            log.warning("postal tracking failed", extra={"order_code": order_code, "error": str(exc)})
            continue
        work = functools.partial(apply_tracked, order_code=order_code, events=events, calendar=ctx.calendar, now=now)
        applied += await in_unit(ctx.db, ctx.bus, work)
    if codes:
        log.info("postal tracking polled", extra={"shipments": len(codes), "applied": applied})
    return applied


def periodic_jobs(ctx: Context, settings: PostalSettings | None, client: PostalService | None) -> list[PeriodicJob]:
    """The tracking poll, every ``[postal] poll_interval_seconds`` (none when the integration is off)."""
    if settings is None or client is None:
        return []
    return [
        PeriodicJob(
            "postal-tracking", settings.poll_interval_seconds, functools.partial(poll_tracking, ctx, settings, client)
        )
    ]
