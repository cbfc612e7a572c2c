"""Client of an agency one-stop system (*một cửa điện tử*) speaking SOAP: the reference service or a mapped variant.

Service descriptions are fetched through the agency's own factory client (:mod:`.fetch`), parsed by zeep without
network access (:mod:`.documents`) and kept by a :class:`WsdlLoader` that whoever composes the application creates
and shares (:mod:`.loader`). :class:`SoapOneStopClient` (:mod:`.client`) calls the operations through
:mod:`.transport`, reading the answers with :mod:`.answers`.
"""

from adapters.onestop.soap.client import DEFAULT_MAX_ANSWER_BYTES, FAULT_ALREADY_EXISTS, SoapOneStopClient
from adapters.onestop.soap.documents import (
    ZEEP_SETTINGS,
    BuiltDocument,
    build_description,
    build_document,
    reference_document,
)
from adapters.onestop.soap.dossier import dossier_to_hoso
from adapters.onestop.soap.errors import SoapFaultError, WsdlError
from adapters.onestop.soap.fetch import FetchedWsdl, WsdlCache, WsdlLimits, fetch_wsdl_documents
from adapters.onestop.soap.loader import LoadedWsdl, WsdlLoader, load_wsdl
from adapters.onestop.soap.mapping import OPERATIONS, REFERENCE_NAMESPACE, REFERENCE_OPERATIONS, SoapMapping
from adapters.onestop.soap.schema import element_paths, message_type, select_port, soap_version_of, type_children
from adapters.onestop.soap.transport import SOAP11_ENVELOPE, SOAP12_ENVELOPE, CallRecord, GatewayAsyncTransport
from adapters.onestop.soap.wsse import LazyUsernameToken

__all__ = [
    "DEFAULT_MAX_ANSWER_BYTES",
    "FAULT_ALREADY_EXISTS",
    "OPERATIONS",
    "REFERENCE_NAMESPACE",
    "REFERENCE_OPERATIONS",
    "SOAP11_ENVELOPE",
    "SOAP12_ENVELOPE",
    "ZEEP_SETTINGS",
    "BuiltDocument",
    "CallRecord",
    "FetchedWsdl",
    "GatewayAsyncTransport",
    "LazyUsernameToken",
    "LoadedWsdl",
    "SoapFaultError",
    "SoapMapping",
    "SoapOneStopClient",
    "WsdlCache",
    "WsdlError",
    "WsdlLimits",
    "WsdlLoader",
    "build_description",
    "build_document",
    "dossier_to_hoso",
    "element_paths",
    "fetch_wsdl_documents",
    "load_wsdl",
    "message_type",
    "reference_document",
    "select_port",
    "soap_version_of",
    "type_children",
]
