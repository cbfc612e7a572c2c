"""The gateway's SOAP callback service (``/soap/callback``, ``CapNhatTrangThaiHoSo``) on a real uvicorn server:
a zeep client loading the served WSDL and reporting status changes, WS-Security, and raw envelopes for every
refusal (credentials, state machine, schema, hostile XML, sizes, SOAP versions), each a SOAP fault that changes
nothing. Requests and answers are validated against ``capnhat.xsd`` with xmlschema."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import xmlschema
import zeep
import zeep.exceptions
from lxml import etree
from sqlalchemy import func, select
from zeep.plugins import HistoryPlugin
from zeep.wsse.username import UsernameToken

from gateway import soap_callback
from gateway.api import create_app
from gateway.domain.calendar import OfficeCalendar
from gateway.store.models import AuditEntry
from tests.api_support import (
    ADMIN,
    AGENCY,
    AGENCY3_TOKEN,
    AGENCY_TOKEN,
    NOW,
    PORTAL_TOKEN,
    Clock,
    Gateway,
    open_runtime,
    pdf,
    registration,
)
from tests.servers import ServerThread

NS = soap_callback.NAMESPACE
SOAP11 = soap_callback.SOAP11
SOAP12 = soap_callback.SOAP12
WSSE = soap_callback.WSSE_NS
CALENDAR = OfficeCalendar()
XML11 = {"Content-Type": "text/xml; charset=utf-8"}
XML12 = {"Content-Type": "application/soap+xml; charset=utf-8"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def served_gateway(tmp_path: Path, **sections: Any) -> Iterator[tuple[Gateway, ServerThread]]:
    """A gateway on SQLite served by uvicorn on 127.0.0.1 (its clock frozen at ``NOW``)."""
    with open_runtime("sqlite", tmp_path, **sections) as runtime:
        clock = Clock()
        app = create_app(runtime, clock=clock)
        with ServerThread(app) as server:
            client = httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=30)
            yield Gateway(runtime=runtime, clock=clock, client=client, app=app), server


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Gateway, ServerThread]]:
    with served_gateway(tmp_path) as (gateway, server):
        async with gateway.client:
            yield gateway, server


@pytest.fixture
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(soap_callback.service_xsd().decode("utf-8"))


def zeep_client(base_url: str, *, token: str | None = None, wsse: Any = None) -> tuple[zeep.Client, HistoryPlugin]:
    session = requests.Session()
    session.trust_env = False
    if token is not None:
        session.headers["Authorization"] = f"Bearer {token}"
    history = HistoryPlugin()
    settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=False)
    transport = zeep.Transport(session=session, timeout=10, operation_timeout=30)
    client = zeep.Client(
        f"{base_url}/soap/callback?wsdl", transport=transport, wsse=wsse, plugins=[history], settings=settings
    )
    return client, history


def body_payload(envelope: etree._Element | bytes) -> etree._Element:
    root = envelope if isinstance(envelope, etree._Element) else etree.fromstring(envelope)
    body = root.find(f"{{{etree.QName(root).namespace}}}Body")
    assert body is not None
    [payload] = [child for child in body if isinstance(child.tag, str)]
    return payload


def event(code: str, status: str, *, at: datetime | None = NOW, **children: str) -> etree._Element:
    """A ``CapNhatTrangThaiHoSo`` element (children in the schema's order when given in it)."""
    node = etree.Element(f"{{{NS}}}CapNhatTrangThaiHoSo", nsmap={"cb": NS})
    leaves: list[tuple[str, str]] = []
    if "MaCoQuan" in children:
        leaves.append(("MaCoQuan", children.pop("MaCoQuan")))
    leaves += [("MaHoSo", code), ("TrangThai", status)]
    if at is not None:
        leaves.append(("ThoiDiem", at.isoformat()))
    leaves += list(children.items())
    for name, text in leaves:
        etree.SubElement(node, f"{{{NS}}}{name}").text = text
    return node


def envelope(operation: etree._Element | None, *, version: str = "1.1", header: etree._Element | None = None) -> bytes:
    namespace = SOAP11 if version == "1.1" else SOAP12
    root = etree.Element(f"{{{namespace}}}Envelope", nsmap={"soap": namespace})
    if header is not None:
        etree.SubElement(root, f"{{{namespace}}}Header").append(header)
    body = etree.SubElement(root, f"{{{namespace}}}Body")
    if operation is not None:
        body.append(operation)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def username_token(username: str, password: str, *, kind: str = "PasswordText") -> etree._Element:
    root = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    token = etree.SubElement(root, f"{{{WSSE}}}UsernameToken")
    etree.SubElement(token, f"{{{WSSE}}}Username").text = username
    secret = etree.SubElement(token, f"{{{WSSE}}}Password")
    secret.text = password
    secret.set("Type", f"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#{kind}")
    return root


async def post(gw: Gateway, content: bytes, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    return await gw.client.post("/soap/callback", content=content, headers={**XML11, **(headers or {})}, **kwargs)


def fault_of(response: httpx.Response, schema: xmlschema.XMLSchema | None = None) -> dict[str, Any]:
    """The fault's code(s) and its LoiNghiepVu detail (validated against the schema when given)."""
    root = etree.fromstring(response.content)
    namespace = etree.QName(root).namespace
    fault = body_payload(root)
    assert etree.QName(fault).localname == "Fault"
    if namespace == SOAP11:
        codes = [fault.findtext("faultcode")]
        detail = fault.find("detail")
    else:
        codes = [fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value")]
        sub = fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")
        if sub:
            codes.append(sub)
        detail = fault.find(f"{{{SOAP12}}}Detail")
    assert detail is not None
    error = detail.find(f"{{{NS}}}LoiNghiepVu")
    assert error is not None
    if schema is not None:
        schema.validate(etree.tostring(error).decode())
    return {
        "codes": codes,
        "code": error.findtext(f"{{{NS}}}MaLoi"),
        "http": int(error.findtext(f"{{{NS}}}MaHTTP") or 0),
        "message": error.findtext(f"{{{NS}}}MoTa") or "",
        "fields": [item.findtext(f"{{{NS}}}Truong") for item in error.findall(f"{{{NS}}}ChiTiet")],
    }


def audit_count(gw: Gateway) -> int:
    """Audit entries of changes (reading a dossier is an entry too, and changes nothing)."""
    with gw.db.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action != "dossier.read"))


# ----------------------------------------------------------------------------------------------------------------------
# The service description


async def test_the_wsdl_describes_the_service_where_it_is_served(
    served: tuple[Gateway, ServerThread], schema: xmlschema.XMLSchema
) -> None:
    gw, server = served
    wsdl = await gw.client.get("/soap/callback?wsdl")
    assert wsdl.status_code == 200 and wsdl.headers["content-type"].startswith("text/xml")
    root = etree.fromstring(wsdl.content)
    addresses = {node.get("location") for node in root.iter() if etree.QName(node).localname == "address"}
    assert addresses == {f"{server.base_url}/soap/callback"}
    imports = [node.get("schemaLocation") for node in root.iter() if etree.QName(node).localname == "import"]
    assert imports == [f"{server.base_url}/soap/callback?xsd=capnhat.xsd"]
    xsd = await gw.client.get("/soap/callback", params={"xsd": "capnhat.xsd"})
    assert xsd.status_code == 200 and xsd.content == soap_callback.service_xsd()
    assert (await gw.client.get("/soap/callback")).status_code == 404
    assert (await gw.client.get("/soap/callback", params={"xsd": "../../etc/passwd"})).status_code == 404

    client, _ = await asyncio.to_thread(zeep_client, server.base_url)
    service = client.wsdl.services["CapNhatTrangThaiHoSoService"]
    assert set(service.ports) == {"CapNhatTrangThaiHoSoSoap11", "CapNhatTrangThaiHoSoSoap12"}
    for port in service.ports.values():
        assert "CapNhatTrangThaiHoSo" in port.binding._operations
        assert port.binding_options["address"] == f"{server.base_url}/soap/callback"


async def test_a_zeep_client_reports_status_changes(
    served: tuple[Gateway, ServerThread], schema: xmlschema.XMLSchema
) -> None:
    gw, server = served
    code = (await gw.submitted())["code"]
    client, history = await asyncio.to_thread(zeep_client, server.base_url, token=AGENCY_TOKEN)

    def call(**values: Any) -> Any:
        return client.service.CapNhatTrangThaiHoSo(**values)

    received = await asyncio.to_thread(call, MaHoSo=code, TrangThai="received", ThoiDiem=NOW, GhiChu="Đủ hồ sơ")
    for exchanged in (history.last_sent["envelope"], history.last_received["envelope"]):
        schema.validate(etree.tostring(body_payload(exchanged)).decode())
    due = CALENDAR.due_at(NOW, 15)
    assert received.MaHoSo == code and received.TrangThai == "received" and received.MaTrangThaiQuocGia == 2
    assert received.MaCoQuan == AGENCY and received.LapLai is False
    assert received.NgayHenTra == due and received.NgayTiepNhan == NOW
    # The same event again: accepted, nothing changes.
    again = await asyncio.to_thread(call, MaHoSo=code, TrangThai="received", ThoiDiem=NOW, GhiChu="Đủ hồ sơ")
    assert again.LapLai is True and again.NgayHenTra == due

    gw.clock.advance(hours=1)
    await asyncio.to_thread(call, MaHoSo=code, TrangThai="4", ThoiDiem=gw.clock.now)  # a national code
    gw.clock.advance(hours=1)
    licence = base64.b64encode(pdf("Giay phep xay dung so 123/GPXD")).decode()
    result = {
        "SoKetQua": "123/GPXD",
        "NgayKy": gw.clock.now,
        "GhiChu": "Đã ký",
        "TepKetQua": [{"TenTep": "giay-phep.pdf", "LoaiNoiDung": "application/pdf", "NoiDung": licence}],
    }
    completed = await asyncio.to_thread(call, MaHoSo=code, TrangThai="completed", ThoiDiem=gw.clock.now, KetQua=result)
    schema.validate(etree.tostring(body_payload(history.last_sent["envelope"])).decode())
    assert completed.TrangThai == "completed" and completed.MaTrangThaiQuocGia == 9

    view = await gw.get(code)
    changes = [item for item in view["history"] if "step" not in item]  # steps: payment, post…
    assert [(item["status"], item["actor"]) for item in changes] == [
        ("submitted", "portal"),
        ("received", f"agency:{AGENCY}"),
        ("processing", f"agency:{AGENCY}"),
        ("completed", f"agency:{AGENCY}"),
    ]
    assert changes[1]["note"] == "Đủ hồ sơ"
    assert view["result"]["number"] == "123/GPXD" and view["result"]["note"] == "Đã ký"
    [stored] = view["result"]["files"]
    assert stored["filename"] == "giay-phep.pdf" and stored["verification"]["verdict"] == "unsigned"


async def test_ws_security_username_token_authenticates_the_agency(
    served: tuple[Gateway, ServerThread], schema: xmlschema.XMLSchema
) -> None:
    gw, server = served
    code = (await gw.submitted())["code"]
    client, history = await asyncio.to_thread(zeep_client, server.base_url, wsse=UsernameToken(AGENCY, AGENCY_TOKEN))
    answer = await asyncio.to_thread(
        client.service.CapNhatTrangThaiHoSo, MaCoQuan=AGENCY, MaHoSo=code, TrangThai="received", ThoiDiem=NOW
    )
    assert answer.TrangThai == "received"
    assert b"UsernameToken" in etree.tostring(history.last_sent["envelope"])
    assert (await gw.get(code))["history"][-1]["actor"] == f"agency:{AGENCY}"

    later = event(code, "processing", at=NOW + timedelta(minutes=1))
    refusals = {
        "digest": username_token(AGENCY, AGENCY_TOKEN, kind="PasswordDigest"),
        "wrong password": username_token(AGENCY, "not-the-token-0123456789"),
        "another agency's name": username_token("000.00.24.H38", AGENCY_TOKEN),
    }
    for header in refusals.values():
        response = await post(gw, envelope(later, header=header))
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert fault_of(response, schema)["code"] == "KHONG_XAC_THUC"
    assert (await gw.get(code))["status"] == "received"


@pytest.mark.parametrize(
    ("headers", "status", "code", "http"),
    [
        ({}, 401, "KHONG_XAC_THUC", 401),
        (bearer("not-a-configured-token-0123"), 401, "KHONG_XAC_THUC", 401),
        ({"Authorization": "Basic YWdlbmN5OnRva2Vu"}, 401, "KHONG_XAC_THUC", 401),
        (bearer(PORTAL_TOKEN), 500, "KHONG_CO_QUYEN", 403),
        (bearer(AGENCY3_TOKEN), 500, "KHONG_CO_QUYEN", 403),  # not this agency's dossier
    ],
    ids=["none", "unknown", "basic", "portal", "another-agency"],
)
async def test_credentials_are_required_and_must_be_the_agencys(
    served: tuple[Gateway, ServerThread],
    schema: xmlschema.XMLSchema,
    headers: dict[str, str],
    status: int,
    code: str,
    http: int,
) -> None:
    gw, _ = served
    dossier = (await gw.submitted())["code"]
    audits = audit_count(gw)
    response = await post(gw, envelope(event(dossier, "received")), headers)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/xml")
    fault = fault_of(response, schema)
    assert fault["codes"] == ["soap:Client"] and fault["code"] == code and fault["http"] == http
    assert (await gw.get(dossier))["status"] == "submitted" and audit_count(gw) == audits


async def test_refusals_of_the_state_machine_and_the_event_are_client_faults(
    served: tuple[Gateway, ServerThread], schema: xmlschema.XMLSchema, caplog: pytest.LogCaptureFixture
) -> None:
    gw, _ = served
    dossier = (await gw.submitted())["code"]
    before = await gw.get(dossier)
    audits = audit_count(gw)
    agency = bearer(AGENCY_TOKEN)
    cases = [
        # (operation, MaLoi, MaHTTP, a field named in the details)
        (event(dossier, "completed"), "CHUYEN_TRANG_THAI_KHONG_HOP_LE", 409, "status"),
        (event("000.00.23.H38-261123-9999", "received"), "KHONG_TIM_THAY", 404, None),
        (event(dossier, "refused"), "KHONG_HOP_LE", 422, "reason"),  # a reason is required
        (event(dossier, "teleported"), "KHONG_HOP_LE", 422, "status"),
        (event(dossier, "received", at=NOW + timedelta(hours=2)), "KHONG_HOP_LE", 422, "at"),  # in the future
        (event(dossier, "received", MaCoQuan="000.00.24.H38"), "KHONG_CO_QUYEN", 403, None),
    ]
    for operation, code, http, field in cases:
        response = await post(gw, envelope(operation), agency)
        assert response.status_code == 500, response.text  # SOAP 1.1: every fault is HTTP 500
        fault = fault_of(response, schema)
        assert fault["codes"] == ["soap:Client"] and (fault["code"], fault["http"]) == (code, http), fault
        if field:
            assert field in fault["fields"], fault
    assert await gw.get(dossier) == before and audit_count(gw) == audits
    assert any(r.name == "gateway.events" and "illegal transition" in r.getMessage() for r in caplog.records)


def _invalid_schema() -> bytes:
    bad = event("X", "received")
    bad.find(f"{{{NS}}}ThoiDiem").text = "hôm qua"
    return envelope(bad)


def _unordered() -> bytes:
    operation = event("X", "received")
    operation.insert(0, operation[1])  # TrangThai before MaHoSo
    return envelope(operation)


def _unknown_operation() -> bytes:
    return envelope(etree.Element(f"{{{NS}}}XoaHoSo", nsmap={"cb": NS}))


def _must_understand() -> bytes:
    header = etree.Element("{urn:khac}GiaoDich", nsmap={"k": "urn:khac", "soap": SOAP11})
    header.set(f"{{{SOAP11}}}mustUnderstand", "1")
    return envelope(event("X", "received"), header=header)


BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + f']><soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><cb:CapNhatTrangThaiHoSo xmlns:cb="{NS}">'
    "<cb:MaHoSo>&lol9;</cb:MaHoSo><cb:TrangThai>received</cb:TrangThai>"
    "</cb:CapNhatTrangThaiHoSo></soap:Body></soap:Envelope>"
).encode()
XXE = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><cb:CapNhatTrangThaiHoSo xmlns:cb="{NS}">'
    "<cb:MaHoSo>&xxe;</cb:MaHoSo><cb:TrangThai>received</cb:TrangThai>"
    "</cb:CapNhatTrangThaiHoSo></soap:Body></soap:Envelope>"
).encode()


