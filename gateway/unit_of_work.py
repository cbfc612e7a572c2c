"""The unit of work: one database transaction, the domain events raised in it, and the bus that handles them.

A use case runs as ``await in_unit(db, bus, work)``: ``work(uow)`` changes rows through ``uow.session`` and raises
events with :meth:`UnitOfWork.emit`; before the transaction commits, the bus hands every event to its handlers in
the same transaction. Rows, history, audit entries and outbox messages land together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.orm import Session

from gateway.bus import MessageBus
from gateway.domain.events import DomainEvent
from gateway.store.database import Database

__all__ = ["UnitOfWork", "in_unit", "unit"]

T = TypeVar("T")


@dataclass
class UnitOfWork:
    """The session of one transaction and the events raised in it, not yet handled."""

    session: Session
    bus: MessageBus
    events: list[DomainEvent] = field(default_factory=list)

    def emit(self, event: DomainEvent) -> None:
        self.events.append(event)

    def publish(self) -> None:
        """Hand the events raised so far to the bus (in this transaction)."""
        self.bus.handle(self)


def unit(bus: MessageBus, work: Callable[[UnitOfWork], T]) -> Callable[[Session], T]:
    """``work`` as a function of a session: its events are handled before the transaction commits."""

    def run(session: Session) -> T:
        uow = UnitOfWork(session, bus)
        result = work(uow)
        uow.publish()
        return result

    return run


async def in_unit(db: Database, bus: MessageBus, work: Callable[[UnitOfWork], T], *, short: bool = False) -> T:
    """Run ``work`` in one transaction that writes; events handled, then committed. ``short``: a few statements about
    one dossier, run on the event loop's thread when SQLite's write lock is free (:meth:`Database.write`)."""
    return await db.write(unit(bus, work), short=short)
