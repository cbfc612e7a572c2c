"""Parsing a fetched service description with zeep, without any network access.

Every reference between the fetched documents is rewritten to an opaque ``file:///dvc-gateway-wsdl/…`` name that
only :class:`_DocumentSource` serves (from memory), and zeep runs with :data:`ZEEP_SETTINGS` (``forbid_external``,
no DTDs, no entities), so zeep never fetches anything itself.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

import zeep
import zeep.exceptions
from lxml import etree

from adapters.onestop import wsdl as _shipped
from adapters.onestop.soap.errors import WsdlError, one_line
from adapters.onestop.soap.fetch import FetchedWsdl, absolute, digest, parse_document, references, shown

__all__ = ["ZEEP_SETTINGS", "build_document", "reference_document"]

logger = logging.getLogger(__name__)

#: zeep's settings for every document and answer: strict parsing, no DTD, no entities, no transitive fetches of its
#: own (documents come from :func:`~adapters.onestop.soap.fetch.fetch_wsdl_documents`), no huge trees, sequence
#: order enforced.
ZEEP_SETTINGS = zeep.Settings(
    strict=True,
    xml_huge_tree=False,
    forbid_dtd=True,
    forbid_entities=True,
    forbid_external=True,
    xsd_ignore_sequence_order=False,
)

_PSEUDO_PREFIX = "file:///dvc-gateway-wsdl/"
_XML_XSD_PSEUDO = _PSEUDO_PREFIX + "shipped/xml.xsd"
_REFERENCE_BASE = "https://reference.dvc-gateway.invalid/"


class _DocumentSource(zeep.Transport):
    """What zeep loads documents through while parsing a description: the fetched documents, nothing else.

    ``zeep.Transport.__init__`` is deliberately not called: it would create a ``requests`` session.
    """

    def __init__(self, documents: Mapping[str, bytes]) -> None:
        self.cache = None
        self.load_timeout = None
        self.operation_timeout = None
        self.logger = logger
        self._close_session = False
        self._documents = dict(documents)

    def load(self, url: str) -> bytes:
        try:
            return self._documents[url]
        except KeyError:
            raise zeep.exceptions.TransportError(f"{url} was not fetched by the gateway") from None


def _pseudo(url: str, index: int) -> str:
    tail = urllib.parse.quote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1] or "document", safe="")
    return f"{_PSEUDO_PREFIX}{index:03d}-{digest(url)[:16]}/{tail}"


def _zeep_documents(fetched: FetchedWsdl) -> tuple[str, dict[str, bytes], dict[str, str]]:
    """The fetched documents with every reference rewritten to the opaque names :class:`_DocumentSource` serves.

    Returns the root's name, the documents by name and the names back to the original URLs (for messages).
    """
    names = {url: _pseudo(url, index) for index, url in enumerate(fetched.documents)}
    served: dict[str, bytes] = {}
    for url, content in fetched.documents.items():
        root = parse_document(content, url)
        for reference in references(root):
            if reference.location is None:
                reference.element.set(reference.attribute, _XML_XSD_PSEUDO)
                served[_XML_XSD_PSEUDO] = _shipped.read(_shipped.XML_XSD)
                continue
            target = absolute(reference.location, url)
            if target not in names:  # fetched elsewhere than this entry (a damaged cache entry)
                raise WsdlError(f"{shown(target)} (referenced by {shown(url)}) was not fetched")
            reference.element.set(reference.attribute, names[target])
        served[names[url]] = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return names[fetched.url], served, {name: url for url, name in names.items()}


def _unpseudo(text: str, originals: Mapping[str, str]) -> str:
    for name, url in originals.items():
        text = text.replace(name, url)
    return text


def build_document(fetched: FetchedWsdl) -> zeep.wsdl.Document:
    """Parse a fetched service description with zeep (:data:`ZEEP_SETTINGS`), without any network access."""
    root, served, originals = _zeep_documents(fetched)
    source: Any = _DocumentSource(served)  # zeep's annotation asks for a transport class; it uses an instance
    try:
        return zeep.wsdl.Document(root, source, settings=ZEEP_SETTINGS)
    except WsdlError:
        raise
    except (
        zeep.exceptions.Error,
        NotImplementedError,
        etree.LxmlError,
        KeyError,
        IndexError,
        AttributeError,
        TypeError,
        ValueError,
    ) as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, zeep.exceptions.DTDForbidden | zeep.exceptions.EntitiesForbidden):
            reason = "a document carries a DTD or entities"
        raise WsdlError(f"the service description is invalid: {one_line(_unpseudo(reason, originals))}") from exc


def reference_document() -> zeep.wsdl.Document:
    """The reference service description shipped with the gateway, parsed anew (see
    :meth:`~adapters.onestop.soap.loader.WsdlLoader.reference_document` for a kept one)."""
    fetched = FetchedWsdl(
        url=_REFERENCE_BASE + _shipped.REFERENCE_WSDL,
        documents={
            _REFERENCE_BASE + _shipped.REFERENCE_WSDL: _shipped.read(_shipped.REFERENCE_WSDL),
            _REFERENCE_BASE + _shipped.REFERENCE_XSD: _shipped.read(_shipped.REFERENCE_XSD),
        },
    )
    return build_document(fetched)