@pytest.mark.parametrize(
    ("content", "kind", "status"),
    [
        (BOMB, "soap:Client", 500),
        (XXE, "soap:Client", 500),
        (envelope(event("X", "received"))[:-40], "soap:Client", 500),  # truncated
        (b"<html><body>Bao tri</body></html>", "soap:Client", 500),
        (b"", "soap:Client", 500),
        (envelope(None), "soap:Client", 500),  # an empty Body
        (_invalid_schema(), "soap:Client", 500),
        (_unordered(), "soap:Client", 500),
        (_unknown_operation(), "soap:Client", 500),
        (envelope(event("X", "received"), version="1.2"), "soap:VersionMismatch", 500),  # text/xml: SOAP 1.1
        (_must_understand(), "soap:MustUnderstand", 500),
    ],
    ids=[
        "billion-laughs",
        "xxe",
        "truncated",
        "html",
        "empty",
        "empty-body",
        "schema",
        "order",
        "operation",
        "version",
        "must-understand",
    ],
)
async def test_malformed_or_hostile_requests_are_refused(
    served: tuple[Gateway, ServerThread], schema: xmlschema.XMLSchema, content: bytes, kind: str, status: int
) -> None:
    gw, _ = served
    dossier = (await gw.submitted())["code"]
    audits = audit_count(gw)
    response = await post(
        gw, content.replace(b"<cb:MaHoSo>X<", f"<cb:MaHoSo>{dossier}<".encode()), bearer(AGENCY_TOKEN)
    )
    assert response.status_code == status
    fault = fault_of(response, schema)
    assert fault["codes"] == [kind] and fault["code"] == "KHONG_HOP_LE"
    assert "root:" not in fault["message"] and "Traceback" not in response.text  # nothing of /etc/passwd
    assert (await gw.get(dossier))["status"] == "submitted" and audit_count(gw) == audits


