"""The national portal's reaction to a dossier's changes: every history entry queues a ``national.sync`` message.

Each :class:`~gateway.domain.events.ChangeRecorded` (intake included) enqueues, in the transaction that recorded it,
one message with payload ``{"dossier_code", "history_id"}``, target ``national_portal``, the dossier's own national
lane as ordering key and step ``national:<history id>``. When the integration is off, the intake records once in
the history that the sync is skipped (a step ``national_sync_skipped``); later changes add nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from gateway import messages, outbox
from gateway.bus import EventHandler
from gateway.domain.events import ChangeRecorded, DomainEvent, RatingGiven
from gateway.flows.national.records import STEP_SKIPPED, is_local_step_name
from gateway.services.changes import has_step, record_step
from gateway.store.models import Dossier, OutboxMessage, utcnow
from gateway.unit_of_work import UnitOfWork

__all__ = [
    "SKIPPED_NOTE",
    "enqueue_rating",
    "enqueue_sync",
    "ordering_key",
    "skip_at_intake",
    "subscriptions",
    "sync_change",
]

#: The note of the history step recorded at intake when the integration is off.
SKIPPED_NOTE = "National portal sync skipped: [national_portal] base_url is not configured"


def ordering_key(dossier_code: str) -> str:
    """The dossier's national sync lane: its syncs go in order among themselves, and neither wait behind the
    agency's messages (a dead delivery to the agency must not keep the portal uninformed) nor hold them back."""
    return f"{dossier_code}#national"


def enqueue_sync(
    session: Session, dossier_code: str, history_id: int, *, resync: bool = False, full: bool = False
) -> OutboxMessage:
    """A ``national.sync`` message bringing the portal up to history entry ``history_id`` (in the caller's unit of
    work). ``resync`` sends the dossier again whatever the portal is known to hold (``full``: its whole history)."""
    payload: dict[str, Any] = {"dossier_code": dossier_code, "history_id": history_id}
    step = f"national:{history_id}"
    if resync:
        payload.update(resync=True, full=full)
        step = f"national:{history_id}:resync:{utcnow().strftime('%Y%m%dT%H%M%S.%fZ')}"
    return outbox.enqueue(
        session,
        kind=messages.NATIONAL_SYNC,
        target=messages.NATIONAL_TARGET,
        payload=payload,
        idempotency_key=outbox.message_key(dossier_code, step),
        ordering_key=ordering_key(dossier_code),
    )


def sync_change(event: ChangeRecorded, uow: UnitOfWork) -> None:
    """The integration on: a sync of the recorded entry (a step about the gateway itself is not sent)."""
    if is_local_step_name(event.step):
        return
    enqueue_sync(uow.session, event.dossier_code, event.history_id)


def enqueue_rating(event: RatingGiven, uow: UnitOfWork) -> None:
    """A ``national.rating`` message for the rating just stored, in the dossier's national lane (after its syncs, so
    the portal has the dossier when its rating arrives)."""
    outbox.enqueue(
        uow.session,
        kind=messages.NATIONAL_RATING,
        target=messages.NATIONAL_TARGET,
        payload={"dossier_code": event.dossier_code, "rating_id": event.rating_id},
        idempotency_key=outbox.message_key(event.dossier_code, "rating"),
        ordering_key=ordering_key(event.dossier_code),
    )


def skip_at_intake(event: ChangeRecorded, uow: UnitOfWork) -> None:
    """The integration off: the intake says once in the history that the sync is skipped."""
    if not event.is_intake:
        return
    dossier = uow.session.get(Dossier, event.dossier_id)
    if dossier is None or has_step(dossier, STEP_SKIPPED):
        return
    record_step(uow.session, dossier, step=STEP_SKIPPED, at=event.at, actor="gateway", note=SKIPPED_NOTE)


def subscriptions(enabled: bool) -> dict[type[DomainEvent], list[EventHandler]]:
    """The flow's handlers for the bus: syncs (and ratings) when ``[national_portal]`` is configured, the skipped
    step when not (a rating is then kept by the gateway only)."""
    if not enabled:
        return {ChangeRecorded: [skip_at_intake]}
    return {ChangeRecorded: [sync_change], RatingGiven: [enqueue_rating]}
