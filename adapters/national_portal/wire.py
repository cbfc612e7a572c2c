"""The national public-service portal's wire shape (*Cổng Dịch vụ công quốc gia*): the one module that knows it.

Everything the portal's published integration shape fixes lives here, so that a change of spec is one edit: paths,
header and field names, service names, error codes, the time format, the records sent and how answers are read.
:mod:`adapters.national_portal.client` speaks it; :mod:`gateway.simulators.national_portal` answers it.

Login::

    POST {login path}        header  dstcode: <province code>
    {"username": "...", "password": "..."}
    -> {"error_code": 0 | "00", "session": "<token>"}          (another error_code: refused)

Business calls::

    POST {service path}      header  dstcode: <province code>
    {"session": "<token>", "madonvi": "<unit code>", "service": "DongBoHoSoMC", "isUpdating": false,
     "data": [{"MaHoSo": "...", "MaTTHC": "...", "TrangThaiHoSo": 2, "NgayTiepNhan": "20261123083000", ...}]}
    -> {"error_code": "00", "message": "...",
        "result": [{"MaHoSo": "...", "error_code": "00"}, {"MaHoSo": "...", "error_code": "11", "message": "..."}]}

``service`` is ``DongBoHoSoMC`` (dossier sync), ``CapNhatTienDoHoSoMC`` (processing steps), ``DanhGiaHaiLongMC``
(the applicant's satisfaction rating of a returned dossier, :class:`RatingRecord`), ``TraCuuHoSoMC`` (the
status the portal holds for each ``MaHoSo`` of ``data``, answered in ``result`` with ``TrangThaiHoSo``; ``13`` for a
dossier it does not have) or, on the sharing path, ``LayDanhSachTTHC`` (the procedure catalogue, answered in
``result``; :func:`procedure_from_wire` reads one entry). A dossier the portal already has is sent again with
``isUpdating: true``. ``error_code`` ``0``/``"00"`` is success; a refused record is listed in ``result``
with its own ``error_code`` and ``message``. Times are ``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "CODE_ALREADY_EXISTS",
    "CODE_BAD_REQUEST",
    "CODE_INVALID_VALUE",
    "CODE_LOGIN_FAILED",
    "CODE_MISSING_FIELD",
    "CODE_NOT_FOUND",
    "CODE_RECORDS_REFUSED",
    "CODE_SESSION_EXPIRED",
    "CODE_SESSION_INVALID",
    "CODE_SUCCESS",
    "CODE_SYSTEM_ERROR",
    "CODE_UNIT_NOT_ALLOWED",
    "DEFAULT_PATHS",
    "DSTCODE_HEADER",
    "PORTAL_TIME",
    "SERVICE_LOOKUP",
    "SERVICE_PROCEDURES",
    "SERVICE_PROGRESS",
    "SERVICE_RATING",
    "SERVICE_SYNC",
    "TIME_FORMAT",
    "Channel",
    "DossierRecord",
    "PortalProcedure",
    "ProgressRecord",
    "RatingRecord",
    "business_body",
    "format_time",
    "is_auth_code",
    "is_session_code",
    "is_success",
    "login_body",
    "lookup_record",
    "lookup_status",
    "normalize_code",
    "parse_time",
    "procedure_from_wire",
    "rating_problem",
    "rating_score",
    "record_key",
    "record_outcomes",
]

# -- transport ---------------------------------------------------------------------------------------------------------

#: Paths relative to the portal's base URL: login, business services, sharing (catalogue) services.
DEFAULT_PATHS: Mapping[str, str] = MappingProxyType({"login": "/login", "service": "/service", "share": "/share"})
#: The header carrying the province's code, on the login and every business call.
DSTCODE_HEADER = "dstcode"

# -- services ----------------------------------------------------------------------------------------------------------

SERVICE_SYNC = "DongBoHoSoMC"
SERVICE_PROGRESS = "CapNhatTienDoHoSoMC"
SERVICE_LOOKUP = "TraCuuHoSoMC"
SERVICE_RATING = "DanhGiaHaiLongMC"
SERVICE_PROCEDURES = "LayDanhSachTTHC"

# -- error codes (normalised by normalize_code: 0 and "0" are "00") --------------------------------------------------

CODE_SUCCESS = "00"
CODE_LOGIN_FAILED = "01"  # wrong username or password (or dstcode)
CODE_UNIT_NOT_ALLOWED = "02"  # the account may not act for this madonvi
CODE_SESSION_INVALID = "03"  # unknown session token
CODE_SESSION_EXPIRED = "04"  # the session timed out: log in again
CODE_RECORDS_REFUSED = "05"  # some records were refused: see result[]
CODE_BAD_REQUEST = "06"  # malformed call or unknown service
CODE_SYSTEM_ERROR = "99"  # the portal failed: try again later (also per record: that record was not stored)
# Per-record codes (in result[]).
CODE_MISSING_FIELD = "11"
CODE_INVALID_VALUE = "12"
CODE_NOT_FOUND = "13"  # progress for, or an update of, a dossier the portal does not have
CODE_ALREADY_EXISTS = "14"  # a new dossier (isUpdating false) the portal already has

_SESSION_CODES = frozenset({CODE_SESSION_INVALID, CODE_SESSION_EXPIRED})
_AUTH_CODES = frozenset({CODE_LOGIN_FAILED, CODE_UNIT_NOT_ALLOWED})

# -- time --------------------------------------------------------------------------------------------------------------

#: Vietnam's time: UTC+7 all year (no daylight saving since 1975).
PORTAL_TIME = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")
TIME_FORMAT = "%Y%m%d%H%M%S"
_TIME_PATTERN = re.compile(r"\d{14}")


def format_time(moment: datetime) -> str:
    """``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh; ``moment`` must be timezone-aware."""
    if not isinstance(moment, datetime):
        raise TypeError("expected a datetime")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: give the time zone (times are stored as aware UTC)")
    return moment.astimezone(PORTAL_TIME).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """The aware datetime a ``yyyyMMddHHmmss`` string (Asia/Ho_Chi_Minh) stands for; ``ValueError`` otherwise."""
    if not isinstance(text, str) or not _TIME_PATTERN.fullmatch(text):
        raise ValueError("expected yyyyMMddHHmmss")
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=PORTAL_TIME)


# -- codes -------------------------------------------------------------------------------------------------------------


def normalize_code(value: Any) -> str | None:
    """An ``error_code`` as a two-digit string (``0``, ``"0"`` and ``"00"`` are ``"00"``); ``None`` when absent."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"{value:02d}" if value >= 0 else str(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.isdigit():
            return f"{int(text):02d}"
        return text
    return None