async def test_soap_1_2_faults_use_its_codes_and_http_statuses(
    served: tuple[Gateway, ServerThread], schema: xmlschema.XMLSchema
) -> None:
    gw, _ = served
    dossier = (await gw.submitted())["code"]
    headers = {**XML12, **bearer(AGENCY_TOKEN)}
    illegal = await gw.client.post(
        "/soap/callback", content=envelope(event(dossier, "completed"), version="1.2"), headers=headers
    )
    assert illegal.status_code == 400 and illegal.headers["content-type"].startswith("application/soap+xml")
    fault = fault_of(illegal, schema)
    assert fault["codes"] == ["soap:Sender", "cb:CHUYEN_TRANG_THAI_KHONG_HOP_LE"] and fault["http"] == 409
    mismatch = await gw.client.post("/soap/callback", content=envelope(event(dossier, "received")), headers=headers)
    assert mismatch.status_code == 500 and fault_of(mismatch)["codes"] == ["soap:VersionMismatch"]
    accepted = await gw.client.post(
        "/soap/callback", content=envelope(event(dossier, "received"), version="1.2"), headers=headers
    )
    assert accepted.status_code == 200
    answer = body_payload(accepted.content)
    schema.validate(etree.tostring(answer).decode())
    assert answer.findtext(f"{{{NS}}}TrangThai") == "received" and answer.findtext(f"{{{NS}}}LapLai") == "false"


