"""Requests rendered directly from plain values are the very bytes zeep's own building makes, for the reference
service (both SOAP versions, every operation), the mapped variant, generated dossiers and odd schemas; anything
not plain is built by zeep."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest
import zeep
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from zeep.wsse.username import UsernameToken

from adapters.onestop.soap import (
    ZEEP_SETTINGS,
    FetchedWsdl,
    GatewayAsyncTransport,
    SoapMapping,
    build_document,
    dossier_to_hoso,
    message_type,
    reference_document,
    select_port,
)
from adapters.onestop.soap.dossier import component
from adapters.onestop.soap.envelopes import build_request, request_shape
from adapters.onestop.soap.schema import fit
from gateway.simulators.soap_agency import VARIANT_MAPPING
from tests.adapters_soap_support import *  # noqa: F403  (the fixtures: pytest finds them in this module)
from tests.adapters_soap_support import soap_client
from tests.servers import ServerThread
from tests.soap_support import AGENCY, dossier

ADDRESS = "https://motcua.example.gov.vn/ws"
REFERENCE = reference_document()


def zeep_client(document: Any, wsse: Any = None) -> zeep.AsyncClient:
    transport = GatewayAsyncTransport(cast(httpx.AsyncClient, None), upstream="agency:test")  # never posts here
    return zeep.AsyncClient(wsdl=document, wsse=wsse, transport=transport, settings=ZEEP_SETTINGS)


def built(binding: Any, operation: Any, values: Mapping[str, Any], client: zeep.AsyncClient) -> Any:
    """``(bytes, headers)`` of the request, or the type and words of the error building it raised."""
    try:
        envelope, headers = build_request(
            binding, operation, request_shape(operation), values, client=client, address=ADDRESS
        )
    except Exception as exc:  # compared with what zeep raised
        return type(exc), str(exc)
    return etree.tostring(envelope), dict(headers)


def by_zeep(binding: Any, operation: Any, values: Mapping[str, Any], client: zeep.AsyncClient) -> Any:
    try:
        envelope, headers = binding._create(
            operation.name, (), dict(values), client=client, options={"address": ADDRESS}
        )
    except Exception as exc:
        return type(exc), str(exc)
    return etree.tostring(envelope), dict(headers)


def parameters(operation: Any, values: Mapping[str, Any], mapping: SoapMapping | None = None) -> Any:
    """The values the client hands to the request's building (renamed, reduced to what the schema declares)."""
    return fit((mapping or SoapMapping()).outbound(dict(values)), message_type(operation.input))


def reference_calls(code: str) -> list[tuple[str, dict[str, Any]]]:
    full = dossier(
        code,
        due_at="2026-12-20T17:00:00+07:00",
        agency_due_at="2026-12-18T17:00:00+07:00",
        payment={"status": "paid"},
        originals_check_required=True,
        return_method="postal",
    )
    bare = {key: value for key, value in dossier(code).items() if key not in ("applicant", "fees", "summary")}
    supplement = [component({"code": "TP3", "name": "Bản sao <có dấu> & chữ ký", "content_base64": "JVBERi0xLjcK"})]
    return [
        ("TiepNhanHoSo", {"KhoaYeuCau": f"{code}:deliver", "HoSo": dossier_to_hoso(full)}),
        ("TiepNhanHoSo", {"KhoaYeuCau": f"{code}:deliver", "HoSo": dossier_to_hoso(bare)}),
        ("LayTrangThaiHoSo", {"MaHoSo": code}),
        ("LayTrangThaiHoSo", {"TuThoiDiem": datetime(2026, 12, 1, 8, 30, tzinfo=timezone(timedelta(hours=7)))}),
        ("BoSungHoSo", {"KhoaYeuCau": f"{code}:supplement", "MaHoSo": code, "ThanhPhanHoSo": supplement}),
        ("RutHoSo", {"KhoaYeuCau": f"{code}:withdraw", "MaHoSo": code, "LyDo": "Công dân rút hồ sơ"}),
    ]


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_every_reference_request_is_zeeps_own_bytes(version: str) -> None:
    binding = select_port(REFERENCE, soap_version=version).binding
    client = zeep_client(REFERENCE)
    for name, values in reference_calls(f"{AGENCY}-261123-0001"):
        operation = binding._operations[name]
        shape = request_shape(operation)
        assert shape is not None, name  # the reference service is plain: rendered directly
        given_values = parameters(operation, values)
        assert shape.fits(given_values), name
        direct = built(binding, operation, given_values, client)
        assert isinstance(direct[0], bytes) and direct == by_zeep(binding, operation, given_values, client), name


