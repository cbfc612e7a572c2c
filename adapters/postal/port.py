"""What the gateway needs from the public postal service, whatever its client (the port).

:class:`PostalService` lists the calls the postal flow makes: order a pickup or a delivery, and read an order's
tracking events; :class:`~adapters.postal.client.PostalClient` implements it over HTTP. Every failure is an
:mod:`adapters.errors` error, or a ``ValueError`` for a request the client refuses to send.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from adapters.postal.client import Order, OrderKind
from adapters.postal.webhook import TrackingEvent

__all__ = ["PostalService"]


@runtime_checkable
class PostalService(Protocol):
    """The public postal service."""

    async def create_order(
        self,
        kind: OrderKind,
        dossier_code: str,
        sender: Mapping[str, Any],
        receiver: Mapping[str, Any],
        items: Sequence[Mapping[str, Any]],
        idempotency_key: str,
    ) -> Order:
        """Order a pickup or a delivery; a repeated ``idempotency_key`` returns the same order."""
        ...

    async def track(self, order_code: str) -> list[TrackingEvent]:
        """The order's tracking events, oldest first."""
        ...
