"""The gateway's own SOAP callback service (``CapNhatTrangThaiHoSo``): documents, requests, answers and faults.

No HTTP here (:mod:`gateway.api.routes_soap` serves it): this module turns a SOAP request into the fields of an
agency event (the REST ``POST /api/v1/agencies/{agency}/events`` body), and an outcome into a SOAP answer or fault.

* The service description ships as ``adapters/onestop/wsdl/CapNhatTrangThaiHoSo.wsdl`` + ``capnhat.xsd`` (WSDL 1.1,
  document/literal, a SOAP 1.1 and a SOAP 1.2 port); :func:`service_wsdl` rewrites its addresses and schema location
  to where the gateway is reached.
* :func:`parse_request` reads a request with a hardened lxml parser (no DTD, no entities, no network, no huge
  trees; a document with a DOCTYPE is refused), checks the envelope (the SOAP version must match the content type:
  ``text/xml`` is 1.1, ``application/soap+xml`` is 1.2), understands no header but WS-Security (any other header
  with ``mustUnderstand`` gets a ``MustUnderstand`` fault), validates the operation element against ``capnhat.xsd``
  and returns its values, and the UsernameToken if there is one.
* :func:`event_fields` maps the values to the event's fields: ``TrangThai`` is a status name, the agency's own value
  when its registration maps it (``mapping.statuses``), or the national portal's code (1-10).
* :class:`CallbackFault` is every refusal: ``client`` (the caller must change something: SOAP 1.1 ``soap:Client``,
  1.2 ``soap:Sender``) or ``server`` (try again later: ``soap:Server`` / ``soap:Receiver``), with the business code
  and the HTTP status the REST endpoint would have answered in the ``LoiNghiepVu`` detail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker

from adapters.xmlguard import hardened_parser

from .domain.status import Status, status_from_national_code

__all__ = [
    "NAMESPACE",
    "SOAP11",
    "SOAP12",
    "WSSE_NS",
    "XSD_NAME",
    "CallbackFault",
    "CallbackRequest",
    "UsernameToken",
    "event_fields",
    "fault_envelope",
    "media_type_of",
    "parse_request",
    "response_envelope",
    "service_wsdl",
    "service_xsd",
]

NAMESPACE = "urn:dvc:lgsp:capnhat:1.0"
OPERATION = "CapNhatTrangThaiHoSo"
WSDL_NAME = "CapNhatTrangThaiHoSo.wsdl"
XSD_NAME = "capnhat.xsd"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_PASSWORD_TEXT = "#PasswordText"  # noqa: S105 - the WS-Security password type, not a password
_ENVELOPES = {"1.1": SOAP11, "1.2": SOAP12}
_MEDIA = {"1.1": "text/xml", "1.2": "application/soap+xml"}
_VERSIONS = {"text/xml": "1.1", "application/soap+xml": "1.2"}
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_SHOWN_ERROR = 200
_TRANSPORT_STATUSES = frozenset({401, 413, 415})

# Business codes of the faults (LoiNghiepVu/MaLoi) and the HTTP status the REST endpoint answers for each.
UNAUTHENTICATED = "KHONG_XAC_THUC"
FORBIDDEN = "KHONG_CO_QUYEN"
NOT_FOUND = "KHONG_TIM_THAY"
INVALID = "KHONG_HOP_LE"
ILLEGAL_TRANSITION = "CHUYEN_TRANG_THAI_KHONG_HOP_LE"
CONFLICT = "XUNG_DOT"
TOO_LARGE = "QUA_LON"
SERVER_ERROR = "LOI_HE_THONG"


def _read(name: str) -> bytes:
    return resources.files("adapters.onestop.wsdl").joinpath(name).read_bytes()


def service_xsd() -> bytes:
    """``capnhat.xsd`` as shipped."""
    return _read(XSD_NAME)


def service_wsdl(address: str) -> bytes:
    """The WSDL with its ports at ``address`` (``…/soap/callback``) and its schema at ``address?xsd=capnhat.xsd``."""
    root = etree.fromstring(_read(WSDL_NAME), parser=hardened_parser())
    for node in root.iter(etree.Element):
        qname = etree.QName(node)
        if qname.localname == "address" and node.get("location"):
            node.set("location", address)
        elif qname.localname == "import" and node.get("schemaLocation") == XSD_NAME:
            node.set("schemaLocation", f"{address}?xsd={XSD_NAME}")
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


@cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.fromstring(service_xsd(), parser=hardened_parser()))


# ----------------------------------------------------------------------------------------------------------------------
# Faults


@dataclass
class CallbackFault(Exception):
    """A refusal answered as a SOAP fault (``kind``: ``client``, ``server``, ``version`` or ``must_understand``)."""

    kind: str
    code: str
    message: str
    http_status: int
    details: Sequence[Mapping[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def _client(code: str, message: str, status: int, details: Sequence[Mapping[str, Any]] = ()) -> CallbackFault:
    return CallbackFault("client", code, message, status, list(details))


def media_type_of(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def version_of(content_type: str | None) -> str | None:
    """The SOAP version a request's content type announces (``None`` for anything else)."""
    return _VERSIONS.get(media_type_of(content_type))


