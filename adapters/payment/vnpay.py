"""The VNPay-style payment protocol (DESIGN.md §6; version 2.1.0 of the widely used gateway).

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
* The daily settlement file is a CSV with a header row naming at least :data:`SETTLEMENT_REQUIRED` (amounts in
  ``vnp_Amount`` units, VND × 100, as everywhere in the protocol).

Money is ``int`` VND: floats, bools and negative amounts are refused.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import re
import secrets
import unicodedata
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import httpx

from adapters.errors import AuthError, BadResponseError, PermanentError, TransientError
from adapters.http import SecretSource, json_body, map_http_errors, raise_for_status
from adapters.payment.port import (
    AmountMismatch,
    InvalidNotification,
    InvalidSignature,
    LocalPayment,
    Notification,
    PaymentRequest,
    PaymentState,
    PaymentStatus,
    ReconciliationReport,
    SettlementFormatError,
    SettlementRow,
    StatusMismatch,
    check_amount,
)

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

logger = logging.getLogger(__name__)

VERSION = "2.1.0"
HASH_PARAM = "vnp_SecureHash"
HASH_TYPE_PARAM = "vnp_SecureHashType"
_HASH_TYPES = frozenset({"HMACSHA512", "SHA512"})
_PREFIX = "vnp_"
_HEX_SHA512 = re.compile(r"[0-9a-fA-F]{128}")
_REFERENCE = re.compile(r"[A-Za-z0-9._-]{1,100}")
#: VNPay refuses larger amounts (below 1 billion VND per transaction).
MAX_AMOUNT_VND = 999_999_999
_MAX_CACHED_DATES = 10_000

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

#: Settlement file columns (header names); only the SETTLEMENT_REQUIRED ones must be present.
SETTLEMENT_COLUMNS = (
    "vnp_TxnRef",
    "vnp_TransactionNo",
    "vnp_Amount",
    "vnp_TransactionStatus",
    "vnp_PayDate",
    "vnp_BankCode",
)
SETTLEMENT_REQUIRED = ("vnp_TxnRef", "vnp_Amount", "vnp_TransactionStatus")


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
# Settlement
# ----------------------------------------------------------------------------------------------------------------------


def _amount_from_wire(text: str, what: str) -> int:
    """VND from a ``vnp_Amount`` value (VND × 100, digits only)."""
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"{what}: vnp_Amount must be an integer, got {value[:20]!r}")
    hundredths = int(value)
    if hundredths % 100:
        raise ValueError(f"{what}: vnp_Amount {hundredths} is not a whole number of VND × 100")
    return hundredths // 100


def _state_from_status(status: str) -> PaymentState:
    return PaymentState.PAID if status.strip() == "00" else PaymentState.FAILED


def parse_settlement(settlement_csv: str) -> list[SettlementRow]:
    """The rows of a settlement CSV (header row first; :class:`SettlementFormatError` for a bad file)."""
    text = settlement_csv.removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
        missing = [name for name in SETTLEMENT_REQUIRED if name not in header]
        if missing:
            raise SettlementFormatError(f"settlement file: missing columns {', '.join(missing)}")
        rows: list[SettlementRow] = []
        for record in reader:
            line = reader.line_num
            if None in record:
                raise SettlementFormatError(f"settlement file line {line}: more fields than columns")
            values = {key: (value or "").strip() for key, value in record.items()}
            if not any(values.values()):
                continue
            reference = values["vnp_TxnRef"]
            if not reference:
                raise SettlementFormatError(f"settlement file line {line}: empty vnp_TxnRef")
            try:
                amount = _amount_from_wire(values["vnp_Amount"], f"settlement file line {line}")
                paid_at = parse_time(values["vnp_PayDate"]) if values.get("vnp_PayDate") else None
            except ValueError as exc:
                raise SettlementFormatError(str(exc)) from None
            rows.append(
                SettlementRow(
                    reference=reference,
                    amount_vnd=amount,
                    state=_state_from_status(values["vnp_TransactionStatus"]),
                    transaction_no=values.get("vnp_TransactionNo") or None,
                    paid_at=paid_at,
                    line=line,
                )
            )
    except csv.Error as exc:
        raise SettlementFormatError(f"settlement file line {reader.line_num}: {exc}") from None
    return rows


def reconcile(settlement_csv: str, local: Iterable[LocalPayment]) -> ReconciliationReport:
    """Compare a settlement file with the gateway's payments (see :class:`ReconciliationReport`)."""
    rows = parse_settlement(settlement_csv)
    ours: dict[str, LocalPayment] = {}
    for payment in local:
        if payment.reference in ours:
            raise ValueError(f"local payments: reference {payment.reference!r} given twice")
        ours[payment.reference] = payment
    report = ReconciliationReport()
    seen: set[str] = set()
    for row in rows:
        if row.reference in seen:
            report.duplicates.append(row)
            continue
        seen.add(row.reference)
        mine = ours.get(row.reference)
        if mine is None:
            report.missing_locally.append(row)
            continue
        consistent = True
        if mine.amount_vnd != row.amount_vnd:
            report.amount_mismatches.append(AmountMismatch(row.reference, mine.amount_vnd, row.amount_vnd))
            consistent = False
        if mine.state != row.state:
            report.status_mismatches.append(StatusMismatch(row.reference, mine.state, row.state))
            consistent = False
        if consistent:
            report.matched.append(row.reference)
    report.missing_at_provider.extend(
        p for p in ours.values() if p.reference not in seen and p.state is PaymentState.PAID
    )
    return report


