"""The VNPay-style payment provider: signed payment URLs, verified notifications, ``querydr`` queries and the
daily reconciliation.

The protocol's wire (times, signatures, notification answers) is :mod:`adapters.payment.vnpay_wire`'s and its
settlement file :mod:`adapters.payment.vnpay_settlement`'s. Money is ``int`` VND: floats, bools and negative
amounts are refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import secrets
import unicodedata
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from adapters.errors import AuthError, BadResponseError, PermanentError, TransientError
from adapters.http import SecretSource, json_body, map_http_errors, raise_for_status
from adapters.payment.port import (
    InvalidNotification,
    InvalidSignature,
    LocalPayment,
    Notification,
    PaymentRequest,
    PaymentState,
    PaymentStatus,
    ReconciliationReport,
    check_amount,
)
from adapters.payment.vnpay_settlement import reconcile
from adapters.payment.vnpay_wire import (
    HASH_PARAM,
    QUERY_REQUEST_FIELDS,
    QUERY_RESPONSE_FIELDS,
    VERSION,
    amount_from_wire,
    format_time,
    parse_time,
    pipe_signature,
    signed_query,
    verify_signature,
)

__all__ = ["MAX_AMOUNT_VND", "VNPayProvider"]

#: The protocol's logger, whichever of its modules logs.
logger = logging.getLogger("adapters.payment.vnpay")

_REFERENCE = re.compile(r"[A-Za-z0-9._-]{1,100}")
#: VNPay refuses larger amounts (below 1 billion VND per transaction).
MAX_AMOUNT_VND = 999_999_999
_MAX_CACHED_DATES = 10_000


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
            amount = amount_from_wire(params.get("vnp_Amount", ""), "notification")
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
            amount = amount_from_wire(str(answer.get("vnp_Amount", "")), "query answer")
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
