"""Reading a parsed service description: its SOAP ports and the elements its messages declare.

The client picks its port with :func:`select_port` and sends only what the agency's schema declares
(:func:`fit`); :mod:`adapters.onestop.wsdlcheck` compares input elements with :func:`element_paths`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Any, cast

import zeep
from zeep.wsdl.bindings.soap import Soap11Binding, Soap12Binding, SoapBinding
from zeep.xsd.elements.any import Any as XsdAny
from zeep.xsd.elements.element import Element as XsdElement
from zeep.xsd.elements.indicators import Choice, Group, OrderIndicator

from adapters.onestop.soap.errors import WsdlError

__all__ = ["element_paths", "fit", "message_type", "select_port", "soap_version_of", "type_children"]


def soap_version_of(binding: Any) -> str | None:
    """``"1.1"`` or ``"1.2"`` for a zeep SOAP binding, ``None`` for other bindings."""
    if isinstance(binding, Soap12Binding):
        return "1.2"
    if isinstance(binding, Soap11Binding):
        return "1.1"
    return None


def select_port(document: zeep.wsdl.Document, *, soap_version: str | None = None, port: str | None = None) -> Any:
    """The zeep port a client uses: ``port`` by name, else the first SOAP port (of ``soap_version``, if given)."""
    definitions = list(getattr(document, "_definitions", {}).values())  # imported documents' services too
    services = {id(service): service for d in definitions for service in d.services.values()}
    services.update({id(service): service for service in document.services.values()})
    candidates = [
        candidate
        for service in services.values()
        for candidate in service.ports.values()
        if isinstance(getattr(candidate, "binding", None), SoapBinding)
    ]
    if port is not None:
        named = [candidate for candidate in candidates if candidate.name == port]
        if not named:
            raise WsdlError(f"the service description has no SOAP port {port}")
        candidates = named
    if soap_version is not None:
        candidates = [candidate for candidate in candidates if soap_version_of(candidate.binding) == soap_version]
        if not candidates:
            raise WsdlError(f"the service description has no SOAP {soap_version} port")
    if not candidates:
        raise WsdlError("the service description has no SOAP 1.1 or SOAP 1.2 port")
    return candidates[0]


def message_type(message: Any) -> Any:
    """The complex type whose elements are an operation message's parameters (``None`` when it has none)."""
    if message is None or getattr(message, "body", None) is None:
        return None
    xsd_type = getattr(message.body, "type", None)
    return xsd_type if hasattr(xsd_type, "elements") else None


def _indicator_children(indicator: Any, required: bool) -> Iterator[tuple[str, Any, bool]]:
    """``(name, element, required)`` for the elements under a zeep particle tree."""
    if isinstance(indicator, XsdElement):
        yield cast(str, indicator.name), indicator, required and (indicator.min_occurs or 0) >= 1
    elif isinstance(indicator, Choice):
        for item in indicator:
            yield from _indicator_children(item, False)
    elif isinstance(indicator, OrderIndicator):  # Sequence, All
        inner_required = required and (indicator.min_occurs or 0) >= 1
        for item in indicator:
            yield from _indicator_children(item, inner_required)
    elif isinstance(indicator, Group):
        yield from _indicator_children(indicator.child, required and (indicator.min_occurs or 0) >= 1)
    elif isinstance(indicator, XsdAny):
        return


def type_children(xsd_type: Any) -> list[tuple[str, Any, bool]]:
    """``(name, element, required)`` for the child elements of a zeep complex type (none for simple types)."""
    root = getattr(xsd_type, "_element", None)
    if root is None:
        return []
    return list(_indicator_children(root, True))


def element_paths(xsd_type: Any, *, depth: int = 8) -> dict[tuple[str, ...], bool]:
    """Every element path under ``xsd_type`` → whether it is required (given that its parents are present)."""
    paths: dict[tuple[str, ...], bool] = {}

    def walk(current: Any, prefix: tuple[str, ...], level: int) -> None:
        if level > depth:
            return
        for name, element, required in type_children(current):
            path = (*prefix, name)
            paths.setdefault(path, required)
            walk(element.type, path, level + 1)

    walk(xsd_type, (), 0)
    return paths


#: The child elements of each complex type :func:`fit` has met, by name (kept while the type lives).
_FIT_CHILDREN: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _children_by_name(xsd_type: Any) -> dict[str, Any]:
    if getattr(xsd_type, "_element", None) is None:  # no child elements (simple types are not even hashable)
        return {}
    children = _FIT_CHILDREN.get(xsd_type)
    if children is None:
        children = {name: element for name, element, _required in type_children(xsd_type)}
        _FIT_CHILDREN[xsd_type] = children
    return children


def fit(value: Any, xsd_type: Any) -> Any:
    """``value`` reduced to what ``xsd_type`` declares (the agency's schema decides what is sent)."""
    if isinstance(value, Mapping):
        children = _children_by_name(xsd_type)
        if not children:
            return value
        fitted = {}
        for name, item in value.items():
            element = children.get(name)
            if element is None or item is None:
                continue
            fitted[name] = fit(item, element.type)
        return fitted
    if isinstance(value, list):
        return [fit(item, xsd_type) for item in value]
    return value
