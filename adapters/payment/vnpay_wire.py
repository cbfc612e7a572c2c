"""The wire of the VNPay-style payment protocol (version 2.1.0 of the widely used gateway): times, signatures and
the answers to payment notifications.

Signing (payment URL, notification and return URL)::

    params without vnp_SecureHash and vnp_SecureHashType, only the vnp_* ones, sorted by name,
    URL-encoded (quote_plus: space as "+") as k=v and joined by "&"
    vnp_SecureHash = hex(HMAC-SHA512(merchant secret, that string))

* ``vnp_TxnRef`` is the payment's reference, ``vnp_Amount`` the amount in VND × 100 (an integer), ``vnp_TmnCode``
  the merchant code; ``vnp_ResponseCode`` and ``vnp_TransactionStatus`` are both ``00`` for a successful payment;
  times (``vnp_CreateDate``, ``vnp_PayDate``...) are ``yyyyMMddHHmmss`` in Vietnam's time (GMT+7).
* The notification (IPN) is answered with ``{"RspCode": ..., "Message": ...}`` (:func:`ipn_answer`); duplicates are
  answered ``02`` (already confirmed) by the caller, :func:`decide_ipn` says which code applies.
* The transaction query (``querydr``) is a JSON ``POST`` signed over its fields joined by ``|`` in a fixed order
  (:data:`QUERY_REQUEST_FIELDS`, :data:`QUERY_RESPONSE_FIELDS`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from enum import StrEnum

from adapters.payment.port import InvalidSignature, LocalPayment, Notification, PaymentState

__all__ = [
    "HASH_PARAM",
    "HASH_TYPE_PARAM",
    "QUERY_REQUEST_FIELDS",
    "QUERY_RESPONSE_FIELDS",
    "VERSION",
    "VNPAY_TIME",
    "IpnCode",
    "amount_from_wire",
    "canonical_query",
    "decide_ipn",
    "format_time",
    "ipn_answer",
    "parse_time",
    "pipe_signature",
    "sign",
    "signed_query",
    "verify_signature",
]

VERSION = "2.1.0"
HASH_PARAM = "vnp_SecureHash"
HASH_TYPE_PARAM = "vnp_SecureHashType"
_HASH_TYPES = frozenset({"HMACSHA512", "SHA512"})
_PREFIX = "vnp_"
_HEX_SHA512 = re.compile(r"[0-9a-fA-F]{128}")

#: Vietnam's time: GMT+7 all year.
VNPAY_TIME = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")
_TIME_FORMAT = "%Y%m%d%H%M%S"

#: The querydr request's signed fields, in signing order (joined by "|").
QUERY_REQUEST_FIELDS = (
    "vnp_RequestId",
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_TransactionDate",
    "vnp_CreateDate",
    "vnp_IpAddr",
    "vnp_OrderInfo",
)
#: The querydr answer's signed fields, in signing order.
QUERY_RESPONSE_FIELDS = (
    "vnp_ResponseId",
    "vnp_Command",
    "vnp_ResponseCode",
    "vnp_Message",
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_Amount",
    "vnp_BankCode",
    "vnp_PayDate",
    "vnp_TransactionNo",
    "vnp_TransactionType",
    "vnp_TransactionStatus",
    "vnp_OrderInfo",
    "vnp_PromotionCode",
    "vnp_PromotionAmount",
)


# ----------------------------------------------------------------------------------------------------------------------
# Time and signatures
# ----------------------------------------------------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """``yyyyMMddHHmmss`` in GMT+7 (``moment`` must be aware)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: give the time zone")
    return moment.astimezone(VNPAY_TIME).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """The aware datetime of a ``yyyyMMddHHmmss`` (GMT+7) string; ``ValueError`` otherwise."""
    if not isinstance(text, str) or not re.fullmatch(r"\d{14}", text):
        raise ValueError("expected yyyyMMddHHmmss")
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=VNPAY_TIME)


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def canonical_query(params: Mapping[str, object]) -> str:
    """The signed string: the ``vnp_*`` params but the hash ones, sorted by name, ``k=v`` URL-encoded, ``&``-joined."""
    items = sorted(
        (key, str(value))
        for key, value in params.items()
        if key.startswith(_PREFIX) and key not in (HASH_PARAM, HASH_TYPE_PARAM)
    )
    return urllib.parse.urlencode(items, quote_via=urllib.parse.quote_plus)