async def test_content_type_and_size(tmp_path: Path, schema: xmlschema.XMLSchema) -> None:
    with served_gateway(tmp_path, server={"max_body_bytes": 64 * 1024}) as (gw, _server):
        async with gw.client:
            dossier = (await gw.submitted(_small_submission()))["code"]
            agency = bearer(AGENCY_TOKEN)
            as_json = await gw.client.post("/soap/callback", json={"dossier_code": dossier}, headers=agency)
            assert as_json.status_code == 415 and fault_of(as_json, schema)["code"] == "KHONG_HOP_LE"

            big = event(dossier, "processing", GhiChu="x" * 3000)
            padding = etree.Comment("p" * (100 * 1024))
            big.append(padding)

            async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: the limit is met while reading
                content = envelope(big)
                for start in range(0, len(content), 8192):
                    yield content[start : start + 8192]

            response = await gw.client.post("/soap/callback", content=streamed(), headers={**XML11, **agency})
            assert response.status_code == 413
            assert fault_of(response, schema)["code"] == "QUA_LON"
            assert (await gw.get(dossier))["status"] == "submitted"


def _small_submission() -> dict[str, Any]:
    from tests.api_support import component, submission

    small = b"%PDF-1.4\n%%EOF\n"
    return submission(components=[component("TP1", small), component("TP2", small), component("TP3", small)])


