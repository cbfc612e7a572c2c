"""The ``sms.send`` outbox handler: one text to one number through the SMS gateway."""

from __future__ import annotations

import logging
from typing import Protocol

from adapters.errors import PermanentError
from gateway import messages
from gateway.workers import MessageView

__all__ = ["SmsSendHandler", "SmsSender"]

log = logging.getLogger("gateway.sms")


class SmsSender(Protocol):
    """What the flow needs of the SMS gateway's client."""

    async def send(self, to: str, text: str) -> None: ...

    async def aclose(self) -> None: ...


class SmsSendHandler:
    """Sends each ``sms.send`` message's text to its number."""

    kinds = frozenset({messages.SMS_SEND})

    def __init__(self, sender: SmsSender) -> None:
        self.sender = sender

    async def handle(self, message: MessageView) -> None:
        to, text = message.payload.get("to"), message.payload.get("text")
        if not isinstance(to, str) or not isinstance(text, str):
            raise PermanentError("an sms.send message without its number or text", upstream=messages.SMS_TARGET)
        await self.sender.send(to, text)
        log.info("SMS reply sent", extra={"message_id": message.id, "chars": len(text)})

    async def aclose(self) -> None:
        await self.sender.aclose()