def test_with_ws_security_the_token_is_in_the_same_place() -> None:
    binding = select_port(REFERENCE, soap_version="1.1").binding
    client = zeep_client(REFERENCE, wsse=UsernameToken("motcua", "mat-khau"))
    operation = binding._operations["RutHoSo"]
    values = parameters(operation, {"KhoaYeuCau": "k:withdraw", "MaHoSo": f"{AGENCY}-261123-0001", "LyDo": "x"})
    direct = built(binding, operation, values, client)
    assert b"UsernameToken" in direct[0] and direct == by_zeep(binding, operation, values, client)


async def test_the_mapped_variant_is_zeeps_own_bytes(http: httpx.AsyncClient, variant: ServerThread) -> None:
    client = soap_client(http, variant.base_url, mapping=VARIANT_MAPPING)
    loaded = await client.load()
    binding = client._binding
    mapping = SoapMapping.parse(VARIANT_MAPPING)
    zeep_side = zeep_client(loaded.document)
    code = f"{AGENCY}-261123-0002"
    for name, values in reference_calls(code):
        operation = binding._operations[mapping.operation(_reference_operation(name))]
        given_values = parameters(operation, values, mapping)
        direct = built(binding, operation, given_values, zeep_side)
        assert direct == by_zeep(binding, operation, given_values, zeep_side), name


def _reference_operation(name: str) -> str:
    return {"TiepNhanHoSo": "deliver", "LayTrangThaiHoSo": "status", "BoSungHoSo": "supplement", "RutHoSo": "withdraw"}[
        name
    ]


_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
_COMPONENT = st.fixed_dictionaries(
    {"code": st.from_regex(r"TP[0-9]{1,3}", fullmatch=True)},
    optional={"name": _TEXT, "filename": _TEXT, "content_type": _TEXT, "sha256": st.just("ab" * 32)},
).flatmap(
    lambda item: st.one_of(
        st.binary(min_size=1, max_size=64).map(
            lambda data: {**item, "content_base64": base64.b64encode(data).decode()}
        ),
        st.just({**item, "fetch_url": "https://lgsp.example.gov.vn/files/9f2c?a=1&b=<2>"}),
    )
)
_DOSSIER = st.fixed_dictionaries(
    {
        "components": st.lists(_COMPONENT, max_size=4),
        "received_at": st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)
        ).map(datetime.isoformat),
    },
    optional={
        "summary": _TEXT,
        "channel": st.sampled_from(["online", "counter", "postal"]),
        "applicant": st.fixed_dictionaries({"full_name": _TEXT.filter(bool)}, optional={"phone": _TEXT}),
        "fees": st.lists(
            st.fixed_dictionaries({"code": st.just("LP1"), "name": _TEXT, "amount": st.integers(0, 10**12)}),
            max_size=3,
        ),
        "originals_check_required": st.booleans(),
    },
)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(extra=_DOSSIER)
def test_generated_dossiers_are_zeeps_own_bytes(extra: dict[str, Any]) -> None:
    binding = select_port(REFERENCE, soap_version="1.1").binding
    operation = binding._operations["TiepNhanHoSo"]
    client = zeep_client(REFERENCE)
    base = {key: value for key, value in dossier().items() if key not in ("applicant", "fees", "summary")}
    values = parameters(operation, {"KhoaYeuCau": "k:deliver", "HoSo": dossier_to_hoso({**base, **extra})})
    shape = request_shape(operation)
    assert shape is not None and shape.fits(values)
    direct = built(binding, operation, values, client)
    assert direct == by_zeep(binding, operation, values, client)


# -- what is not plain is zeep's to build ---------------------------------------------------------------------------


