"""A simulated agency one-stop system speaking the reference SOAP service (``adapters/onestop/wsdl``).

For tests, demos and agencies' own trials; never for production (state is in memory, ``/_sim`` is not
authenticated). Built with lxml alone (a hardened parser: no DTD, no entities, no network, no huge trees), not with
zeep, so that it checks the gateway's client rather than mirroring it.

* ``POST /soap``: SOAP 1.1 (``text/xml``) or SOAP 1.2 (``application/soap+xml``), chosen by the content type; an
  envelope of the other version gets a ``VersionMismatch`` fault. Requests are validated against ``hoso.xsd``.
  ``TiepNhanHoSo``, ``LayTrangThaiHoSo`` (``MaHoSo``, or ``TuThoiDiem`` for every change since), ``BoSungHoSo``,
  ``RutHoSo``; business rejections are faults with a ``LoiNghiepVu`` detail (``DA_TON_TAI``, ``KHONG_TIM_THAY``,
  ``KHONG_HOP_LE``, ``KHONG_CHO_PHEP``, ``KHOA_DA_DUNG``).
* ``GET /soap?wsdl``: the WSDL (addresses pointing at this server), ``GET /soap?xsd=hoso.xsd``: its schema; each
  fetch is counted (``wsdl_fetches``, ``xsd_fetches``).
* Idempotency: a repeated ``KhoaYeuCau`` gets the first answer again (``LapLai`` true) and causes no second effect;
  the same key with another request is refused (``KHOA_DA_DUNG``); ``effects`` counts what really happened.
* ``token``: requests without ``Authorization: Bearer <token>`` are refused (401); ``wsse=(user, password)``:
  requests without that WS-Security UsernameToken (text or digest) get a ``wsse:FailedAuthentication`` fault.
* ``mapping_variant=True``: a deliberately different service (other namespace, operation and element names,
  numeric status codes) that the gateway reaches only with :data:`VARIANT_MAPPING`.

Test and demo controls, under ``/_sim`` (as the REST simulator's):

* ``POST /_sim/faults`` ``{"fail_next": N, "fail_code": "TU_CHOI", "soap_server_fault": N, "html_next": N,
  "truncate_next": N, "delay_seconds": D, "oversize_next": N, "oversize_bytes": B, "wrong_namespace_next": N,
  "version_mismatch_next": N, "xml_bomb_next": N}`` (or ``{"reset": true}``): a business fault with a detail
  (request not handled); a ``soap:Server`` fault without detail (not handled); a 200 HTML page (not handled); the
  answer cut in the middle (handled); a delay before answering; a streamed envelope of ``oversize_bytes``; the
  answer element in a wrong namespace (handled); an envelope of the other SOAP version (handled); a
  billion-laughs document;
* ``GET /_sim/state``, ``POST /_sim/reset``, ``POST /_sim/dossiers/{code}/events`` as the REST simulator's. With a
  ``callback_url`` ending in ``/soap/callback`` (the gateway's SOAP callback service), the clerk's events are posted
  as SOAP 1.1 ``CapNhatTrangThaiHoSo`` requests (:func:`callback_envelope`) with the bearer ``callback_token``;
  any other ``callback_url`` gets the REST agency event as JSON. The mapping variant reports its status codes (the
  national portal's), which the gateway reads as such.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import json
import re
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from adapters.http import ClientFactory, default_factory
from adapters.onestop import wsdl as shipped
from adapters.onestop.wsdl.single import inline_schemas
from gateway.simulators.agency import AgencySimulator

__all__ = [
    "CALLBACK_NAMESPACE",
    "NATIONAL_STATUS_CODES",
    "VARIANT_FIELDS",
    "VARIANT_MAPPING",
    "VARIANT_NAMESPACE",
    "VARIANT_OPERATIONS",
    "SoapAgencySimulator",
    "SoapFaults",
    "callback_envelope",
    "create_soap_app",
    "service_documents",
]

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_DIGEST_TYPE = "PasswordDigest"
_MEDIA = {"1.1": "text/xml", "1.2": "application/soap+xml"}
_ENVELOPES = {"1.1": SOAP11, "1.2": SOAP12}
_MAX_REQUEST_BYTES = 20 * 1024 * 1024
_CHUNK = 64 * 1024
_VIETNAM = timezone(timedelta(hours=7))

REFERENCE_NAMESPACE = shipped.REFERENCE_NAMESPACE
#: Namespace of the gateway's SOAP callback service (``CapNhatTrangThaiHoSo``, ``capnhat.xsd``).
CALLBACK_NAMESPACE = "urn:dvc:lgsp:capnhat:1.0"
VARIANT_NAMESPACE = "urn:sxd:motcua:2.0"
#: Reference operation → the variant's.
VARIANT_OPERATIONS = {
    "TiepNhanHoSo": "NhanHoSo",
    "LayTrangThaiHoSo": "TraCuuHoSo",
    "BoSungHoSo": "BoSungThanhPhan",
    "RutHoSo": "HuyHoSo",
}
#: Reference element (and type) name → the variant's.
VARIANT_FIELDS = {
    "MaHoSo": "SoHoSo",
    "MaTTHC": "MaThuTuc",
    "KhoaYeuCau": "MaGiaoDich",
    "ThanhPhanHoSo": "TepDinhKem",
    "TrangThai": "TinhTrang",
    "LoiNghiepVu": "ThongBaoLoi",
    "MaLoi": "MaSoLoi",
}
#: Our status names → the national portal's TrangThaiHoSo codes (the variant answers codes).
NATIONAL_STATUS_CODES = {
    "submitted": "1",
    "received": "2",
    "refused": "3",
    "processing": "4",
    "supplement_requested": "5",
    "fee_requested": "6",
    "withdrawn": "7",
    "suspended": "8",
    "completed": "9",
    "returned": "10",
}
#: The registration ``mapping`` the gateway needs for the variant.
VARIANT_MAPPING: dict[str, Any] = {
    "operations": {
        "deliver": "NhanHoSo",
        "status": "TraCuuHoSo",
        "supplement": "BoSungThanhPhan",
        "withdraw": "HuyHoSo",
    },
    "fields": dict(VARIANT_FIELDS),
    "statuses": {code: status for status, code in NATIONAL_STATUS_CODES.items()},
}

_LISTS = frozenset({"ThanhPhanHoSo", "PhiLePhi", "TrangThaiHoSo"})
_FINAL = frozenset({"withdrawn", "refused", "completed", "returned"})
_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Hệ thống đang bảo trì</h1><p>Vui lòng quay lại sau.</p></body></html>"
)
_XML_BOMB_DTD = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10))
    + "]>\n"
)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _hardened_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_blank_text=True
    )


# ----------------------------------------------------------------------------------------------------------------------
# The service's documents (reference or variant)
# ----------------------------------------------------------------------------------------------------------------------


def _variant_text(text: str) -> str:
    """The reference WSDL or XSD text renamed into the variant (namespace, operations, elements)."""
    text = text.replace(REFERENCE_NAMESPACE, VARIANT_NAMESPACE)
    operations = "|".join(sorted(VARIANT_OPERATIONS, key=len, reverse=True))
    text = re.sub(
        rf"\b({operations})(?=(?:Request|Response|Soap11|Soap12|PortType|Service)?\b)",
        lambda match: VARIANT_OPERATIONS[match.group(1)],
        text,
    )
    names = "|".join(sorted(VARIANT_FIELDS, key=len, reverse=True))
    return re.sub(rf"\b({names})\b", lambda match: VARIANT_FIELDS[match.group(1)], text)


def service_documents(*, mapping_variant: bool = False) -> tuple[bytes, bytes]:
    """``(WSDL, XSD)`` of the reference service, or of the variant."""
    wsdl, xsd = shipped.read(shipped.REFERENCE_WSDL), shipped.read(shipped.REFERENCE_XSD)
    if mapping_variant:
        wsdl = _variant_text(wsdl.decode("utf-8")).encode("utf-8")
        xsd = _variant_text(xsd.decode("utf-8")).encode("utf-8")
    return wsdl, xsd


# ----------------------------------------------------------------------------------------------------------------------
# State and faults
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class SoapFaults:
    """Faults injected into ``POST /soap`` (never into the WSDL or ``/_sim``)."""

    fail_next: int = 0  # a business fault with a LoiNghiepVu detail, the request not handled
    fail_code: str = "TU_CHOI"
    soap_server_fault: int = 0  # soap:Server / env:Receiver without detail, not handled
    html_next: int = 0  # a 200 HTML page, not handled
    truncate_next: int = 0  # handled, then the answer cut in the middle
    delay_seconds: float = 0.0  # delay every answer
    oversize_next: int = 0  # a streamed envelope of oversize_bytes, not handled
    oversize_bytes: int = 60_000_000
    wrong_namespace_next: int = 0  # handled, the answer element in another namespace
    version_mismatch_next: int = 0  # handled, answered in the other SOAP version
    xml_bomb_next: int = 0  # a billion-laughs document, not handled

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` (``ValueError`` for an unknown field or a wrong type)."""
        types = {f.name: type(getattr(self, f.name)) for f in fields(self)}
        for name, value in changes.items():
            expected = types.get(name)
            if expected is None:
                raise ValueError(f"unknown fault {name!r}")
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not expected or (isinstance(value, int | float) and value < 0):
                raise ValueError(f"{name} must be a non-negative {expected.__name__}")
            if name == "fail_code" and not re.fullmatch(r"[A-Z0-9_]{1,50}", value):
                raise ValueError("fail_code must be an upper-case code")
            setattr(self, name, value)

    def take(self, name: str) -> bool:
        """Consume one occurrence of a counted fault."""
        if getattr(self, name) > 0:
            setattr(self, name, getattr(self, name) - 1)
            return True
        return False


