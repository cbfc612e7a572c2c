"""check_wsdl against the SOAP simulator and against served documents of real-world variety, over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from adapters.http import ClientFactory, ClientSettings
from adapters.netguard import AddressPolicy
from adapters.onestop import wsdl as shipped
from adapters.onestop.soap import WsdlLimits, WsdlLoader
from adapters.onestop.wsdlcheck import WsdlCheck, check_wsdl
from gateway.simulators.soap_agency import VARIANT_MAPPING, create_soap_app
from tests.servers import ServerThread
from tests.soap_support import static_app

LOCAL = AddressPolicy(allow_private=True)
XML = "text/xml; charset=utf-8"
HOSO = shipped.read("hoso.xsd")

WSDL_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/" xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:mc="urn:dvc:motcua:1.0" xmlns:abs="urn:ext:abstract" xmlns:at="urn:ext:abstract:types"
    xmlns:tns="{tns}" targetNamespace="{tns}">
"""
OPERATIONS = ("TiepNhanHoSo", "LayTrangThaiHoSo", "BoSungHoSo", "RutHoSo")

# A description split the way real ones are: a concrete WSDL importing an abstract one, whose types import a schema
# (in a subdirectory) that includes another and imports a third (in a sibling directory) that imports the XML
# namespace without a location; a SOAP header on every input.
ABSTRACT_WSDL = (
    WSDL_HEAD.format(tns="urn:ext:abstract")
    + """
  <wsdl:types>
    <xs:schema targetNamespace="urn:ext:abstract:types" elementFormDefault="qualified">
      <xs:import namespace="urn:dvc:motcua:1.0" schemaLocation="schemas/hoso-main.xsd"/>
      <xs:element name="XacThuc" type="xs:string"/>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="XacThucHeader"><wsdl:part name="XacThuc" element="at:XacThuc"/></wsdl:message>
"""
    + "".join(
        f"""
  <wsdl:message name="{op}In"><wsdl:part name="parameters" element="mc:{op}"/></wsdl:message>
  <wsdl:message name="{op}Out"><wsdl:part name="parameters" element="mc:{op}Response"/></wsdl:message>"""
        for op in OPERATIONS
    )
    + """
  <wsdl:portType name="PT">"""
    + "".join(
        f"""
    <wsdl:operation name="{op}">
      <wsdl:input message="abs:{op}In"/><wsdl:output message="abs:{op}Out"/></wsdl:operation>"""
        for op in OPERATIONS
    )
    + """
  </wsdl:portType>
</wsdl:definitions>
"""
)

CONCRETE_WSDL = (
    WSDL_HEAD.format(tns="urn:ext:svc")
    + """
  <wsdl:import namespace="urn:ext:abstract" location="abstract.wsdl"/>
  <wsdl:binding name="B11" type="abs:PT">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>"""
    + "".join(
        f"""
    <wsdl:operation name="{op}">
      <soap:operation soapAction="{op}"/>
      <wsdl:input><soap:header message="abs:XacThucHeader" part="XacThuc" use="literal"/><soap:body use="literal"/>
      </wsdl:input>
      <wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>"""
        for op in OPERATIONS
    )
    + """
  </wsdl:binding>
  <wsdl:service name="S"><wsdl:port name="P11" binding="tns:B11">
    <soap:address location="https://motcua.example.vn/soap"/></wsdl:port></wsdl:service>
</wsdl:definitions>
"""
)

HOSO_MAIN = b"""<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:dvc:motcua:1.0"
    elementFormDefault="qualified">
  <xs:include schemaLocation="hoso-types.xsd"/>
  <xs:import namespace="urn:ext:common" schemaLocation="../common/common.xsd"/>
</xs:schema>
"""

COMMON = b"""<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:ext:common" elementFormDefault="qualified">
  <xs:import namespace="http://www.w3.org/XML/1998/namespace"/>
  <xs:element name="GhiChuChung">
    <xs:complexType><xs:simpleContent><xs:extension base="xs:string">
      <xs:attribute ref="xml:lang"/>
    </xs:extension></xs:simpleContent></xs:complexType>
  </xs:element>
</xs:schema>
"""