def ping_document(content: str, head: str = "", input_attributes: str = "") -> Any:
    """A document/literal description with one operation ``Ping`` whose input element has ``content`` (a
    ``complexType``'s inside); ``head`` adds top-level schema components, ``input_attributes`` attributes of the
    operation's input."""
    url = "https://agency.example.vn/ping.wsdl"
    text = f"""<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
  xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="urn:t" targetNamespace="urn:t">
  <wsdl:types><xs:schema targetNamespace="urn:t" elementFormDefault="qualified">
    {head}
    <xs:element name="Ping"><xs:complexType>{content}</xs:complexType></xs:element>
    <xs:element name="Pong"><xs:complexType><xs:sequence><xs:element name="b" type="xs:string"/></xs:sequence>
    </xs:complexType></xs:element>
  </xs:schema></wsdl:types>
  <wsdl:message name="In"><wsdl:part name="parameters" element="tns:Ping"/></wsdl:message>
  <wsdl:message name="Out"><wsdl:part name="parameters" element="tns:Pong"/></wsdl:message>
  <wsdl:portType name="PT"><wsdl:operation name="Ping"><wsdl:input message="tns:In" {input_attributes}/>
    <wsdl:output message="tns:Out"/></wsdl:operation></wsdl:portType>
  <wsdl:binding name="B" type="tns:PT"><soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="Ping"><soap:operation soapAction="urn:t#Ping"/><wsdl:input><soap:body use="literal"/>
    </wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output></wsdl:operation></wsdl:binding>
  <wsdl:service name="S"><wsdl:port name="P" binding="tns:B"><soap:address location="{ADDRESS}"/></wsdl:port>
  </wsdl:service>
</wsdl:definitions>"""
    return build_document(FetchedWsdl(url=url, documents={url: text.encode()}))


NODE = """<xs:complexType name="Node"><xs:sequence><xs:element name="v" type="xs:int"/>
  <xs:element name="next" type="tns:Node" minOccurs="0"/></xs:sequence></xs:complexType>"""


@pytest.mark.parametrize(
    ("content", "head", "direct"),
    [
        ('<xs:sequence><xs:element name="a" type="xs:string"/></xs:sequence>', "", True),
        ('<xs:all><xs:element name="a" type="xs:string" minOccurs="0"/></xs:all>', "", True),
        ('<xs:sequence><xs:element name="n" type="tns:Node"/></xs:sequence>', NODE, True),  # recursive type
        ('<xs:sequence><xs:element name="a" type="xs:string"/></xs:sequence><xs:attribute name="id"/>', "", False),
        ('<xs:sequence><xs:element name="a" type="xs:string" default="x"/></xs:sequence>', "", False),
        ('<xs:sequence><xs:element name="a" type="xs:string" fixed="x"/></xs:sequence>', "", True),  # zeep: no fill
        (
            '<xs:sequence><xs:element name="a" type="xs:string"/><xs:any processContents="lax"/></xs:sequence>',
            "",
            False,
        ),
        ('<xs:sequence><xs:element name="a"/></xs:sequence>', "", False),  # xs:anyType
        ('<xs:sequence maxOccurs="3"><xs:element name="a" type="xs:string"/></xs:sequence>', "", False),
        (
            '<xs:sequence><xs:sequence minOccurs="0"><xs:element name="a" type="xs:string"/></xs:sequence>'
            "</xs:sequence>",
            "",
            False,
        ),
        (
            '<xs:choice maxOccurs="unbounded"><xs:element name="a" type="xs:string"/>'
            '<xs:element name="b" type="xs:string"/></xs:choice>',
            "",
            False,
        ),
        (
            '<xs:sequence><xs:group ref="tns:G"/></xs:sequence>',
            '<xs:group name="G"><xs:sequence><xs:element name="a" type="xs:string"/></xs:sequence></xs:group>',
            False,
        ),
        (
            '<xs:simpleContent><xs:extension base="xs:string"><xs:attribute name="lang"/></xs:extension>'
            "</xs:simpleContent>",
            "",
            False,
        ),
    ],
)
def test_only_plain_requests_are_rendered_directly(content: str, head: str, direct: bool) -> None:
    document = ping_document(content, head)
    binding = select_port(document).binding
    operation = binding._operations["Ping"]
    assert (request_shape(operation) is not None) is direct
    if direct:
        values = {"a": "x"} if "tns:Node" not in content else {"n": {"v": 1, "next": {"v": 2, "next": {"v": 3}}}}
        client = zeep_client(document)
        assert built(binding, operation, values, client) == by_zeep(binding, operation, values, client)


