"""The national payment platform as a payment provider: payments created by a signed ``init`` call, verified
notifications, queries and the daily reconciliation.

The wire (field orders, ``MaXacThuc``, times, the settlement file) is :mod:`adapters.payment.national_wire`'s. Unlike
the VNPay-style protocol, creating a payment needs a call to the platform: it answers the payer's URL
(``UrlThanhToan``) and its own transaction number (``MaGiaoDich``). Money is ``int`` VND.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from adapters.errors import AuthError, BadResponseError, PermanentError, TransientError, UpstreamError
from adapters.http import SecretSource, json_body, map_http_errors, raise_for_status
from adapters.payment.national_wire import (
    CHECKSUM,
    INIT_FIELDS,
    INIT_RESPONSE_FIELDS,
    NOTIFICATION_FIELDS,
    PAID,
    QUERY_FIELDS,
    QUERY_RESPONSE_FIELDS,
    amount_of,
    format_time,
    parse_settlement,
    parse_time,
    signed,
    verify_checksum,
)
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
from adapters.payment.settlement import compare_settlement

__all__ = ["NationalPaymentProvider"]

logger = logging.getLogger(__name__)

_REFERENCE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PENDING = frozenset({"01", "02"})  # created, being paid
_CODE_ERRORS: dict[str, type[UpstreamError]] = {"97": AuthError, "99": TransientError}


class NationalPaymentProvider:
    """The national payment platform's client over ``http`` (an ``httpx.AsyncClient`` whose ``base_url`` is the
    platform's API, not closed here; ``None`` when only notifications are verified or settlements reconciled)."""

    def __init__(
        self,
        http: httpx.AsyncClient | None,
        *,
        partner_code: str,
        secret: SecretSource,
        upstream: str = "payment:national",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not partner_code:
            raise ValueError("partner_code is required")
        self._client = http
        self.partner_code = partner_code
        self._secret = secret
        self.upstream = upstream
        self._clock = clock or (lambda: datetime.now(UTC))

    def _key(self) -> str:
        return self._secret() if callable(self._secret) else self._secret

    async def _call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if self._client is None:
            raise RuntimeError("NationalPaymentProvider was created without an HTTP client")
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        with map_http_errors(self.upstream):
            response = await self._client.post(path, content=content, headers=headers)
        raise_for_status(response, self.upstream)
        answer = json_body(response, self.upstream)
        if not isinstance(answer, dict):
            raise BadResponseError("expected a JSON object", upstream=self.upstream)
        return answer

    def _check_answer(self, answer: Mapping[str, Any], fields: Iterable[str], what: str) -> str:
        """The answer's ``MaLoi`` once its checksum (when it carries one) is right."""
        code = str(answer.get("MaLoi", ""))
        if CHECKSUM in answer:
            try:
                verify_checksum(answer, fields, self._key())
            except InvalidSignature as exc:
                raise BadResponseError(f"{what} answer: {exc}", upstream=self.upstream) from None
        error = _CODE_ERRORS.get(code)
        if error is not None:
            raise error(f"{what} refused: MaLoi {code}", upstream=self.upstream)
        return code

    async def create_payment(
        self,
        reference: str,
        amount_vnd: int,
        description: str,
        return_url: str,
        client_ip: str,
        *,
        dossier_code: str | None = None,
    ) -> PaymentRequest:
        """``init``: the platform creates the payment; its payer's URL (``client_ip`` is not part of this wire)."""
        if not isinstance(reference, str) or not _REFERENCE.fullmatch(reference):
            raise ValueError("reference must be 1-64 characters among letters, digits, '.', '_' and '-'")
        if check_amount(amount_vnd) == 0:
            raise ValueError("amount_vnd must be positive")
        now = self._clock()
        values = {
            "MaDoiTac": self.partner_code,
            "MaThamChieu": reference,
            "SoTien": amount_vnd,
            "NoiDung": description[:255],
            "MaHoSo": dossier_code or reference,
            "ThoiGianGD": format_time(now),
            "UrlQuayLai": return_url,
        }
        answer = await self._call("init", signed(values, INIT_FIELDS, self._key()))
        code = self._check_answer(answer, INIT_RESPONSE_FIELDS, "init")
        url = answer.get("UrlThanhToan")
        if code != "00":
            raise PermanentError(f"init refused: MaLoi {code}", upstream=self.upstream)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise BadResponseError("init answer without UrlThanhToan", upstream=self.upstream)
        logger.info("Payment %s created at the national platform (%d VND)", reference, amount_vnd)
        number = answer.get("MaGiaoDich")
        return PaymentRequest(url=url, reference=reference, created_at=now, transaction_no=_opt(number))

    def verify_notification(self, params: Mapping[str, Any]) -> Notification:
        """The notification ``params`` carry once ``MaXacThuc`` is verified (:class:`InvalidSignature`: answer
        ``97``; :class:`InvalidNotification`: signed but unreadable, answer ``99``)."""
        verify_checksum(params, NOTIFICATION_FIELDS, self._key())
        reference = params.get("MaThamChieu")
        if not isinstance(reference, str) or not reference:
            raise InvalidNotification("MaThamChieu is missing")
        status = params.get("TrangThai")
        if not isinstance(status, str) or not status:
            raise InvalidNotification("TrangThai is missing")
        try:
            amount = amount_of(params.get("SoTien"), "notification")
            when = params.get("ThoiGianGD")
            paid_at = parse_time(when) if isinstance(when, str) and when else None
        except ValueError as exc:
            raise InvalidNotification(str(exc)) from None
        return Notification(
            reference=reference,
            amount_vnd=amount,
            success=status == PAID,
            response_code=status,
            transaction_status=status,
            transaction_no=_opt(params.get("MaGiaoDich")),
            paid_at=paid_at,
            params={key: str(value) for key, value in params.items()},
        )

    async def query(self, reference: str, *, transaction_date: datetime | str | None = None) -> PaymentStatus:
        """Where the payment ``reference`` stands at the platform (``transaction_date`` is not needed here)."""
        values = {"MaDoiTac": self.partner_code, "MaThamChieu": reference}
        answer = await self._call("query", signed(values, QUERY_FIELDS, self._key()))
        code = self._check_answer(answer, QUERY_RESPONSE_FIELDS, "query")
        if code == "01":
            return PaymentStatus(reference, PaymentState.UNKNOWN, response_code=code)
        if code != "00":
            raise PermanentError(f"query refused: MaLoi {code}", upstream=self.upstream)
        status = str(answer.get("TrangThai", ""))
        state = PaymentState.PAID if status == PAID else PaymentState.PENDING if status in _PENDING else None
        try:
            amount = amount_of(answer.get("SoTien"), "query answer")
            when = answer.get("ThoiGianGD")
            paid_at = parse_time(when) if state is PaymentState.PAID and isinstance(when, str) and when else None
        except ValueError as exc:
            raise BadResponseError(str(exc), upstream=self.upstream) from None
        return PaymentStatus(
            reference=reference,
            state=state or PaymentState.FAILED,
            amount_vnd=amount,
            transaction_no=_opt(answer.get("MaGiaoDich")),
            paid_at=paid_at,
            response_code=code,
            transaction_status=status or None,
        )

    def reconcile(self, settlement_csv: str, local: Iterable[LocalPayment]) -> ReconciliationReport:
        """Compare the platform's settlement file for a day with the gateway's payments of that day."""
        return compare_settlement(parse_settlement(settlement_csv), local)


def _opt(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