def rpc_wsdl() -> str:
    """An rpc/literal description, SOAP 1.2 only, with typed parts."""
    parts = {
        "TiepNhanHoSo": '<wsdl:part name="KhoaYeuCau" type="xs:string"/><wsdl:part name="HoSo" type="mc:HoSo"/>',
        "LayTrangThaiHoSo": '<wsdl:part name="MaHoSo" type="xs:string"/>',
        "BoSungHoSo": '<wsdl:part name="KhoaYeuCau" type="xs:string"/><wsdl:part name="MaHoSo" type="xs:string"/>'
        '<wsdl:part name="ThanhPhanHoSo" type="mc:ThanhPhanHoSo"/>',
        "RutHoSo": '<wsdl:part name="KhoaYeuCau" type="xs:string"/><wsdl:part name="MaHoSo" type="xs:string"/>',
    }
    return (
        WSDL_HEAD.format(tns="urn:rpc")
        + """
  <wsdl:types><xs:schema targetNamespace="urn:rpc">
    <xs:import namespace="urn:dvc:motcua:1.0" schemaLocation="hoso.xsd"/></xs:schema></wsdl:types>
  <wsdl:message name="Out"><wsdl:part name="KetQua" type="xs:string"/></wsdl:message>"""
        + "".join(f'<wsdl:message name="{op}In">{parts[op]}</wsdl:message>' for op in OPERATIONS)
        + '<wsdl:portType name="PT">'
        + "".join(
            f'<wsdl:operation name="{op}"><wsdl:input message="tns:{op}In"/><wsdl:output message="tns:Out"/>'
            "</wsdl:operation>"
            for op in OPERATIONS
        )
        + """</wsdl:portType>
  <wsdl:binding name="B12" type="tns:PT">
    <soap12:binding style="rpc" transport="http://schemas.xmlsoap.org/soap/http"/>"""
        + "".join(
            f'<wsdl:operation name="{op}"><soap12:operation soapAction="{op}"/>'
            '<wsdl:input><soap12:body use="literal" namespace="urn:rpc"/></wsdl:input>'
            '<wsdl:output><soap12:body use="literal" namespace="urn:rpc"/></wsdl:output></wsdl:operation>'
            for op in OPERATIONS
        )
        + """</wsdl:binding>
  <wsdl:service name="S"><wsdl:port name="P12" binding="tns:B12">
    <soap12:address location="https://motcua.example.vn/rpc"/></wsdl:port></wsdl:service>
</wsdl:definitions>
"""
    )


def reference_with(xsd: bytes, *, location: str = "hoso.xsd") -> bytes:
    """The reference WSDL importing another schema location."""
    return shipped.read("TiepNhanHoSo.wsdl").replace(
        b'schemaLocation="hoso.xsd"', f'schemaLocation="{location}"'.encode()
    )