@dataclass
class _Answer:
    fingerprint: str
    payload: etree._Element | None
    fault: tuple[str, str, str] | None  # (business code, description, SOAP code kind)


class _Fault(Exception):
    """A SOAP fault to answer: ``kind`` is ``client`` (Client/Sender), ``server`` (Server/Receiver) or ``version``."""

    def __init__(
        self, kind: str, text: str, business: tuple[str, str] | None = None, *, security: bool = False
    ) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text
        self.business = business
        self.security = security


@dataclass
class SoapAgencySimulator:
    """The simulated SOAP agency: dossiers live in an :class:`AgencySimulator` (the REST simulator's core)."""

    core: AgencySimulator
    mapping_variant: bool = False
    token: str | None = None
    wsse: tuple[str, str] | None = field(default=None, repr=False)
    faults: SoapFaults = field(default_factory=SoapFaults)
    answers: dict[str, _Answer] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    exchanges: deque[tuple[bytes, bytes]] = field(default_factory=lambda: deque(maxlen=50))
    bytes_streamed: int = 0

    def __post_init__(self) -> None:
        self.wsdl, self.xsd = service_documents(mapping_variant=self.mapping_variant)
        self.namespace = VARIANT_NAMESPACE if self.mapping_variant else REFERENCE_NAMESPACE
        self.schema = etree.XMLSchema(etree.fromstring(self.xsd, parser=_hardened_parser()))
        renames: dict[str, str] = {}
        if self.mapping_variant:  # reference element name → the variant's (operations, their answers, fields)
            renames.update(VARIANT_OPERATIONS)
            renames.update({f"{ours}Response": f"{theirs}Response" for ours, theirs in VARIANT_OPERATIONS.items()})
            renames.update(VARIANT_FIELDS)
        self._out = renames
        self._in = {theirs: ours for ours, theirs in renames.items()}

    def reset(self) -> None:
        self.core.reset()
        self.faults = SoapFaults()
        self.answers.clear()
        self.counters.clear()
        self.exchanges.clear()
        self.bytes_streamed = 0

    def state(self) -> dict[str, Any]:
        core = self.core.state()
        return {
            "dossiers": core["dossiers"],
            "effects": core["effects"],
            "counters": dict(self.counters),
            "faults": asdict(self.faults),
            "bytes_streamed": self.bytes_streamed,
            "callbacks": core["callbacks"],
            "variant": self.mapping_variant,
        }

    # -- names ---------------------------------------------------------------------------------------------------------

    def to_reference(self, element: etree._Element) -> etree._Element:
        """A copy of ``element`` (the service's names) in the reference names and namespace."""
        copy = etree.fromstring(etree.tostring(element), parser=_hardened_parser())
        for node in copy.iter(etree.Element):
            qname = etree.QName(node)
            if qname.namespace == self.namespace:
                node.tag = f"{{{REFERENCE_NAMESPACE}}}{self._in.get(qname.localname, qname.localname)}"
        etree.cleanup_namespaces(copy)
        return copy

    def from_reference(self, element: etree._Element) -> etree._Element:
        """``element`` (reference names) in the service's names and namespace (statuses as codes in the variant)."""
        if not self.mapping_variant:
            return element
        for node in element.iter(etree.Element):
            qname = etree.QName(node)
            if qname.namespace == REFERENCE_NAMESPACE:
                if qname.localname == "TrangThai" and node.text in NATIONAL_STATUS_CODES:
                    node.text = NATIONAL_STATUS_CODES[node.text]
                node.tag = f"{{{VARIANT_NAMESPACE}}}{self._out.get(qname.localname, qname.localname)}"
        return _renamespaced(element, VARIANT_NAMESPACE)

    # -- operations (reference names in, reference payload out) --------------------------------------------------------

    def handle(self, operation: etree._Element) -> etree._Element:
        """Answer one operation element (reference names); raises :class:`_Fault` for faults."""
        name = etree.QName(operation).localname
        values = _to_dict(operation)
        if name == "LayTrangThaiHoSo":
            return self._status(values)
        handler: Callable[[dict[str, Any]], etree._Element] | None = {
            "TiepNhanHoSo": self._deliver,
            "BoSungHoSo": self._supplement,
            "RutHoSo": self._withdraw,
        }.get(name)
        if handler is None:
            raise _Fault("client", f"unknown operation {name}")
        key = str(values.get("KhoaYeuCau") or "")
        fingerprint = hashlib.sha256(etree.tostring(operation, method="c14n")).hexdigest()
        stored = self.answers.get(key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise _Fault("client", "idempotency key reused", ("KHOA_DA_DUNG", "Khóa yêu cầu đã được dùng"))
            self.counters["replayed"] += 1
            if stored.fault is not None:
                code, text, kind = stored.fault
                raise _Fault(kind, text, (code, text))
            assert stored.payload is not None
            answer = etree.fromstring(etree.tostring(stored.payload))
            _set_child(answer, "LapLai", "true")
            return answer
        # No await from here to the answer being stored: concurrent repeats of a key cannot both take effect.
        try:
            answer = handler(values)
        except _Fault as fault:
            if fault.business is not None and fault.business[0] == "DA_TON_TAI":
                self.answers[key] = _Answer(fingerprint, None, (fault.business[0], fault.business[1], fault.kind))
            raise
        self.answers[key] = _Answer(fingerprint, answer, None)
        return etree.fromstring(etree.tostring(answer))

    def _deliver(self, values: dict[str, Any]) -> etree._Element:
        hoso = values.get("HoSo") or {}
        status, body = self.core.deliver(_rest_dossier(hoso))
        _raise_for(status, body, exists="DA_TON_TAI")
        return _element(
            "TiepNhanHoSoResponse",
            [
                ("MaHoSo", body["code"]),
                ("MaThamChieu", body["reference"]),
                ("TrangThai", body["status"]),
                ("ThoiDiemTiepNhan", body["received_at"]),
                ("LapLai", "false"),
            ],
        )

    def _status(self, values: dict[str, Any]) -> etree._Element:
        entries: list[etree._Element] = []
        if values.get("MaHoSo"):
            status, body = self.core.status(str(values["MaHoSo"]))
            _raise_for(status, body)
            entries.append(_status_entry(body))
        elif values.get("TuThoiDiem"):
            since = _parse_time(str(values["TuThoiDiem"]))
            if since is None:
                raise _Fault("client", "TuThoiDiem is not a time", ("KHONG_HOP_LE", "TuThoiDiem không hợp lệ"))
            for code, record in self.core.dossiers.items():
                changed = _parse_time(record["history"][-1]["at"])
                if changed is not None and changed >= since:
                    entries.append(_status_entry(self.core.status(code)[1]))
        else:
            raise _Fault("client", "MaHoSo or TuThoiDiem required", ("KHONG_HOP_LE", "Thiếu MaHoSo hoặc TuThoiDiem"))
        answer = _element("LayTrangThaiHoSoResponse", [])
        for entry in entries:
            answer.append(entry)
        _append(answer, "ThoiDiemTraLoi", _now().isoformat())
        return answer

    def _supplement(self, values: dict[str, Any]) -> etree._Element:
        components = [_rest_component(item) for item in _list(values.get("ThanhPhanHoSo"))]
        code = str(values.get("MaHoSo") or "")
        status, body = self.core.supplement(code, {"components": components})
        _raise_for(status, body)
        return _element(
            "BoSungHoSoResponse",
            [("MaHoSo", code), ("TrangThai", body["status"]), ("ChapNhan", "true"), ("LapLai", "false")],
        )

    def _withdraw(self, values: dict[str, Any]) -> etree._Element:
        code = str(values.get("MaHoSo") or "")
        status, body = self.core.withdraw(code, {"reason": values.get("LyDo")})
        _raise_for(status, body)
        return _element(
            "RutHoSoResponse",
            [("MaHoSo", code), ("TrangThai", body["status"]), ("ChapNhan", "true"), ("LapLai", "false")],
        )

    # -- WS-Security ---------------------------------------------------------------------------------------------------

    def check_wsse(self, envelope: etree._Element, namespace: str) -> None:
        if self.wsse is None:
            return
        username, password = self.wsse
        token = envelope.find(f"{{{namespace}}}Header/{{{WSSE_NS}}}Security/{{{WSSE_NS}}}UsernameToken")
        given_user = token.findtext(f"{{{WSSE_NS}}}Username") if token is not None else None
        secret = token.find(f"{{{WSSE_NS}}}Password") if token is not None else None
        if given_user != username or secret is None or secret.text is None:
            raise _Fault("client", "WS-Security authentication failed", security=True)
        if secret.get("Type", "").endswith(_DIGEST_TYPE):
            nonce = base64.b64decode(token.findtext(f"{{{WSSE_NS}}}Nonce") or "")
            created = token.findtext(f"{{{WSU_NS}}}Created") or ""
            expected = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()  # noqa: S324 - WS-Security UsernameToken Profile
            valid = hmac.compare_digest(secret.text.strip(), expected)
        else:
            valid = hmac.compare_digest(secret.text.encode(), password.encode())
        if not valid:
            raise _Fault("client", "WS-Security authentication failed", security=True)


# ----------------------------------------------------------------------------------------------------------------------
# XML helpers
# ----------------------------------------------------------------------------------------------------------------------


def _q(name: str) -> str:
    return f"{{{REFERENCE_NAMESPACE}}}{name}"


def _element(name: str, children: list[tuple[str, Any]]) -> etree._Element:
    element = etree.Element(_q(name), nsmap={"mc": REFERENCE_NAMESPACE})
    for child, value in children:
        _append(element, child, value)
    return element


def _append(parent: etree._Element, name: str, value: Any) -> None:
    if value is None:
        return
    child = etree.SubElement(parent, _q(name))
    child.text = str(value)


def _set_child(parent: etree._Element, name: str, value: str) -> None:
    child = parent.find(_q(name))
    if child is None:
        child = etree.SubElement(parent, _q(name))
    child.text = value


def _renamespaced(element: etree._Element, namespace: str) -> etree._Element:
    """``element`` rebuilt with ``namespace`` under the ``mc`` prefix (so that no stale declaration is left)."""
    rebuilt = etree.Element(element.tag, nsmap={"mc": namespace})
    rebuilt.text = element.text
    for child in element:
        rebuilt.append(_renamespaced(child, namespace) if isinstance(child.tag, str) else child)
    return rebuilt


def _to_dict(element: etree._Element) -> dict[str, Any]:
    """An element's children as a dict (reference names; text leaves; known repeated elements as lists)."""
    result: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        value: Any = _to_dict(child) if len(child) else (child.text or "").strip()
        if name in _LISTS:
            result.setdefault(name, []).append(value)
        else:
            result[name] = value
    return result


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else ([] if value in (None, "") else [value])


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_VIETNAM)


