"""Building an operation's request: the envelope and HTTP headers zeep's service proxy would send.

zeep turns a call's values into its value objects and then renders those into the envelope, checking each element
on the way; the value objects cost about as much as the rendering. For a request whose types are plain (sequences
of elements, choices between single elements; no wildcards, attributes, groups, defaults, SOAP-encoded arrays,
optional or repeated sequences) and whose values are plain too (dicts for complex elements, lists only where an
element repeats and within its bounds, at most one alternative of a choice, every required element given), there is
nothing for those checks to refuse: :func:`build_request` writes the given elements in the schema's order, each
simple value as its zeep type writes it (``xmlvalue``), into the same document, and hands any other request to
zeep's own building. ``tests/test_adapters_soap_envelopes.py`` holds both ways to the same bytes.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import zeep
from lxml import etree
from lxml.builder import ElementMaker
from zeep.plugins import apply_egress
from zeep.wsdl.messages.base import SerializedMessage
from zeep.wsdl.messages.soap import DocumentMessage
from zeep.xsd.elements.element import Element as XsdElement
from zeep.xsd.elements.indicators import All, Choice, Sequence
from zeep.xsd.types.complex import ComplexType
from zeep.xsd.types.simple import AnySimpleType

__all__ = ["RequestShape", "build_request", "request_shape"]

_SIMPLE_VALUES = (str, int, float, bytes, decimal.Decimal, datetime.date, datetime.time)


@dataclass(frozen=True, slots=True)
class _Step:
    """One child element of a plain complex type, in the schema's order: its name among the values, its qualified
    name, how many times it may occur, and its simple type (``leaf``) or its own plain type (``inner``)."""

    name: str
    qname: etree.QName
    min_occurs: int
    max_occurs: int | None  # None: unbounded
    leaf: AnySimpleType | None
    inner: _Node | None

    def counts(self, number: int) -> bool:
        """Whether ``number`` occurrences are within the element's bounds (zeep refuses others)."""
        return number >= self.min_occurs and (self.max_occurs is None or number <= self.max_occurs)