def is_success(code: str | None) -> bool:
    return code == CODE_SUCCESS


def is_session_code(code: str | None) -> bool:
    """The session is unknown or expired: log in again and retry."""
    return code in _SESSION_CODES


def is_auth_code(code: str | None) -> bool:
    """The credentials or the unit were refused: an operator must act."""
    return code in _AUTH_CODES


# -- records -----------------------------------------------------------------------------------------------------------


class Channel(IntEnum):
    """``KenhThucHien``: how the dossier was submitted."""

    IN_PERSON = 1
    ONLINE = 2
    POST = 3


def _text(value: Any, name: str, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")


def _code(value: Any, name: str, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer code")


def _moment(value: Any, name: str, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _compact(pairs: Sequence[tuple[str, Any]], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The wire object: ``None`` values left out, datetimes formatted, ``extra`` added (never overriding)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if value is None:
            continue
        out[key] = format_time(value) if isinstance(value, datetime) else value
    clash = sorted(set(extra) & set(out))
    if clash:
        raise ValueError(f"extra fields would override the record's own: {', '.join(clash)}")
    out.update(extra)
    return out


@dataclass(frozen=True)
class DossierRecord:
    """One dossier of a ``DongBoHoSoMC`` call.

    ``status_code`` is the national ``TrangThaiHoSo`` code, given by the caller (the gateway keeps the mapping from
    its statuses in one table, :mod:`gateway.domain.status`). ``extra`` holds further wire fields as the portal names
    them (``TaiLieuNop``, ``DanhSachLePhi``, ``DanhSachGiayToKetQua``...). Personal data stays out of ``repr``.
    """

    code: str  # MaHoSo
    procedure_code: str  # MaTTHC
    status_code: int  # TrangThaiHoSo
    received_at: datetime  # NgayTiepNhan
    channel: int  # KenhThucHien (Channel)
    due_at: datetime | None = None  # NgayHenTra
    procedure_name: str | None = None  # TenTTHC
    field_code: str | None = None  # MaLinhVuc
    field_name: str | None = None  # TenLinhVuc
    summary: str | None = None  # TrichYeuHoSo
    processing_unit: str | None = None  # DonViXuLy
    applicant_kind: int | None = None  # LoaiDoiTuong: 1 citizen, 2 organisation
    applicant_name: str | None = field(default=None, repr=False)  # ChuHoSo
    applicant_id: str | None = field(default=None, repr=False)  # MaDoiTuong
    email: str | None = field(default=None, repr=False)  # Email
    phone: str | None = field(default=None, repr=False)  # SoDienThoai
    return_by_post: bool | None = None  # HinhThuc: 0 in person, 1 by post
    completed_at: datetime | None = None  # NgayKetThucXuLy
    returned_at: datetime | None = None  # NgayTra
    note: str | None = field(default=None, repr=False)  # GhiChu
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _text(self.code, "code", required=True)
        _text(self.procedure_code, "procedure_code", required=True)
        _code(self.status_code, "status_code", required=True)
        if self.status_code == 0:
            raise ValueError("status_code must be a TrangThaiHoSo code (1 or more)")
        _moment(self.received_at, "received_at", required=True)
        if isinstance(self.channel, bool) or self.channel not in tuple(Channel):
            raise ValueError("channel must be 1 (in person), 2 (online) or 3 (post)")
        for name in ("due_at", "completed_at", "returned_at"):
            _moment(getattr(self, name), name)
        _code(self.applicant_kind, "applicant_kind")
        if self.return_by_post is not None and not isinstance(self.return_by_post, bool):
            raise ValueError("return_by_post must be a boolean")

    def to_wire(self) -> dict[str, Any]:
        hinh_thuc = None if self.return_by_post is None else int(self.return_by_post)
        return _compact(
            [
                ("MaHoSo", self.code),
                ("MaTTHC", self.procedure_code),
                ("TenTTHC", self.procedure_name),
                ("MaLinhVuc", self.field_code),
                ("TenLinhVuc", self.field_name),
                ("KenhThucHien", int(self.channel)),
                ("ChuHoSo", self.applicant_name),
                ("LoaiDoiTuong", self.applicant_kind),
                ("MaDoiTuong", self.applicant_id),
                ("Email", self.email),
                ("SoDienThoai", self.phone),
                ("TrichYeuHoSo", self.summary),
                ("NgayTiepNhan", self.received_at),
                ("NgayHenTra", self.due_at),
                ("TrangThaiHoSo", self.status_code),
                ("NgayKetThucXuLy", self.completed_at),
                ("NgayTra", self.returned_at),
                ("HinhThuc", hinh_thuc),
                ("DonViXuLy", self.processing_unit),
                ("GhiChu", self.note),
            ],
            self.extra,
        )


@dataclass(frozen=True)
class ProgressRecord:
    """One processing step of a ``CapNhatTienDoHoSoMC`` call (``status_code``: the ``TrangThai`` code then)."""

    dossier_code: str  # MaHoSo
    at: datetime  # ThoiDiemXuLy
    content: str  # NoiDungXuLy
    status_code: int | None = None  # TrangThai
    handler: str | None = field(default=None, repr=False)  # NguoiXuLy
    title: str | None = None  # ChucDanh
    department: str | None = None  # PhongBanXuLy
    started_at: datetime | None = None  # NgayBatDau
    due_at: datetime | None = None  # NgayKetThucTheoQuyDinh
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _text(self.dossier_code, "dossier_code", required=True)
        _moment(self.at, "at", required=True)
        _text(self.content, "content", required=True)
        _code(self.status_code, "status_code")
        for name in ("started_at", "due_at"):
            _moment(getattr(self, name), name)

    def to_wire(self) -> dict[str, Any]:
        return _compact(
            [
                ("MaHoSo", self.dossier_code),
                ("NguoiXuLy", self.handler),
                ("ChucDanh", self.title),
                ("ThoiDiemXuLy", self.at),
                ("PhongBanXuLy", self.department),
                ("NoiDungXuLy", self.content),
                ("TrangThai", self.status_code),
                ("NgayBatDau", self.started_at),
                ("NgayKetThucTheoQuyDinh", self.due_at),
            ],
            self.extra,
        )


@dataclass(frozen=True)
class RatingRecord:
    """One rating of a ``DanhGiaHaiLongMC`` call: a score from 1 to 5 per criterion (``DanhSachTieuChi``:
    ``[{"MaTieuChi", "Diem"}]``, the criterion codes as the gateway names them), their mean (``DiemTrungBinh``) and
    the applicant's comment (``NoiDungGopY``, left out of ``repr``)."""

    dossier_code: str  # MaHoSo
    procedure_code: str  # MaTTHC
    agency_code: str  # MaCoQuan: the agency that returned the result
    rated_at: datetime  # NgayDanhGia
    scores: Mapping[str, int]
    comment: str | None = field(default=None, repr=False)  # NoiDungGopY

    def __post_init__(self) -> None:
        for name in ("dossier_code", "procedure_code", "agency_code"):
            _text(getattr(self, name), name, required=True)
        _moment(self.rated_at, "rated_at", required=True)
        if not self.scores or any(rating_score(v) is None for v in self.scores.values()):
            raise ValueError("scores must give each criterion a whole number from 1 to 5")

    def to_wire(self) -> dict[str, Any]:
        scores = [{"MaTieuChi": key, "Diem": value} for key, value in self.scores.items()]
        return _compact(
            [
                ("MaHoSo", self.dossier_code),
                ("MaTTHC", self.procedure_code),
                ("MaCoQuan", self.agency_code),
                ("NgayDanhGia", self.rated_at),
                ("DanhSachTieuChi", scores),
                ("DiemTrungBinh", round(sum(self.scores.values()) / len(self.scores), 2)),
                ("NoiDungGopY", self.comment),
            ],
            {},
        )


def rating_score(value: Any) -> int | None:
    """A ``Diem`` as a whole number 1..5 (``None`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        return None
    return value


def rating_problem(record: Any) -> tuple[str, str] | None:
    """What is wrong with a received ``DanhGiaHaiLongMC`` record (the per-record error code and message), if
    anything: the portal's checks, kept here so the simulator answers as the portal does."""
    if not isinstance(record, Mapping):
        return CODE_INVALID_VALUE, "Bản ghi không hợp lệ"
    for name in ("MaHoSo", "MaTTHC", "MaCoQuan", "NgayDanhGia"):
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            return CODE_MISSING_FIELD, f"Thiếu {name}"
    try:
        parse_time(record["NgayDanhGia"])
    except ValueError:
        return CODE_INVALID_VALUE, "NgayDanhGia không đúng định dạng yyyyMMddHHmmss"
    scores = record.get("DanhSachTieuChi")
    if not isinstance(scores, list) or not scores:
        return CODE_MISSING_FIELD, "Thiếu DanhSachTieuChi"
    for item in scores:
        if not isinstance(item, Mapping) or not isinstance(item.get("MaTieuChi"), str):
            return CODE_INVALID_VALUE, "Tiêu chí không hợp lệ"
        if rating_score(item.get("Diem")) is None:
            return CODE_INVALID_VALUE, "Điểm đánh giá phải từ 1 đến 5"
    return None


def record_key(wire_record: Mapping[str, Any]) -> str | None:
    """The dossier code a wire record (sent or answered) is about."""
    value = wire_record.get("MaHoSo")
    return value if isinstance(value, str) else None


# -- bodies ------------------------------------------------------------------------------------------------------------


def login_body(username: str, password: str) -> dict[str, Any]:
    return {"username": username, "password": password}


def business_body(
    session: str,
    madonvi: str,
    service: str,
    *,
    updating: bool | None = None,
    data: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"session": session, "madonvi": madonvi, "service": service}
    if updating is not None:
        body["isUpdating"] = updating
    if data is not None:
        body["data"] = list(data)
    return body


# -- answers -----------------------------------------------------------------------------------------------------------


def record_outcomes(answer: Mapping[str, Any], sent: Sequence[Mapping[str, Any]]) -> list[tuple[str, str] | None]:
    """For each sent record, ``None`` when accepted or ``(error code, message)`` when refused.

    Per-record results (``result``) are matched by position when there is one per sent record, otherwise by
    ``MaHoSo``. A record no result speaks of is accepted when the call as a whole succeeded or refused only some
    records; otherwise every such record carries the call's own error.
    """
    top = normalize_code(answer.get("error_code"))
    top_message = str(answer.get("message") or "")
    results = answer.get("result")
    entries = [entry for entry in results if isinstance(entry, Mapping)] if isinstance(results, list) else []
    default: tuple[str, str] | None = None
    if not (is_success(top) or top == CODE_RECORDS_REFUSED):
        default = (top or "?", top_message or "refused")

    def outcome(entry: Mapping[str, Any]) -> tuple[str, str] | None:
        code = normalize_code(entry.get("error_code"))
        if code is None or is_success(code):
            return None
        return code, str(entry.get("message") or "")

    if entries and len(entries) == len(sent):
        paired = all(record_key(e) in (None, record_key(s)) for e, s in zip(entries, sent, strict=True))
        if paired:
            return [outcome(entry) for entry in entries]
    by_key: dict[str, tuple[str, str] | None] = {}
    for entry in entries:
        key = record_key(entry)
        if key is not None and by_key.get(key) is None:  # a refusal wins over an acceptance of the same code
            by_key[key] = outcome(entry)
    outcomes: list[tuple[str, str] | None] = []
    for record in sent:
        key = record_key(record)
        outcomes.append(by_key[key] if key in by_key else default)
    return outcomes


# -- status lookup -----------------------------------------------------------------------------------------------------


def lookup_record(dossier_code: str) -> dict[str, Any]:
    """One ``data`` record of a ``TraCuuHoSoMC`` call."""
    _text(dossier_code, "dossier_code", required=True)
    return {"MaHoSo": dossier_code}


def lookup_status(entry: Mapping[str, Any]) -> int | None:
    """The ``TrangThaiHoSo`` a ``TraCuuHoSoMC`` result entry gives (``None`` when it gives none readable)."""
    value = entry.get("TrangThaiHoSo")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


# -- procedure catalogue -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortalProcedure:
    """One ``LayDanhSachTTHC`` entry, read: what the portal says of a procedure (``None``: it does not say).

    ``agencies`` are the ``MACOQUAN`` of ``COQUANTHUCHIEN``; ``processing_days`` the smallest whole number of days of
    ``CACHTHUCTHUCHIEN[].THOIGIAN[].THOIGIANGIAIQUYET``; ``fees`` the ``PHILEPHI`` entries (``code``, ``name``,
    ``amount`` in whole VND) and ``components`` the ``GIAYTO`` of ``THANHPHANHOSO`` (``code``, ``name``), each
    without duplicates; ``active`` is false when ``TRANGTHAI`` says the procedure is no longer in force.
    """

    code: str  # MATTHC
    name: str  # TENTTHC
    active: bool = True  # TRANGTHAI (1 in force)
    agencies: tuple[str, ...] = ()
    processing_days: int | None = None
    fees: tuple[Mapping[str, Any], ...] = ()
    components: tuple[Mapping[str, str], ...] = ()
    field_code: str | None = None  # LINHVUCTHUCHIEN[0].MALINHVUC
    level: str | None = None  # CAPTHUCHIEN


def _str(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _whole(value: Any) -> int | None:
    """A whole non-negative number from an int, or a string of digits (``"150000"``, ``"150.000"``: no fractions)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str):
        text = value.strip().replace(".", "").replace(",", "").replace(" ", "")
        return int(text) if text.isdigit() else None
    return None  # floats and anything else: money is never read from a float


def procedure_from_wire(entry: Mapping[str, Any]) -> PortalProcedure:
    """Read a catalogue entry; ``ValueError`` when it has no ``MATTHC`` or ``TENTTHC``."""
    code = _str(entry.get("MATTHC"))
    name = _str(entry.get("TENTTHC"))
    if code is None or name is None:
        raise ValueError("a catalogue entry needs MATTHC and TENTTHC")
    status = entry.get("TRANGTHAI")
    active = status is None or str(status).strip() in ("1", "")
    agencies: list[str] = []
    for agency in _dicts(entry.get("COQUANTHUCHIEN")):
        agency_code = _str(agency.get("MACOQUAN"))
        if agency_code and agency_code not in agencies:
            agencies.append(agency_code)
    days: list[int] = []
    fees: list[Mapping[str, Any]] = []
    for way in _dicts(entry.get("CACHTHUCTHUCHIEN")):
        for timing in _dicts(way.get("THOIGIAN")):
            value = _whole(timing.get("THOIGIANGIAIQUYET"))
            if value is not None:
                days.append(value)
            for fee in _dicts(timing.get("PHILEPHI")):
                fee_code, amount = _str(fee.get("MAPHILEPHI")), _whole(fee.get("SOTIEN"))
                if fee_code and amount is not None and all(f["code"] != fee_code for f in fees):
                    fees.append({"code": fee_code, "name": _str(fee.get("MOTA")) or fee_code, "amount": amount})
    components: list[Mapping[str, str]] = []
    for group in _dicts(entry.get("THANHPHANHOSO")):
        for paper in _dicts(group.get("GIAYTO")):
            paper_code, paper_name = _str(paper.get("MAGIAYTO")), _str(paper.get("TENGIAYTO"))
            if paper_code and paper_name and all(c["code"] != paper_code for c in components):
                components.append({"code": paper_code, "name": paper_name})
    fields = _dicts(entry.get("LINHVUCTHUCHIEN"))
    return PortalProcedure(
        code=code,
        name=name,
        active=active,
        agencies=tuple(agencies),
        processing_days=min(days) if days else None,
        fees=tuple(fees),
        components=tuple(components),
        field_code=_str(fields[0].get("MALINHVUC")) if fields else None,
        level=_str(entry.get("CAPTHUCHIEN")),
    )
