"""Online fee payments (phí, lệ phí): creating a dossier's payment when its fees fall due, and reusing a valid one.

A payment covers the dossier's unpaid fees (those with a non-zero amount, in ``int`` VND). Its payer's URL is signed
locally, with no network call, so the :class:`~gateway.store.models.Payment` row is written in the transaction of the
change that made the fees due; a pending payment that still covers exactly the unpaid fees and has not expired is
reused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.payment.port import LocalPayment, PaymentRequest, PaymentState
from adapters.payment.vnpay_wire import format_time
from gateway import messages, outbox
from gateway.domain.status import TERMINAL_STATUSES, Status
from gateway.store.models import Dossier, Fee, Payment

__all__ = [
    "FAILED",
    "NATIONAL",
    "PAID",
    "PENDING",
    "PROVIDER",
    "OnlinePayment",
    "PaymentTerms",
    "SignPayment",
    "awaits_fees",
    "create_payment",
    "ensure_payment",
    "local_payment",
    "online_payment",
    "payments_of",
    "unpaid",
]

log = logging.getLogger("gateway.fees")

#: ``Payment.provider`` of the payments the gateway creates: the VNPay-style bank gateway (the default), or the
#: national payment platform (created through the outbox: ``payment.init``).
PROVIDER = "vnpay"
NATIONAL = "national"
#: Payment statuses (``Payment.status``).
PENDING, PAID, FAILED = "pending", "paid", "failed"
_STATES = {PENDING: PaymentState.PENDING, PAID: PaymentState.PAID, FAILED: PaymentState.FAILED}


class PaymentTerms(Protocol):
    """What the payment use cases read from the ``[payment]`` settings."""

    @property
    def return_url(self) -> str: ...

    @property
    def server_ip(self) -> str: ...

    @property
    def at_submission(self) -> bool: ...

    @property
    def query_after_minutes(self) -> int: ...

    def provider_for(self, procedure_code: str, agency_code: str) -> str:
        """The provider taking a dossier's fees (``vnpay`` or ``national``)."""
        ...


class SignPayment(Protocol):
    """Builds the payer's signed URL of a payment, locally (no network): usable inside a transaction.

    ``now`` is the payment's creation time (its expiry counts from it). Raises ``ValueError`` for a value the
    provider refuses and :class:`~gateway.config.ConfigError` when the merchant's secret cannot be resolved.
    """

    def __call__(
        self, reference: str, amount_vnd: int, description: str, return_url: str, client_ip: str, *, now: datetime
    ) -> PaymentRequest: ...


@dataclass(frozen=True)
class OnlinePayment:
    """Online payment as configured: the ``[payment]`` terms and how the payer's URL is signed."""

    terms: PaymentTerms
    sign: SignPayment


def online_payment(terms: PaymentTerms | None, sign: SignPayment | None) -> OnlinePayment | None:
    """Online payment as configured (``None`` when ``[payment]`` is off), payers' URLs signed by ``sign``."""
    return None if terms is None or sign is None else OnlinePayment(terms, sign)


def unpaid(dossier: Dossier) -> list[Fee]:
    """The dossier's fees still to pay (a zero fee is never paid online)."""
    return unpaid_of(dossier.fees)


class FeeLike(Protocol):
    """A dossier's fee, as an object or a row."""

    @property
    def amount(self) -> int: ...

    @property
    def paid(self) -> bool: ...


FeeT = TypeVar("FeeT", bound=FeeLike)


def unpaid_of(fees: Iterable[FeeT]) -> list[FeeT]:
    """Of a dossier's ``fees``, those still to pay (a zero fee is never paid online)."""
    return [fee for fee in fees if not fee.paid and fee.amount > 0]


def payments_of(session: Session, dossier: Dossier) -> list[Payment]:
    """The dossier's payments, oldest first."""
    return list(session.scalars(select(Payment).where(Payment.dossier_id == dossier.id).order_by(Payment.id)))


