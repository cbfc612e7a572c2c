"""Settling an online payment on the provider's word: a verified notification (IPN) or a transaction query's answer.

A success marks the payment and its fees paid, records the history step ``fee_paid`` (resuming a ``fee_requested``
dossier to the status it had before the wait, so the wait does not count), tells the agency through the outbox
(``agency.fee_paid``) and writes an audit entry; the change raises ``ChangeRecorded`` like every other. A failure
marks the payment failed (an audit entry too) and makes the next one while the dossier still awaits its fees.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.payment.port import Notification, PaymentState, PaymentStatus
from adapters.payment.vnpay_wire import IpnCode, decide_ipn
from gateway import audit, messages, outbox
from gateway.config import ConfigError
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.status import Status, check_transition, resume_status
from gateway.services.changes import lock_dossier, record_change, resumable_status
from gateway.services.context import Context
from gateway.services.payments import (
    FAILED,
    PAID,
    PENDING,
    OnlinePayment,
    awaits_fees,
    ensure_payment,
    local_payment,
    unpaid,
)
from gateway.store.models import Dossier, Payment
from gateway.unit_of_work import UnitOfWork, in_unit

__all__ = [
    "STEP_PAID",
    "find_payment",
    "record_notification",
    "record_query",
    "settle_notification",
    "settle_query",
]

log = logging.getLogger("gateway.fees")

#: The history step of a payment received (``details["step"]``).
STEP_PAID = "fee_paid"
#: How long past its expiry a payment the provider does not hold as paid stays pending, without ``[payment]``.
DEFAULT_QUERY_AFTER_MINUTES = 15


def find_payment(session: Session, reference: str) -> Payment | None:
    """The payment ``reference`` with its dossier locked, then itself (locks in the order dossier, payment)."""
    found = session.scalars(select(Payment).where(Payment.reference == reference)).one_or_none()
    if found is None:
        return None
    lock_dossier(session, found.dossier_id)
    statement = select(Payment).where(Payment.id == found.id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return session.scalars(statement.execution_options(populate_existing=True)).one()


def _mark_paid(
    payment: Payment, dossier: Dossier, *, when: datetime, transaction_no: str | None, source: str
) -> list[str]:
    """The payment and its fees paid; the codes of the fees this payment settled."""
    payment.status = PAID
    payment.paid_at = when
    payment.provider_transaction = transaction_no
    payment.details = {**(payment.details or {}), "confirmed_by": source}
    codes = set(payment.fee_codes or [])
    settled = []
    for fee in dossier.fees:
        if fee.code in codes and not fee.paid:
            fee.paid = True
            fee.paid_at = when
            settled.append(fee.code)
    if not settled:
        log.warning(
            "payment received for fees already paid: refund to be arranged",
            extra={"dossier_code": dossier.code, "reference": payment.reference},
        )
    return settled


def _settle(
    uow: UnitOfWork,
    payment: Payment,
    *,
    paid_at: datetime | None,
    transaction_no: str | None,
    source: str,
    calendar: OfficeCalendar,
    now: datetime,
) -> None:
    """Mark ``payment`` and its fees paid; history step, resumption, the agency told, audit."""
    session = uow.session
    dossier = session.get(Dossier, payment.dossier_id)  # locked by find_payment
    assert dossier is not None
    # The provider's time of payment is kept on the payment and the fees (reconciliation goes by it); the history
    # records when the gateway learnt of it, in its own clock, as for every other change.
    settled = _mark_paid(payment, dossier, when=paid_at or now, transaction_no=transaction_no, source=source)
    source_status = Status(dossier.status)
    target = source_status
    details: dict[str, Any] = {"step": STEP_PAID, "payment": payment.reference, "amount": payment.amount}
    if source_status is Status.FEE_REQUESTED and not unpaid(dossier):
        target = resume_status(resumable_status(dossier))
        check_transition(source_status, target)
        details["from"] = source_status.value
    entry = record_change(
        uow,
        dossier,
        status=target,
        at=now,
        actor=f"payment:{payment.provider}",
        note=f"Fees paid online: {payment.amount} VND (reference {payment.reference})",
        details=details,
        calendar=calendar,
        now=now,
    )
    uow.publish()  # the change's own messages (portal, national portal) go before the agency's
    outbox.enqueue(
        session,
        kind=messages.AGENCY_FEE_PAID,
        target=dossier.agency_code,
        payload={"dossier_code": dossier.code, "agency_code": dossier.agency_code, "reference": payment.reference},
        idempotency_key=outbox.message_key(dossier.code, f"fee_paid:{payment.reference}"),
        ordering_key=dossier.code,
    )
    audit_details = {
        "reference": payment.reference,
        "amount": payment.amount,
        "fees": settled,
        "source": source,
        "to": target.value,
        "history_id": entry.id,
    }
    audit.append(session, f"payment:{payment.provider}", "payment.paid", dossier.code, audit_details, at=now)
    log.info(
        "fees paid",
        extra={"dossier_code": dossier.code, "reference": payment.reference, "source": source, "status": target.value},
    )


def _fail(session: Session, payment: Payment, *, reason: str, online: OnlinePayment | None, now: datetime) -> None:
    """Mark ``payment`` failed and, while its dossier still awaits the fees, create the next one."""
    payment.status = FAILED
    payment.details = {**(payment.details or {}), "failure": reason}
    dossier = session.get(Dossier, payment.dossier_id)  # locked by find_payment
    assert dossier is not None
    details = {"reference": payment.reference, "reason": reason}
    audit.append(session, f"payment:{payment.provider}", "payment.failed", dossier.code, details, at=now)
    log.info("payment failed", extra={"dossier_code": dossier.code, "reference": payment.reference, "reason": reason})
    if online is not None and awaits_fees(dossier, online.terms):
        try:
            ensure_payment(session, dossier, online, now)
        except (ConfigError, ValueError) as exc:
            log.error("payment not renewed: %s", exc, extra={"dossier_code": dossier.code})


def record_notification(
    uow: UnitOfWork,
    notification: Notification,
    *,
    currency: str | None,
    online: OnlinePayment | None,
    calendar: OfficeCalendar,
    now: datetime,
) -> IpnCode:
    """Apply a verified notification in ``uow``: the answer code.

    ``01`` unknown reference, ``02`` already confirmed (a repeat: nothing changes), ``04`` amount (or currency)
    mismatch (nothing changes), ``00`` recorded: paid (see the module notes) or failed (``online``: the next payment
    is made while the dossier awaits its fees; ``None`` when payment is off).
    """
    session = uow.session
    audit.lock_for_write(session)
    payment = find_payment(session, notification.reference)
    code = decide_ipn(notification, None if payment is None else local_payment(payment))
    if code is IpnCode.OK and currency not in (None, "") and currency != payment.currency:  # type: ignore[union-attr]
        code = IpnCode.AMOUNT_MISMATCH
    if code is not IpnCode.OK:
        return code
    assert payment is not None
    if notification.success:
        _settle(
            uow,
            payment,
            paid_at=notification.paid_at,
            transaction_no=notification.transaction_no,
            source="notification",
            calendar=calendar,
            now=now,
        )
    else:
        _fail(session, payment, reason=f"response code {notification.response_code}", online=online, now=now)
    return code


def record_query(
    uow: UnitOfWork,
    reference: str,
    status: PaymentStatus,
    *,
    online: OnlinePayment | None,
    calendar: OfficeCalendar,
    now: datetime,
) -> str:
    """Apply a transaction query's answer to a pending payment (idempotent): what happened, in one word.

    ``paid`` as a notification would; ``failed`` for a refused or cancelled payment, or one past its expiry (and
    ``query_after_minutes``) the provider does not hold as paid; ``pending`` otherwise; ``mismatch`` when the
    provider's amount differs (nothing changes, logged); ``settled`` when the payment was no longer pending.
    """
    session = uow.session
    audit.lock_for_write(session)
    payment = find_payment(session, reference)
    if payment is None or payment.status != PENDING:
        return "settled"
    if status.state is PaymentState.PAID:
        if status.amount_vnd != payment.amount:
            log.warning(
                "payment query: amount differs from the provider's",
                extra={"reference": reference, "local": payment.amount, "provider": status.amount_vnd},
            )
            return "mismatch"
        _settle(
            uow,
            payment,
            paid_at=status.paid_at,
            transaction_no=status.transaction_no,
            source="query",
            calendar=calendar,
            now=now,
        )
        return "paid"
    if status.state is PaymentState.FAILED:
        _fail(session, payment, reason=f"query: response code {status.transaction_status}", online=online, now=now)
        return "failed"
    minutes = online.terms.query_after_minutes if online is not None else DEFAULT_QUERY_AFTER_MINUTES
    expires = (payment.details or {}).get("expires_at")
    if isinstance(expires, str) and datetime.fromisoformat(expires) + timedelta(minutes=minutes) <= now:
        _fail(session, payment, reason="expired", online=online, now=now)
        return "failed"
    return "pending"


async def settle_notification(
    ctx: Context, notification: Notification, *, currency: str | None, online: OnlinePayment | None, now: datetime
) -> IpnCode:
    """:func:`record_notification` in one unit of work (the provider's answer code)."""
    work = functools.partial(
        record_notification, notification=notification, currency=currency, online=online, calendar=ctx.calendar, now=now
    )
    return await in_unit(ctx.db, ctx.bus, work)


async def settle_query(
    ctx: Context, reference: str, status: PaymentStatus, *, online: OnlinePayment | None, now: datetime
) -> str:
    """:func:`record_query` in one unit of work (what happened, in one word)."""
    work = functools.partial(
        record_query, reference=reference, status=status, online=online, calendar=ctx.calendar, now=now
    )
    return await in_unit(ctx.db, ctx.bus, work)
