"""The ports of a service description that the SOAP library leaves out, and why.

zeep keeps only the ports whose binding it can use (SOAP 1.1 or 1.2 over HTTP, HTTP GET/POST) and drops the others
without a word: a binding the description does not define, SOAP over JMS, CORBA. :func:`ports_left_out` compares the
ports the documents declare with the ports zeep loaded and says, for each one missing, what it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lxml import etree

__all__ = ["ports_left_out"]

_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_SOAP_BINDINGS = ("http://schemas.xmlsoap.org/wsdl/soap/", "http://schemas.xmlsoap.org/wsdl/soap12/")
_HTTP_TRANSPORTS = ("http://schemas.xmlsoap.org/soap/http", "http://www.w3.org/2003/05/soap/bindings/HTTP/")


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _loaded(document: Any) -> set[tuple[str, str]]:
    """(service, port) of every port zeep loaded with a binding."""
    return {
        (_local(str(service.name)), _local(str(port.name)))
        for definition in getattr(document, "_definitions", {}).values()
        for service in definition.services.values()
        for port in service.ports.values()
        if getattr(port, "binding", None) is not None
    }


def _reason(binding_name: str, binding: etree._Element | None) -> str:
    if binding is None:
        return f"its binding {binding_name} is not defined"
    for child in binding:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child)
        if qname.localname == "binding" and qname.namespace in _SOAP_BINDINGS:
            transport = (child.get("transport") or "").strip()
            if transport not in _HTTP_TRANSPORTS:
                return (
                    f"binding {binding_name} is SOAP over {transport or 'no named transport'} (only HTTP is supported)"
                )
        elif qname.localname == "binding" and qname.namespace != _WSDL:
            return f"binding {binding_name} is not SOAP ({qname.namespace})"
    return f"binding {binding_name} could not be used"


def ports_left_out(trees: Iterable[etree._Element], document: Any) -> list[str]:
    """One line per port that ``trees`` (the description's documents) declare and ``document`` (zeep's) lacks."""
    trees = list(trees)
    loaded = _loaded(document)
    bindings: dict[str, etree._Element] = {}
    for tree in trees:
        for binding in tree.iter(f"{{{_WSDL}}}binding"):
            bindings.setdefault(binding.get("name") or "", binding)
    left_out = []
    for tree in trees:
        for service in tree.iter(f"{{{_WSDL}}}service"):
            service_name = service.get("name") or ""
            for port in service.iter(f"{{{_WSDL}}}port"):
                port_name = port.get("name") or ""
                if (service_name, port_name) in loaded:
                    continue
                binding_name = _local(port.get("binding") or "")
                reason = _reason(binding_name, bindings.get(binding_name))
                left_out.append(f"port {port_name} of service {service_name}: {reason}; left out")
    return left_out