def _xml_time(value: Any) -> str | None:
    parsed = _parse_time(str(value)) if value else None
    return parsed.isoformat() if parsed else None


def _rest_component(item: Mapping[str, Any]) -> dict[str, Any]:
    names = {
        "MaThanhPhan": "code",
        "TenThanhPhan": "name",
        "TenTep": "filename",
        "LoaiNoiDung": "content_type",
        "MaBam": "sha256",
        "NoiDung": "content_base64",
        "DuongDan": "fetch_url",
    }
    return {ours: item[theirs] for theirs, ours in names.items() if theirs in item}


def _rest_dossier(hoso: Mapping[str, Any]) -> dict[str, Any]:
    """A delivered ``HoSo`` in the REST contract's names (the shape the core keeps)."""
    names = {
        "MaHoSo": "code",
        "MaTTHC": "procedure_code",
        "MaCoQuan": "agency_code",
        "TrichYeu": "summary",
        "KenhNop": "channel",
        "NgayTiepNhan": "received_at",
        "NgayHenTra": "due_at",
        "HinhThucTraKetQua": "return_method",
        "HanXuLyCoQuan": "agency_due_at",
    }
    dossier: dict[str, Any] = {ours: hoso[theirs] for theirs, ours in names.items() if theirs in hoso}
    person = hoso.get("NguoiNop")
    if isinstance(person, Mapping):
        people = {
            "LoaiDoiTuong": "kind",
            "HoTen": "full_name",
            "SoGiayTo": "id_number",
            "SoDienThoai": "phone",
            "Email": "email",
            "DiaChi": "address",
        }
        dossier["applicant"] = {ours: person[theirs] for theirs, ours in people.items() if theirs in person}
    dossier["components"] = [_rest_component(item) for item in _list(hoso.get("ThanhPhanHoSo"))]
    dossier["fees"] = [
        {"code": fee.get("MaPhi"), "name": fee.get("TenPhi"), "amount": int(fee.get("SoTien") or 0)}
        for fee in _list(hoso.get("PhiLePhi"))
    ]
    dossier["originals_check_required"] = str(hoso.get("YeuCauDoiChieuBanGoc", "false")).strip() in ("true", "1")
    if hoso.get("TrangThaiThanhToan"):
        dossier["payment"] = {"status": hoso["TrangThaiThanhToan"]}
    return dossier


