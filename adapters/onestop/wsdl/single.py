"""One self-contained WSDL: the schemas a WSDL imports written into its ``wsdl:types``, optionally one SOAP version.

Many SOAP stacks load a WSDL and its ``xs:import``-ed schema files alike; some (node-soap's server, a few code
generators) handle only a single document. :func:`inline_schemas` turns a WSDL and the schema files it imports by
relative location into one document:

- each ``xs:import`` whose ``schemaLocation`` names one of the given schemas brings that schema (its ``xs:schema``
  element, with its own namespace declarations) into ``wsdl:types``, once, and recursively the schemas it imports in
  turn; the import keeps its ``namespace`` without a location (an ``xs:include`` of a given schema is refused with
  :class:`ValueError`: it would take the including schema's namespace);
- a ``wsdl:types`` schema left holding nothing but such imports is dropped (it defined nothing);
- ``soap_version`` ``"1.1"`` or ``"1.2"`` keeps only the bindings (and service ports) of that version;
- ``address``, when given, becomes every port's ``soap:address``/``soap12:address`` location.

:func:`single_wsdl` does this for the documents shipped with the gateway: ``"reference"`` (``TiepNhanHoSo.wsdl`` +
``hoso.xsd``, the agency one-stop service) and ``"callback"`` (``CapNhatTrangThaiHoSo.wsdl`` + ``capnhat.xsd``, the
gateway's own callback service).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

from lxml import etree

from adapters.xmlguard import hardened_parser

__all__ = ["KINDS", "SOAP_VERSIONS", "inline_schemas", "single_wsdl"]

XS = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
_SOAP_BINDINGS = {"1.1": "http://schemas.xmlsoap.org/wsdl/soap/", "1.2": "http://schemas.xmlsoap.org/wsdl/soap12/"}
SOAP_VERSIONS = tuple(_SOAP_BINDINGS)

#: The shipped service descriptions: kind -> (WSDL file, the schema files it imports).
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "reference": ("TiepNhanHoSo.wsdl", ("hoso.xsd", "xml.xsd")),
    "callback": ("CapNhatTrangThaiHoSo.wsdl", ("capnhat.xsd", "xml.xsd")),
}


def _parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, parser=hardened_parser())


def _schema_references(element: etree._Element) -> list[etree._Element]:
    return [
        node for node in element.iter(f"{{{XS}}}import", f"{{{XS}}}include") if node.get("schemaLocation") is not None
    ]


def _inline(types: etree._Element, schemas: Mapping[str, bytes]) -> None:
    """Replace, in ``types``, every reference to a schema of ``schemas`` by that schema, each once."""
    done: set[str] = set()
    pending = [node for schema in types.findall(f"{{{XS}}}schema") for node in _schema_references(schema)]
    anchor = types.find(f"{{{XS}}}schema")
    while pending:
        node = pending.pop(0)
        location = node.get("schemaLocation")
        if location not in schemas:
            continue
        if etree.QName(node).localname == "include":
            raise ValueError(f"xs:include of {location} cannot be inlined into another schema's namespace")
        del node.attrib["schemaLocation"]
        if location in done:
            continue
        done.add(location)
        schema = _parse(schemas[location])
        pending.extend(_schema_references(schema))
        if anchor is None:
            types.append(schema)
        else:
            anchor.addprevious(schema)
    for schema in types.findall(f"{{{XS}}}schema"):
        children = [child for child in schema if isinstance(child.tag, str)]
        if children and all(etree.QName(child).localname == "import" for child in children):
            if all(child.get("schemaLocation") is None for child in children):
                types.remove(schema)


def _keep_version(root: etree._Element, version: str) -> None:
    """Drop the bindings (and the ports using them) of the other SOAP version."""
    other = next(namespace for key, namespace in _SOAP_BINDINGS.items() if key != version)
    dropped: set[str] = set()
    for binding in root.findall(f"{{{WSDL}}}binding"):
        if binding.find(f"{{{other}}}binding") is not None:
            dropped.add(binding.get("name", ""))
            root.remove(binding)
    for service in root.findall(f"{{{WSDL}}}service"):
        for port in service.findall(f"{{{WSDL}}}port"):
            if port.get("binding", "").rpartition(":")[2] in dropped:
                service.remove(port)


def inline_schemas(
    wsdl: bytes,
    schemas: Mapping[str, bytes],
    *,
    soap_version: str | None = None,
    address: str | None = None,
) -> bytes:
    """``wsdl`` made self-contained with ``schemas`` (file name -> bytes); see the module's description.

    Raises :class:`ValueError` for an unknown ``soap_version`` or a WSDL without ``wsdl:types``.
    """
    if soap_version is not None and soap_version not in _SOAP_BINDINGS:
        raise ValueError(f"unknown SOAP version {soap_version!r} (expected 1.1 or 1.2)")
    root = _parse(wsdl)
    types = root.find(f"{{{WSDL}}}types")
    if types is None:
        raise ValueError("the WSDL has no wsdl:types to inline its schemas into")
    _inline(types, schemas)
    if soap_version is not None:
        _keep_version(root, soap_version)
    if address is not None:
        for namespace in _SOAP_BINDINGS.values():
            for node in root.iter(f"{{{namespace}}}address"):
                node.set("location", address)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def single_wsdl(
    kind: str,
    soap_version: str | None = None,
    *,
    address: str | None = None,
) -> bytes:
    """The shipped ``kind`` WSDL (``reference``: the agency one-stop service; ``callback``: the gateway's callback
    service) as one self-contained document, with both SOAP bindings or only ``soap_version``'s, its ports at
    ``address`` when given. :class:`ValueError` for an unknown kind or version."""
    if kind not in KINDS:
        raise ValueError(f"unknown WSDL {kind!r} (expected {' or '.join(KINDS)})")
    wsdl_name, schema_names = KINDS[kind]
    folder = resources.files(__package__)
    schemas = {name: folder.joinpath(name).read_bytes() for name in schema_names}
    return inline_schemas(folder.joinpath(wsdl_name).read_bytes(), schemas, soap_version=soap_version, address=address)
