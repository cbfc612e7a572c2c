"""The message bus: domain events go to the handlers registered for their type, inside the unit of work.

Handlers are registered once, by the composition root, in one mapping from event type to handlers. They run in the
transaction that raised the event, so the outbox messages they enqueue commit atomically with the change that caused
them (a crash never loses a follow-up); an event a handler raises is handled in the same pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from gateway.domain.events import DomainEvent

__all__ = ["EventHandler", "EventSource", "MessageBus", "merge_subscriptions"]

#: A handler takes the event and the unit of work it was raised in (:class:`gateway.unit_of_work.UnitOfWork`).
EventHandler = Callable[[Any, Any], None]


class EventSource(Protocol):
    """What the bus needs of a unit of work: the events raised and not yet handled."""

    events: list[DomainEvent]


Subscriptions = Mapping[type[DomainEvent], Sequence[EventHandler]]


def merge_subscriptions(*parts: Subscriptions) -> dict[type[DomainEvent], tuple[EventHandler, ...]]:
    """One mapping from several flows' subscriptions, handlers kept in the order given."""
    merged: dict[type[DomainEvent], list[EventHandler]] = {}
    for part in parts:
        for kind, handlers in part.items():
            merged.setdefault(kind, []).extend(handlers)
    return {kind: tuple(handlers) for kind, handlers in merged.items()}


class MessageBus:
    """Hands each event to the handlers registered for its type (and its base types)."""

    def __init__(self, subscriptions: Subscriptions | None = None) -> None:
        self._handlers = merge_subscriptions(subscriptions or {})

    def handlers_for(self, event: DomainEvent) -> tuple[EventHandler, ...]:
        found: list[EventHandler] = []
        for kind in type(event).__mro__:
            found.extend(self._handlers.get(kind, ()))
        return tuple(found)

    def handle(self, uow: EventSource) -> None:
        """Handle every event ``uow`` collected, and the events those handlers raise, until none is left."""
        while uow.events:
            event = uow.events.pop(0)
            for handler in self.handlers_for(event):
                handler(event, uow)


#: A bus with no subscriber: changes are recorded, nothing follows (tests, tools).
QUIET = MessageBus()
