"""The portal webhook's reaction to a recorded change: a ``portal.webhook`` message in the change's transaction."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gateway import messages, outbox
from gateway.bus import EventHandler
from gateway.domain.events import ChangeRecorded, DomainEvent
from gateway.domain.times import iso
from gateway.store.models import HistoryEntry
from gateway.unit_of_work import UnitOfWork

__all__ = ["enqueue_webhook", "subscriptions"]


def enqueue_webhook(session: Session, dossier_code: str, entry: HistoryEntry) -> None:
    """A ``portal.webhook`` message for history entry ``entry`` (flushed, so it has an id)."""
    outbox.enqueue(
        session,
        kind=messages.PORTAL_WEBHOOK,
        target=messages.PORTAL_TARGET,
        payload={
            "dossier_code": dossier_code,
            "event": {"status": entry.status, "at": iso(entry.at), "actor": entry.actor, "note": entry.note},
        },
        idempotency_key=outbox.message_key(dossier_code, f"webhook:{entry.id}"),
        ordering_key=dossier_code,
    )


def _on_change(event: ChangeRecorded, uow: UnitOfWork) -> None:
    entry = uow.session.get(HistoryEntry, event.history_id)
    if entry is not None:
        enqueue_webhook(uow.session, event.dossier_code, entry)


def subscriptions(enabled: bool) -> dict[type[DomainEvent], list[EventHandler]]:
    """The webhook's subscription when ``[portal] webhook_url`` is configured; none otherwise."""
    return {ChangeRecorded: [_on_change]} if enabled else {}
