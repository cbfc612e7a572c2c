"""The SOAP simulator's XML: namespaces and the variant's names, the service's documents (WSDL and XSD), lxml
helpers, conversions between the service's elements and the REST simulator's dossier dicts, business faults, and the
``CapNhatTrangThaiHoSo`` callback envelope."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker

from adapters.onestop import wsdl as shipped

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
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


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def hardened_parser() -> etree.XMLParser:
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
# Faults
# ----------------------------------------------------------------------------------------------------------------------


class Fault(Exception):
    """A SOAP fault to answer: ``kind`` is ``client`` (Client/Sender), ``server`` (Server/Receiver) or ``version``."""

    def __init__(
        self, kind: str, text: str, business: tuple[str, str] | None = None, *, security: bool = False
    ) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text
        self.business = business
        self.security = security


# ----------------------------------------------------------------------------------------------------------------------
# XML helpers
# ----------------------------------------------------------------------------------------------------------------------


def _q(name: str) -> str:
    return f"{{{REFERENCE_NAMESPACE}}}{name}"


def reference_element(name: str, children: list[tuple[str, Any]]) -> etree._Element:
    element = etree.Element(_q(name), nsmap={"mc": REFERENCE_NAMESPACE})
    for child, value in children:
        append_leaf(element, child, value)
    return element


def append_leaf(parent: etree._Element, name: str, value: Any) -> None:
    if value is None:
        return
    child = etree.SubElement(parent, _q(name))
    child.text = str(value)


def set_child(parent: etree._Element, name: str, value: str) -> None:
    child = parent.find(_q(name))
    if child is None:
        child = etree.SubElement(parent, _q(name))
    child.text = value


def renamespaced(element: etree._Element, namespace: str) -> etree._Element:
    """``element`` rebuilt with ``namespace`` under the ``mc`` prefix (so that no stale declaration is left)."""
    rebuilt = etree.Element(element.tag, nsmap={"mc": namespace})
    rebuilt.text = element.text
    for child in element:
        rebuilt.append(renamespaced(child, namespace) if isinstance(child.tag, str) else child)
    return rebuilt


def to_dict(element: etree._Element) -> dict[str, Any]:
    """An element's children as a dict (reference names; text leaves; known repeated elements as lists)."""
    result: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        value: Any = to_dict(child) if len(child) else (child.text or "").strip()
        if name in _LISTS:
            result.setdefault(name, []).append(value)
        else:
            result[name] = value
    return result


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else ([] if value in (None, "") else [value])


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_VIETNAM)


def _xml_time(value: Any) -> str | None:
    parsed = parse_time(str(value)) if value else None
    return parsed.isoformat() if parsed else None


def rest_component(item: Mapping[str, Any]) -> dict[str, Any]:
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


def rest_dossier(hoso: Mapping[str, Any]) -> dict[str, Any]:
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
    dossier["components"] = [rest_component(item) for item in as_list(hoso.get("ThanhPhanHoSo"))]
    dossier["fees"] = [
        {"code": fee.get("MaPhi"), "name": fee.get("TenPhi"), "amount": int(fee.get("SoTien") or 0)}
        for fee in as_list(hoso.get("PhiLePhi"))
    ]
    dossier["originals_check_required"] = str(hoso.get("YeuCauDoiChieuBanGoc", "false")).strip() in ("true", "1")
    if hoso.get("TrangThaiThanhToan"):
        dossier["payment"] = {"status": hoso["TrangThaiThanhToan"]}
    return dossier


def status_entry(body: Mapping[str, Any]) -> etree._Element:
    entry = reference_element(
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
        outcome = reference_element(
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


def raise_for(status: int, body: Mapping[str, Any], *, exists: str = "KHONG_CHO_PHEP") -> None:
    if status < 300:
        return
    if status == 404:
        raise Fault("client", "dossier not found", ("KHONG_TIM_THAY", "Không tìm thấy hồ sơ"))
    if status == 409:
        description = "Hồ sơ đã có trong hệ thống" if exists == "DA_TON_TAI" else "Trạng thái hồ sơ không cho phép"
        raise Fault("client", "not allowed", (exists, description))
    raise Fault(
        "client", "invalid request", ("KHONG_HOP_LE", shorten(str(body.get("detail") or "Yêu cầu không hợp lệ")))
    )


def shorten(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# ----------------------------------------------------------------------------------------------------------------------
# The callback envelope (the gateway's SOAP callback service)
# ----------------------------------------------------------------------------------------------------------------------


def _callback_time(value: Any) -> str | None:
    parsed = parse_time(str(value)) if value else None
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
    for code in as_list(event.get("components")):
        operation.append(cb.ThanhPhanBoSung(str(code)))
    result = event.get("result")
    if isinstance(result, Mapping):
        outcome = cb.KetQua()
        for name, key in (("SoKetQua", "number"), ("NgayKy", "signed_at"), ("DuongDan", "url"), ("GhiChu", "note")):
            value = _callback_time(result.get(key)) if key == "signed_at" else result.get(key)
            if value not in (None, ""):
                outcome.append(getattr(cb, name)(str(value)))
        for item in as_list(result.get("files")):
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
