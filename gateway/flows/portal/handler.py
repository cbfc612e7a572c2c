"""Delivering ``portal.webhook`` messages (the change, with its national status code) and ``portal.question_answer``
messages (an agency's answer to a citizen's question) to the portal's webhook."""

from __future__ import annotations

import logging

from adapters.portal import PortalNotifier
from gateway import messages
from gateway.domain.status import national_code
from gateway.workers import MessageView

__all__ = ["PortalWebhookHandler"]

log = logging.getLogger("gateway.dispatch")


class PortalWebhookHandler:
    """Posts each ``portal.webhook`` message through the portal notifier."""

    kinds = frozenset({messages.PORTAL_WEBHOOK, messages.PORTAL_QUESTION_ANSWER})

    def __init__(self, notifier: PortalNotifier) -> None:
        self.notifier = notifier

    async def handle(self, message: MessageView) -> None:
        if message.kind == messages.PORTAL_QUESTION_ANSWER:
            status = await self.notifier.notify(message.payload, message.idempotency_key)
            question = message.payload.get("question")
            question_id = question.get("id") if isinstance(question, dict) else None
            log.info("portal told of an answer", extra={"question_id": question_id, "status_code": status})
            return
        body = dict(message.payload)
        event = body.get("event")
        if isinstance(event, dict) and isinstance(event.get("status"), str):
            try:
                body["event"] = {**event, "national_status_code": national_code(event["status"])}
            except (KeyError, ValueError):
                pass
        status = await self.notifier.notify(body, message.idempotency_key)
        log.info("portal notified", extra={"dossier_code": body.get("dossier_code"), "status_code": status})

    async def aclose(self) -> None:
        await self.notifier.aclose()