def _status_entry(body: Mapping[str, Any]) -> etree._Element:
    entry = _element(
        "TrangThaiHoSo",
        [
            ("MaHoSo", body["code"]),
            ("TrangThai", body["status"]),
            ("ThoiDiem", _xml_time(body.get("at"))),
            ("GhiChu", body.get("note")),
            ("LyDo", body.get("reason")),
            ("NgayHenTra", _xml_time(body.get("due_at"))),
            ("ChuyenDen", body.get("transfer_to")),
        ],
    )
    result = body.get("result")
    if isinstance(result, Mapping):
        outcome = _element(
            "KetQua",
            [
                ("SoKetQua", result.get("number")),
                ("NgayKy", _xml_time(result.get("signed_at"))),
                ("DuongDan", result.get("url")),
                ("GhiChu", result.get("note")),
            ],
        )
        entry.append(outcome)
    return entry


def _raise_for(status: int, body: Mapping[str, Any], *, exists: str = "KHONG_CHO_PHEP") -> None:
    if status < 300:
        return
    if status == 404:
        raise _Fault("client", "dossier not found", ("KHONG_TIM_THAY", "Không tìm thấy hồ sơ"))
    if status == 409:
        description = "Hồ sơ đã có trong hệ thống" if exists == "DA_TON_TAI" else "Trạng thái hồ sơ không cho phép"
        raise _Fault("client", "not allowed", (exists, description))
    raise _Fault(
        "client", "invalid request", ("KHONG_HOP_LE", _short(str(body.get("detail") or "Yêu cầu không hợp lệ")))
    )


