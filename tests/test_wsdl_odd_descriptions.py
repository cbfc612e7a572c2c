"""Odd but real service descriptions through ``wsdl check`` and ``wsdl suggest-mapping``: ports the SOAP library
drops (SOAP over JMS, CORBA, a binding never defined), imports by absolute path or of missing files, entity bombs
and deep nesting, circular model groups, one-letter element names. Each gets a report or one clear line on stderr,
never a Python exception's own words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.onestop.soap.explain import TOO_DEEP, explain
from gateway.cli import main

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
  xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="urn:t" targetNamespace="urn:t" name="T">"""


def description(*, schema: str = "", ports: str = "", bindings: str = "", imports: str = "") -> str:
    """A document/literal description with one operation ``Ping`` (input element ``Ping`` with ``a``, output ``b``)
    on binding ``B`` and service ``S`` with port ``P``; more ports, bindings, schema content or imports as given."""
    return f"""{HEAD}
  {imports}
  <wsdl:types>
    <xs:schema targetNamespace="urn:t" elementFormDefault="qualified">
      {schema}
      <xs:element name="Ping"><xs:complexType><xs:sequence>
        <xs:element name="a" type="xs:string"/><xs:element name="v" type="xs:string"/>
        <xs:element name="id" type="xs:string"/>
      </xs:sequence></xs:complexType></xs:element>
      <xs:element name="PingResponse"><xs:complexType><xs:sequence>
        <xs:element name="b" type="xs:string"/>
      </xs:sequence></xs:complexType></xs:element>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="PingIn"><wsdl:part name="parameters" element="tns:Ping"/></wsdl:message>
  <wsdl:message name="PingOut"><wsdl:part name="parameters" element="tns:PingResponse"/></wsdl:message>
  <wsdl:portType name="PT"><wsdl:operation name="Ping">
    <wsdl:input message="tns:PingIn"/><wsdl:output message="tns:PingOut"/>
  </wsdl:operation></wsdl:portType>
  <wsdl:binding name="B" type="tns:PT">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="Ping"><soap:operation soapAction="urn:t#Ping"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  {bindings}
  <wsdl:service name="S">
    <wsdl:port name="P" binding="tns:B"><soap:address location="https://agency.example.vn/ws"/></wsdl:port>
    {ports}
  </wsdl:service>
</wsdl:definitions>"""


JMS_BINDING = """<wsdl:binding name="JmsB" type="tns:PT">
    <soap:binding style="document" transport="http://www.w3.org/2010/soapjms/"/>
    <wsdl:operation name="Ping">
      <wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:binding name="CorbaB" type="tns:PT" xmlns:corba="http://schemas.apache.org/yoko/bindings/corba">
    <corba:binding repositoryID="IDL:T:1.0"/>
    <wsdl:operation name="Ping"/>
  </wsdl:binding>"""
