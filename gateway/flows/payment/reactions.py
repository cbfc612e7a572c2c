"""The payment flow's reaction to a dossier's changes: the payment is created when the fees fall due.

Fees fall due at intake when ``[payment] at_submission`` is true, and when an agency moves the dossier to
``fee_requested``; the payment (or a pending one still valid) is created in the transaction of that change. Without
``[payment] base_url`` the integration is off: the history says once that online payment was skipped
(``payment_skipped``; the applicant pays at the agency's counter).
"""

from __future__ import annotations

import logging

from gateway.bus import EventHandler
from gateway.config import ConfigError
from gateway.domain.events import ChangeRecorded, DomainEvent
from gateway.domain.status import Status
from gateway.flows.payment.settings import PaymentSettings
from gateway.services.changes import has_step, record_step
from gateway.services.payments import OnlinePayment, SignPayment, ensure_payment, online_payment, unpaid
from gateway.store.models import Dossier
from gateway.unit_of_work import UnitOfWork

__all__ = ["SKIPPED_NOTE", "STEP_SKIPPED", "subscriptions"]

log = logging.getLogger("gateway.fees")

#: The history step recorded when fees fall due and payment is off.
STEP_SKIPPED = "payment_skipped"
SKIPPED_NOTE = "Online fee payment skipped: the payment integration is off ([payment] base_url)"


def _fees_due(event: ChangeRecorded, uow: UnitOfWork) -> Dossier | None:
    """The dossier, when ``event`` makes unpaid fees due (intake, entering ``fee_requested``)."""
    requested = event.status == Status.FEE_REQUESTED and event.previous != Status.FEE_REQUESTED
    if not (requested or event.is_intake):
        return None
    dossier = uow.session.get(Dossier, event.dossier_id)
    if dossier is None or not unpaid(dossier):
        return None
    return dossier


def _skip(event: ChangeRecorded, uow: UnitOfWork) -> None:
    dossier = _fees_due(event, uow)
    if dossier is None or has_step(dossier, STEP_SKIPPED):
        return
    record_step(uow.session, dossier, step=STEP_SKIPPED, at=event.at, actor="payment", note=SKIPPED_NOTE)


def _creator(online: OnlinePayment) -> EventHandler:
    def create(event: ChangeRecorded, uow: UnitOfWork) -> None:
        dossier = _fees_due(event, uow)
        if dossier is None or (event.is_intake and not online.terms.at_submission):
            return
        try:
            ensure_payment(uow.session, dossier, online, event.recorded_at)
        except (ConfigError, ValueError) as exc:
            # The dossier's change must not fail for the payment's sake; the operator fixes the configuration.
            log.error("payment not created: %s", exc, extra={"dossier_code": dossier.code})

    return create


def subscriptions(
    settings: PaymentSettings | None, sign: SignPayment | None
) -> dict[type[DomainEvent], list[EventHandler]]:
    """The flow's handlers for the bus: payments created when ``[payment]`` is configured (``sign``: how the payer's
    URL is signed), the skipped step when it is not."""
    online = online_payment(settings, sign)
    return {ChangeRecorded: [_skip if online is None else _creator(online)]}
