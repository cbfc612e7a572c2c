"""Building an operation's request: the envelope and HTTP headers zeep's service proxy would send.

zeep turns a call's values into its value objects and then renders those into the envelope; the value objects cost
about as much as the rendering. For a request whose types are plain (sequences of elements, choices between single
elements; no wildcards, attributes, groups, defaults, SOAP-encoded arrays, optional or repeated sequences) and
whose values are plain too (dicts for complex elements, lists only where an element repeats, at most one alternative
of a choice, every required element given), zeep renders the dicts themselves into the same document:
:func:`build_request` does that, and hands any other request to zeep's own building.
``tests/test_adapters_soap_envelopes.py`` holds both ways to the same bytes.
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


@dataclass(slots=True)
class _Node:
    """A plain complex type as the direct rendering needs it: each child element's name → (repeats, its own node
    or ``None`` for a simple type); the elements that must be given; the names of each choice (of which at most one
    may be given) and whether one of them must be.

    Values without an element that must be given are left to zeep, whose refusal then names the element's path."""

    children: dict[str, tuple[bool, _Node | None]] = field(default_factory=dict)
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
    child = None if isinstance(xsd_type, AnySimpleType) else _compile(xsd_type, seen)
    if child is None and not isinstance(xsd_type, AnySimpleType):
        return False
    node.children[name] = (element.accepts_multiple, child)
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
        child = node.children.get(name)
        if child is None:
            return False
        if item is None:
            continue
        repeats, inner = child
        if type(item) is list:
            if not repeats:
                return False
            items = item
        else:
            items = [item]
        for each in items:
            if inner is None:
                if not isinstance(each, _SIMPLE_VALUES):
                    return False
            elif not _fits(each, inner):
                return False
    return True


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
    message.body.render(body, values)
    action = f'"{operation.soapaction}"' if operation.soapaction else '""'
    serialized = SerializedMessage(path=None, headers={"SOAPAction": action}, content=envelope)
    binding._set_http_headers(serialized, operation)
    envelope, headers = apply_egress(client, envelope, serialized.headers, operation, options)
    tokens = client.wsse if isinstance(client.wsse, list) else [client.wsse] if client.wsse else []
    for token in tokens:
        envelope, headers = token.apply(envelope, headers)
    return envelope, headers
