"""Delivering ``postal.order`` messages: the pickup or delivery ordered from the postal service, its code stored.

The handler reads what the order needs in one unit of work, calls the postal service outside any transaction (with
the message's idempotency key, so a retried message never orders twice), then stores the order code and records
the order's history step in another unit of work whose events the flows hear of.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime

from adapters.errors import PermanentError
from adapters.postal import PostalService
from gateway import messages
from gateway.flows.postal.jobs import poll_tracking
from gateway.flows.postal.orders import UPSTREAM, prepare_order, store_order
from gateway.flows.postal.settings import PostalSettings
from gateway.services.context import Context
from gateway.services.tracking import DELIVERY, PICKUP
from gateway.store.models import utcnow
from gateway.unit_of_work import in_unit
from gateway.workers import MessageView

__all__ = ["PostalOrderHandler"]


class PostalOrderHandler:
    """``postal.order`` messages through a :class:`~adapters.postal.port.PostalService`, and the tracking poll.

    ``close``, when given, releases the client's connections when the handler is closed (the daemon's shutdown).
    """

    kinds = frozenset({messages.POSTAL_ORDER})

    def __init__(
        self,
        ctx: Context,
        client: PostalService,
        settings: PostalSettings,
        *,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.client = client
        self.settings = settings
        self._close = close

    async def handle(self, message: MessageView) -> None:
        code = message.payload.get("dossier_code")
        kind = message.payload.get("kind")
        if not isinstance(code, str) or not code or kind not in (PICKUP, DELIVERY):
            raise PermanentError("the message names no dossier or no order kind", upstream=UPSTREAM)
        prepare = functools.partial(prepare_order, code=code, kind=kind, office=self.settings.office)
        request = await self.ctx.db.run(prepare)
        if request is None:
            return
        try:
            order = await self.client.create_order(
                kind, code, request.sender, request.receiver, request.items, message.idempotency_key
            )
        except ValueError as exc:
            raise PermanentError(f"cannot order: {exc}", upstream=UPSTREAM) from None
        store = functools.partial(
            store_order, code=code, kind=kind, order=order, calendar=self.ctx.calendar, now=utcnow()
        )
        await in_unit(self.ctx.db, self.ctx.bus, store)

    async def poll(self, now: datetime | None = None, limit: int = 50) -> int:
        """Track the open shipments not heard of for ``poll_after_seconds``; how many new events were applied."""
        return await poll_tracking(self.ctx, self.settings, self.client, now, limit=limit)

    async def aclose(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            await close()