# ----------------------------------------------------------------------------------------------------------------------
# The provider
# ----------------------------------------------------------------------------------------------------------------------


def _plain_text(text: str, limit: int = 255) -> str:
    """``text`` without diacritics nor special characters, as VNPay wants ``vnp_OrderInfo``."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    cleaned = re.sub(r"[^A-Za-z0-9 .,:_-]+", " ", stripped)
    return " ".join(cleaned.split())[:limit].strip()


def _check_reference(reference: object) -> str:
    if not isinstance(reference, str) or not _REFERENCE.fullmatch(reference):
        raise ValueError("reference must be 1-100 characters among letters, digits, '.', '_' and '-'")
    return reference


def _check_url(url: object, name: str) -> str:
    if not isinstance(url, str):
        raise ValueError(f"{name} must be a URL")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{name} must be an absolute http:// or https:// URL")
    return url


_QUERY_TRANSIENT = frozenset({"94", "99"})  # duplicate request in flight, system error
_QUERY_AUTH = frozenset({"02", "97"})  # merchant unknown or inactive, checksum refused
_QUERY_PENDING = frozenset({"01", "07"})  # not completed; held as suspected fraud


class VNPayProvider:
    """The VNPay-style payment platform.

    :param client: for :meth:`query` (``base_url`` the provider's API host; ``None`` when queries are not needed).
    :param merchant_code: ``vnp_TmnCode``.
    :param secret: the merchant's hash secret (or a callable returning it); never logged nor shown.
    :param payment_url: the payment page (``https://sandbox.vnpayment.vn/paymentv2/vpcpay.html``...).
    :param query_path: the ``querydr`` API path, relative to ``client``'s base URL.
    :param expire_minutes: ``vnp_ExpireDate`` after creation.
    :param server_ip: ``vnp_IpAddr`` of queries (the gateway's address).
    :param clock: the current time (aware; tests replace it).
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        merchant_code: str,
        secret: SecretSource,
        payment_url: str,
        query_path: str = "/merchant_webapi/api/transaction",
        locale: str = "vn",
        order_type: str = "other",
        expire_minutes: int = 15,
        server_ip: str = "127.0.0.1",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        upstream: str = "payment",
    ) -> None:
        if not isinstance(merchant_code, str) or not merchant_code:
            raise ValueError("merchant_code is required")
        _check_url(payment_url, "payment_url")
        if isinstance(expire_minutes, bool) or not isinstance(expire_minutes, int) or expire_minutes < 1:
            raise ValueError("expire_minutes must be a positive integer")
        ipaddress.ip_address(server_ip)
        self._client = client
        self.merchant_code = merchant_code
        self._secret = secret
        self.payment_url = payment_url
        self.query_path = query_path
        self.locale = locale
        self.order_type = order_type
        self.expire_minutes = expire_minutes
        self.server_ip = server_ip
        self._clock = clock
        self.upstream = upstream
        self._created: OrderedDict[str, str] = OrderedDict()  # reference -> vnp_CreateDate, for queries

    def __repr__(self) -> str:
        return f"VNPayProvider(merchant_code={self.merchant_code!r}, secret=***, payment_url={self.payment_url!r})"

    def _key(self) -> str:
        return self._secret() if callable(self._secret) else self._secret

    # -- payment ------------------------------------------------------------------------------------------------------

    def payment_params(
        self,
        reference: str,
        amount_vnd: int,
        description: str,
        return_url: str,
        client_ip: str,
        *,
        bank_code: str | None = None,
    ) -> dict[str, str]:
        """The ``vnp_*`` parameters of a payment (unsigned)."""
        _check_reference(reference)
        check_amount(amount_vnd)
        if amount_vnd == 0 or amount_vnd > MAX_AMOUNT_VND:
            raise ValueError(f"amount_vnd must be between 1 and {MAX_AMOUNT_VND}")
        info = _plain_text(description) if isinstance(description, str) else ""
        if not info:
            raise ValueError("description must contain letters or digits")
        _check_url(return_url, "return_url")
        try:
            ipaddress.ip_address(client_ip)
        except ValueError:
            raise ValueError("client_ip must be an IP address") from None
        now = self._clock()
        params = {
            "vnp_Version": VERSION,
            "vnp_Command": "pay",
            "vnp_TmnCode": self.merchant_code,
            "vnp_Amount": str(amount_vnd * 100),
            "vnp_CurrCode": "VND",
            "vnp_TxnRef": reference,
            "vnp_OrderInfo": info,
            "vnp_OrderType": self.order_type,
            "vnp_Locale": self.locale,
            "vnp_ReturnUrl": return_url,
            "vnp_IpAddr": client_ip,
            "vnp_CreateDate": format_time(now),
            "vnp_ExpireDate": format_time(now + timedelta(minutes=self.expire_minutes)),
        }
        if bank_code:
            params["vnp_BankCode"] = bank_code
        return params

    def build_payment(
        self,
        reference: str,
        amount_vnd: int,
        description: str,
        return_url: str,
        client_ip: str,
        *,
        bank_code: str | None = None,
    ) -> PaymentRequest:
        """The signed payment URL for ``reference``, built locally (synchronous: usable inside a transaction).

        The VNPay-style protocol needs no call to the provider to create a payment: the payer's browser brings the
        signed parameters to the payment page. ``created_at`` is the ``vnp_CreateDate`` a later :meth:`query` needs.
        """
        params = self.payment_params(reference, amount_vnd, description, return_url, client_ip, bank_code=bank_code)
        separator = "&" if urllib.parse.urlsplit(self.payment_url).query else "?"
        url = f"{self.payment_url}{separator}{signed_query(params, self._key())}"
        self._remember(reference, params["vnp_CreateDate"])
        logger.info("Payment %s created (%d VND)", reference, amount_vnd)
        return PaymentRequest(
            url=url,
            reference=reference,
            expires_at=parse_time(params["vnp_ExpireDate"]),
            created_at=parse_time(params["vnp_CreateDate"]),
        )

    async def create_payment(
        self,
        reference: str,
        amount_vnd: int,
        description: str,
        return_url: str,
        client_ip: str,
        *,
        bank_code: str | None = None,
    ) -> PaymentRequest:
        """The signed payment URL for ``reference`` (no call to the provider is needed: :meth:`build_payment`)."""
        return self.build_payment(reference, amount_vnd, description, return_url, client_ip, bank_code=bank_code)

    def _remember(self, reference: str, created: str) -> None:
        self._created[reference] = created
        self._created.move_to_end(reference)
        while len(self._created) > _MAX_CACHED_DATES:
            self._created.popitem(last=False)

    # -- notifications -------------------------------------------------------------------------------------------------

    def verify_notification(self, params: Mapping[str, str]) -> Notification:
        """The notification (IPN or return URL) ``params`` carry, once their signature is verified.

        :class:`InvalidSignature`: missing, malformed or wrong hash, or another merchant's message (answer ``97``);
        :class:`InvalidNotification`: signed but unreadable (answer ``99``).
        """
        verify_signature(params, self._key())
        if not hmac.compare_digest(str(params.get("vnp_TmnCode", "")).encode(), self.merchant_code.encode()):
            raise InvalidSignature("the notification is addressed to another merchant")
        reference = params.get("vnp_TxnRef", "")
        if not reference:
            raise InvalidNotification("vnp_TxnRef is missing")
        try:
            amount = _amount_from_wire(params.get("vnp_Amount", ""), "notification")
        except ValueError as exc:
            raise InvalidNotification(str(exc)) from None
        response_code = params.get("vnp_ResponseCode", "")
        if not response_code:
            raise InvalidNotification("vnp_ResponseCode is missing")
        status = params.get("vnp_TransactionStatus") or None
        paid_at = None
        if params.get("vnp_PayDate"):
            try:
                paid_at = parse_time(params["vnp_PayDate"])
            except ValueError:
                raise InvalidNotification("vnp_PayDate is not yyyyMMddHHmmss") from None
        return Notification(
            reference=reference,
            amount_vnd=amount,
            success=response_code == "00" and status == "00",
            response_code=response_code,
            transaction_status=status,
            transaction_no=params.get("vnp_TransactionNo") or None,
            bank_code=params.get("vnp_BankCode") or None,
            paid_at=paid_at,
            params=dict(params),
        )

    # -- query ---------------------------------------------------------------------------------------------------------

    async def query(self, reference: str, *, transaction_date: datetime | str | None = None) -> PaymentStatus:
        """``querydr``: where the payment ``reference`` stands at the provider.

        ``transaction_date`` is the payment's ``vnp_CreateDate``; by default the one this object remembers from
        :meth:`create_payment` (or now, which the provider may refuse for an older payment).
        """
        if self._client is None:
            raise RuntimeError("VNPayProvider was created without an HTTP client: queries are unavailable")
        _check_reference(reference)
        now = self._clock()
        if isinstance(transaction_date, datetime):
            created = format_time(transaction_date)
        else:
            created = transaction_date or self._created.get(reference) or format_time(now)
        body: dict[str, str] = {
            "vnp_RequestId": secrets.token_hex(16),
            "vnp_Version": VERSION,
            "vnp_Command": "querydr",
            "vnp_TmnCode": self.merchant_code,
            "vnp_TxnRef": reference,
            "vnp_OrderInfo": _plain_text(f"Truy van giao dich {reference}"),
            "vnp_TransactionDate": created,
            "vnp_CreateDate": format_time(now),
            "vnp_IpAddr": self.server_ip,
        }
        secret = self._key()
        body[HASH_PARAM] = pipe_signature(body, QUERY_REQUEST_FIELDS, secret)
        content = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        with map_http_errors(self.upstream):
            response = await self._client.post(self.query_path, content=content, headers=headers)
        raise_for_status(response, self.upstream)
        answer = json_body(response, self.upstream)
        if not isinstance(answer, dict):
            raise BadResponseError("expected a JSON object", upstream=self.upstream)
        return self._query_status(reference, answer, secret)

    def _query_status(self, reference: str, answer: dict[str, Any], secret: str) -> PaymentStatus:
        code = str(answer.get("vnp_ResponseCode", ""))
        message = str(answer.get("vnp_Message", "")) or None
        if code in _QUERY_AUTH:
            raise AuthError(f"query refused: vnp_ResponseCode {code}", upstream=self.upstream)
        if code in _QUERY_TRANSIENT:
            raise TransientError(f"query failed: vnp_ResponseCode {code}", upstream=self.upstream)
        given = answer.get(HASH_PARAM)
        expected = pipe_signature(answer, QUERY_RESPONSE_FIELDS, secret)
        if not isinstance(given, str) or not hmac.compare_digest(given.lower().encode(), expected.encode()):
            raise BadResponseError("the query answer's signature is wrong", upstream=self.upstream)
        if answer.get("vnp_TxnRef") not in (None, "", reference):
            raise BadResponseError("the query answer is about another payment", upstream=self.upstream)
        if code == "91":
            return PaymentStatus(reference, PaymentState.UNKNOWN, response_code=code, message=message)
        if code != "00":
            raise PermanentError(f"query refused: vnp_ResponseCode {code}", upstream=self.upstream)
        status = str(answer.get("vnp_TransactionStatus", ""))
        if status == "00":
            state = PaymentState.PAID
        elif status in _QUERY_PENDING:
            state = PaymentState.PENDING
        else:
            state = PaymentState.FAILED
        try:
            amount = _amount_from_wire(str(answer.get("vnp_Amount", "")), "query answer")
            paid_at = parse_time(answer["vnp_PayDate"]) if answer.get("vnp_PayDate") else None
        except ValueError as exc:
            raise BadResponseError(str(exc), upstream=self.upstream) from None
        return PaymentStatus(
            reference=reference,
            state=state,
            amount_vnd=amount,
            transaction_no=str(answer.get("vnp_TransactionNo") or "") or None,
            paid_at=paid_at,
            response_code=code,
            transaction_status=status or None,
            message=message,
        )

    # -- reconciliation ------------------------------------------------------------------------------------------------

    def reconcile(self, settlement_csv: str, local: Iterable[LocalPayment]) -> ReconciliationReport:
        """Compare the provider's settlement file for a day with the gateway's payments of that day."""
        return reconcile(settlement_csv, local)