def test_a_ws_addressing_request_is_zeeps_to_build() -> None:
    action = 'xmlns:wsam="http://www.w3.org/2007/05/addressing/metadata" wsam:Action="urn:t#Ping"'
    document = ping_document('<xs:sequence><xs:element name="a" type="xs:string"/></xs:sequence>', "", action)
    binding = select_port(document).binding
    operation = binding._operations["Ping"]
    assert operation.abstract.wsa_action == "urn:t#Ping" and request_shape(operation) is None
    client = zeep_client(document)
    envelope, _headers = build_request(binding, operation, None, {"a": "x"}, client=client, address=ADDRESS)
    assert b"urn:t#Ping" in etree.tostring(envelope)  # zeep's WS-Addressing headers


@pytest.mark.parametrize(
    "values",
    [
        {"MaHoSo": f"{AGENCY}-261123-0001", "TuThoiDiem": datetime(2026, 12, 1, tzinfo=UTC)},  # both of a choice
        {"MaHoSo": (f"{AGENCY}-261123-0001",)},  # a tuple
        {"MaHoSo": {"text": "x"}},  # a dict for a simple element
        {"MaHoSo": [f"{AGENCY}-261123-0001", f"{AGENCY}-261123-0002"]},  # a list where nothing repeats
        {"Khac": "x"},  # an element the operation does not have
        {"MaHoSo": Decimal("1.5")},
    ],
)
def test_values_that_are_not_plain_get_what_zeep_makes_of_them(values: dict[str, Any]) -> None:
    binding = select_port(REFERENCE, soap_version="1.1").binding
    operation = binding._operations["LayTrangThaiHoSo"]
    client = zeep_client(REFERENCE)
    assert built(binding, operation, values, client) == by_zeep(binding, operation, values, client)


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("RutHoSo", {"KhoaYeuCau": "k:withdraw", "LyDo": "x"}),  # MaHoSo missing
        ("LayTrangThaiHoSo", {}),  # neither alternative of a required choice
        ("BoSungHoSo", {"KhoaYeuCau": "k:supplement", "MaHoSo": f"{AGENCY}-261123-0001", "ThanhPhanHoSo": []}),
    ],
)
def test_missing_required_elements_are_refused_in_zeeps_words(name: str, values: dict[str, Any]) -> None:
    binding = select_port(REFERENCE, soap_version="1.1").binding
    operation = binding._operations[name]
    client = zeep_client(REFERENCE)
    direct, zeeps = built(binding, operation, values, client), by_zeep(binding, operation, values, client)
    assert direct == zeeps


def test_a_long_chain_of_types_is_rendered_as_zeep_renders_it() -> None:
    depth = 40
    head = "".join(
        f'<xs:complexType name="T{i}"><xs:sequence><xs:element name="c" type="tns:T{i + 1}" minOccurs="0"/>'
        "</xs:sequence></xs:complexType>"
        for i in range(depth)
    )
    head += f'<xs:complexType name="T{depth}"><xs:sequence><xs:element name="v" type="xs:string"/></xs:sequence>'
    head += "</xs:complexType>"
    document = ping_document('<xs:sequence><xs:element name="n" type="tns:T0"/></xs:sequence>', head)
    binding = select_port(document).binding
    operation = binding._operations["Ping"]
    value: dict[str, Any] = {"v": "đáy"}
    for _ in range(depth):
        value = {"c": value}
    values = {"n": value}
    shape = request_shape(operation)
    assert shape is not None and shape.fits(values)
    client = zeep_client(document)
    assert built(binding, operation, values, client) == by_zeep(binding, operation, values, client)