@dataclass(slots=True)
class _Node:
    """A plain complex type as the direct rendering needs it: its child elements by name and in the schema's order
    (those of a choice where the choice stands); the elements that must be given; the names of each choice (of which
    at most one may be given) and whether one of them must be.

    Values without an element that must be given are left to zeep, whose refusal then names the element's path."""

    children: dict[str, _Step] = field(default_factory=dict)
    steps: list[_Step] = field(default_factory=list)
    required: list[str] = field(default_factory=list)
    choices: list[tuple[tuple[str, ...], bool]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RequestShape:
    """What :func:`request_shape` learned of an operation's input: the plain type of its body element."""

    root: _Node

    def fits(self, values: Mapping[str, Any]) -> bool:
        """Whether ``values`` are plain for this shape (else zeep builds the request)."""
        try:
            return _fits(values, self.root)
        except RecursionError:
            return False


def _element(element: XsdElement, node: _Node, seen: dict[int, _Node]) -> bool:
    name = element.name
    if type(element) is not XsdElement or not isinstance(name, str) or name in node.children:
        return False
    if element.default is not None:  # zeep fills in a default that the values lack
        return False
    xsd_type = element.type
    leaf = xsd_type if isinstance(xsd_type, AnySimpleType) else None
    inner = None if leaf is not None else _compile(xsd_type, seen)
    if leaf is None and inner is None:
        return False
    least, most = element.min_occurs, element.max_occurs
    if not isinstance(least, int) or not (most == "unbounded" or isinstance(most, int)):
        return False
    step = _Step(name, element.qname, least, most if isinstance(most, int) else None, leaf, inner)
    node.children[name] = step
    node.steps.append(step)
    return True


def _particles(indicator: Any, node: _Node, seen: dict[int, _Node]) -> bool:
    if isinstance(indicator, XsdElement):
        if not _element(indicator, node, seen):
            return False
        if not indicator.is_optional:
            node.required.append(cast(str, indicator.name))
        return True
    if isinstance(indicator, Choice):
        items = list(indicator)
        if indicator.accepts_multiple or not all(
            isinstance(item, XsdElement) and not item.accepts_multiple for item in items
        ):
            return False
        node.choices.append((tuple(item.name for item in items), not indicator.is_optional))
        return all(_element(item, node, seen) for item in items)
    if type(indicator) in (Sequence, All) and not indicator.accepts_multiple and not indicator.is_optional:
        return all(_particles(item, node, seen) for item in indicator)
    return False  # groups, wildcards, optional or repeated sequences


def _compile(xsd_type: Any, seen: dict[int, _Node]) -> _Node | None:
    if not isinstance(xsd_type, ComplexType):  # zeep makes a subclass of ComplexType for each named type
        return None
    known = seen.get(id(xsd_type))
    if known is not None:
        return known  # a recursive type
    if xsd_type.attributes or xsd_type._array_type is not None:
        return None
    node = seen[id(xsd_type)] = _Node()
    root = xsd_type._element
    if root is None:
        return None if xsd_type.elements_nested else node
    return node if _particles(root, node, seen) else None


def request_shape(operation: Any) -> RequestShape | None:
    """The shape of ``operation``'s request when its values may be rendered directly (``None``: zeep builds it)."""
    message = getattr(operation, "input", None)
    if not isinstance(message, DocumentMessage) or message._is_body_wrapped or message.body is None:
        return None
    if getattr(getattr(operation, "abstract", None), "wsa_action", None):
        return None
    if not isinstance(message.body, XsdElement) or type(message.body) is not XsdElement:
        return None
    try:
        root = _compile(message.body.type, {})
    except RecursionError:  # nested deeper than the interpreter's stack: zeep's own building
        return None
    return RequestShape(root) if root is not None else None


def _fits(value: Any, node: _Node) -> bool:
    if type(value) is not dict:
        return False
    for name in node.required:
        if value.get(name) is None:
            return False
    for names, required in node.choices:
        given = sum(1 for name in names if value.get(name) is not None)
        if given > 1 or (required and not given):
            return False
    for name, item in value.items():
        step = node.children.get(name)
        if step is None:
            return False
        if item is None:
            continue
        if type(item) is list:
            if step.max_occurs == 1 or not step.counts(len(item)):
                return False
            items = item
        else:
            items = [item]
        for each in items:
            if step.inner is None:
                if not isinstance(each, _SIMPLE_VALUES):
                    return False
            elif not _fits(each, step.inner):
                return False
    return True


def _render(parent: etree._Element, values: Mapping[str, Any], node: _Node) -> None:
    """Render plain ``values`` (see :func:`_fits`) under ``parent`` as zeep's elements and types render them: each
    given element in the schema's order, a simple value as its type writes it."""
    for step in node.steps:
        value = values.get(step.name)
        if value is None:
            continue  # optional, or an alternative not chosen: every element that must be given is
        for item in value if type(value) is list else (value,):
            child = etree.SubElement(parent, step.qname)
            if step.leaf is not None:
                child.text = step.leaf.xmlvalue(item)
            else:
                _render(child, item, cast(_Node, step.inner))


def build_request(
    binding: Any,
    operation: Any,
    shape: RequestShape | None,
    values: Mapping[str, Any],
    *,
    client: zeep.AsyncClient,
    address: str,
) -> tuple[etree._Element, dict[str, str]]:
    """The envelope and HTTP headers of ``operation`` called with ``values`` through ``client``, as zeep's service
    proxy builds them (WS-Security, plugins and all); rendered directly when ``shape`` says the values allow it."""
    options = {"address": address}
    if shape is None or client.settings.extra_http_headers or not shape.fits(values):
        envelope, headers = binding._create(operation.name, (), dict(values), client=client, options=options)
        return envelope, headers
    message = operation.input
    namespace = message.nsmap["soap-env"]
    soap = ElementMaker(namespace=namespace, nsmap={"soap-env": namespace, **message.wsdl.types._prefix_map_custom})
    envelope = soap.Envelope()
    body = soap.Body()
    envelope.append(body)
    _render(etree.SubElement(body, message.body.qname), values, shape.root)
    action = f'"{operation.soapaction}"' if operation.soapaction else '""'
    serialized = SerializedMessage(path=None, headers={"SOAPAction": action}, content=envelope)
    binding._set_http_headers(serialized, operation)
    envelope, headers = apply_egress(client, envelope, serialized.headers, operation, options)
    tokens = client.wsse if isinstance(client.wsse, list) else [client.wsse] if client.wsse else []
    for token in tokens:
        envelope, headers = token.apply(envelope, headers)
    return envelope, headers
