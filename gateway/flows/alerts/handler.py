"""Delivering ``alert.webhook`` messages: the finding (or its resolution), as enqueued, posted to
``[alerts] webhook_url``."""

from __future__ import annotations

import logging

from adapters.alerts import AlertNotifier
from gateway import messages
from gateway.workers import MessageView

__all__ = ["AlertWebhookHandler"]

log = logging.getLogger("gateway.dispatch")


class AlertWebhookHandler:
    """Posts each ``alert.webhook`` message through the alert notifier."""

    kinds = frozenset({messages.ALERT_WEBHOOK})

    def __init__(self, notifier: AlertNotifier) -> None:
        self.notifier = notifier

    async def handle(self, message: MessageView) -> None:
        status = await self.notifier.send(message.payload, message.idempotency_key)
        log.info(
            "alert sent",
            extra={
                "dossier_code": message.payload.get("dossier_code"),
                "condition": message.payload.get("condition"),
                "alert": message.payload.get("alert"),
                "status_code": status,
            },
        )

    async def aclose(self) -> None:
        await self.notifier.aclose()