def documents() -> dict[str, tuple[int, str, bytes]]:
    reference = shipped.read("TiepNhanHoSo.wsdl")
    stricter = HOSO.replace(
        b'<xs:element name="LyDo" type="xs:string" minOccurs="0"/>',
        b'<xs:element name="LyDo" type="xs:string" minOccurs="0"/><xs:element name="MaCanBo" type="xs:string"/>',
    )
    renamed = HOSO.replace(
        b'<xs:choice>\n        <xs:element name="MaHoSo" type="mc:Ma"/>',
        b'<xs:choice>\n        <xs:element name="SoBienNhan" type="mc:Ma"/>',
    )
    assert stricter != HOSO and renamed != HOSO
    big = HOSO.replace(b"</xs:schema>", b"<!--" + b" " * 5000 + b"--></xs:schema>")
    return {
        "/ref/TiepNhanHoSo.wsdl": (200, XML, reference),
        "/ref/hoso.xsd": (200, XML, HOSO),
        "/svc/main.wsdl": (200, XML, CONCRETE_WSDL.encode()),
        "/svc/abstract.wsdl": (200, XML, ABSTRACT_WSDL.encode()),
        "/svc/schemas/hoso-main.xsd": (200, XML, HOSO_MAIN),
        "/svc/schemas/hoso-types.xsd": (200, XML, HOSO),
        "/svc/common/common.xsd": (200, XML, COMMON),
        "/rpc/service.wsdl": (200, XML, rpc_wsdl().encode()),
        "/rpc/hoso.xsd": (200, XML, HOSO),
        "/bad/missing-import.wsdl": (200, XML, reference_with(HOSO, location="khong-co.xsd")),
        "/bad/html.wsdl": (200, "text/html", b"<!DOCTYPE html><html><body>Login</body></html>"),
        "/bad/dtd.wsdl": (200, XML, b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "e">]>' + reference[38:]),
        "/bad/wsdl20.wsdl": (200, XML, b'<description xmlns="http://www.w3.org/ns/wsdl"/>'),
        "/bad/file-import.wsdl": (200, XML, reference_with(HOSO, location="file:///etc/passwd")),
        "/bad/big.wsdl": (200, XML, reference_with(big, location="big.xsd")),
        "/bad/big.xsd": (200, XML, big),
        "/bad/strict.wsdl": (200, XML, reference_with(stricter, location="strict.xsd")),
        "/bad/strict.xsd": (200, XML, stricter),
        "/bad/renamed.wsdl": (200, XML, reference_with(renamed, location="renamed.xsd")),
        "/bad/renamed.xsd": (200, XML, renamed),
        "/bad/broken.wsdl": (200, XML, reference.replace(b'type="tns:TiepNhanHoSoPortType"', b'type="tns:Nope"', 1)),
        "/bad/hoso.xsd": (200, XML, HOSO),
        "/bad/5xx.wsdl": (503, "text/plain", b"down"),
    }


@pytest.fixture(scope="module")
def docs() -> Iterator[ServerThread]:
    with ServerThread(static_app(documents())) as server:
        yield server


@pytest.fixture(scope="module")
def simulators() -> Iterator[tuple[ServerThread, ServerThread]]:
    with ServerThread(create_soap_app()) as reference, ServerThread(create_soap_app(mapping_variant=True)) as variant:
        yield reference, variant


async def check(
    url: str, *, factory: ClientFactory | None = None, policy: AddressPolicy = LOCAL, **kw: Any
) -> WsdlCheck:
    settings = ClientSettings(base_url=url, address_policy=policy, timeout_seconds=5)
    return await check_wsdl(url, factory=factory or ClientFactory(), settings=settings, **kw)


def one_line(result: WsdlCheck) -> str:
    assert "\n" not in result.message and result.message == str(result)
    return result.message


