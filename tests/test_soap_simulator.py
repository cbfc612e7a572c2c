"""The SOAP agency simulator, driven with hand-built envelopes (no zeep), served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from lxml import etree

from adapters.onestop import wsdl as shipped
from gateway.simulators.soap_agency import (
    VARIANT_NAMESPACE,
    SoapAgencySimulator,
    create_soap_app,
    service_documents,
)
from tests.servers import ServerThread
from tests.soap_support import (
    AGENCY,
    MC,
    MEDIA,
    SOAP11,
    SOAP12,
    element,
    envelope,
    faults,
    payload,
    schema,
    sim_state,
)

CODE = f"{AGENCY}-261123-0001"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"


@pytest.fixture(scope="module")
def agency() -> Iterator[ServerThread]:
    with ServerThread(create_soap_app()) as server:
        yield server


@pytest.fixture
def sim(agency: ServerThread) -> Iterator[SoapAgencySimulator]:
    simulator: SoapAgencySimulator = agency.app.state.simulator
    simulator.reset()
    yield simulator
    simulator.reset()


@pytest.fixture
async def http(agency: ServerThread, sim: SoapAgencySimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=agency.base_url, trust_env=False, timeout=10) as client:
        yield client


def deliver_request(key: str = f"{CODE}:deliver", code: str = CODE, *, procedure: str = "1.009794") -> etree._Element:
    component = element(
        "ThanhPhanHoSo",
        ("MaThanhPhan", "TP1"),
        ("TenThanhPhan", "Đơn đề nghị"),
        ("NoiDung", base64.b64encode(b"%PDF-1.7").decode()),
    )
    hoso = element(
        "HoSo",
        ("MaHoSo", code),
        ("MaTTHC", procedure),
        ("NgayTiepNhan", "2026-11-23T08:05:00+07:00"),
        element("NguoiNop", ("HoTen", "Nguyễn Văn A")),
        component,
        element("PhiLePhi", ("MaPhi", "LP1"), ("SoTien", "150000")),
        ("YeuCauDoiChieuBanGoc", "false"),
    )
    return element("TiepNhanHoSo", ("KhoaYeuCau", key), hoso)


async def soap(http: httpx.AsyncClient, version: str, operation: etree._Element, **kwargs: Any) -> httpx.Response:
    return await http.post(
        "/soap", content=envelope(version, operation, **kwargs), headers={"Content-Type": MEDIA[version]}
    )


def fault_detail(response: httpx.Response) -> tuple[str, str | None]:
    """``(fault code, business code)`` of a fault answer."""
    root = etree.fromstring(response.content)
    namespace = etree.QName(root).namespace
    fault = root.find(f"{{{namespace}}}Body/{{{namespace}}}Fault")
    assert fault is not None
    if namespace == SOAP11:
        code = fault.findtext("faultcode")
    else:
        code = fault.findtext(f"{{{namespace}}}Code/{{{namespace}}}Value")
    business = next(
        (node.text for node in fault.iter(etree.Element) if etree.QName(node).localname in ("MaLoi", "MaSoLoi")), None
    )
    return str(code), business


async def test_wsdl_and_schema_are_served_and_counted(http: httpx.AsyncClient, agency: ServerThread) -> None:
    response = await http.get("/soap?wsdl")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    root = etree.fromstring(response.content)
    addresses = [node.get("location") for node in root.iter(etree.Element) if etree.QName(node).localname == "address"]
    assert addresses == [f"{agency.base_url}/soap"] * 2
    imports = [
        node.get("schemaLocation") for node in root.iter(etree.Element) if etree.QName(node).localname == "import"
    ]
    assert imports == ["soap?xsd=hoso.xsd"]
    bindings = root.findall(f"{{{WSDL_NS}}}binding")
    assert [etree.QName(child).namespace for binding in bindings for child in binding[:1]] == [
        "http://schemas.xmlsoap.org/wsdl/soap/",
        "http://schemas.xmlsoap.org/wsdl/soap12/",
    ]
    xsd = await http.get("/soap?xsd=hoso.xsd")
    assert xsd.content == shipped.read("hoso.xsd")
    assert (await http.get("/soap?xsd=other.xsd")).status_code == 404
    counters = (await sim_state(agency.base_url))["counters"]
    assert counters["wsdl_fetches"] == 1 and counters["xsd_fetches"] == 1


@pytest.mark.parametrize("version", ["1.1", "1.2"])
async def test_deliver_status_supplement_withdraw(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread, version: str
) -> None:
    xsd = schema()
    request = deliver_request()
    xsd.validate(etree.tostring(request).decode())
    response = await soap(http, version, request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(MEDIA[version].split(";")[0])
    answer = payload(response.content)
    xsd.validate(etree.tostring(answer).decode())
    assert answer.findtext(f"{{{MC}}}MaHoSo") == CODE
    assert answer.findtext(f"{{{MC}}}LapLai") == "false"
    assert sim.core.dossiers[CODE]["received"]["applicant"]["full_name"] == "Nguyễn Văn A"
    assert sim.core.dossiers[CODE]["received"]["components"][0]["content_base64"]

    status = await soap(http, version, element("LayTrangThaiHoSo", ("MaHoSo", CODE)))
    answer = payload(status.content)
    xsd.validate(etree.tostring(answer).decode())
    assert answer.findtext(f"{{{MC}}}TrangThaiHoSo/{{{MC}}}TrangThai") == "submitted"

    component = element("ThanhPhanHoSo", ("MaThanhPhan", "TP2"), ("DuongDan", "https://lgsp.example.gov.vn/f/2"))
    supplement = await soap(
        http, version, element("BoSungHoSo", ("KhoaYeuCau", f"{CODE}:s1"), ("MaHoSo", CODE), component)
    )
    xsd.validate(etree.tostring(payload(supplement.content)).decode())
    withdraw = await soap(
        http, version, element("RutHoSo", ("KhoaYeuCau", f"{CODE}:w"), ("MaHoSo", CODE), ("LyDo", "x"))
    )
    answer = payload(withdraw.content)
    xsd.validate(etree.tostring(answer).decode())
    assert answer.findtext(f"{{{MC}}}TrangThai") == "withdrawn"
    state = await sim_state(agency.base_url)
    assert state["effects"] == {"deliver": 1, "supplement": 1, "withdraw": 1}
    assert state["counters"][f"soap{version.replace('.', '')}"] == 4


async def test_repeated_key_is_replayed_without_effect(http: httpx.AsyncClient, agency: ServerThread) -> None:
    first = await soap(http, "1.1", deliver_request())
    again = await soap(http, "1.1", deliver_request())
    assert payload(again.content).findtext(f"{{{MC}}}LapLai") == "true"
    assert payload(again.content).findtext(f"{{{MC}}}MaThamChieu") == payload(first.content).findtext(
        f"{{{MC}}}MaThamChieu"
    )
    reused = await soap(http, "1.1", deliver_request(procedure="2.000001"))  # same key, another request
    assert reused.status_code == 500 and fault_detail(reused) == ("soap:Client", "KHOA_DA_DUNG")
    other_key = await soap(http, "1.2", deliver_request(key=f"{CODE}:deliver:2"))
    assert other_key.status_code == 400 and fault_detail(other_key) == ("soap:Sender", "DA_TON_TAI")
    state = await sim_state(agency.base_url)
    assert state["effects"] == {"deliver": 1}
    assert state["counters"]["replayed"] == 1


async def test_unknown_dossier_and_invalid_request_are_business_faults(http: httpx.AsyncClient) -> None:
    missing = await soap(http, "1.2", element("LayTrangThaiHoSo", ("MaHoSo", "000.00.23.H38-261123-9999")))
    assert fault_detail(missing) == ("soap:Sender", "KHONG_TIM_THAY")
    xsd = schema()
    root = etree.fromstring(missing.content)
    detail = root.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault/{{{SOAP12}}}Detail")
    assert detail is not None
    xsd.validate(etree.tostring(detail[0]).decode())
    invalid = await soap(http, "1.1", element("RutHoSo", ("MaHoSo", CODE)))  # no KhoaYeuCau
    assert fault_detail(invalid) == ("soap:Client", "KHONG_HOP_LE")


async def test_version_mismatch_dtd_and_content_type(http: httpx.AsyncClient, agency: ServerThread) -> None:
    mismatch = await http.post(
        "/soap", content=envelope("1.2", deliver_request()), headers={"Content-Type": MEDIA["1.1"]}
    )
    assert fault_detail(mismatch)[0] == "soap:VersionMismatch"
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>' + envelope("1.1", deliver_request())[38:]
    refused = await http.post("/soap", content=bomb, headers={"Content-Type": MEDIA["1.1"]})
    assert fault_detail(refused)[0] == "soap:Client" and b"DTD" in refused.content
    json_body = await http.post("/soap", json={"a": 1})
    assert json_body.status_code == 415
    assert (await sim_state(agency.base_url))["effects"] == {}


async def test_bearer_token_and_ws_security() -> None:
    with ServerThread(create_soap_app(token="secret", wsse=("canbo", "mat-khau"))) as server:
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=5) as http:
            request = element("LayTrangThaiHoSo", ("MaHoSo", CODE))
            refused = await soap(http, "1.1", request)
            assert refused.status_code == 401
            headers = {"Content-Type": MEDIA["1.1"], "Authorization": "Bearer secret"}
            no_token = await http.post("/soap", content=envelope("1.1", request), headers=headers)
            assert fault_detail(no_token)[0] == "wsse:FailedAuthentication"

            def security(password: str, digest: bool) -> etree._Element:
                root = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE, "wsu": WSU})
                token = etree.SubElement(root, f"{{{WSSE}}}UsernameToken")
                etree.SubElement(token, f"{{{WSSE}}}Username").text = "canbo"
                secret = etree.SubElement(token, f"{{{WSSE}}}Password")
                if digest:
                    nonce, created = b"0123456789abcdef", "2026-11-23T01:00:00+00:00"
                    value = hashlib.sha1(nonce + created.encode() + password.encode()).digest()
                    secret.text = base64.b64encode(value).decode()
                    secret.set("Type", "…#PasswordDigest")
                    etree.SubElement(token, f"{{{WSSE}}}Nonce").text = base64.b64encode(nonce).decode()
                    etree.SubElement(token, f"{{{WSU}}}Created").text = created
                else:
                    secret.text = password
                return root

            for digest in (False, True):
                wrong = await http.post(
                    "/soap", content=envelope("1.1", request, header=security("sai", digest)), headers=headers
                )
                assert fault_detail(wrong)[0] == "wsse:FailedAuthentication"
                right = await http.post(
                    "/soap", content=envelope("1.1", request, header=security("mat-khau", digest)), headers=headers
                )
                assert fault_detail(right) == ("soap:Client", "KHONG_TIM_THAY")  # authenticated; no such dossier


async def test_clerk_events_and_changes_since(http: httpx.AsyncClient, agency: ServerThread) -> None:
    await soap(http, "1.1", deliver_request())
    event = {
        "status": "completed",
        "at": "2026-12-10T15:20:00+07:00",
        "note": "Đã có kết quả",
        "result": {"number": "123/GPXD", "signed_at": "2026-12-10T15:00:00+07:00", "url": "https://x.vn/kq.pdf"},
    }
    assert (await http.post(f"/_sim/dossiers/{CODE}/events", json=event)).status_code == 200
    answer = payload(
        (await soap(http, "1.2", element("LayTrangThaiHoSo", ("TuThoiDiem", "2026-12-01T00:00:00Z")))).content
    )
    schema().validate(etree.tostring(answer).decode())
    entries = answer.findall(f"{{{MC}}}TrangThaiHoSo")
    assert [entry.findtext(f"{{{MC}}}TrangThai") for entry in entries] == ["completed"]
    assert entries[0].findtext(f"{{{MC}}}KetQua/{{{MC}}}SoKetQua") == "123/GPXD"
    later = payload(
        (await soap(http, "1.2", element("LayTrangThaiHoSo", ("TuThoiDiem", "2027-01-01T00:00:00Z")))).content
    )
    assert later.findall(f"{{{MC}}}TrangThaiHoSo") == []


async def test_fault_injection_controls(http: httpx.AsyncClient, agency: ServerThread) -> None:
    assert (await http.post("/_sim/faults", json={"nope": 1})).status_code == 400
    assert (await http.post("/_sim/faults", json={"fail_next": -1})).status_code == 400
    await faults(agency.base_url, fail_next=1, fail_code="HO_SO_SAI")
    rejected = await soap(http, "1.1", deliver_request())
    assert fault_detail(rejected) == ("soap:Client", "HO_SO_SAI")
    await faults(agency.base_url, soap_server_fault=1)
    server_fault = await soap(http, "1.2", deliver_request())
    assert server_fault.status_code == 500 and fault_detail(server_fault) == ("soap:Receiver", None)
    await faults(agency.base_url, html_next=1)
    assert (await soap(http, "1.1", deliver_request())).headers["content-type"].startswith("text/html")
    await faults(agency.base_url, truncate_next=1)
    truncated = await soap(http, "1.1", deliver_request())  # handled, answer cut
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(truncated.content)
    await faults(agency.base_url, wrong_namespace_next=1)
    status = await soap(http, "1.1", element("LayTrangThaiHoSo", ("MaHoSo", CODE)))
    assert etree.QName(payload(status.content)).namespace == "urn:khong-phai-dich-vu:9.9"
    await faults(agency.base_url, version_mismatch_next=1)
    status = await soap(http, "1.1", element("LayTrangThaiHoSo", ("MaHoSo", CODE)))
    assert etree.QName(etree.fromstring(status.content)).namespace == SOAP12
    await faults(agency.base_url, xml_bomb_next=1)
    bomb = await soap(http, "1.1", element("LayTrangThaiHoSo", ("MaHoSo", CODE)))
    assert b"<!DOCTYPE" in bomb.content and b"<!ENTITY lol9" in bomb.content
    state = await sim_state(agency.base_url)
    assert state["effects"] == {"deliver": 1} and state["counters"]["faults"] == 7
    assert (await http.post("/_sim/faults", json={"reset": True})).json()["fail_next"] == 0


def test_variant_documents_differ_and_validate() -> None:
    wsdl, xsd = service_documents(mapping_variant=True)
    text = wsdl.decode()
    assert 'name="NhanHoSo"' in text and 'name="TiepNhanHoSo"' not in text
    assert VARIANT_NAMESPACE in xsd.decode() and MC not in xsd.decode()
    variant = schema(mapping_variant=True)
    request = element(
        "NhanHoSo",
        ("MaGiaoDich", "k"),
        element(
            "HoSo",
            ("SoHoSo", CODE),
            ("MaThuTuc", "1.009794"),
            ("NgayTiepNhan", "2026-11-23T08:05:00+07:00"),
            ("YeuCauDoiChieuBanGoc", "true"),
            namespace=VARIANT_NAMESPACE,
        ),
        namespace=VARIANT_NAMESPACE,
    )
    variant.validate(etree.tostring(request).decode())


async def test_variant_speaks_its_own_names() -> None:
    with ServerThread(create_soap_app(mapping_variant=True)) as server:
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=5) as http:
            reference = await soap(http, "1.1", deliver_request())
            assert fault_detail(reference) == ("soap:Client", "KHONG_HOP_LE")  # the reference namespace is unknown
            request = element("TraCuuHoSo", ("SoHoSo", CODE), namespace=VARIANT_NAMESPACE)
            missing = await soap(http, "1.1", request)
            assert fault_detail(missing) == ("soap:Client", "KHONG_TIM_THAY")
            assert b"ThongBaoLoi" in missing.content
