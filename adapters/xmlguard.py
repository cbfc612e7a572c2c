"""Hardened XML parsing for untrusted documents: signed forms, SOAP bodies, uploads.

No entity resolution, no network, no DTD loading, no huge trees; any document type declaration or entity declaration
is refused outright, before and after parsing, so XXE and entity-expansion tricks (billion laughs) never reach a
validator. It depends on lxml alone, so both the upstream clients and signature verification may use it.
"""

from __future__ import annotations

from lxml import etree

__all__ = ["UnsafeXMLError", "XMLRefusedError", "declares_dtd", "hardened_parser", "parse_xml"]

#: Markup that only a DTD can carry; refused wherever it appears (even in UTF-16, hence the NUL-stripped scan).
_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY")


class XMLRefusedError(ValueError):
    """The bytes are not XML this gateway accepts (malformed, or carrying a DTD or entities)."""


class UnsafeXMLError(XMLRefusedError):
    """The document declares a DTD or entities: refused, never parsed further."""


def hardened_parser() -> etree.XMLParser:
    """A fresh parser (lxml parsers are not shared across threads) with every dangerous feature off."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=False,
    )


def declares_dtd(data: bytes) -> bool:
    """Whether ``data`` carries a DOCTYPE or entity declaration anywhere (UTF-8 or UTF-16)."""
    return any(marker in data for marker in _DTD_MARKERS) or (
        b"\x00" in data and any(marker in data.replace(b"\x00", b"") for marker in _DTD_MARKERS)
    )


def parse_xml(data: bytes) -> etree._Element:
    """The root element of ``data``; :class:`XMLRefusedError` (or :class:`UnsafeXMLError`) otherwise."""
    if declares_dtd(data):
        raise UnsafeXMLError("XML with a DOCTYPE or entity declaration is refused")
    try:
        root = etree.fromstring(data, parser=hardened_parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise XMLRefusedError(f"malformed XML: {exc}") from exc
    if root is None:
        raise XMLRefusedError("malformed XML: no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeXMLError("XML with a DOCTYPE or entity declaration is refused")
    if next(root.iter(etree.Entity), None) is not None:
        raise UnsafeXMLError("XML with entity references is refused")
    return root