# ----------------------------------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class UsernameToken:
    """A WS-Security UsernameToken from the request's header (the password is kept out of ``repr``)."""

    username: str
    password: str = field(repr=False)
    digest: bool = False


@dataclass(frozen=True)
class CallbackRequest:
    """A valid ``CapNhatTrangThaiHoSo`` request: its SOAP version, values (element names) and UsernameToken."""

    version: str
    values: dict[str, Any] = field(repr=False)
    token: UsernameToken | None = None


def _short(text: str, limit: int = _SHOWN_ERROR) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _children(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if isinstance(child.tag, str)]


def _username_token(header: etree._Element | None) -> UsernameToken | None:
    if header is None:
        return None
    token = header.find(f"{{{WSSE_NS}}}Security/{{{WSSE_NS}}}UsernameToken")
    if token is None:
        return None
    username = (token.findtext(f"{{{WSSE_NS}}}Username") or "").strip()
    secret = token.find(f"{{{WSSE_NS}}}Password")
    password = secret.text if secret is not None and secret.text else ""
    kind = secret.get("Type", _PASSWORD_TEXT) if secret is not None else _PASSWORD_TEXT
    return UsernameToken(username, password, digest=not kind.endswith(_PASSWORD_TEXT))


def _check_headers(header: etree._Element | None, namespace: str) -> None:
    if header is None:
        return
    for block in _children(header):
        if etree.QName(block).namespace == WSSE_NS:
            continue
        flag = block.get(f"{{{namespace}}}mustUnderstand", "").strip().lower()
        if flag in ("1", "true"):
            raise CallbackFault("must_understand", INVALID, f"header {_local(block)} is not understood", 400)