def local_payment(payment: Payment) -> LocalPayment:
    """``payment`` as the gateway's side of a notification check or a reconciliation."""
    return LocalPayment(payment.reference, payment.amount, _STATES.get(payment.status, PaymentState.PENDING))


def awaits_fees(dossier: Dossier, terms: PaymentTerms) -> bool:
    """Whether the dossier still expects the applicant to pay online."""
    status = Status(dossier.status)
    if status in TERMINAL_STATUSES or not unpaid(dossier):
        return False
    return status is Status.FEE_REQUESTED or terms.at_submission


def _expired(payment: Payment, now: datetime) -> bool:
    expires = (payment.details or {}).get("expires_at")
    if not isinstance(expires, str):
        return False
    try:
        return datetime.fromisoformat(expires) <= now
    except ValueError:
        return False


def _national_payment(session: Session, dossier: Dossier, reference: str, amount: int, now: datetime) -> Payment:
    """A pending payment at the national platform: created there by the outbox (``payment.init``), which keeps the
    payer's URL it answers."""
    payment = Payment(
        dossier_id=dossier.id,
        provider=NATIONAL,
        reference=reference,
        amount=amount,
        currency="VND",
        fee_codes=[fee.code for fee in unpaid(dossier)],
        status=PENDING,
        url=None,
        created_at=now,
        details={"create_date": format_time(now), "expires_at": None, "init": "pending"},
    )
    session.add(payment)
    session.flush()
    outbox.enqueue(
        session,
        kind=messages.PAYMENT_INIT,
        target=messages.PAYMENT_TARGET,
        payload={"dossier_code": dossier.code, "reference": reference},
        idempotency_key=outbox.message_key(dossier.code, f"payment_init:{reference}"),
        ordering_key=f"{dossier.code}#payment",  # a lane of its own: an agency that is down does not hold it
    )
    return payment


def create_payment(session: Session, dossier: Dossier, online: OnlinePayment, now: datetime) -> Payment:
    """A new pending payment of ``dossier``'s unpaid fees at the provider its procedure or agency takes (the
    VNPay-style signed URL built locally; the national platform's asked for through the outbox)."""
    fees = unpaid(dossier)
    amount = sum(fee.amount for fee in fees)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("fee amounts must be int VND")
    number = 1 + len(payments_of(session, dossier))
    reference = f"{dossier.code}-P{number}"
    provider = online.terms.provider_for(dossier.procedure_code, dossier.agency_code)
    if provider == NATIONAL:
        payment = _national_payment(session, dossier, reference, amount, now)
        log.info("payment created", extra={"dossier_code": dossier.code, "reference": reference, "provider": provider})
        return payment
    request = online.sign(
        reference,
        amount,
        f"Thanh toan phi, le phi ho so {dossier.code}",
        online.terms.return_url,
        online.terms.server_ip,
        now=now,
    )
    created = request.created_at or now
    payment = Payment(
        dossier_id=dossier.id,
        provider=PROVIDER,
        reference=request.reference,
        amount=amount,
        currency="VND",
        fee_codes=[fee.code for fee in fees],
        status=PENDING,
        url=request.url,
        created_at=now,
        details={
            "create_date": format_time(created),
            "expires_at": request.expires_at.astimezone(UTC).isoformat() if request.expires_at else None,
        },
    )
    session.add(payment)
    session.flush()
    log.info("payment created", extra={"dossier_code": dossier.code, "reference": reference, "amount": amount})
    return payment


def ensure_payment(session: Session, dossier: Dossier, online: OnlinePayment, now: datetime) -> Payment | None:
    """The pending payment of the unpaid fees: an existing one still valid, or a new one (none when all is paid)."""
    fees = unpaid(dossier)
    if not fees:
        return None
    codes = sorted(fee.code for fee in fees)
    amount = sum(fee.amount for fee in fees)
    for payment in reversed(payments_of(session, dossier)):
        if (
            payment.status == PENDING
            and sorted(payment.fee_codes) == codes
            and payment.amount == amount
            and not _expired(payment, now)
        ):
            return payment
    return create_payment(session, dossier, online, now)
