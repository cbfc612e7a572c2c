"""The gateway's values in the reference service's terms: a dossier as ``HoSo``, components, checked keys and codes.

:func:`dossier_to_hoso` turns a dossier (the shape of ``docs/agency-rest-contract.md``) into the content of the
reference ``HoSo`` element; the other helpers check what the client sends and read the timestamps it receives.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import pybase64

from adapters.onestop.rest import AGENCY_TIME

__all__ = ["dossier_to_hoso"]


def aware(value: Any, name: str) -> datetime | None:
    """``value`` (a datetime or ISO 8601 text) as an aware datetime, agency time when it has no offset."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise ValueError(f"{name} is not an ISO 8601 timestamp") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=AGENCY_TIME)
    offset = parsed.utcoffset()
    return parsed if offset is None else parsed.replace(tzinfo=timezone(offset))  # isodate's tzinfo → stdlib's


def text(value: Any) -> str | None:
    """``value`` as text, ``None`` for nothing or empty text."""
    return None if value in (None, "") else str(value)


def component(item: Mapping[str, Any]) -> dict[str, Any]:
    """A dossier component as a reference ``ThanhPhanHoSo`` (its content inline, or its URL)."""
    code = item.get("code")
    if not isinstance(code, str) or not code:
        raise ValueError("every component needs a code")
    converted: dict[str, Any] = {
        "MaThanhPhan": code,
        "TenThanhPhan": text(item.get("name")),
        "TenTep": text(item.get("filename")),
        "LoaiNoiDung": text(item.get("content_type")),
    }
    sha256 = item.get("sha256")
    if isinstance(sha256, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        converted["MaBam"] = sha256.lower()
    content = item.get("content_base64")
    if content:
        try:
            converted["NoiDung"] = pybase64.b64decode(str(content), validate=True)  # SIMD: large files stay cheap
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"component {code}: content_base64 is not base64") from exc
    elif item.get("fetch_url"):
        converted["DuongDan"] = str(item["fetch_url"])
    else:
        raise ValueError(f"component {code} has neither content_base64 nor fetch_url")
    return {key: value for key, value in converted.items() if value is not None}


def _applicant(applicant: Any) -> dict[str, Any] | None:
    if not isinstance(applicant, Mapping) or not applicant.get("full_name"):
        return None
    person = {
        "LoaiDoiTuong": text(applicant.get("kind")),
        "HoTen": str(applicant["full_name"]),
        "SoGiayTo": text(applicant.get("id_number")),
        "SoDienThoai": text(applicant.get("phone")),
        "Email": text(applicant.get("email")),
        "DiaChi": text(applicant.get("address")),
    }
    return {key: value for key, value in person.items() if value is not None}


def _fees(fees: Any) -> list[dict[str, Any]]:
    converted = []
    for fee in fees or ():
        amount = fee.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0 or amount != int(amount):
            raise ValueError(f"fee {fee.get('code')}: amount must be a non-negative whole number of VND")
        entry = {"MaPhi": str(fee.get("code") or ""), "TenPhi": text(fee.get("name")), "SoTien": int(amount)}
        if not entry["MaPhi"]:
            raise ValueError("every fee needs a code")
        converted.append({key: value for key, value in entry.items() if value is not None})
    return converted


def dossier_to_hoso(dossier: Mapping[str, Any]) -> dict[str, Any]:
    """A dossier (the reference REST contract's shape) as the reference ``HoSo`` element's content."""
    code = dossier.get("code")
    procedure = dossier.get("procedure_code")
    if not isinstance(code, str) or not code.strip():
        raise ValueError("the dossier code must be a non-empty string")
    if not isinstance(procedure, str) or not procedure:
        raise ValueError("the dossier has no procedure_code")
    person = _applicant(dossier.get("applicant") or {})
    fees = _fees(dossier.get("fees"))
    payment = dossier.get("payment")
    # A fixed time (never "now"): a retry must send the very same request, or the agency sees a reused key.
    received = None
    for name in ("received_at", "submitted_at", "created_at"):
        received = aware(dossier.get(name), name)
        if received is not None:
            break
    if received is None:
        raise ValueError("the dossier has no received_at (nor submitted_at) for NgayTiepNhan")
    hoso: dict[str, Any] = {
        "MaHoSo": code,
        "MaTTHC": procedure,
        "MaCoQuan": text(dossier.get("agency_code")),
        "TrichYeu": text(dossier.get("summary")),
        "KenhNop": text(dossier.get("channel")),
        "NgayTiepNhan": received,
        "NgayHenTra": aware(dossier.get("due_at"), "due_at"),
        "NguoiNop": person,
        "ThanhPhanHoSo": [component(item) for item in dossier.get("components") or ()],
        "PhiLePhi": fees,
        "YeuCauDoiChieuBanGoc": bool(dossier.get("originals_check_required", False)),
        "HinhThucTraKetQua": text(dossier.get("return_method")),
        "HanXuLyCoQuan": aware(dossier.get("agency_due_at"), "agency_due_at"),
        "TrangThaiThanhToan": text(payment.get("status")) if isinstance(payment, Mapping) else None,
    }
    return {key: value for key, value in hoso.items() if value is not None and value != []}


def checked_code(code: Any) -> str:
    """``code`` when it is a usable dossier code (``ValueError`` otherwise)."""
    if not isinstance(code, str) or not code.strip() or any(ord(c) < 32 for c in code):
        raise ValueError("the dossier code must be a non-empty string")
    return code


def checked_key(key: Any) -> str:
    """``key`` when it is a usable idempotency key (``ValueError`` otherwise)."""
    if not isinstance(key, str) or not key or len(key) > 255 or not key.isascii() or not key.isprintable():
        raise ValueError("the idempotency key must be 1-255 printable ASCII characters")
    return key
