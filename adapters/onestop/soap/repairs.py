"""Repairs of the common defects of real-world service descriptions, for the lenient second attempt at loading one.

Each repair is one function that changes a document (as bytes or as a parsed tree) the way other SOAP stacks
tolerate the defect, and says what it did, so the loader can list every repair as a warning:

* :func:`bind_known_prefixes`: a well-known prefix (``xs:``, ``xsd:``, ``soap:``, ``soapenc:``, ``wsdl:``…) used
  without its declaration is bound to its usual namespace;
* :func:`modern_xsd_namespace`: the 1999 and 2000 drafts of XML Schema are read as XML Schema 2001;
* :func:`align_import_namespaces`: an ``xsd:import`` whose namespace differs from the imported schema's target
  namespace takes the imported schema's;
* :func:`unresolved_as_any_type`: a reference to a type or element that no schema defines becomes ``xsd:anyType``;
* :func:`drop_empty_body_namespaces`: an rpc ``soap:body`` with ``namespace=""`` (Axis writes them) is read as one
  without a namespace.

Nothing here reads the network or entities: the documents are those the gateway fetched and screened.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from lxml import etree

__all__ = [
    "KNOWN_PREFIXES",
    "XSD_NS",
    "align_import_namespaces",
    "bind_known_prefixes",
    "drop_empty_body_namespaces",
    "modern_xsd_namespace",
    "unresolved_as_any_type",
]

XSD_NS = "http://www.w3.org/2001/XMLSchema"
_OLD_XSD = (b"http://www.w3.org/1999/XMLSchema", b"http://www.w3.org/2000/10/XMLSchema")
_XSD_ALL = (XSD_NS, "http://www.w3.org/2000/10/XMLSchema", "http://www.w3.org/1999/XMLSchema")
_WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
_WSDL_ARRAY_TYPE = f"{{{_WSDL_NS}}}arrayType"

#: The usual namespace of the prefixes descriptions use without declaring them.
KNOWN_PREFIXES: dict[str, str] = {
    "xs": XSD_NS,
    "xsd": XSD_NS,
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "wsdl": _WSDL_NS,
    "soap": "http://schemas.xmlsoap.org/wsdl/soap/",
    "soap12": "http://schemas.xmlsoap.org/wsdl/soap12/",
    "wsoap12": "http://schemas.xmlsoap.org/wsdl/soap12/",
    "soapenc": "http://schemas.xmlsoap.org/soap/encoding/",
    "SOAP-ENC": "http://schemas.xmlsoap.org/soap/encoding/",
    "soap-enc": "http://schemas.xmlsoap.org/soap/encoding/",
    "http": "http://schemas.xmlsoap.org/wsdl/http/",
    "mime": "http://schemas.xmlsoap.org/wsdl/mime/",
    "wsaw": "http://www.w3.org/2006/05/addressing/wsdl",
    "wsam": "http://www.w3.org/2007/05/addressing/metadata",
}

_NAME = rb"[A-Za-z_][\w.\-]*"
_DECLARED = re.compile(rb"xmlns:(" + _NAME + rb")\s*=")
_ELEMENT_PREFIX = re.compile(rb"</?(" + _NAME + rb"):" + _NAME)
_ATTRIBUTE_PREFIX = re.compile(rb"\s(" + _NAME + rb"):" + _NAME + rb"\s*=")
_QNAME_VALUE = re.compile(
    rb"\s(?:type|base|element|ref|message|binding|itemType|substitutionGroup|arrayType)\s*=\s*[\"'](" + _NAME + rb"):"
)
_ROOT_START = re.compile(rb"<(?![?!])(" + _NAME + rb"(?::" + _NAME + rb")?)")
_MARKUP_SKIP = re.compile(rb"<!--.*?-->|<\?.*?\?>", re.S)


def _root_name_end(content: bytes) -> int | None:
    """The offset just after the root element's name in ``content`` (``None`` when there is no root element)."""
    position = 0
    while True:
        skipped = _MARKUP_SKIP.search(content, position)
        start = _ROOT_START.search(content, position)
        if start is None:
            return None
        if skipped is not None and skipped.start() < start.start():
            position = skipped.end()
            continue
        return start.end()