async def test_reference_service_passes_and_is_fetched_through_the_factory(docs: ServerThread) -> None:
    seen: list[str] = []

    def recorder(inner: httpx.AsyncBaseTransport, upstream: str) -> httpx.AsyncBaseTransport:
        class Recording(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                seen.append(f"{upstream} {request.method} {request.url.path}")
                return await inner.handle_async_request(request)

        return Recording()

    result = await check(f"{docs.base_url}/ref/TiepNhanHoSo.wsdl", factory=ClientFactory([recorder]))
    assert result.ok, result.message
    assert one_line(result).startswith("OK: port TiepNhanHoSoSoap11 (SOAP 1.1, document) has TiepNhanHoSo, ")
    assert result.soap_versions == ("1.1", "1.2")
    assert {(info.name, info.soap_version, info.port) for info in result.bindings} == {
        ("TiepNhanHoSoSoap11", "1.1", "TiepNhanHoSoSoap11"),
        ("TiepNhanHoSoSoap12", "1.2", "TiepNhanHoSoSoap12"),
    }
    assert result.operations == {
        "deliver": "TiepNhanHoSo",
        "status": "LayTrangThaiHoSo",
        "supplement": "BoSungHoSo",
        "withdraw": "RutHoSo",
    }
    assert result.address == "https://motcua.example.vn/soap"
    assert seen == ["wsdl-check GET /ref/TiepNhanHoSo.wsdl", "wsdl-check GET /ref/hoso.xsd"]
    soap12 = await check(f"{docs.base_url}/ref/TiepNhanHoSo.wsdl", mapping={"soap_version": "1.2"})
    assert soap12.ok and soap12.port == "TiepNhanHoSoSoap12"


async def test_imports_includes_and_headers(docs: ServerThread) -> None:
    result = await check(f"{docs.base_url}/svc/main.wsdl")
    assert result.ok, result.message
    assert [url.removeprefix(docs.base_url) for url in result.documents] == [
        "/svc/main.wsdl",
        "/svc/abstract.wsdl",
        "/svc/schemas/hoso-main.xsd",
        "/svc/schemas/hoso-types.xsd",
        "/svc/common/common.xsd",
    ]
    assert result.soap_versions == ("1.1",) and result.port == "P11"


async def test_rpc_literal_soap12_only(docs: ServerThread) -> None:
    result = await check(f"{docs.base_url}/rpc/service.wsdl")
    assert result.ok, result.message
    assert result.soap_versions == ("1.2",)
    assert [(info.style, info.soap_version) for info in result.bindings] == [("rpc", "1.2")]
    wrong_version = await check(f"{docs.base_url}/rpc/service.wsdl", mapping={"soap_version": "1.1"})
    assert not wrong_version.ok and one_line(wrong_version) == "the service description has no SOAP 1.1 port"


async def test_mapping_variant_needs_its_mapping(simulators: tuple[ServerThread, ServerThread]) -> None:
    reference, variant = simulators
    url = f"{variant.base_url}/soap?wsdl"
    refused = await check(url)
    assert not refused.ok
    message = one_line(refused)
    assert message.startswith("operation TiepNhanHoSo (deliver) not found in port NhanHoSoSoap11")
    assert "RutHoSo (withdraw) not found" in message
    assert message.endswith("the port has: BoSungThanhPhan, HuyHoSo, NhanHoSo, TraCuuHoSo")
    accepted = await check(url, mapping=VARIANT_MAPPING)
    assert accepted.ok, accepted.message
    assert accepted.operations["deliver"] == "NhanHoSo"
    half = {**VARIANT_MAPPING, "fields": {k: v for k, v in VARIANT_MAPPING["fields"].items() if k != "KhoaYeuCau"}}
    partly = await check(url, mapping=half)
    assert not partly.ok
    assert "NhanHoSo (deliver) input lacks element KhoaYeuCau" in partly.message
    assert "input requires element MaGiaoDich, which the gateway cannot fill" in partly.message
    live = await check(f"{reference.base_url}/soap?wsdl")
    assert live.ok and live.address == f"{reference.base_url}/soap"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/bad/missing-import.wsdl",
            "cannot load the WSDL: HTTP 404 fetching {base}/bad/khong-co.xsd (imported by "
            "{base}/bad/missing-import.wsdl)",
        ),
        ("/bad/nothing-here.wsdl", "cannot load the WSDL: HTTP 404 fetching {base}/bad/nothing-here.wsdl"),
        ("/bad/html.wsdl", "cannot load the WSDL: {base}/bad/html.wsdl is an HTML page, not XML"),
        (
            "/bad/dtd.wsdl",
            "cannot load the WSDL: {base}/bad/dtd.wsdl carries a DTD (refused: no DTDs or entities in "
            "service descriptions)",
        ),
        (
            "/bad/wsdl20.wsdl",
            "cannot load the WSDL: {base}/bad/wsdl20.wsdl is a WSDL 2.0 description (only WSDL 1.1 is supported)",
        ),
        (
            "/bad/file-import.wsdl",
            "cannot load the WSDL: {base}/bad/file-import.wsdl refers to file:///etc/passwd: "
            "only http(s) references are followed",
        ),
        ("/ref/hoso.xsd", "cannot load the WSDL: {base}/ref/hoso.xsd is an XML Schema, not a WSDL"),
        ("/bad/5xx.wsdl", "cannot load the WSDL: HTTP 503 fetching {base}/bad/5xx.wsdl"),
        ("/bad/strict.wsdl", "RutHoSo (withdraw) input requires element MaCanBo, which the gateway cannot fill"),
        ("/bad/renamed.wsdl", "LayTrangThaiHoSo (status) input lacks element MaHoSo"),
    ],
)
async def test_refusals_are_one_line(docs: ServerThread, path: str, expected: str) -> None:
    result = await check(f"{docs.base_url}{path}")
    assert not result.ok
    assert one_line(result) == expected.format(base=docs.base_url)


