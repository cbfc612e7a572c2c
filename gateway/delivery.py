"""Outbox delivery: which flow's handler delivers each message kind.

Each flow contributes :class:`OutboxHandler` objects naming the message kinds they deliver; the composition root
gives them to one :class:`Deliveries`, which the outbox workers call for every claimed message. An unknown kind is a
permanent failure (the message is parked dead, never retried).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.orm import Session

from adapters.errors import PermanentError
from gateway.workers import MessageView, Preparer

__all__ = ["Deliveries", "OutboxHandler"]


class OutboxHandler(Protocol):
    """Delivers the messages of some kinds; raises :mod:`adapters.errors` to say whether a retry may help."""

    kinds: frozenset[str]

    async def handle(self, message: MessageView) -> None: ...

    async def aclose(self) -> None: ...


class Deliveries:
    """The workers' dispatcher: each message to the handler of its kind; counts deliveries by kind."""

    def __init__(self, handlers: Sequence[OutboxHandler]) -> None:
        self._handlers = list(handlers)
        self._by_kind: dict[str, OutboxHandler] = {}
        for handler in handlers:
            for kind in handler.kinds:
                if kind in self._by_kind:
                    raise ValueError(f"two handlers deliver {kind!r} messages")
                self._by_kind[kind] = handler
        self._closed = False
        #: Messages delivered successfully, by kind (for metrics and tests).
        self.counters: dict[str, int] = {}

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._by_kind)

    def prepare(self, session: Session, messages: list[MessageView]) -> list[MessageView]:
        """``messages`` read ahead by the handlers that can (:class:`gateway.workers.Preparer`), in the claim's unit of
        work; the others as they are, all in order."""
        groups: dict[int, tuple[Preparer, list[int]]] = {}
        for index, message in enumerate(messages):
            handler = self._by_kind.get(message.kind)
            if isinstance(handler, Preparer):
                groups.setdefault(id(handler), (handler, []))[1].append(index)
        result = list(messages)
        for preparer, indexes in groups.values():
            prepared = preparer.prepare(session, [messages[i] for i in indexes])
            for index, message in zip(indexes, prepared, strict=True):
                result[index] = message
        return result

    async def dispatch(self, message: MessageView) -> None:
        if self._closed:
            raise RuntimeError("the dispatcher is closed")  # retried by the next process
        handler = self._by_kind.get(message.kind)
        if handler is None:
            raise PermanentError(f"unknown message kind {message.kind!r}", upstream=message.target)
        await handler.handle(message)
        self.counters[message.kind] = self.counters.get(message.kind, 0) + 1

    async def aclose(self) -> None:
        """Close every handler's clients (the daemon's shutdown)."""
        self._closed = True
        for handler in self._handlers:
            await handler.aclose()
