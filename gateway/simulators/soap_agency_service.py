"""The simulated SOAP agency's state and operations: faults to inject, idempotent answers, the variant's renaming and
WS-Security checks, over the REST simulator's :class:`AgencySimulator`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lxml import etree

from gateway.simulators.agency import AgencySimulator
from gateway.simulators.controls import checked_value
from gateway.simulators.soap_agency_xml import (
    NATIONAL_STATUS_CODES,
    REFERENCE_NAMESPACE,
    VARIANT_FIELDS,
    VARIANT_NAMESPACE,
    VARIANT_OPERATIONS,
    WSSE_NS,
    WSU_NS,
    Fault,
    append_leaf,
    as_list,
    hardened_parser,
    now,
    parse_time,
    raise_for,
    reference_element,
    renamespaced,
    rest_component,
    rest_dossier,
    service_documents,
    set_child,
    status_entry,
    to_dict,
)

_DIGEST_TYPE = "PasswordDigest"


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
        for name, value in changes.items():
            value = checked_value(self, name, value)
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
        self.schema = etree.XMLSchema(etree.fromstring(self.xsd, parser=hardened_parser()))
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
        copy = etree.fromstring(etree.tostring(element), parser=hardened_parser())
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
        return renamespaced(element, VARIANT_NAMESPACE)

    # -- operations (reference names in, reference payload out) --------------------------------------------------------

    def handle(self, operation: etree._Element) -> etree._Element:
        """Answer one operation element (reference names); raises :class:`Fault` for faults."""
        name = etree.QName(operation).localname
        values = to_dict(operation)
        if name == "LayTrangThaiHoSo":
            return self._status(values)
        handler: Callable[[dict[str, Any]], etree._Element] | None = {
            "TiepNhanHoSo": self._deliver,
            "BoSungHoSo": self._supplement,
            "RutHoSo": self._withdraw,
        }.get(name)
        if handler is None:
            raise Fault("client", f"unknown operation {name}")
        key = str(values.get("KhoaYeuCau") or "")
        fingerprint = hashlib.sha256(etree.tostring(operation, method="c14n")).hexdigest()
        stored = self.answers.get(key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise Fault("client", "idempotency key reused", ("KHOA_DA_DUNG", "Khóa yêu cầu đã được dùng"))
            self.counters["replayed"] += 1
            if stored.fault is not None:
                code, text, kind = stored.fault
                raise Fault(kind, text, (code, text))
            assert stored.payload is not None
            answer = etree.fromstring(etree.tostring(stored.payload))
            set_child(answer, "LapLai", "true")
            return answer
        # No await from here to the answer being stored: concurrent repeats of a key cannot both take effect.
        try:
            answer = handler(values)
        except Fault as fault:
            if fault.business is not None and fault.business[0] == "DA_TON_TAI":
                self.answers[key] = _Answer(fingerprint, None, (fault.business[0], fault.business[1], fault.kind))
            raise
        self.answers[key] = _Answer(fingerprint, answer, None)
        return etree.fromstring(etree.tostring(answer))

    def _deliver(self, values: dict[str, Any]) -> etree._Element:
        hoso = values.get("HoSo") or {}
        status, body = self.core.deliver(rest_dossier(hoso))
        raise_for(status, body, exists="DA_TON_TAI")
        return reference_element(
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
            raise_for(status, body)
            entries.append(status_entry(body))
        elif values.get("TuThoiDiem"):
            since = parse_time(str(values["TuThoiDiem"]))
            if since is None:
                raise Fault("client", "TuThoiDiem is not a time", ("KHONG_HOP_LE", "TuThoiDiem không hợp lệ"))
            for code, record in self.core.dossiers.items():
                changed = parse_time(record["history"][-1]["at"])
                if changed is not None and changed >= since:
                    entries.append(status_entry(self.core.status(code)[1]))
        else:
            raise Fault("client", "MaHoSo or TuThoiDiem required", ("KHONG_HOP_LE", "Thiếu MaHoSo hoặc TuThoiDiem"))
        answer = reference_element("LayTrangThaiHoSoResponse", [])
        for entry in entries:
            answer.append(entry)
        append_leaf(answer, "ThoiDiemTraLoi", now().isoformat())
        return answer

    def _supplement(self, values: dict[str, Any]) -> etree._Element:
        components = [rest_component(item) for item in as_list(values.get("ThanhPhanHoSo"))]
        code = str(values.get("MaHoSo") or "")
        status, body = self.core.supplement(code, {"components": components})
        raise_for(status, body)
        return reference_element(
            "BoSungHoSoResponse",
            [("MaHoSo", code), ("TrangThai", body["status"]), ("ChapNhan", "true"), ("LapLai", "false")],
        )

    def _withdraw(self, values: dict[str, Any]) -> etree._Element:
        code = str(values.get("MaHoSo") or "")
        status, body = self.core.withdraw(code, {"reason": values.get("LyDo")})
        raise_for(status, body)
        return reference_element(
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
            raise Fault("client", "WS-Security authentication failed", security=True)
        if secret.get("Type", "").endswith(_DIGEST_TYPE):
            nonce = base64.b64decode(token.findtext(f"{{{WSSE_NS}}}Nonce") or "")
            created = token.findtext(f"{{{WSU_NS}}}Created") or ""
            expected = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()  # noqa: S324 - WS-Security UsernameToken Profile
            valid = hmac.compare_digest(secret.text.strip(), expected)
        else:
            valid = hmac.compare_digest(secret.text.encode(), password.encode())
        if not valid:
            raise Fault("client", "WS-Security authentication failed", security=True)
