"""The VNPay-style payment protocol (version 2.1.0 of the widely used gateway), in one namespace.

* :mod:`adapters.payment.vnpay_wire`: times, signatures (``vnp_SecureHash``, the ``querydr`` ones) and the answers
  to payment notifications;
* :mod:`adapters.payment.vnpay_settlement`: the daily settlement file and its reconciliation;
* :mod:`adapters.payment.vnpay_provider`: :class:`VNPayProvider`, the client of the payment platform.

Money is ``int`` VND: floats, bools and negative amounts are refused.
"""

from adapters.payment.vnpay_provider import MAX_AMOUNT_VND as MAX_AMOUNT_VND
from adapters.payment.vnpay_provider import VNPayProvider
from adapters.payment.vnpay_settlement import SETTLEMENT_COLUMNS, SETTLEMENT_REQUIRED, parse_settlement
from adapters.payment.vnpay_settlement import reconcile as reconcile
from adapters.payment.vnpay_wire import (
    HASH_PARAM,
    HASH_TYPE_PARAM,
    QUERY_REQUEST_FIELDS,
    QUERY_RESPONSE_FIELDS,
    VNPAY_TIME,
    IpnCode,
    canonical_query,
    decide_ipn,
    format_time,
    ipn_answer,
    parse_time,
    pipe_signature,
    sign,
    signed_query,
    verify_signature,
)
from adapters.payment.vnpay_wire import VERSION as VERSION

__all__ = [
    "HASH_PARAM",
    "HASH_TYPE_PARAM",
    "QUERY_REQUEST_FIELDS",
    "QUERY_RESPONSE_FIELDS",
    "SETTLEMENT_COLUMNS",
    "SETTLEMENT_REQUIRED",
    "VNPAY_TIME",
    "IpnCode",
    "VNPayProvider",
    "canonical_query",
    "decide_ipn",
    "format_time",
    "ipn_answer",
    "parse_settlement",
    "parse_time",
    "pipe_signature",
    "sign",
    "signed_query",
    "verify_signature",
]
