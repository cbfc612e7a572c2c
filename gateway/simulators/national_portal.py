"""A simulated national public-service portal speaking :mod:`adapters.national_portal.wire`.

For tests, demos and the province's own trials; never for production (state in memory, ``/_sim`` open). It behaves
as the real portal does, awkward parts included:

* ``POST /login`` with the ``dstcode`` header and ``{username, password}`` answers ``{error_code, session}``;
  wrong credentials or a wrong ``dstcode`` answer ``error_code`` ``01`` (HTTP 200, as the portal does);
* sessions expire after ``session_max_calls`` business calls and/or ``session_ttl_seconds`` (either may be off):
  the call after answers ``error_code`` ``04``; an unknown token answers ``03``;
* ``POST /service`` handles ``DongBoHoSoMC`` (dossiers stored by ``MaHoSo`` with their latest ``TrangThaiHoSo``) and
  ``CapNhatTienDoHoSoMC`` (steps appended to the dossier's progress); malformed records are refused one by one
  (``result[]``, call-level ``error_code`` ``05``); a new dossier the portal already has (``isUpdating`` false) is
  refused with ``14``, an update or a step for an unknown dossier with ``13``;
  ``DanhGiaHaiLongMC`` stores a dossier's satisfaction rating (``ratings``, by ``MaHoSo``; ``13`` for a dossier it
  does not have); ``TraCuuHoSoMC`` answers the ``TrangThaiHoSo`` it holds for each ``MaHoSo`` (``13`` for one it
  does not have);
* ``POST /share`` answers ``LayDanhSachTTHC`` with the configured catalogue;
* with ``error_rate`` (seeded by ``seed``), that share of contract requests fails with HTTP 503.

Test and demo controls, under ``/_sim``:

* ``GET /_sim/state``: dossiers, sessions, counters and the log of calls (service, ``isUpdating``, codes sent);
* ``GET /_sim/dossiers/{code}``: what the portal holds for one dossier (``TrangThaiHoSo``, the last record, the
  progress steps, how many updates), 404 when it has none;
* ``POST /_sim/faults`` ``{"down_next": N, "down_status": 503, "expire_sessions": true, "error_rate": R,
  "session_max_calls": N | null, "session_ttl_seconds": S | null, "refuse_next_records": N, "refuse_service":
  "CapNhatTienDoHoSoMC" | null}``: answer the next N contract requests with ``down_status``, expire every session
  now, change the random failure rate or the session lifetime, refuse the next N dossier or progress records (of
  ``refuse_service`` only, when given) per record with ``error_code`` ``99`` (not stored, try again) while the
  rest of their call is accepted;
* ``POST /_sim/reset``: forget dossiers, sessions, counters and faults.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from adapters.national_portal import wire

__all__ = ["DEFAULT_PROCEDURES", "NationalPortalSimulator", "create_app"]

_STATUS_CODES = range(1, 11)


def _catalogue_entry(
    code: str, name: str, field: tuple[str, str], agencies: Sequence[tuple[str, str]], days: int, **more: Any
) -> dict[str, Any]:
    fees = more.get("fees", ())
    papers = more.get("papers", ())
    return {
        "MATTHC": code,
        "TENTTHC": name,
        "LINHVUCTHUCHIEN": [{"MALINHVUC": field[0], "TENLINHVUC": field[1]}],
        "CAPTHUCHIEN": more.get("level", "Cấp Tỉnh"),
        "COQUANTHUCHIEN": [{"MACOQUAN": a, "TENCOQUAN": n} for a, n in agencies],
        "CACHTHUCTHUCHIEN": [
            {
                "KENH": kenh,
                "THOIGIAN": [
                    {
                        "THOIGIANGIAIQUYET": str(days),
                        "DONVITINH": "Ngày làm việc",
                        "PHILEPHI": [{"MAPHILEPHI": c, "SOTIEN": str(amount), "MOTA": d} for c, amount, d in fees],
                    }
                ],
            }
            for kenh in ("Trực tiếp", "Trực tuyến", "Dịch vụ bưu chính")
        ],
        "THANHPHANHOSO": [{"GIAYTO": [{"MAGIAYTO": c, "TENGIAYTO": n, "SOLUONG": 1} for c, n in papers]}],
        "TRANGTHAI": more.get("status", 1),
    }


#: A small catalogue for demos (the shape of the portal's ``LayDanhSachTTHC`` entries).
DEFAULT_PROCEDURES: tuple[dict[str, Any], ...] = (
    _catalogue_entry(
        "1.009794",
        "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ",
        ("G09-XD05", "Hoạt động xây dựng"),
        [("000.00.23.H38", "Sở Xây dựng")],
        15,
        fees=[("LP1", 150000, "Lệ phí cấp giấy phép xây dựng")],
        papers=[("TP1", "Đơn đề nghị cấp giấy phép xây dựng"), ("TP2", "Bản vẽ thiết kế xây dựng")],
    ),
    _catalogue_entry(
        "1.001612",
        "Đăng ký thành lập hộ kinh doanh",
        ("G09-KH02", "Thành lập và hoạt động của hộ kinh doanh"),
        [("000.00.10.H38", "Sở Kế hoạch và Đầu tư")],
        3,
        fees=[("LP1", 100000, "Lệ phí đăng ký hộ kinh doanh")],
        papers=[("TP1", "Giấy đề nghị đăng ký hộ kinh doanh")],
        level="Cấp Huyện",
    ),
    _catalogue_entry(
        "1.000775",
        "Cấp bản sao trích lục hộ tịch",
        ("G09-TP03", "Hộ tịch"),
        [],
        1,
        papers=[("TP1", "Tờ khai cấp bản sao trích lục hộ tịch")],
        level="Cấp Xã",
    ),
)


@dataclass
class _Session:
    created: float
    calls: int = 0


@dataclass
class NationalPortalSimulator:
    """The simulated portal's state (in memory)."""

    username: str = "lgsp"
    password: str = field(default="lgsp-secret", repr=False)
    dstcode: str = "H38"
    madonvi: str | None = None  # None: any unit
    session_max_calls: int | None = None
    session_ttl_seconds: float | None = 1800.0
    error_rate: float = 0.0
    seed: int = 0
    procedures: list[dict[str, Any]] = field(default_factory=lambda: [dict(p) for p in DEFAULT_PROCEDURES])
    clock: Callable[[], float] = time.monotonic
    sessions: dict[str, _Session] = field(default_factory=dict, repr=False)
    dossiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratings: dict[str, dict[str, Any]] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    calls: list[dict[str, Any]] = field(default_factory=list)
    down_next: int = 0
    down_status: int = 503
    refuse_next_records: int = 0
    refuse_service: str | None = None

    def __post_init__(self) -> None:
        self._check_rate(self.error_rate)
        self.rng = random.Random(self.seed)  # noqa: S311 - reproducible simulated faults, not secrets

    @staticmethod
    def _check_rate(rate: Any) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError("error_rate must be between 0 and 1")

    def reset(self) -> None:
        self.sessions.clear()
        self.dossiers.clear()
        self.ratings.clear()
        self.counters.clear()
        self.calls.clear()
        self.down_next = 0
        self.refuse_next_records = 0
        self.refuse_service = None
        self.rng = random.Random(self.seed)  # noqa: S311 - reproducible simulated faults, not secrets

    def state(self) -> dict[str, Any]:
        return {
            "dossiers": self.dossiers,
            "ratings": self.ratings,
            "sessions": len(self.sessions),
            "counters": dict(self.counters),
            "calls": self.calls,
            "faults": {
                "down_next": self.down_next,
                "down_status": self.down_status,
                "error_rate": self.error_rate,
                "session_max_calls": self.session_max_calls,
                "session_ttl_seconds": self.session_ttl_seconds,
                "refuse_next_records": self.refuse_next_records,
                "refuse_service": self.refuse_service,
            },
        }

    def dossier(self, code: str) -> dict[str, Any] | None:
        """What the portal holds for dossier ``code`` (``GET /_sim/dossiers/{code}``), ``None`` when nothing."""
        known = self.dossiers.get(code)
        if known is None:
            return None
        return {
            "MaHoSo": code,
            "TrangThaiHoSo": known["TrangThaiHoSo"],
            "updates": known["updates"],
            "record": known["record"],
            "progress": known["progress"],
            "rating": self.ratings.get(code),
        }

    def set_faults(self, changes: Mapping[str, Any]) -> None:
        """Apply ``/_sim/faults`` changes (``ValueError`` for unknown or invalid ones)."""
        for name, value in changes.items():
            if name == "down_next":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError("down_next must be a non-negative integer")
                self.down_next = value
            elif name == "down_status":
                if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
                    raise ValueError("down_status must be an HTTP error status")
                self.down_status = value
            elif name == "expire_sessions":
                if value:
                    self.sessions.clear()
            elif name == "refuse_next_records":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError("refuse_next_records must be a non-negative integer")
                self.refuse_next_records = value
            elif name == "refuse_service":
                if value not in (None, wire.SERVICE_SYNC, wire.SERVICE_PROGRESS):
                    raise ValueError(f"refuse_service must be {wire.SERVICE_SYNC}, {wire.SERVICE_PROGRESS} or null")
                self.refuse_service = value
            elif name == "error_rate":
                self._check_rate(value)
                self.error_rate = float(value)
            elif name == "session_max_calls":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                    raise ValueError("session_max_calls must be a positive integer or null")
                self.session_max_calls = value
            elif name == "session_ttl_seconds":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
                    raise ValueError("session_ttl_seconds must be positive or null")
                self.session_ttl_seconds = value
            else:
                raise ValueError(f"unknown fault {name!r}")

    # -- contract ------------------------------------------------------------------------------------------------------

    def injected_failure(self) -> int | None:
        """The HTTP status of an injected failure for this request, if any."""
        self.counters["requests"] += 1
        if self.down_next > 0:
            self.down_next -= 1
            self.counters["faults"] += 1
            return self.down_status
        if self.error_rate and self.rng.random() < self.error_rate:
            self.counters["faults"] += 1
            return 503
        return None

    def login(self, body: Any, dstcode: str | None) -> dict[str, Any]:
        self.counters["logins"] += 1
        if not isinstance(body, dict):
            return {"error_code": wire.CODE_BAD_REQUEST, "message": "Yêu cầu không hợp lệ"}
        good = (
            secrets.compare_digest(str(body.get("username", "")).encode(), self.username.encode())
            and secrets.compare_digest(str(body.get("password", "")).encode(), self.password.encode())
            and dstcode == self.dstcode
        )
        if not good:
            self.counters["logins_refused"] += 1
            return {"error_code": wire.CODE_LOGIN_FAILED, "message": "Sai tên đăng nhập, mật khẩu hoặc mã tỉnh"}
        token = secrets.token_urlsafe(24)
        self.sessions[token] = _Session(created=self.clock())
        return {"error_code": 0, "message": "Đăng nhập thành công", "session": token}

    def _session_code(self, token: Any) -> str | None:
        """``None`` when the session may make this call (and it is counted), else the error code."""
        session = self.sessions.get(token) if isinstance(token, str) else None
        if session is None:
            return wire.CODE_SESSION_INVALID
        expired = (self.session_max_calls is not None and session.calls >= self.session_max_calls) or (
            self.session_ttl_seconds is not None and self.clock() - session.created >= self.session_ttl_seconds
        )
        if expired:
            del self.sessions[token]
            return wire.CODE_SESSION_EXPIRED
        session.calls += 1
        return None

    def call(self, body: Any, dstcode: str | None, *, share: bool) -> dict[str, Any]:
        """One business (or sharing) call."""
        if not isinstance(body, dict) or not isinstance(body.get("service"), str):
            return {"error_code": wire.CODE_BAD_REQUEST, "message": "Yêu cầu không hợp lệ"}
        service = body["service"]
        data = body.get("data")
        log: dict[str, Any] = {
            "service": service,
            "isUpdating": body.get("isUpdating"),
            "codes": [r.get("MaHoSo") for r in data if isinstance(r, dict)] if isinstance(data, list) else None,
        }
        self.calls.append(log)
        answer = self._call(body, dstcode, service, data, share=share)
        log["error_code"] = answer["error_code"]
        return answer

    def _call(
        self, body: dict[str, Any], dstcode: str | None, service: str, data: Any, *, share: bool
    ) -> dict[str, Any]:
        if dstcode is not None and dstcode != self.dstcode:
            return {"error_code": wire.CODE_UNIT_NOT_ALLOWED, "message": "Mã tỉnh không hợp lệ"}
        session_code = self._session_code(body.get("session"))
        if session_code is not None:
            self.counters["sessions_refused"] += 1
            message = "Phiên làm việc đã hết hạn" if session_code == wire.CODE_SESSION_EXPIRED else "Phiên không hợp lệ"
            return {"error_code": session_code, "message": message}
        if self.madonvi is not None and body.get("madonvi") != self.madonvi:
            return {"error_code": wire.CODE_UNIT_NOT_ALLOWED, "message": "Đơn vị không được phép"}
        if share:
            if service == wire.SERVICE_PROCEDURES:
                self.counters["catalogue_pulls"] += 1
                return {"error_code": "00", "message": "Thành công", "result": self.procedures}
        elif service == wire.SERVICE_LOOKUP:
            if not isinstance(data, list) or not data:
                return {"error_code": wire.CODE_BAD_REQUEST, "message": "Thiếu data"}
            self.counters["lookups"] += 1
            return {"error_code": "00", "message": "Thành công", "result": [self._lookup(record) for record in data]}
        elif service in (wire.SERVICE_SYNC, wire.SERVICE_PROGRESS, wire.SERVICE_RATING):
            updating = body.get("isUpdating", False)
            if isinstance(updating, str) and updating.lower() in ("true", "false"):
                updating = updating.lower() == "true"
            if not isinstance(data, list) or (service == wire.SERVICE_SYNC and not isinstance(updating, bool)):
                return {"error_code": wire.CODE_BAD_REQUEST, "message": "Thiếu data hoặc isUpdating"}
            if service == wire.SERVICE_SYNC:
                results = [self._sync(record, updating) for record in data]
            elif service == wire.SERVICE_RATING:
                results = [self._rating(record) for record in data]
            else:
                results = [self._progress(record) for record in data]
            refused = sum(1 for r in results if r["error_code"] != "00")
            self.counters["records_accepted"] += len(results) - refused
            self.counters["records_refused"] += refused
            if refused:
                return {
                    "error_code": wire.CODE_RECORDS_REFUSED,
                    "message": f"{refused}/{len(results)} bản ghi bị từ chối",
                    "result": results,
                }
            return {"error_code": "00", "message": "Thành công", "result": results}
        return {"error_code": wire.CODE_BAD_REQUEST, "message": f"Dịch vụ không hỗ trợ: {service}"}

    # -- records -------------------------------------------------------------------------------------------------------

    @staticmethod
    def _refusal(key: Any, code: str, message: str) -> dict[str, Any]:
        return {"MaHoSo": key if isinstance(key, str) else None, "error_code": code, "message": message}

    @staticmethod
    def _int(value: Any) -> int | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return None

    def _check_time(self, record: Mapping[str, Any], name: str, *, required: bool) -> tuple[str, str] | None:
        value = record.get(name)
        if value in (None, ""):
            return (wire.CODE_MISSING_FIELD, f"Thiếu {name}") if required else None
        try:
            wire.parse_time(value)
        except ValueError:
            return wire.CODE_INVALID_VALUE, f"{name} không đúng định dạng yyyyMMddHHmmss"
        return None

    def _lookup(self, record: Any) -> dict[str, Any]:
        key = record.get("MaHoSo") if isinstance(record, dict) else None
        if not isinstance(key, str) or not key.strip():
            return self._refusal(key, wire.CODE_MISSING_FIELD, "Thiếu MaHoSo")
        known = self.dossiers.get(key)
        if known is None:
            return self._refusal(key, wire.CODE_NOT_FOUND, "Không tìm thấy hồ sơ")
        return {"MaHoSo": key, "error_code": "00", "TrangThaiHoSo": known["TrangThaiHoSo"]}

    def _refused_by_fault(self, record: Any, service: str) -> dict[str, Any] | None:
        """The injected per-record refusal of this record (``refuse_next_records``), if any."""
        if self.refuse_next_records <= 0 or self.refuse_service not in (None, service):
            return None
        self.refuse_next_records -= 1
        self.counters["record_faults"] += 1
        key = record.get("MaHoSo") if isinstance(record, dict) else None
        return self._refusal(key, wire.CODE_SYSTEM_ERROR, "Lỗi hệ thống khi lưu bản ghi, đề nghị gửi lại")

    def _sync(self, record: Any, updating: bool) -> dict[str, Any]:
        if not isinstance(record, dict):
            return self._refusal(None, wire.CODE_INVALID_VALUE, "Bản ghi không hợp lệ")
        if (refused := self._refused_by_fault(record, wire.SERVICE_SYNC)) is not None:
            return refused
        key = record.get("MaHoSo")
        for name in ("MaHoSo", "MaTTHC"):
            value = record.get(name)
            if not isinstance(value, str) or not value.strip():
                return self._refusal(key, wire.CODE_MISSING_FIELD, f"Thiếu {name}")
        assert isinstance(key, str)  # MaHoSo was checked above
        status = self._int(record.get("TrangThaiHoSo"))
        if status not in _STATUS_CODES:
            return self._refusal(key, wire.CODE_INVALID_VALUE, "TrangThaiHoSo không hợp lệ")
        if self._int(record.get("KenhThucHien")) not in (1, 2, 3):
            return self._refusal(key, wire.CODE_INVALID_VALUE, "KenhThucHien không hợp lệ")
        for name, required in (("NgayTiepNhan", True), ("NgayHenTra", False), ("NgayTra", False)):
            problem = self._check_time(record, name, required=required)
            if problem:
                return self._refusal(key, *problem)
        known = self.dossiers.get(key)
        if known is None and updating:
            return self._refusal(key, wire.CODE_NOT_FOUND, "Hồ sơ chưa được đồng bộ")
        if known is not None and not updating:
            return self._refusal(key, wire.CODE_ALREADY_EXISTS, "Hồ sơ đã tồn tại")
        if known is None:
            self.dossiers[key] = {"record": record, "TrangThaiHoSo": status, "updates": 0, "progress": []}
        else:
            known.update(record=record, TrangThaiHoSo=status, updates=known["updates"] + 1)
        return {"MaHoSo": key, "error_code": "00"}

    def _rating(self, record: Any) -> dict[str, Any]:
        key = record.get("MaHoSo") if isinstance(record, dict) else None
        problem = wire.rating_problem(record)
        if problem is not None:
            return self._refusal(key, *problem)
        if key not in self.dossiers:
            return self._refusal(key, wire.CODE_NOT_FOUND, "Hồ sơ chưa được đồng bộ")
        self.ratings[key] = record
        return {"MaHoSo": key, "error_code": "00"}

    def _progress(self, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            return self._refusal(None, wire.CODE_INVALID_VALUE, "Bản ghi không hợp lệ")
        if (refused := self._refused_by_fault(record, wire.SERVICE_PROGRESS)) is not None:
            return refused
        key = record.get("MaHoSo")
        if not isinstance(key, str) or not key.strip():
            return self._refusal(key, wire.CODE_MISSING_FIELD, "Thiếu MaHoSo")
        content = record.get("NoiDungXuLy")
        if not isinstance(content, str) or not content.strip():
            return self._refusal(key, wire.CODE_MISSING_FIELD, "Thiếu NoiDungXuLy")
        for name, required in (("ThoiDiemXuLy", True), ("NgayBatDau", False), ("NgayKetThucTheoQuyDinh", False)):
            problem = self._check_time(record, name, required=required)
            if problem:
                return self._refusal(key, *problem)
        status = record.get("TrangThai")
        if status is not None and self._int(status) not in _STATUS_CODES:
            return self._refusal(key, wire.CODE_INVALID_VALUE, "TrangThai không hợp lệ")
        known = self.dossiers.get(key)
        if known is None:
            return self._refusal(key, wire.CODE_NOT_FOUND, "Hồ sơ chưa được đồng bộ")
        known["progress"].append(record)
        if status is not None:
            known["TrangThaiHoSo"] = self._int(status)
        return {"MaHoSo": key, "error_code": "00"}


# ----------------------------------------------------------------------------------------------------------------------
# HTTP layer
# ----------------------------------------------------------------------------------------------------------------------


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None


class _Handlers:
    """The routes' endpoints, over a :class:`NationalPortalSimulator`."""

    def __init__(self, sim: NationalPortalSimulator) -> None:
        self.sim = sim

    def _failure(self) -> Response | None:
        status = self.sim.injected_failure()
        if status is None:
            return None
        return JSONResponse({"error": "injected_failure"}, status_code=status)

    async def login(self, request: Request) -> Response:
        body = await _json_body(request)
        if (refused := self._failure()) is not None:
            return refused
        return JSONResponse(self.sim.login(body, request.headers.get(wire.DSTCODE_HEADER)))

    async def service(self, request: Request) -> Response:
        body = await _json_body(request)
        if (refused := self._failure()) is not None:
            return refused
        if body is None:
            return JSONResponse({"error_code": wire.CODE_BAD_REQUEST, "message": "JSON không hợp lệ"}, status_code=400)
        return JSONResponse(self.sim.call(body, request.headers.get(wire.DSTCODE_HEADER), share=False))

    async def share(self, request: Request) -> Response:
        body = await _json_body(request)
        if (refused := self._failure()) is not None:
            return refused
        if body is None:
            return JSONResponse({"error_code": wire.CODE_BAD_REQUEST, "message": "JSON không hợp lệ"}, status_code=400)
        return JSONResponse(self.sim.call(body, request.headers.get(wire.DSTCODE_HEADER), share=True))

    async def state(self, request: Request) -> Response:
        return JSONResponse(self.sim.state())

    async def dossier(self, request: Request) -> Response:
        held = self.sim.dossier(request.path_params["code"])
        if held is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse(held)

    async def faults(self, request: Request) -> Response:
        changes = await _json_body(request)
        try:
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            if changes.pop("reset", False):
                self.sim.reset()
            self.sim.set_faults(changes)
        except ValueError as exc:
            return JSONResponse({"error": "invalid_faults", "detail": str(exc)}, status_code=400)
        return JSONResponse(self.sim.state()["faults"])

    async def reset(self, request: Request) -> Response:
        self.sim.reset()
        return JSONResponse({"reset": True})


def create_app(
    *,
    username: str = "lgsp",
    password: str = "lgsp-secret",  # noqa: S107 - the simulator's demo credentials
    dstcode: str = "H38",
    madonvi: str | None = None,
    session_max_calls: int | None = None,
    session_ttl_seconds: float | None = 1800.0,
    error_rate: float = 0.0,
    seed: int = 0,
    procedures: Sequence[Mapping[str, Any]] | None = None,
    paths: Mapping[str, str] | None = None,
) -> ASGIApp:
    """The simulated portal as an ASGI app; its :class:`NationalPortalSimulator` is ``app.state.simulator``.

    :param username: the integration account it accepts, with ``password`` and the province's ``dstcode``.
    :param madonvi: the only unit code accepted (``None``: any).
    :param session_max_calls: business calls a session may make (``None``: unlimited).
    :param session_ttl_seconds: a session's lifetime (``None``: unlimited).
    :param error_rate: share of contract requests failing with HTTP 503 (random, seeded by ``seed``).
    :param procedures: the catalogue ``LayDanhSachTTHC`` answers (:data:`DEFAULT_PROCEDURES` by default).
    :param paths: overrides of :data:`adapters.national_portal.wire.DEFAULT_PATHS`.
    """
    sim = NationalPortalSimulator(
        username=username,
        password=password,
        dstcode=dstcode,
        madonvi=madonvi,
        session_max_calls=session_max_calls,
        session_ttl_seconds=session_ttl_seconds,
        error_rate=error_rate,
        seed=seed,
    )
    if procedures is not None:
        sim.procedures = [dict(p) for p in procedures]
    all_paths = {**wire.DEFAULT_PATHS, **(paths or {})}

    handlers = _Handlers(sim)
    routes = [
        Route(all_paths["login"], handlers.login, methods=["POST"]),
        Route(all_paths["service"], handlers.service, methods=["POST"]),
        Route(all_paths["share"], handlers.share, methods=["POST"]),
        Route("/_sim/state", handlers.state, methods=["GET"]),
        Route("/_sim/dossiers/{code}", handlers.dossier, methods=["GET"]),
        Route("/_sim/faults", handlers.faults, methods=["POST"]),
        Route("/_sim/reset", handlers.reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.simulator = sim
    return app