def parse_request(body: bytes, content_type: str | None) -> CallbackRequest:
    """The request in ``body``, or :class:`CallbackFault` saying what is wrong with it."""
    version = version_of(content_type)
    if version is None:
        shown = media_type_of(content_type) or "none"
        raise _client(INVALID, f"expected text/xml (SOAP 1.1) or application/soap+xml (SOAP 1.2), got {shown}", 415)
    if not body.strip():
        raise _client(INVALID, "the request body is empty (expected a SOAP envelope)", 400)
    try:
        root = etree.fromstring(body, parser=hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise _client(INVALID, f"the request is not well-formed XML: {_short(exc.msg or '', 120)}", 400) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise _client(INVALID, "document type declarations (DTDs) are refused", 400)
    namespace = etree.QName(root).namespace
    if _local(root) != "Envelope" or namespace not in (SOAP11, SOAP12):
        raise _client(INVALID, "the request is not a SOAP envelope", 400)
    if namespace != _ENVELOPES[version]:
        raise CallbackFault("version", INVALID, f"the envelope is not SOAP {version} as its content type says", 400)
    header = root.find(f"{{{namespace}}}Header")
    _check_headers(header, namespace)
    soap_body = root.find(f"{{{namespace}}}Body")
    operations = _children(soap_body) if soap_body is not None else []
    if len(operations) != 1:
        raise _client(INVALID, "the SOAP Body must hold exactly one operation element", 400)
    operation = operations[0]
    if etree.QName(operation).namespace != NAMESPACE or _local(operation) != OPERATION:
        shown = etree.QName(operation).text
        raise _client(INVALID, f"unknown operation {_short(shown, 120)} (expected {{{NAMESPACE}}}{OPERATION})", 400)
    schema = _schema()
    if not schema.validate(operation):
        errors = [
            {"field": _short(error.path or "", 120), "message": _short(error.message or "invalid")}
            for error in list(schema.error_log)[:10]
        ]
        first = errors[0]["message"] if errors else "invalid"
        raise _client(INVALID, f"the request does not match capnhat.xsd: {first}", 422, errors)
    return CallbackRequest(version=version, values=_values(operation), token=_username_token(header))


def _text(element: etree._Element, name: str) -> str | None:
    value = element.findtext(f"{{{NAMESPACE}}}{name}")
    return value if value is None else value.strip()


def _values(operation: etree._Element) -> dict[str, Any]:
    """The operation's values by element name (lists for ``ThanhPhanBoSung`` and ``TepKetQua``)."""
    values: dict[str, Any] = {}
    for child in _children(operation):
        name = _local(child)
        if name == "ThanhPhanBoSung":
            values.setdefault(name, []).append((child.text or "").strip())
        elif name == "KetQua":
            result: dict[str, Any] = {}
            for item in _children(child):
                item_name = _local(item)
                if item_name == "TepKetQua":
                    result.setdefault("TepKetQua", []).append(
                        {_local(part): "".join((part.text or "").split()) for part in _children(item)}
                    )
                else:
                    result[item_name] = (item.text or "").strip()
            values[name] = result
        else:
            values[name] = child.text or ""
    return values


def _status(raw: str, statuses: Mapping[str, str]) -> str:
    """Our status name for the agency's ``TrangThai`` (mapped, a status name, or a national code)."""
    value = raw.strip()
    if value in statuses:
        return statuses[value]
    if value in {s.value for s in Status}:
        return value
    if value.isdigit():
        try:
            return status_from_national_code(int(value)).value
        except ValueError:
            return value
    return value


def event_fields(values: Mapping[str, Any], *, statuses: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The REST event body (``dossier_code``, ``status``, ``at``…) the request's values stand for.

    ``statuses`` is the agency's registered mapping of its status values to ours. Values are left as text for the
    event model to check (times as ISO 8601 strings); base64 is passed on, never decoded here.
    """
    event: dict[str, Any] = {
        "dossier_code": values.get("MaHoSo", "").strip(),
        "status": _status(values.get("TrangThai", ""), statuses or {}),
    }
    names = {"ThoiDiem": "at", "GhiChu": "note", "LyDo": "reason", "NgayHenTra": "due_at", "ChuyenDen": "transfer_to"}
    for theirs, ours in names.items():
        value = values.get(theirs)
        if value is not None and value.strip():
            event[ours] = value.strip() if ours in ("at", "due_at", "transfer_to") else value
    if values.get("ThanhPhanBoSung"):
        event["components"] = list(values["ThanhPhanBoSung"])
    paid = (values.get("DaNopPhi") or "").strip()
    if paid:
        event["fees_paid"] = paid in ("true", "1")
    result = values.get("KetQua")
    if isinstance(result, Mapping):
        outcome: dict[str, Any] = {}
        for theirs, ours in (("SoKetQua", "number"), ("NgayKy", "signed_at"), ("DuongDan", "url"), ("GhiChu", "note")):
            if result.get(theirs):
                outcome[ours] = result[theirs]
        files = []
        for item in result.get("TepKetQua", []):
            file: dict[str, Any] = {"content_base64": item.get("NoiDung", "")}
            if item.get("TenTep"):
                file["filename"] = item["TenTep"]
            if item.get("LoaiNoiDung"):
                file["content_type"] = item["LoaiNoiDung"]
            if item.get("ChuKyRoi"):
                file["detached_signature_base64"] = item["ChuKyRoi"]
            files.append(file)
        if files:
            outcome["files"] = files
        event["result"] = outcome
    return event


def agency_of_request(values: Mapping[str, Any]) -> str | None:
    """The ``MaCoQuan`` a request names (``None`` when it names none)."""
    value = values.get("MaCoQuan")
    return value.strip() if isinstance(value, str) and value.strip() else None


# ----------------------------------------------------------------------------------------------------------------------
# Answers


def _iso(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else value.isoformat()


def response_envelope(version: str, answer: Mapping[str, Any]) -> bytes:
    """The ``CapNhatTrangThaiHoSoResponse`` for the REST route's answer fields (``dossier_code``, ``status``…)."""
    cb = ElementMaker(namespace=NAMESPACE, nsmap={"cb": NAMESPACE})
    payload = cb.CapNhatTrangThaiHoSoResponse(
        cb.MaHoSo(str(answer["dossier_code"])),
        cb.TrangThai(str(answer["status"])),
        cb.MaTrangThaiQuocGia(str(answer["national_status_code"])),
        cb.MaCoQuan(str(answer["agency_code"])),
    )
    for name, key in (("NgayTiepNhan", "received_at"), ("NgayHenTra", "due_at")):
        value = _iso(answer.get(key))
        if value:
            payload.append(getattr(cb, name)(value))
    payload.append(cb.LapLai("true" if answer.get("duplicate") else "false"))
    return _envelope(version, payload)


def _envelope(version: str, payload: etree._Element) -> bytes:
    soap = ElementMaker(namespace=_ENVELOPES[version], nsmap={"soap": _ENVELOPES[version]})
    return etree.tostring(soap.Envelope(soap.Body(payload)), xml_declaration=True, encoding="utf-8")


def fault_envelope(version: str, fault: CallbackFault) -> tuple[int, bytes]:
    """``(HTTP status, envelope)`` of ``fault``: SOAP 1.1 faults are HTTP 500, SOAP 1.2 ``Sender`` faults 400 and the
    others 500 (the SOAP HTTP bindings); missing or refused credentials (401), a body over the limit (413) and a
    content type that is not SOAP (415) keep their HTTP status, so the caller's HTTP stack can act on them."""
    namespace = _ENVELOPES[version]
    # The cb prefix is declared on the envelope: a SOAP 1.2 Subcode value is a QName in it.
    soap = ElementMaker(namespace=namespace, nsmap={"soap": namespace, "cb": NAMESPACE})
    cb = ElementMaker(namespace=NAMESPACE, nsmap={"cb": NAMESPACE})
    detail = cb.LoiNghiepVu(cb.MaLoi(fault.code), cb.MoTa(fault.message), cb.MaHTTP(str(fault.http_status)))
    for item in fault.details:
        entry = cb.ChiTiet()
        if item.get("field"):
            entry.append(cb.Truong(str(item["field"])))
        entry.append(cb.MoTa(str(item.get("message", ""))))
        detail.append(entry)
    if version == "1.1":
        code = {
            "client": "soap:Client",
            "server": "soap:Server",
            "version": "soap:VersionMismatch",
            "must_understand": "soap:MustUnderstand",
        }[fault.kind]
        faultcode, faultstring = etree.Element("faultcode"), etree.Element("faultstring")
        faultcode.text, faultstring.text = code, fault.message
        faultstring.set(_XML_LANG, "en")
        body = soap.Fault(faultcode, faultstring, etree.Element("detail"))
        body[-1].append(detail)
        status = 500
    else:
        value = {
            "client": "soap:Sender",
            "server": "soap:Receiver",
            "version": "soap:VersionMismatch",
            "must_understand": "soap:MustUnderstand",
        }[fault.kind]
        code_element = soap.Code(soap.Value(value))
        if fault.kind in ("client", "server"):
            code_element.append(soap.Subcode(soap.Value(f"cb:{fault.code}")))
        reason = soap.Reason(soap.Text(fault.message))
        reason[0].set(_XML_LANG, "en")
        body = soap.Fault(code_element, reason, soap.Detail(detail))
        status = 400 if fault.kind == "client" else 500
    if fault.http_status in _TRANSPORT_STATUSES:
        status = fault.http_status
    return status, etree.tostring(soap.Envelope(soap.Body(body)), xml_declaration=True, encoding="utf-8")


def soap_media_type(version: str) -> str:
    return f"{_MEDIA[version]}; charset=utf-8"