OTHER_PORTS = """<wsdl:port name="Jms" binding="tns:JmsB"><soap:address location="jms:queue:ping"/></wsdl:port>
    <wsdl:port name="Corba" binding="tns:CorbaB"/>
    <wsdl:port name="Lost" binding="tns:Nope"><soap:address location="https://agency.example.vn/lost"/></wsdl:port>"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ports_the_soap_library_drops_are_named_with_their_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "many-ports.wsdl"
    path.write_text(description(bindings=JMS_BINDING, ports=OTHER_PORTS), encoding="utf-8")
    code, out, err = run(capsys, "wsdl", "check", "--json", str(path))
    assert (code, err) == (0, "")
    [report] = json.loads(out)
    assert [port["name"] for service in report["services"] for port in service["ports"]] == ["P"]
    assert report["warnings"] == [
        "port Jms of service S: binding JmsB is SOAP over http://www.w3.org/2010/soapjms/ "
        "(only HTTP is supported); left out",
        "port Corba of service S: binding CorbaB is not SOAP (http://schemas.apache.org/yoko/bindings/corba); left out",
        "port Lost of service S: its binding Nope is not defined; left out",
    ]


def test_imports_by_absolute_path_are_refused_and_missing_files_named_in_full(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / "types.xsd"
    schema.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:types"/>', encoding="utf-8"
    )
    path = tmp_path / "absolute.wsdl"
    for location in (str(schema), "../" * (len(tmp_path.parts) + 2) + str(schema).lstrip("/")):
        imports = f'<wsdl:import namespace="urn:types" location="{location}"/>'
        path.write_text(description(imports=imports), encoding="utf-8")
        code, out, err = run(capsys, "wsdl", "check", str(path))
        assert (code, out) == (1, "")
        assert err == (
            f"dvc-gateway: error: {path}: cannot load: {schema} is named by an absolute path (a local description's "
            f"imports must be relative) (imported by {path})\n"
        )
    # The same file named relatively is read.
    path.write_text(description(imports='<wsdl:import namespace="urn:types" location="types.xsd"/>'), encoding="utf-8")
    assert run(capsys, "wsdl", "check", str(path))[0] == 0

    deep = tmp_path.joinpath(*[f"thu-muc-rat-dai-{index:02d}" for index in range(8)])
    deep.mkdir(parents=True)
    missing = deep / "khong-co-tep-nay.xsd"
    path = deep / "missing.wsdl"
    path.write_text(
        description(imports=f'<wsdl:import namespace="urn:types" location="{missing.name}"/>'), encoding="utf-8"
    )
    code, _out, err = run(capsys, "wsdl", "check", str(path))
    assert code == 1 and len(err.splitlines()) == 1
    reason = err.split(": cannot load: ", 1)[1].split(" (imported by ")[0]
    assert reason.endswith("/khong-co-tep-nay.xsd does not exist")


def test_entity_bombs_and_deep_nesting_get_their_own_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    laughs = "\n".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10))
    bomb = tmp_path / "bomb.wsdl"
    bomb.write_text(
        description()
        .replace('name="T">', 'name="T"><wsdl:documentation>&l9;</wsdl:documentation>')
        .replace("<wsdl:definitions", f'<!DOCTYPE d [<!ENTITY l0 "ha">{laughs}]>\n<wsdl:definitions', 1),
        encoding="utf-8",
    )
    nested = "".join(f"<xs:complexType><xs:sequence><xs:element name='n{i}'>" for i in range(100))
    closed = "".join("</xs:element></xs:sequence></xs:complexType>" for _ in range(100))
    deep = tmp_path / "deep.wsdl"
    deep.write_text(description(schema=f"<xs:element name='Deep'>{nested}{closed}</xs:element>"), encoding="utf-8")
    for path, reason in (
        (bomb, "carries a DTD (refused: no DTDs or entities in service descriptions)"),
        (deep, "is nested more than 256 elements deep (the limit)"),
    ):
        code, out, err = run(capsys, "wsdl", "check", str(path))
        assert (code, out, err) == (1, "", f"dvc-gateway: error: {path}: cannot load: {path} {reason}\n")


def test_suggestions_refuse_in_one_line_and_never_pair_one_letter_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    circular = tmp_path / "circular.wsdl"
    groups = (
        '<xs:group name="G1"><xs:sequence><xs:group ref="tns:G2"/></xs:sequence></xs:group>'
        '<xs:group name="G2"><xs:sequence><xs:group ref="tns:G1"/></xs:sequence></xs:group>'
        '<xs:element name="Z"><xs:complexType><xs:group ref="tns:G1"/></xs:complexType></xs:element>'
    )
    circular.write_text(description(schema=groups), encoding="utf-8")
    no_soap = tmp_path / "jms-only.wsdl"
    no_soap.write_text(
        description(bindings=JMS_BINDING, ports=OTHER_PORTS).replace(
            '<wsdl:port name="P" binding="tns:B"><soap:address location="https://agency.example.vn/ws"/></wsdl:port>',
            "",
        ),
        encoding="utf-8",
    )
    for path, reason in (
        (circular, TOO_DEEP),
        (no_soap, "the service description has no SOAP 1.1 or SOAP 1.2 port"),
    ):
        code, out, err = run(capsys, "wsdl", "suggest-mapping", str(path))
        assert (code, out, err) == (1, "", f"dvc-gateway: error: {path}: {reason}\n")

    plain = tmp_path / "short-names.wsdl"
    plain.write_text(description(), encoding="utf-8")
    code, out, err = run(capsys, "wsdl", "suggest-mapping", str(plain))
    assert (code, err) == (0, "")
    suggestion = json.loads(out)
    assert suggestion["mapping"]["fields"] == {}  # `a`, `v`, `id`, `b` stand for no reference element
    assert not [key for key in suggestion["confidence"] if key.startswith("fields.")]


def test_an_unexpected_construct_is_quoted_whole() -> None:
    error = AttributeError("'lxml.etree.QName' object has no attribute 'resolve'")
    assert explain(error, str) == (
        "it has a construct the WSDL reader cannot interpret: AttributeError "
        "('lxml.etree.QName' object has no attribute 'resolve')"
    )


def test_mtom_and_ws_addressing_schemas_are_served_from_the_shipped_copies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """.NET and Java stacks import MTOM's ``xmime`` and WS-Addressing by their public address; neither is fetched,
    both are served from the gateway's copies (and a processing instruction inside a schema is no obstacle)."""
    schema = """<?generator wsdl-tool 2.1?>
      <xs:import namespace="http://www.w3.org/2005/05/xmlmime" schemaLocation="http://www.w3.org/2005/05/xmlmime"/>
      <xs:import namespace="http://www.w3.org/2005/08/addressing"
                 schemaLocation="http://www.w3.org/2006/03/addressing/ws-addr.xsd"/>
      <xs:element name="Attachment" type="xmime:base64Binary"/>
      <xs:element name="ReplyTo" type="wsa:EndpointReferenceType"/>"""
    path = tmp_path / "mtom.wsdl"
    text = description(schema=schema).replace(
        'xmlns:tns="urn:t"',
        'xmlns:tns="urn:t" xmlns:xmime="http://www.w3.org/2005/05/xmlmime" '
        'xmlns:wsa="http://www.w3.org/2005/08/addressing"',
    )
    path.write_text(text, encoding="utf-8")
    code, out, err = run(capsys, "wsdl", "check", "--json", str(path))
    assert (code, err) == (0, "")
    [report] = json.loads(out)
    assert report["loaded"] and report["warnings"] == []


def test_a_description_without_a_service_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "abstract.wsdl"
    text = description()
    path.write_text(text[: text.index("  <wsdl:service")] + "</wsdl:definitions>", encoding="utf-8")
    code, out, err = run(capsys, "wsdl", "check", "--json", str(path))
    assert (code, err) == (0, "")
    [report] = json.loads(out)
    assert report["services"] == []
    assert report["warnings"] == [
        "the description defines no wsdl:service, so no address to call (an abstract part another description imports?)"
    ]


def test_an_import_of_xml_schema_itself_is_not_fetched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "asmx.wsdl"
    schema = '<xs:import namespace="http://www.w3.org/2001/XMLSchema" schemaLocation="http://www.w3.org/2001/XMLSchema.xsd"/>'
    path.write_text(description(schema=schema), encoding="utf-8")
    code, out, err = run(capsys, "wsdl", "check", str(path))
    assert (code, err) == (0, "") and "operations: Ping" in out