async def test_agency_status_values_are_read_through_its_mapping(
    served: tuple[Gateway, ServerThread], schema: xmlschema.XMLSchema
) -> None:
    gw, _ = served
    document = registration(AGENCY, ["1.009794", "9.000001"])
    document["mapping"] = {"statuses": {"DA_TIEP_NHAN": "received", "DANG_XU_LY": "processing"}}
    replaced = await gw.client.post("/api/v1/admin/agencies?replace=true", json=document, headers=ADMIN)
    assert replaced.status_code == 200, replaced.text
    dossier = (await gw.submitted())["code"]
    response = await post(gw, envelope(event(dossier, "DA_TIEP_NHAN")), bearer(AGENCY_TOKEN))
    assert response.status_code == 200, response.text
    assert body_payload(response.content).findtext(f"{{{NS}}}TrangThai") == "received"
    assert (await gw.get(dossier))["status"] == "received"
    unknown = await post(gw, envelope(event(dossier, "CHUA_RO", at=NOW + timedelta(minutes=1))), bearer(AGENCY_TOKEN))
    assert fault_of(unknown, schema)["code"] == "KHONG_HOP_LE"


async def test_fees_paid_at_the_counter_are_said_with_the_event(
    served: tuple[Gateway, ServerThread], schema: xmlschema.XMLSchema
) -> None:
    gw, _ = served
    dossier = (await gw.submitted())["code"]
    assert not all(fee["paid"] for fee in (await gw.get(dossier))["fees"])
    wrong = await post(gw, envelope(event(dossier, "received", DaNopPhi="yes")), bearer(AGENCY_TOKEN))
    assert fault_of(wrong, schema)["http"] == 422
    values = soap_callback.parse_request(envelope(event(dossier, "received", DaNopPhi="true")), "text/xml").values
    assert soap_callback.event_fields(values)["fees_paid"] is True
    assert "fees_paid" not in soap_callback.event_fields({"MaHoSo": dossier, "TrangThai": "received"})
    response = await post(gw, envelope(event(dossier, "received", DaNopPhi="1")), bearer(AGENCY_TOKEN))
    assert response.status_code == 200, response.text
    view = await gw.get(dossier)
    assert view["status"] == "received" and view["fees"] and all(fee["paid"] for fee in view["fees"])


def test_the_shipped_documents_are_consistent() -> None:
    xsd = xmlschema.XMLSchema(soap_callback.service_xsd().decode("utf-8"))
    assert {"CapNhatTrangThaiHoSo", "CapNhatTrangThaiHoSoResponse", "LoiNghiepVu"} <= set(xsd.elements)
    wsdl = etree.fromstring(soap_callback.service_wsdl("https://lgsp.example.gov.vn/soap/callback"))
    elements = {node.get("element") for node in wsdl.iter() if node.get("element")}
    assert elements == {"cb:CapNhatTrangThaiHoSo", "cb:CapNhatTrangThaiHoSoResponse", "cb:LoiNghiepVu"}