async def test_limits_and_invalid_descriptions(docs: ServerThread) -> None:
    big = await check(f"{docs.base_url}/bad/big.wsdl", limits=WsdlLimits(max_document_bytes=12_000))
    size = len(documents()["/bad/big.xsd"][2])
    assert one_line(big) == (
        f"cannot load the WSDL: {docs.base_url}/bad/big.xsd (imported by {docs.base_url}/bad/big.wsdl) is too large "
        f"({size} bytes, the limit is 12000)"
    )
    many = await check(f"{docs.base_url}/svc/main.wsdl", limits=WsdlLimits(max_documents=3))
    assert one_line(many) == "cannot load the WSDL: the service description has more than 3 documents"
    broken = await check(f"{docs.base_url}/bad/broken.wsdl")
    assert not broken.ok and one_line(broken).startswith("cannot load the WSDL: the service description is invalid")
    invalid = await check(f"{docs.base_url}/ref/TiepNhanHoSo.wsdl", mapping={"operations": {"nop": "X"}})
    assert one_line(invalid).startswith("invalid mapping: mapping.operations: unknown operation 'nop'")


def streaming_app() -> Starlette:
    """The reference WSDL, its schema streamed without a Content-Length (the size known only while reading)."""

    async def wsdl(request: Request) -> Response:
        return Response(shipped.read("TiepNhanHoSo.wsdl"), media_type=XML)

    async def xsd(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(HOSO), 1024):
                yield HOSO[start : start + 1024]

        return StreamingResponse(chunks(), media_type=XML)

    return Starlette(routes=[Route("/TiepNhanHoSo.wsdl", wsdl), Route("/hoso.xsd", xsd)])


async def test_a_streamed_document_is_held_to_the_limit_while_reading() -> None:
    with ServerThread(streaming_app()) as server:
        url = f"{server.base_url}/TiepNhanHoSo.wsdl"
        refused = await check(url, limits=WsdlLimits(max_document_bytes=9000))
        assert one_line(refused) == (
            f"cannot load the WSDL: {server.base_url}/hoso.xsd (imported by {url}) is too large "
            "(over the limit of 9000 bytes)"
        )
        assert (await check(url)).ok


async def test_the_loader_provides_the_reference_but_never_the_checked_description(docs: ServerThread) -> None:
    loader = WsdlLoader()
    url = f"{docs.base_url}/ref/TiepNhanHoSo.wsdl"
    before = docs.app.state.hits.get("/ref/TiepNhanHoSo.wsdl", 0)
    for _ in range(2):
        result = await check(url, wsdl_loader=loader)
        assert result.ok, result.message
    assert docs.app.state.hits["/ref/TiepNhanHoSo.wsdl"] == before + 2  # the live service, each time
    assert len(loader) == 0 and loader.stats() == {}
    reference = loader.reference_document()
    assert reference is loader.reference_document()
    strict = await check(f"{docs.base_url}/bad/strict.wsdl", wsdl_loader=loader)
    assert "input requires element MaCanBo, which the gateway cannot fill" in strict.message


async def test_blocked_addresses(docs: ServerThread) -> None:
    metadata = await check("http://169.254.169.254/latest/service.wsdl")
    assert one_line(metadata) == (
        "cannot load the WSDL: Refusing to connect to 169.254.169.254: link-local or cloud metadata address"
    )
    loopback = await check(f"{docs.base_url}/ref/TiepNhanHoSo.wsdl", policy=AddressPolicy())
    assert one_line(loopback) == "cannot load the WSDL: Refusing to connect to 127.0.0.1: loopback address"
    hits = docs.app.state.hits
    assert "/latest/service.wsdl" not in hits
