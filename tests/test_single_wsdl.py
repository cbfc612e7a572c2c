"""The self-contained WSDLs: :func:`adapters.onestop.wsdl.single.single_wsdl`, ``GET /soap/callback?wsdl&single`` on
the gateway and ``GET /soap?wsdl&single`` on the simulated SOAP agency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import zeep
from lxml import etree

from adapters.onestop import wsdl as shipped
from adapters.onestop.wsdl.single import inline_schemas, single_wsdl
from gateway.simulators.soap_agency import create_soap_app
from tests.api_support import Gateway, gateway_client, open_runtime

XS = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
SOAP11 = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"


def _schemas(document: bytes) -> list[etree._Element]:
    return etree.fromstring(document).findall(f"{{{WSDL}}}types/{{{XS}}}schema")


def _ports(document: bytes) -> dict[str, str]:
    root = etree.fromstring(document)
    ports = root.iterfind(f"{{{WSDL}}}service/{{{WSDL}}}port")
    return {port.get("name", ""): next(iter(port)).get("location", "") for port in ports}


@pytest.mark.parametrize(
    ("kind", "namespace", "element"),
    [
        ("reference", "urn:dvc:motcua:1.0", "TiepNhanHoSo"),
        ("callback", "urn:dvc:lgsp:capnhat:1.0", "CapNhatTrangThaiHoSo"),
    ],
)
def test_the_schema_is_inlined_and_any_stack_loads_the_one_file(
    kind: str, namespace: str, element: str, tmp_path: Path
) -> None:
    document = single_wsdl(kind, address="http://127.0.0.1:8080/soap/x")
    assert b"schemaLocation" not in document
    schemas = _schemas(document)
    assert [schema.get("targetNamespace") for schema in schemas] == [namespace]
    assert schemas[0].find(f"{{{XS}}}element[@name='{element}']") is not None
    assert set(_ports(document).values()) == {"http://127.0.0.1:8080/soap/x"}
    file = tmp_path / "single.wsdl"  # nothing beside it: zeep must find every type in the one file
    file.write_bytes(document)
    client = zeep.Client(str(file))
    assert client.get_element(f"{{{namespace}}}{element}") is not None


def test_one_soap_version_keeps_only_its_binding_and_port() -> None:
    both = single_wsdl("reference")
    assert set(_ports(both)) == {"TiepNhanHoSoSoap11", "TiepNhanHoSoSoap12"}
    for version, namespace, other in (("1.1", SOAP11, SOAP12), ("1.2", SOAP12, SOAP11)):
        document = single_wsdl("reference", version)
        root = etree.fromstring(document)
        bindings = root.findall(f"{{{WSDL}}}binding")
        assert len(bindings) == 1 and bindings[0].find(f"{{{namespace}}}binding") is not None
        assert root.find(f".//{{{other}}}binding") is None and root.find(f".//{{{other}}}address") is None
        assert list(_ports(document)) == [f"TiepNhanHoSoSoap{version.replace('.', '')}"]


def test_unknown_kinds_and_versions_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown WSDL"):
        single_wsdl("national")
    with pytest.raises(ValueError, match="unknown SOAP version"):
        single_wsdl("reference", "2.0")
    with pytest.raises(ValueError, match="no wsdl:types"):
        inline_schemas(b'<definitions xmlns="http://schemas.xmlsoap.org/wsdl/"/>', {})


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    with open_runtime("sqlite", tmp_path) as runtime:
        async for gateway in gateway_client(runtime):
            yield gateway


async def test_the_gateway_serves_its_callback_wsdl_in_both_forms(gw: Gateway) -> None:
    today = await gw.client.get("/soap/callback?wsdl")
    assert today.status_code == 200 and b"schemaLocation" in today.content  # the two-file form, unchanged
    single = await gw.client.get("/soap/callback?wsdl&single")
    assert single.status_code == 200 and single.headers["content-type"].startswith("text/xml")
    assert b"schemaLocation" not in single.content
    assert set(_ports(single.content).values()) == {"http://gateway.test/soap/callback"}
    soap12 = await gw.client.get("/soap/callback", params={"wsdl": "", "single": "", "soap": "1.2"})
    assert list(_ports(soap12.content)) == ["CapNhatTrangThaiHoSoSoap12"]
    refused = await gw.client.get("/soap/callback", params={"wsdl": "", "single": "", "soap": "3"})
    assert refused.status_code == 422 and refused.json()["error"]["details"][0]["field"] == "soap"


async def test_the_simulated_agency_serves_the_single_form() -> None:
    transport = httpx.ASGITransport(app=create_soap_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://agency.test") as client:
        single = await client.get("/soap?wsdl&single")
    assert single.status_code == 200 and b"schemaLocation" not in single.content
    assert [s.get("targetNamespace") for s in _schemas(single.content)] == [shipped.REFERENCE_NAMESPACE]
    assert set(_ports(single.content).values()) == {"http://agency.test/soap"}
