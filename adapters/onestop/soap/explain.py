"""What went wrong when zeep or lxml could not read a service description, in one line an agency's developer reads.

:func:`explain` turns any exception raised while parsing (zeep's own, lxml's, and the ``AssertionError``,
``KeyError`` or ``IndexError`` that zeep lets out on descriptions it does not expect) into plain words naming the
document at fault when it is known. Object addresses and internal names never reach the message.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import zeep.exceptions
from lxml import etree

from adapters.onestop.soap.errors import one_line

__all__ = ["TOO_DEEP", "explain", "qname_of"]

#: What a description whose types chain or loop too deep for the reader is told (circular model groups, or a chain
#: of a few hundred nested named types).
TOO_DEEP = "its types refer to one another too deeply to be read (a circular definition, or a very long chain)"

_ADDRESS = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
_CLARK = re.compile(r"\{([^}]*)\}([A-Za-z_][\w.\-]*)")
_RESOLVE = re.compile(r"Unable to resolve (\w+) (\{[^}]*\}[\w.\-]*[\w\-])")
_NO_DEFINITION = re.compile(r"No definition '([^']*)' in '(\w+)' found")
_KINDS = {"messages": "message", "port_types": "port type", "bindings": "binding", "services": "service"}
#: Messages zeep raises as ``ValueError``/``XMLParseError`` text, in plain words (``{0}``: the quoted name).
_WORDINGS = (
    (re.compile(r"No visitor defined for '([^']*)"), "it has an element {0} where XML Schema does not allow one"),
    (re.compile(r"Invalid tag name '?([^')]*)"), "a name attribute holds {0!r}, which is not an XML name"),
    (re.compile(r"name cannot be None"), "an element or attribute is declared without a name"),
    (re.compile(r"Empty tag name"), "a name or namespace is empty where one is required"),
    (re.compile(r"No namespace defined for '([^']*)"), "the prefix {0}: is used without being declared"),
    (re.compile(r"invalid literal for int\(\) with base 10: '([^']*)"), "a number is expected where it has {0!r}"),
)


def qname_of(exc: BaseException) -> etree.QName | None:
    """The type or element a zeep lookup failed on (``None`` for other errors)."""
    if isinstance(exc, zeep.exceptions.LookupError) and exc.qname is not None:
        return etree.QName(exc.qname)
    if isinstance(exc, zeep.exceptions.NamespaceError | zeep.exceptions.LookupError):
        match = _RESOLVE.search(exc.message or "")
        if match is not None:
            return etree.QName(match.group(2))
    return None


def _named(qname: etree.QName) -> str:
    return f"{qname.localname} (namespace {qname.namespace})" if qname.namespace else qname.localname


def _lookup(exc: zeep.exceptions.Error, shown: Callable[[str], str]) -> str:
    qname = qname_of(exc)
    match = _RESOLVE.search(exc.message or "")
    what = getattr(exc, "item_name", None) or (match.group(1) if match is not None else "type or element")
    if isinstance(exc, zeep.exceptions.NamespaceError):
        if qname is not None:
            return (
                f"the {what} {_named(qname)} is used but no schema of the description has that namespace "
                "(a missing xsd:import?)"
            )
        return "a namespace is used that no schema of the description defines (a missing xsd:import?)"
    where = getattr(exc, "location", None)
    place = f"{shown(where)}: " if where else ""
    if qname is not None:
        return f"{place}the {what} {_named(qname)} is used but not defined by any schema of the description"
    return f"{place}a {what} is used but not defined"


def _unexpected(exc: BaseException) -> str:
    detail = _ADDRESS.sub("", str(exc)).strip(" :'\"")
    for pattern, wording in _WORDINGS:
        found = pattern.search(detail)
        if found is not None:
            return wording.format(*(found.groups() or ("",)))
    missing = _NO_DEFINITION.search(detail)
    if missing is not None:
        kind = _KINDS.get(missing.group(2), missing.group(2))
        name = _CLARK.sub(lambda m: m.group(2), missing.group(1))
        return f"it refers to {kind} {name!r}, which it does not define"
    if isinstance(exc, KeyError):
        name = _CLARK.sub(lambda m: m.group(2), detail)
        return (
            f"it refers to {name!r}, which it does not define (a message, part, port type, binding or operation "
            "of that name is missing or misspelt)"
        )
    if isinstance(exc, AssertionError):
        return (
            "it has a construct the WSDL reader cannot interpret (a SOAP header, message part or schema element "
            "that is not where WSDL 1.1 expects it)"
        )
    if isinstance(exc, RecursionError):
        return TOO_DEEP
    if isinstance(exc, AttributeError) and "NoneType" in detail:
        return "something it refers to is missing (a message, part, port type or type that is not defined)"
    if isinstance(exc, IndexError):
        return "an element it needs is missing (a part, an operation's input or output, or a schema's content)"
    whole = _ADDRESS.sub("", str(exc)).strip()  # quoted names kept whole
    words = f" ({one_line(whole, 100)})" if whole else ""
    return f"it has a construct the WSDL reader cannot interpret: {type(exc).__name__}{words}"


def explain(exc: BaseException, shown: Callable[[str], str]) -> str:
    """One line saying what is wrong; ``shown`` turns a document's internal name into the URL to show."""
    if isinstance(exc, zeep.exceptions.DTDForbidden | zeep.exceptions.EntitiesForbidden):
        return "a document carries a DTD or entities (refused: no DTDs or entities in service descriptions)"
    if isinstance(exc, zeep.exceptions.ExternalReferenceForbidden):
        return f"it refers to {shown(str(exc.url))}, which is neither one of its documents nor a well-known schema"
    if isinstance(exc, zeep.exceptions.TransportError):
        return f"it refers to a document that is neither fetched nor well-known ({shown(exc.message)})"
    if isinstance(exc, zeep.exceptions.LookupError | zeep.exceptions.NamespaceError):
        return _lookup(exc, shown)
    if isinstance(exc, zeep.exceptions.XMLParseError):
        for pattern, wording in _WORDINGS:
            found = pattern.search(exc.message or "")
            if found is not None:
                return wording.format(*(found.groups() or ("",)))
        where = f"{shown(exc.filename)}: " if exc.filename else ""
        line = f" (line {exc.sourceline})" if exc.sourceline else ""
        return f"{where}{one_line(shown(exc.message), 160)}{line}"
    if isinstance(exc, zeep.exceptions.Error):
        return one_line(shown(exc.message or type(exc).__name__), 200)
    if isinstance(exc, etree.LxmlError):
        return f"a document is not XML the reader accepts ({one_line(shown(str(exc)), 120)})"
    return _unexpected(exc)