def _short(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# ----------------------------------------------------------------------------------------------------------------------
# Envelopes
# ----------------------------------------------------------------------------------------------------------------------


def _envelope(version: str, payload: etree._Element) -> bytes:
    soap = ElementMaker(namespace=_ENVELOPES[version], nsmap={"soap": _ENVELOPES[version]})
    envelope = soap.Envelope(soap.Body(payload))
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def _fault_envelope(sim: SoapAgencySimulator, version: str, fault: _Fault) -> tuple[int, bytes]:
    namespace = _ENVELOPES[version]
    soap = ElementMaker(namespace=namespace, nsmap={"soap": namespace, "wsse": WSSE_NS})
    detail_payload = None
    if fault.business is not None:
        code, text = fault.business
        detail_payload = sim.from_reference(_element("LoiNghiepVu", [("MaLoi", code), ("MoTa", text)]))
    if version == "1.1":
        code = {"client": "soap:Client", "server": "soap:Server", "version": "soap:VersionMismatch"}[fault.kind]
        if fault.security:
            code = "wsse:FailedAuthentication"
        body = soap.Fault(etree.Element("faultcode"), etree.Element("faultstring"))
        body[0].text, body[1].text = code, fault.text
        if detail_payload is not None:
            detail = etree.SubElement(body, "detail")
            detail.append(detail_payload)
        status = 500
    else:
        value = {"client": "soap:Sender", "server": "soap:Receiver", "version": "soap:VersionMismatch"}[fault.kind]
        code_element = soap.Code(soap.Value(value))
        if fault.security:
            code_element.append(soap.Subcode(soap.Value("wsse:FailedAuthentication")))
        reason = soap.Reason(soap.Text(fault.text))
        reason[0].set("{http://www.w3.org/XML/1998/namespace}lang", "vi")
        body = soap.Fault(code_element, reason)
        if detail_payload is not None:
            body.append(soap.Detail(detail_payload))
        status = 400 if fault.kind == "client" else 500
    envelope = soap.Envelope(soap.Body(body))
    return status, etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def _soap_response(version: str, status: int, content: bytes) -> Response:
    return Response(content, status_code=status, media_type=f"{_MEDIA[version]}; charset=utf-8")


# ----------------------------------------------------------------------------------------------------------------------
# HTTP layer
# ----------------------------------------------------------------------------------------------------------------------


class _Handlers:
    def __init__(self, sim: SoapAgencySimulator) -> None:
        self.sim = sim

    async def get(self, request: Request) -> Response:
        params = request.query_params
        if "wsdl" in params:
            self.sim.counters["wsdl_fetches"] += 1
            if "single" in params:  # one self-contained document: the schema inlined
                address = f"{request.url.scheme}://{request.url.netloc}/soap"
                document = inline_schemas(self.sim.wsdl, {shipped.REFERENCE_XSD: self.sim.xsd}, address=address)
                return Response(document, media_type="text/xml; charset=utf-8")
            return Response(self._wsdl(request), media_type="text/xml; charset=utf-8")
        if params.get("xsd") == shipped.REFERENCE_XSD:
            self.sim.counters["xsd_fetches"] += 1
            return Response(self.sim.xsd, media_type="text/xml; charset=utf-8")
        return Response("not found", status_code=404, media_type="text/plain")

    def _wsdl(self, request: Request) -> bytes:
        root = etree.fromstring(self.sim.wsdl, parser=_hardened_parser())
        address = f"{request.url.scheme}://{request.url.netloc}/soap"
        for node in root.iter(etree.Element):
            qname = etree.QName(node)
            if qname.localname == "address" and node.get("location"):
                node.set("location", address)
            elif qname.localname == "import" and node.get("schemaLocation") == shipped.REFERENCE_XSD:
                node.set("schemaLocation", f"soap?xsd={shipped.REFERENCE_XSD}")
        return etree.tostring(root, xml_declaration=True, encoding="utf-8")

    async def post(self, request: Request) -> Response:
        sim, faults = self.sim, self.sim.faults
        sim.counters["requests"] += 1
        body = await _read_limited(request)
        if body is None:
            return Response("request too large", status_code=413, media_type="text/plain")
        media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        version = {"text/xml": "1.1", "application/soap+xml": "1.2"}.get(media)
        if version is None:
            return Response("unsupported media type", status_code=415, media_type="text/plain")
        sim.counters[f"soap{version.replace('.', '')}"] += 1
        if faults.delay_seconds > 0 and await _sleep_unless_gone(request, faults.delay_seconds):
            return Response(status_code=499)
        injected = self._injected_before(request, version)
        if injected is not None:
            return injected
        if sim.token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {sim.token}".encode()):
                sim.counters["unauthorized"] += 1
                return Response(
                    "unauthorized",
                    status_code=401,
                    media_type="text/plain",
                    headers={"WWW-Authenticate": 'Bearer realm="agency"'},
                )
        status, content, answered_version = self._exchange(body, version)
        sim.exchanges.append((body, content))
        return self._injected_after(status, content, answered_version)

    def _injected_before(self, request: Request, version: str) -> Response | None:
        sim, faults = self.sim, self.sim.faults
        if faults.take("fail_next"):
            sim.counters["faults"] += 1
            fault = _Fault("client", "rejected", (faults.fail_code, "Hồ sơ bị từ chối (lỗi giả lập)"))
            return _soap_response(version, *_fault_envelope(sim, version, fault))
        if faults.take("soap_server_fault"):
            sim.counters["faults"] += 1
            return _soap_response(version, *_fault_envelope(sim, version, _Fault("server", "Internal error")))
        if faults.take("html_next"):
            sim.counters["faults"] += 1
            return HTMLResponse(_HTML_PAGE)
        if faults.take("xml_bomb_next"):
            sim.counters["faults"] += 1
            return _soap_response(version, 200, self._bomb(version))
        if faults.take("oversize_next"):
            sim.counters["faults"] += 1
            return StreamingResponse(
                self._oversized(request, version, max(faults.oversize_bytes, 1024)),
                media_type=f"{_MEDIA[version]}; charset=utf-8",
            )
        return None

    def _injected_after(self, status: int, content: bytes, version: str) -> Response:
        sim, faults = self.sim, self.sim.faults
        if status == 200 and faults.take("wrong_namespace_next"):
            sim.counters["faults"] += 1
            content = content.replace(self.sim.namespace.encode(), b"urn:khong-phai-dich-vu:9.9")
        elif status == 200 and faults.take("version_mismatch_next"):
            sim.counters["faults"] += 1
            other = "1.2" if version == "1.1" else "1.1"
            content = content.replace(_ENVELOPES[version].encode(), _ENVELOPES[other].encode())
            version = other
        elif faults.take("truncate_next"):
            sim.counters["faults"] += 1
            content = content[: len(content) // 2]
        return _soap_response(version, status, content)

    def _exchange(self, body: bytes, version: str) -> tuple[int, bytes, str]:
        """Handle one SOAP request: ``(HTTP status, answer, SOAP version of the answer)``."""
        sim = self.sim
        try:
            try:
                envelope = etree.fromstring(body, parser=_hardened_parser())
            except etree.XMLSyntaxError as exc:
                raise _Fault("client", f"not well-formed XML: {_short(exc.msg or '', 80)}") from exc
            docinfo = envelope.getroottree().docinfo
            if docinfo.doctype or docinfo.internalDTD is not None:
                raise _Fault("client", "DTDs are not allowed")
            namespace = etree.QName(envelope).namespace
            if etree.QName(envelope).localname != "Envelope" or namespace not in (SOAP11, SOAP12):
                raise _Fault("client", "not a SOAP envelope")
            if namespace != _ENVELOPES[version]:
                raise _Fault("version", "SOAP version does not match the content type")
            sim.check_wsse(envelope, namespace)
            soap_body = envelope.find(f"{{{namespace}}}Body")
            operations = [child for child in soap_body if isinstance(child.tag, str)] if soap_body is not None else []
            if len(operations) != 1:
                raise _Fault("client", "the Body must hold one operation element")
            operation = operations[0]
            if etree.QName(operation).namespace != sim.namespace:
                raise _Fault("client", "unknown operation namespace", ("KHONG_HOP_LE", "Sai không gian tên"))
            if not sim.schema.validate(operation):
                error = sim.schema.error_log.last_error
                message = _short(error.message if error else "invalid", 160)
                raise _Fault("client", "invalid request", ("KHONG_HOP_LE", message))
            payload = sim.handle(sim.to_reference(operation))
            return 200, _envelope(version, sim.from_reference(payload)), version
        except _Fault as fault:
            return (*_fault_envelope(sim, version, fault), version)

    def _bomb(self, version: str) -> bytes:
        namespace = _ENVELOPES[version]
        return (
            _XML_BOMB_DTD + f'<soap:Envelope xmlns:soap="{namespace}"><soap:Body>'
            f'<mc:LayTrangThaiHoSoResponse xmlns:mc="{self.sim.namespace}"><mc:ThoiDiemTraLoi>&lol9;'
            "</mc:ThoiDiemTraLoi></mc:LayTrangThaiHoSoResponse></soap:Body></soap:Envelope>"
        ).encode()

    async def _oversized(self, request: Request, version: str, size: int) -> AsyncIterator[bytes]:
        """An envelope of about ``size`` bytes, produced as it is sent; it stops when the client goes away."""
        namespace = _ENVELOPES[version]
        head = (
            f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{namespace}"><soap:Body>'
            f'<mc:LayTrangThaiHoSoResponse xmlns:mc="{self.sim.namespace}"><mc:TrangThaiHoSo>'
            "<mc:MaHoSo>X</mc:MaHoSo><mc:TrangThai>received</mc:TrangThai><mc:GhiChu>"
        ).encode()
        tail = b"</mc:GhiChu></mc:TrangThaiHoSo></mc:LayTrangThaiHoSoResponse></soap:Body></soap:Envelope>"
        remaining = size - len(head) - len(tail)
        self.sim.bytes_streamed += len(head)
        yield head
        while remaining > 0:
            if await request.is_disconnected():
                return
            chunk = b"x" * min(_CHUNK, remaining)
            remaining -= len(chunk)
            self.sim.bytes_streamed += len(chunk)
            yield chunk
        self.sim.bytes_streamed += len(tail)
        yield tail

    # -- /_sim ---------------------------------------------------------------------------------------------------------

    async def faults(self, request: Request) -> Response:
        try:
            changes = json.loads(await request.body() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected an object")
            if changes.pop("reset", False):
                self.sim.faults = SoapFaults()
            self.sim.faults.update(changes)
        except ValueError as exc:
            return JSONResponse({"error": "invalid_faults", "detail": str(exc)}, status_code=400)
        return JSONResponse(asdict(self.sim.faults))

    async def state(self, request: Request) -> Response:
        return JSONResponse(self.sim.state())

    async def reset(self, request: Request) -> Response:
        self.sim.reset()
        return JSONResponse({"reset": True})

    async def event(self, request: Request) -> Response:
        try:
            payload = json.loads(await request.body() or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return JSONResponse({"error": "invalid_json"}, status_code=400)
        status, body = await self.sim.core.event(request.path_params["code"], payload)
        return JSONResponse(body, status_code=status)


async def _read_limited(request: Request) -> bytes | None:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_REQUEST_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _sleep_unless_gone(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``, or less when the client goes away (then ``True``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        await asyncio.sleep(min(0.05, remaining))
        if await request.is_disconnected():
            return True
    return False


def _callback_time(value: Any) -> str | None:
    parsed = _parse_time(str(value)) if value else None
    return parsed.isoformat() if parsed else None


def callback_envelope(event: Mapping[str, Any], *, status_codes: bool = False) -> tuple[bytes, dict[str, str]]:
    """``(body, headers)`` of a SOAP 1.1 ``CapNhatTrangThaiHoSo`` request for an agency event (REST names).

    Built with lxml from the event, in the order ``capnhat.xsd`` sets; ``status_codes`` reports the national
    portal's status codes instead of status names (as the mapping variant's system would).
    """
    cb = ElementMaker(namespace=CALLBACK_NAMESPACE, nsmap={"cb": CALLBACK_NAMESPACE})
    status = str(event.get("status") or "")
    if status_codes:
        status = NATIONAL_STATUS_CODES.get(status, status)
    operation = cb.CapNhatTrangThaiHoSo(cb.MaHoSo(str(event["dossier_code"])), cb.TrangThai(status))
    leaves = [
        ("ThoiDiem", _callback_time(event.get("at"))),
        ("GhiChu", event.get("note")),
        ("LyDo", event.get("reason")),
        ("NgayHenTra", _callback_time(event.get("due_at"))),
        ("ChuyenDen", event.get("transfer_to")),
    ]
    for name, value in leaves:
        if value not in (None, ""):
            operation.append(getattr(cb, name)(str(value)))
    for code in _list(event.get("components")):
        operation.append(cb.ThanhPhanBoSung(str(code)))
    result = event.get("result")
    if isinstance(result, Mapping):
        outcome = cb.KetQua()
        for name, key in (("SoKetQua", "number"), ("NgayKy", "signed_at"), ("DuongDan", "url"), ("GhiChu", "note")):
            value = _callback_time(result.get(key)) if key == "signed_at" else result.get(key)
            if value not in (None, ""):
                outcome.append(getattr(cb, name)(str(value)))
        for item in _list(result.get("files")):
            if not isinstance(item, Mapping):
                continue
            file = cb.TepKetQua()
            for name, key in (("TenTep", "filename"), ("LoaiNoiDung", "content_type")):
                if item.get(key):
                    file.append(getattr(cb, name)(str(item[key])))
            file.append(cb.NoiDung(str(item.get("content_base64") or "")))
            if item.get("detached_signature_base64"):
                file.append(cb.ChuKyRoi(str(item["detached_signature_base64"])))
            outcome.append(file)
        operation.append(outcome)
    if isinstance(event.get("fees_paid"), bool):
        operation.append(cb.DaNopPhi("true" if event["fees_paid"] else "false"))
    soap = ElementMaker(namespace=SOAP11, nsmap={"soap": SOAP11})
    body = etree.tostring(soap.Envelope(soap.Body(operation)), xml_declaration=True, encoding="utf-8")
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{CALLBACK_NAMESPACE}#CapNhatTrangThaiHoSo"'}
    return body, headers


def create_soap_app(
    *,
    mapping_variant: bool = False,
    token: str | None = None,
    wsse: tuple[str, str] | None = None,
    callback_url: str | None = None,
    callback_token: str | None = None,
    callback_protocol: str | None = None,
    factory: ClientFactory | None = None,
) -> ASGIApp:
    """The SOAP simulator as an ASGI app; its :class:`SoapAgencySimulator` is ``app.state.simulator``.

    :param mapping_variant: serve the deliberately different service (needs :data:`VARIANT_MAPPING`).
    :param token: bearer token ``POST /soap`` requires (none: open).
    :param wsse: ``(username, password)`` of the WS-Security UsernameToken required (none: not required).
    :param callback_url: where agency events are posted: the gateway's SOAP callback service
        (``…/soap/callback``) or its ``/api/v1/agencies/{agency}/events``.
    :param callback_token: bearer token sent with them.
    :param callback_protocol: ``soap`` or ``rest``; by default ``soap`` when ``callback_url`` ends in
        ``/soap/callback``.
    :param factory: HTTP client factory for the callbacks (the process-wide one by default).
    """
    if callback_protocol is None:
        path = (callback_url or "").split("?", 1)[0].rstrip("/")
        callback_protocol = "soap" if path.endswith("/soap/callback") else "rest"
    if callback_protocol not in ("soap", "rest"):
        raise ValueError("callback_protocol must be soap or rest")
    core = AgencySimulator(callback_url=callback_url, callback_token=callback_token, factory=factory or default_factory)
    if callback_protocol == "soap":
        core.callback_encoder = functools.partial(callback_envelope, status_codes=mapping_variant)
    sim = SoapAgencySimulator(core=core, mapping_variant=mapping_variant, token=token, wsse=wsse)
    handlers = _Handlers(sim)
    routes = [
        Route("/soap", handlers.get, methods=["GET"]),
        Route("/soap", handlers.post, methods=["POST"]),
        Route("/_sim/faults", handlers.faults, methods=["POST"]),
        Route("/_sim/state", handlers.state, methods=["GET"]),
        Route("/_sim/reset", handlers.reset, methods=["POST"]),
        Route("/_sim/dossiers/{code}/events", handlers.event, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await core.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.simulator = sim
    return app
