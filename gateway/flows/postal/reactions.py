"""The postal flow's reaction to a dossier's changes: a pickup ordered at intake, a delivery on ``completed``.

When the applicant chose ``return_method = "post"``, the intake of a dossier whose originals must be checked asks
for a *pickup* (the originals brought to the one-stop office) and ``completed`` for a *delivery* (the result to the
applicant): a :class:`~gateway.store.models.Shipment` row (``requested``) and a ``postal.order`` message, in the
change's transaction. Without ``[postal] base_url`` each kind is recorded once as skipped (``postal_skipped``).

Fees before results: while a fee is unpaid (and the procedure does not have ``fees_after_result``), the delivery is
not ordered; the history says so once (``delivery_withheld``), and the payment of the last fee (``fee_paid`` on a
``completed`` dossier) orders it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import messages, outbox
from gateway.bus import EventHandler
from gateway.catalogue import get_procedure
from gateway.domain.dossier import unpaid_blocks_result
from gateway.domain.events import ChangeRecorded, DomainEvent
from gateway.domain.status import Status
from gateway.flows.postal.settings import PostalSettings
from gateway.services.changes import has_step, record_step
from gateway.services.payments import unpaid
from gateway.services.settlement import STEP_PAID
from gateway.services.tracking import ACTOR, DELIVERY, KIND_WORDS, PICKUP
from gateway.store.models import Dossier, Shipment
from gateway.unit_of_work import UnitOfWork

__all__ = ["STEP_SKIPPED", "STEP_WITHHELD", "enqueue_order", "subscriptions", "wanted_order"]

#: The history step recorded, once per kind, when an order is needed and the integration is off.
STEP_SKIPPED = "postal_skipped"
#: The history step recorded once when the result's delivery waits for the fees.
STEP_WITHHELD = "delivery_withheld"


def wanted_order(dossier: Dossier, event: ChangeRecorded) -> str | None:
    """The kind of order ``event`` calls for, if any (before the fees rule: see :func:`_withheld`)."""
    if dossier.return_method != "post":
        return None
    if event.step:
        paid_when_completed = event.step == STEP_PAID and event.status == Status.COMPLETED
        return DELIVERY if paid_when_completed else None
    if event.is_intake and event.status == Status.SUBMITTED and dossier.originals_check_required:
        return PICKUP
    if event.status == Status.COMPLETED and event.previous != Status.COMPLETED:
        return DELIVERY
    return None


def _withheld(session: Session, dossier: Dossier, kind: str) -> int:
    """The unpaid amount that holds the result's delivery back (0: nothing does)."""
    if kind != DELIVERY:
        return 0
    amount = sum(fee.amount for fee in unpaid(dossier))
    spec = get_procedure(session, dossier.procedure_code)
    waived = spec is not None and spec.fees_after_result
    return amount if unpaid_blocks_result(Status.RETURNED, amount, fees_after_result=waived) else 0


def _withhold(session: Session, dossier: Dossier, event: ChangeRecorded, amount: int) -> None:
    if has_step(dossier, STEP_WITHHELD):
        return
    note = f"Delivery of the result by post waits for the fees: {amount} VND unpaid"
    record_step(session, dossier, step=STEP_WITHHELD, at=event.at, actor=ACTOR, note=note, unpaid_amount=amount)
    _touch(dossier, event.recorded_at)


def enqueue_order(session: Session, dossier: Dossier, kind: str, now: datetime) -> None:
    """The shipment (``requested``) and the ``postal.order`` message of one order."""
    existing = session.scalars(
        select(Shipment).where(Shipment.dossier_id == dossier.id, Shipment.kind == kind)
    ).one_or_none()
    if existing is None:
        session.add(Shipment(dossier_id=dossier.id, kind=kind, status="requested", created_at=now, updated_at=now))
    outbox.enqueue(
        session,
        kind=messages.POSTAL_ORDER,
        target=messages.POSTAL_TARGET,
        payload={"dossier_code": dossier.code, "kind": kind},
        idempotency_key=outbox.message_key(dossier.code, f"postal:{kind}"),
        ordering_key=f"{dossier.code}#postal",  # its own lane: a failing agency never holds the result back
    )


def _dossier_wanting(event: ChangeRecorded, uow: UnitOfWork) -> tuple[Dossier, str] | None:
    if event.step and event.step != STEP_PAID:
        return None
    dossier = uow.session.get(Dossier, event.dossier_id)
    if dossier is None:
        return None
    kind = wanted_order(dossier, event)
    return None if kind is None else (dossier, kind)


def _order(event: ChangeRecorded, uow: UnitOfWork) -> None:
    wanted = _dossier_wanting(event, uow)
    if wanted is None:
        return
    dossier, kind = wanted
    amount = _withheld(uow.session, dossier, kind)
    if amount:
        _withhold(uow.session, dossier, event, amount)
    else:
        enqueue_order(uow.session, dossier, kind, event.recorded_at)


def _skip(event: ChangeRecorded, uow: UnitOfWork) -> None:
    wanted = _dossier_wanting(event, uow)
    if wanted is None:
        return
    dossier, kind = wanted
    if event.step or has_step(dossier, STEP_SKIPPED, kind=kind):
        return
    note = f"Postal {KIND_WORDS[kind]} not ordered: the postal integration is off ([postal] base_url)"
    record_step(uow.session, dossier, step=STEP_SKIPPED, at=event.at, actor=ACTOR, note=note, kind=kind)
    _touch(dossier, event.recorded_at)


def _touch(dossier: Dossier, now: datetime) -> None:
    """The dossier changed at ``now``: set unless it already says so (at intake it does), since setting the same
    value again would still send the row to the unit of work's next flush, a flush that writes nothing."""
    if dossier.updated_at != now:
        dossier.updated_at = now


def subscriptions(settings: PostalSettings | None) -> dict[type[DomainEvent], list[EventHandler]]:
    """The flow's handlers for the bus: orders when ``[postal]`` is configured, the skipped steps when not."""
    return {ChangeRecorded: [_skip if settings is None else _order]}
