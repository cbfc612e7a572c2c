"""The wire of the national payment platform (the gateway's reading of its published shape), in one module.

JSON over HTTPS; every message carries ``MaXacThuc``, the lowercase hex SHA-256 of the message's other field values
in the order listed below, joined with ``|``, followed by ``|`` and the shared secret::

    init          POST {base_url}/init   MaDoiTac|MaThamChieu|SoTien|NoiDung|MaHoSo|ThoiGianGD|UrlQuayLai
                  -> {"MaLoi": "00", "UrlThanhToan", "MaGiaoDich"}
    query         POST {base_url}/query  MaDoiTac|MaThamChieu
                  -> {"MaLoi", "TrangThai", "SoTien", "MaGiaoDich", "ThoiGianGD"}
    notification  POST /api/v1/payments/notify/national   MaThamChieu|MaGiaoDich|SoTien|TrangThai|ThoiGianGD
                  answered {"MaLoi": "00"|"01"|"02"|"04"|"97"|"99"} (the VNPay-style RspCode meanings)

``MaThamChieu`` is the gateway's reference, ``SoTien`` the amount in VND (an integer: no × 100), ``TrangThai`` ``00``
for paid, times ``yyyyMMddHHmmss`` in Vietnam's time (GMT+7). The platform's answers are checked with the same
checksum over their fields when they carry one. The daily settlement file is a CSV with the notification's columns.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
from collections.abc import Iterable, Mapping
from typing import Any

from adapters.payment.port import InvalidSignature, PaymentState, SettlementFormatError, SettlementRow
from adapters.payment.vnpay_wire import IpnCode, format_time, parse_time

__all__ = [
    "CHECKSUM",
    "INIT_FIELDS",
    "INIT_RESPONSE_FIELDS",
    "NOTIFICATION_FIELDS",
    "PAID",
    "QUERY_FIELDS",
    "QUERY_RESPONSE_FIELDS",
    "SETTLEMENT_COLUMNS",
    "amount_of",
    "checksum",
    "format_time",
    "notification_answer",
    "parse_settlement",
    "parse_time",
    "signed",
    "verify_checksum",
]

CHECKSUM = "MaXacThuc"
#: ``TrangThai`` of a paid transaction.
PAID = "00"
INIT_FIELDS = ("MaDoiTac", "MaThamChieu", "SoTien", "NoiDung", "MaHoSo", "ThoiGianGD", "UrlQuayLai")
INIT_RESPONSE_FIELDS = ("MaLoi", "UrlThanhToan", "MaGiaoDich")
QUERY_FIELDS = ("MaDoiTac", "MaThamChieu")
QUERY_RESPONSE_FIELDS = ("MaLoi", "TrangThai", "SoTien", "MaGiaoDich", "ThoiGianGD")
NOTIFICATION_FIELDS = ("MaThamChieu", "MaGiaoDich", "SoTien", "TrangThai", "ThoiGianGD")
SETTLEMENT_COLUMNS = NOTIFICATION_FIELDS
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def checksum(values: Mapping[str, Any], fields: Iterable[str], secret: str) -> str:
    """``MaXacThuc`` of ``values``: hex SHA-256 of ``fields``' values joined by ``|``, then ``|`` and the secret."""
    message = "|".join([*(_text(values.get(name)) for name in fields), secret])
    return hashlib.sha256(message.encode("utf-8")).hexdigest()


def signed(values: Mapping[str, Any], fields: Iterable[str], secret: str) -> dict[str, Any]:
    """``values`` with their ``MaXacThuc``."""
    return {**values, CHECKSUM: checksum(values, fields, secret)}


def verify_checksum(values: Mapping[str, Any], fields: Iterable[str], secret: str) -> None:
    """Return when ``values`` carry the right ``MaXacThuc``; :class:`InvalidSignature` otherwise."""
    given = values.get(CHECKSUM)
    if not isinstance(given, str) or not _HEX_SHA256.fullmatch(given):
        raise InvalidSignature("MaXacThuc is missing or not a lowercase hex SHA-256")
    if not hmac.compare_digest(given.encode("ascii"), checksum(values, fields, secret).encode("ascii")):
        raise InvalidSignature("MaXacThuc does not match")


def amount_of(value: Any, what: str) -> int:
    """VND from a ``SoTien`` value (a non-negative integer, or its digits); ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: SoTien must be an integer number of VND")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"{what}: SoTien must be an integer number of VND")


def notification_answer(code: IpnCode | str) -> dict[str, str]:
    """The JSON answer to a notification: ``{"MaLoi": code}`` (``ValueError`` for other codes)."""
    return {"MaLoi": IpnCode(code).value}


def parse_settlement(settlement_csv: str) -> list[SettlementRow]:
    """The rows of a settlement CSV (header row first: :data:`SETTLEMENT_COLUMNS`, ``MaGiaoDich`` and ``ThoiGianGD``
    optional); :class:`SettlementFormatError` for a bad file."""
    reader = csv.DictReader(io.StringIO(settlement_csv.removeprefix("\ufeff"), newline=""), strict=True)
    rows: list[SettlementRow] = []
    try:
        missing = [name for name in ("MaThamChieu", "SoTien", "TrangThai") if name not in (reader.fieldnames or [])]
        if missing:
            raise SettlementFormatError(f"settlement file: missing columns {', '.join(missing)}")
        for record in reader:
            line = reader.line_num
            values = {key: (value or "").strip() for key, value in record.items() if key is not None}
            if None in record or not values.get("MaThamChieu"):
                raise SettlementFormatError(f"settlement file line {line}: a row without MaThamChieu or too long")
            try:
                amount = amount_of(values["SoTien"], f"settlement file line {line}")
                paid_at = parse_time(values["ThoiGianGD"]) if values.get("ThoiGianGD") else None
            except ValueError as exc:
                raise SettlementFormatError(str(exc)) from None
            state = PaymentState.PAID if values["TrangThai"] == PAID else PaymentState.FAILED
            rows.append(
                SettlementRow(values["MaThamChieu"], amount, state, values.get("MaGiaoDich") or None, paid_at, line)
            )
    except csv.Error as exc:
        raise SettlementFormatError(f"settlement file line {reader.line_num}: {exc}") from None
    return rows
