"""Payment platform clients and notification (IPN) verification.

The core depends on :class:`~adapters.payment.port.PaymentProvider` only; :class:`~adapters.payment.vnpay.VNPayProvider`
speaks the VNPay-style protocol (:mod:`adapters.payment.vnpay`: its wire, settlement file and provider modules) and
:class:`NationalPaymentProvider` the national payment platform's (:mod:`adapters.payment.national_wire`).
Money is ``int`` VND everywhere. Usable on its own by a portal backend: nothing here imports the daemon::

    from adapters.payment import VNPayProvider, InvalidSignature, decide_ipn, ipn_answer
"""

from adapters.payment.national_provider import NationalPaymentProvider
from adapters.payment.port import (
    AmountMismatch,
    InvalidNotification,
    InvalidSignature,
    LocalPayment,
    Notification,
    PaymentError,
    PaymentProvider,
    PaymentRequest,
    PaymentState,
    PaymentStatus,
    ReconciliationReport,
    SettlementFormatError,
    SettlementRow,
    StatusMismatch,
    check_amount,
)
from adapters.payment.vnpay_provider import VNPayProvider
from adapters.payment.vnpay_settlement import parse_settlement
from adapters.payment.vnpay_wire import (
    IpnCode,
    canonical_query,
    decide_ipn,
    ipn_answer,
    sign,
    signed_query,
    verify_signature,
)

__all__ = [
    "AmountMismatch",
    "InvalidNotification",
    "InvalidSignature",
    "IpnCode",
    "LocalPayment",
    "NationalPaymentProvider",
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
    "VNPayProvider",
    "canonical_query",
    "check_amount",
    "decide_ipn",
    "ipn_answer",
    "parse_settlement",
    "sign",
    "signed_query",
    "verify_signature",
]