def sign(params: Mapping[str, object], secret: str | bytes) -> str:
    """``vnp_SecureHash`` for ``params``: hex HMAC-SHA512 of :func:`canonical_query` with the merchant secret."""
    message = canonical_query(params).encode("utf-8")
    return hmac.new(_secret_bytes(secret), message, hashlib.sha512).hexdigest()


def signed_query(params: Mapping[str, object], secret: str | bytes) -> str:
    """``params`` as a query string followed by their ``vnp_SecureHash`` (a payment or return URL's query)."""
    return f"{canonical_query(params)}&{HASH_PARAM}={sign(params, secret)}"


def verify_signature(params: Mapping[str, str], secret: str | bytes) -> None:
    """Return when ``params`` carry the right ``vnp_SecureHash``; :class:`InvalidSignature` otherwise."""
    given = params.get(HASH_PARAM)
    if not isinstance(given, str) or not given:
        raise InvalidSignature("vnp_SecureHash is missing")
    if not _HEX_SHA512.fullmatch(given):
        raise InvalidSignature("vnp_SecureHash is not a hex SHA-512 HMAC")
    hash_type = params.get(HASH_TYPE_PARAM)
    if hash_type not in (None, "") and str(hash_type).upper() not in _HASH_TYPES:
        raise InvalidSignature("unsupported vnp_SecureHashType")
    for key, value in params.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidSignature("parameters must be strings")
    expected = sign(params, secret)
    if not hmac.compare_digest(given.lower().encode("ascii"), expected.encode("ascii")):
        raise InvalidSignature("vnp_SecureHash does not match")


def pipe_signature(values: Mapping[str, object], fields: Iterable[str], secret: str | bytes) -> str:
    """Hex HMAC-SHA512 of ``fields``' values joined by ``|`` (missing ones empty): the querydr signatures."""
    message = "|".join("" if values.get(name) is None else str(values.get(name)) for name in fields)
    return hmac.new(_secret_bytes(secret), message.encode("utf-8"), hashlib.sha512).hexdigest()


# ----------------------------------------------------------------------------------------------------------------------
# IPN answers
# ----------------------------------------------------------------------------------------------------------------------


class IpnCode(StrEnum):
    """``RspCode`` of the answer to a payment notification."""

    OK = "00"
    UNKNOWN_REFERENCE = "01"
    ALREADY_CONFIRMED = "02"
    AMOUNT_MISMATCH = "04"
    BAD_SIGNATURE = "97"
    OTHER = "99"


_IPN_MESSAGES = {
    IpnCode.OK: "Confirm Success",
    IpnCode.UNKNOWN_REFERENCE: "Order not found",
    IpnCode.ALREADY_CONFIRMED: "Order already confirmed",
    IpnCode.AMOUNT_MISMATCH: "Invalid amount",
    IpnCode.BAD_SIGNATURE: "Invalid signature",
    IpnCode.OTHER: "Unknown error",
}


def ipn_answer(code: IpnCode | str) -> dict[str, str]:
    """The JSON answer to a notification: ``{"RspCode": code, "Message": ...}`` (``ValueError`` for other codes)."""
    try:
        known = IpnCode(code)
    except ValueError:
        raise ValueError(f"unknown IPN answer code {code!r}") from None
    return {"RspCode": known.value, "Message": _IPN_MESSAGES[known]}


def decide_ipn(notification: Notification, local: LocalPayment | None) -> IpnCode:
    """The answer a verified notification deserves, given the payment as the gateway holds it (``None``: unknown).

    ``00`` means: record the outcome (paid when ``notification.success``, else failed). A payment already settled
    either way answers ``02`` and must not change again (duplicates are idempotent).
    """
    if local is None:
        return IpnCode.UNKNOWN_REFERENCE
    if local.state in (PaymentState.PAID, PaymentState.FAILED):
        return IpnCode.ALREADY_CONFIRMED
    if local.amount_vnd != notification.amount_vnd:
        return IpnCode.AMOUNT_MISMATCH
    return IpnCode.OK


# ----------------------------------------------------------------------------------------------------------------------
# Amounts
# ----------------------------------------------------------------------------------------------------------------------


def amount_from_wire(text: str, what: str) -> int:
    """VND from a ``vnp_Amount`` value (VND × 100, digits only)."""
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"{what}: vnp_Amount must be an integer, got {value[:20]!r}")
    hundredths = int(value)
    if hundredths % 100:
        raise ValueError(f"{what}: vnp_Amount {hundredths} is not a whole number of VND × 100")
    return hundredths // 100