#: A plain request of every kind the direct rendering meets: elements of other namespaces and unqualified ones, bounds
#: on a repeated element, a choice between two elements in the middle of a sequence, nested and nillable elements,
#: and the simple types the schemas of agencies use.
EVERY_KIND = """<xs:sequence>
  <xs:element name="text" type="xs:string"/>
  <xs:element name="local" type="xs:string" form="unqualified" minOccurs="0"/>
  <xs:element name="tags" type="xs:string" minOccurs="2" maxOccurs="3"/>
  <xs:choice><xs:element name="byCode" type="xs:string"/><xs:element name="byTime" type="xs:dateTime"/></xs:choice>
  <xs:element name="part" minOccurs="0" maxOccurs="unbounded"><xs:complexType><xs:sequence>
    <xs:element name="n" type="xs:int"/><xs:element name="note" type="xs:string" nillable="true" minOccurs="0"/>
  </xs:sequence></xs:complexType></xs:element>
  <xs:element name="flag" type="xs:boolean" minOccurs="0"/>
  <xs:element name="amount" type="xs:decimal" minOccurs="0"/>
  <xs:element name="ratio" type="xs:double" minOccurs="0"/>
  <xs:element name="big" type="xs:long" minOccurs="0"/>
  <xs:element name="day" type="xs:date" minOccurs="0"/>
  <xs:element name="at" type="xs:time" minOccurs="0"/>
  <xs:element name="file" type="xs:base64Binary" minOccurs="0"/>
  <xs:element name="hex" type="xs:hexBinary" minOccurs="0"/>
  <xs:element name="link" type="xs:anyURI" minOccurs="0"/>
  <xs:element name="other" type="tns:Other" minOccurs="0"/>
</xs:sequence>"""
OTHER = (
    '<xs:complexType name="Other"><xs:sequence><xs:element name="v" type="xs:string"/></xs:sequence></xs:complexType>'
)
ICT = timezone(timedelta(hours=7))


@pytest.mark.parametrize(
    ("values", "direct"),
    [
        ({"text": "Hồ sơ <&>", "tags": ["a", "b"], "byCode": "X"}, True),
        ({"other": {"v": "o"}, "byCode": "X", "tags": ["b", "a"], "local": "l", "text": "t"}, True),  # any order
        (
            {"text": "", "local": "l", "tags": ["a", "b", "c"], "byTime": datetime(2026, 12, 5, 9, 30, tzinfo=ICT)},
            True,
        ),
        (
            {
                "text": "t",
                "tags": ["a", "b"],
                "byCode": "X",
                "part": [{"n": 1}, {"n": 2, "note": "ghi chú"}, {"n": 3, "note": None}],
                "flag": False,
                "amount": Decimal("150000.50"),
                "ratio": 0.25,
                "big": 2**40,
                "day": datetime(2026, 12, 5).date(),
                "at": datetime(2026, 12, 5, 8, 0, 1).time(),
                "file": b"%PDF-1.7 \x00\xff",
                "hex": b"\x01\xab",
                "link": "https://motcua.example.gov.vn/a?b=1&c=2",
                "other": {"v": "o"},
            },
            True,
        ),
        ({"text": "t", "tags": ["a", "b"], "byCode": "X", "part": {"n": 7}}, True),  # one of a repeated element
        ({"text": "t", "tags": ["a"], "byCode": "X"}, False),  # fewer than minOccurs: zeep's refusal
        ({"text": "t", "tags": ["a", "b", "c", "d"], "byCode": "X"}, False),  # more than maxOccurs: zeep's refusal
        ({"text": "t", "tags": [], "byCode": "X"}, False),
        ({"text": "t", "tags": ["a", "b"], "byCode": "X", "part": []}, True),
        ({"text": "t", "tags": ["a", "b"], "byCode": "X", "part": [{"n": 1, "note": None}], "other": None}, True),
        ({"text": "t", "tags": ["a", "b"], "byCode": "X", "flag": "true"}, True),  # a string where a boolean is
        ({"text": "t", "tags": ["a", "b"], "byCode": "X", "big": "12"}, True),
        ({"text": "t", "tags": "a", "byCode": "X"}, True),  # one value where two are needed: zeep renders it too
    ],
)
def test_every_kind_of_plain_element_is_rendered_as_zeep_renders_it(values: dict[str, Any], direct: bool) -> None:
    document = ping_document(EVERY_KIND, OTHER)
    binding = select_port(document).binding
    operation = binding._operations["Ping"]
    shape = request_shape(operation)
    assert shape is not None and shape.fits(values) is direct
    client = zeep_client(document)
    assert built(binding, operation, values, client) == by_zeep(binding, operation, values, client)
