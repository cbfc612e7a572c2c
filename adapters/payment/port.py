"""What the gateway needs from a payment platform, whatever its protocol (the port).

:class:`PaymentProvider` is the one interface; :class:`~adapters.payment.vnpay.VNPayProvider` (a VNPay-style bank
gateway) and :class:`~adapters.payment.national_provider.NationalPaymentProvider` (the national payment platform)
implement it, and another bank can be added beside them. Money is ``int`` VND
everywhere: never a float, never a Decimal (VND has no minor unit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = [
    "AmountMismatch",
    "InvalidNotification",
    "InvalidSignature",
    "LocalPayment",
    "Notification",
    "PaymentError",
    "PaymentProvider",
    "PaymentRequest",
    "PaymentState",
    "PaymentStatus",
    "ReconciliationReport",
    "SettlementFormatError",
    "SettlementRow",
    "StatusMismatch",
    "check_amount",
]


class PaymentError(Exception):
    """A payment message that cannot be accepted."""


class InvalidSignature(PaymentError):
    """The message's signature is missing, malformed or wrong (or it is addressed to another merchant)."""


class InvalidNotification(PaymentError):
    """A correctly signed notification whose content cannot be read (a missing reference, an odd amount...)."""


class SettlementFormatError(PaymentError, ValueError):
    """The settlement file is not in the expected format."""


class PaymentState(StrEnum):
    """Where a payment stands."""

    PENDING = "pending"  # created, not (yet) paid
    PAID = "paid"
    FAILED = "failed"  # refused, cancelled or expired
    UNKNOWN = "unknown"  # the provider does not know the reference


def check_amount(amount_vnd: object, name: str = "amount_vnd") -> int:
    """``amount_vnd`` if it is a non-negative ``int`` (not a bool, not a float); ``TypeError``/``ValueError``."""
    if isinstance(amount_vnd, bool) or not isinstance(amount_vnd, int):
        raise TypeError(f"{name} must be an int number of VND, not {type(amount_vnd).__name__}")
    if amount_vnd < 0:
        raise ValueError(f"{name} must not be negative")
    return amount_vnd


@dataclass(frozen=True)
class PaymentRequest:
    """A payment created at the provider: where to send the payer, and the reference to expect back."""

    url: str
    reference: str
    expires_at: datetime | None = None
    #: When the provider considers the payment created (the date a transaction query names it by).
    created_at: datetime | None = None
    #: The provider's own number for the transaction, when it gives one at creation.
    transaction_no: str | None = None


@dataclass(frozen=True)
class Notification:
    """A verified payment notification (IPN). ``params`` is the message as received (left out of ``repr``)."""

    reference: str
    amount_vnd: int
    success: bool
    response_code: str
    transaction_status: str | None = None
    transaction_no: str | None = None
    bank_code: str | None = None
    paid_at: datetime | None = None
    params: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def state(self) -> PaymentState:
        return PaymentState.PAID if self.success else PaymentState.FAILED


@dataclass(frozen=True)
class PaymentStatus:
    """A payment's status as the provider answers a query."""

    reference: str
    state: PaymentState
    amount_vnd: int | None = None
    transaction_no: str | None = None
    paid_at: datetime | None = None
    response_code: str | None = None
    transaction_status: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class LocalPayment:
    """A payment as the gateway recorded it (the other side of a reconciliation)."""

    reference: str
    amount_vnd: int
    state: PaymentState

    def __post_init__(self) -> None:
        check_amount(self.amount_vnd)
        object.__setattr__(self, "state", PaymentState(self.state))


@dataclass(frozen=True)
class SettlementRow:
    """One transaction of the provider's settlement file."""

    reference: str
    amount_vnd: int
    state: PaymentState
    transaction_no: str | None = None
    paid_at: datetime | None = None
    line: int = 0  # its line in the file (1: the header)


@dataclass(frozen=True)
class AmountMismatch:
    reference: str
    local_vnd: int
    provider_vnd: int


@dataclass(frozen=True)
class StatusMismatch:
    reference: str
    local: PaymentState
    provider: PaymentState


@dataclass
class ReconciliationReport:
    """The differences between the provider's settlement and the gateway's records.

    ``missing_locally``: the provider settled a payment the gateway does not know. ``missing_at_provider``: the
    gateway holds a payment as paid that the settlement does not list. ``amount_mismatches`` and
    ``status_mismatches``: known on both sides, but differing (a lost IPN shows as provider ``paid``, local
    ``pending``). ``duplicates``: references listed more than once by the provider.
    """

    matched: list[str] = field(default_factory=list)
    missing_locally: list[SettlementRow] = field(default_factory=list)
    missing_at_provider: list[LocalPayment] = field(default_factory=list)
    amount_mismatches: list[AmountMismatch] = field(default_factory=list)
    status_mismatches: list[StatusMismatch] = field(default_factory=list)
    duplicates: list[SettlementRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.missing_locally
            or self.missing_at_provider
            or self.amount_mismatches
            or self.status_mismatches
            or self.duplicates
        )


@runtime_checkable
class PaymentProvider(Protocol):
    """A payment platform.

    ``create_payment`` and ``query`` may call the provider (asynchronously); ``verify_notification`` and
    ``reconcile`` only read what they are given. Every upstream failure is an :mod:`adapters.errors` error.
    """

    async def create_payment(
        self, reference: str, amount_vnd: int, description: str, return_url: str, client_ip: str
    ) -> PaymentRequest:
        """Create a payment of ``amount_vnd`` for ``reference``: where to send the payer."""
        ...

    def verify_notification(self, params: Mapping[str, str]) -> Notification:
        """The notification ``params`` carry; :class:`InvalidSignature` unless the provider signed them."""
        ...

    async def query(self, reference: str, *, transaction_date: datetime | str | None = None) -> PaymentStatus:
        """Ask the provider where the payment ``reference`` stands (``transaction_date``: when it was created,
        which some providers need to find it)."""
        ...

    def reconcile(self, settlement_csv: str, local: Iterable[LocalPayment]) -> ReconciliationReport:
        """Compare the provider's settlement file for a day with the gateway's payments of that day."""
        ...