def bind_known_prefixes(content: bytes) -> tuple[bytes, list[str]]:
    """``content`` with each well-known prefix it uses without declaring bound on its root element.

    Returns ``content`` itself (the same object) when nothing was bound, and the prefixes bound.
    """
    used = {
        match.group(1).decode("ascii")
        for pattern in (_ELEMENT_PREFIX, _ATTRIBUTE_PREFIX, _QNAME_VALUE)
        for match in pattern.finditer(content)
    }
    declared = {match.group(1).decode("ascii") for match in _DECLARED.finditer(content)}
    missing = sorted(prefix for prefix in used - declared - {"xml", "xmlns"} if prefix in KNOWN_PREFIXES)
    end = _root_name_end(content) if missing else None
    if not missing or end is None:
        return content, []
    declarations = b"".join(f' xmlns:{prefix}="{KNOWN_PREFIXES[prefix]}"'.encode("ascii") for prefix in missing)
    return content[:end] + declarations + content[end:], missing


def modern_xsd_namespace(content: bytes) -> tuple[bytes, bool]:
    """``content`` with the 1999/2000 XML Schema namespaces (and their ``-instance``) read as 2001."""
    repaired = content
    for old in _OLD_XSD:
        repaired = repaired.replace(old, XSD_NS.encode("ascii"))
    return repaired, repaired != content


def align_import_namespaces(
    roots: Iterable[tuple[str, etree._Element]], target_namespace_of: Callable[[str, str], str | None]
) -> list[tuple[str, str, str]]:
    """Give each ``xsd:import`` the target namespace of the schema it imports, when they differ.

    ``roots`` are ``(name, root)`` of the documents; ``target_namespace_of(location, name)`` is the target
    namespace of the document an import in document ``name`` points at (``None``: not a fetched document).
    Returns ``(name, declared namespace, imported namespace)`` for each import changed.
    """
    changed = []
    for name, root in roots:
        for element in root.iter(*(f"{{{ns}}}import" for ns in _XSD_ALL)):
            location, declared = element.get("schemaLocation"), element.get("namespace")
            if not location or declared is None:
                continue
            actual = target_namespace_of(location, name)
            if actual is not None and actual != declared:
                element.set("namespace", actual)
                changed.append((name, declared, actual))
    return changed


_SOAP_BODIES = ("{http://schemas.xmlsoap.org/wsdl/soap/}body", "{http://schemas.xmlsoap.org/wsdl/soap12/}body")


def drop_empty_body_namespaces(roots: Iterable[tuple[str, etree._Element]]) -> list[str]:
    """Remove every empty ``namespace`` attribute of a ``soap:body``; the names of the documents changed."""
    changed = []
    for name, root in roots:
        bodies = [body for body in root.iter(*_SOAP_BODIES) if body.get("namespace") == ""]
        for body in bodies:
            del body.attrib["namespace"]
        if bodies:
            changed.append(name)
    return changed


def _any_type(element: etree._Element) -> str:
    prefix = next((p for p, ns in element.nsmap.items() if ns == XSD_NS and p), None)
    if prefix is not None:
        return f"{prefix}:anyType"
    return "anyType" if element.nsmap.get(None) == XSD_NS else f"{{{XSD_NS}}}anyType"


def _resolves_to(element: etree._Element, value: str, qname: etree.QName) -> bool:
    prefix, _, local = value.strip().rpartition(":")
    if local != qname.localname:
        return False
    return element.nsmap.get(prefix or None) == qname.namespace or (not prefix and qname.namespace is None)


def unresolved_as_any_type(roots: Iterable[etree._Element], qname: etree.QName) -> int:
    """Make every reference to ``qname`` (a type or element no schema defines) an ``xsd:anyType``.

    ``type``/``base``/``itemType`` attributes name ``anyType`` instead, and so does a SOAP-encoded array's
    ``wsdl:arrayType``; an element ``ref`` becomes a local element of that name and type ``anyType``; a WSDL message
    part's ``element`` becomes a ``type``. Returns how many
    references were changed (0: none found, the repair cannot help).
    """
    count = 0
    for root in roots:
        for element in root.iter(etree.Element):
            array_type = element.get(_WSDL_ARRAY_TYPE)  # "p:Name[]" in a SOAP-encoded array's declaration
            if array_type is not None:
                name, brackets, dimensions = array_type.partition("[")
                if brackets and _resolves_to(element, name, qname):
                    element.set(_WSDL_ARRAY_TYPE, f"{_any_type(element)}[{dimensions}")
                    count += 1
            for attribute in ("type", "base", "itemType", "ref", "element"):
                value = element.get(attribute)
                if value is None or not _resolves_to(element, value, qname):
                    continue
                in_wsdl = etree.QName(element).namespace == _WSDL_NS
                if attribute == "ref":
                    del element.attrib["ref"]
                    element.set("name", qname.localname)
                    element.set("type", _any_type(element))
                elif attribute == "element" and in_wsdl:
                    del element.attrib["element"]
                    element.set("type", _any_type(element))
                elif attribute == "element":
                    continue
                else:
                    element.set(attribute, _any_type(element))
                count += 1
    return count
