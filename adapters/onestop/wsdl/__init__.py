"""The reference SOAP service description of an agency one-stop system, shipped as package data.

* ``TiepNhanHoSo.wsdl``: WSDL 1.1, document/literal, one service with a SOAP 1.1 and a SOAP 1.2 port; operations
  ``TiepNhanHoSo`` (deliver), ``LayTrangThaiHoSo`` (status, or changes since a time), ``BoSungHoSo`` (supplement),
  ``RutHoSo`` (withdraw); business rejections are faults with a ``LoiNghiepVu`` detail;
* ``hoso.xsd``: the messages (namespace ``urn:dvc:motcua:1.0``), imported by the WSDL as ``hoso.xsd``;
* ``xml.xsd``: the schema of the ``xml:`` attributes, served locally to WSDLs that import that namespace without a
  location (zeep would otherwise fetch it from w3.org);
* the other well-known schemas a description may refer to without shipping them (:data:`WELL_KNOWN`: SOAP 1.1 and
  1.2 encoding and envelope, WSDL 1.1, the XML namespace, MTOM's ``xmime`` and WS-Addressing 1.0), served from these
  copies and never fetched.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["REFERENCE_NAMESPACE", "REFERENCE_WSDL", "REFERENCE_XSD", "WELL_KNOWN", "XML_XSD", "read"]

REFERENCE_WSDL = "TiepNhanHoSo.wsdl"
REFERENCE_XSD = "hoso.xsd"
XML_XSD = "xml.xsd"
#: Target namespace of ``hoso.xsd`` (the messages); the WSDL's own is ``urn:dvc:motcua:1.0:wsdl``.
REFERENCE_NAMESPACE = "urn:dvc:motcua:1.0"

#: Namespace of a well-known schema → the copy shipped here.
WELL_KNOWN: dict[str, str] = {
    "http://www.w3.org/XML/1998/namespace": XML_XSD,
    "http://schemas.xmlsoap.org/soap/encoding/": "soap-encoding.xsd",
    "http://schemas.xmlsoap.org/soap/envelope/": "soap-envelope.xsd",
    "http://www.w3.org/2003/05/soap-encoding": "soap12-encoding.xsd",
    "http://www.w3.org/2003/05/soap-envelope": "soap12-envelope.xsd",
    "http://schemas.xmlsoap.org/wsdl/": "wsdl.xsd",
    "http://www.w3.org/2005/05/xmlmime": "xmlmime.xsd",
    "http://www.w3.org/2005/08/addressing": "ws-addr.xsd",
}

_NAMES = frozenset({REFERENCE_WSDL, REFERENCE_XSD, *WELL_KNOWN.values()})


def read(name: str) -> bytes:
    """The bytes of one shipped document (``TiepNhanHoSo.wsdl``, ``hoso.xsd`` or a :data:`WELL_KNOWN` schema)."""
    if name not in _NAMES:
        raise ValueError(f"no shipped document {name!r}")
    return resources.files(__name__).joinpath(name).read_bytes()
