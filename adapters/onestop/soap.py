"""Client of an agency one-stop system (*một cửa điện tử*) speaking SOAP: the reference service or a mapped variant.

The reference service description ships in :mod:`adapters.onestop.wsdl` (``TiepNhanHoSo.wsdl`` + ``hoso.xsd``)::

    deliver     TiepNhanHoSo      KhoaYeuCau (idempotency key), HoSo (the dossier)
    status      LayTrangThaiHoSo  MaHoSo (one dossier) or TuThoiDiem (every change since a time)
    supplement  BoSungHoSo        KhoaYeuCau, MaHoSo, ThanhPhanHoSo+
    withdraw    RutHoSo           KhoaYeuCau, MaHoSo, LyDo

:class:`SoapOneStopClient` implements :class:`~adapters.onestop.port.OneStopClient` with zeep over its async httpx
transport. An agency whose WSDL differs registers a ``mapping`` instead of code::

    {"operations": {"deliver": "NhanHoSo", "status": "TraCuuHoSo"},
     "fields": {"MaHoSo": "SoHoSo", "KhoaYeuCau": "MaGiaoDich"},
     "statuses": {"2": "received", "4": "processing"},
     "soap_version": "1.2", "port": "MotCuaSoap12"}

``operations`` renames our operations to theirs, ``fields`` reference element names to theirs (at any depth, both
ways), ``statuses`` their status values to ours; ``soap_version`` / ``port`` pick the port (default: the first SOAP
port of the first service).

**How WSDL and XSD documents are fetched.** zeep loads WSDLs through a *synchronous* transport (its
``AsyncTransport`` keeps a private ``httpx.Client`` for that), which would bypass the gateway's
:class:`~adapters.http.ClientFactory` (SSRF guard, size cap, timeouts, TLS settings, recording). So zeep never
touches the network while loading:

1. :func:`fetch_wsdl_documents` walks the WSDL and every ``wsdl:import``, ``xsd:import``, ``xsd:include`` and
   ``xsd:redefine`` with the agency's own ``httpx.AsyncClient`` (from the factory: address policy enforced where it
   connects, redirects not followed), each document capped at ``max_document_bytes``, at most ``max_documents`` in
   all, each parsed with a hardened lxml parser (no DTD, no entities, no network, no huge trees);
2. every reference is rewritten to an opaque ``file:///dvc-gateway-wsdl/…`` name, and zeep gets a transport whose
   ``load()`` serves those names from memory and refuses anything else; zeep runs with ``forbid_external=True``
   (which refuses any ``http(s)`` reference it would fetch itself) and ``forbid_dtd``/``forbid_entities``;
3. with ``cache_dir``, the fetched documents are kept on disk (one manifest per WSDL URL, SHA-256 checked), so a
   restart with the agency unreachable still loads the description;
4. the parsed :class:`zeep.wsdl.Document` is cached per process (:func:`load_wsdl`, keyed by the WSDL URL and the
   fetch settings): a WSDL is loaded once, never per message. Each :class:`SoapOneStopClient` then builds one zeep
   ``AsyncClient`` over that document with its own transport and credentials (sharing a zeep client between
   agencies would share their credentials).

**The async proxy.** ``zeep.AsyncClient.create_service()`` is inherited from the sync client and returns a sync
``ServiceProxy`` whose calls would hand back un-awaited coroutines; the client builds a
:class:`zeep.proxy.AsyncServiceProxy` over the chosen port's binding itself, with ``endpoint`` (when registered) as
the address instead of the WSDL's ``soap:address``.

**Errors.** A fault whose detail carries ``LoiNghiepVu`` is a business rejection, :class:`SoapFaultError` (a
:class:`~adapters.errors.PermanentError` with ``business_code``; ``DA_TON_TAI`` to a delivery means "already there"
and counts as delivered); ``soap:Server``/``env:Receiver`` without one and HTTP 5xx are transient; HTML instead of
XML, truncated or malformed XML, a DTD (XML bombs), a SOAP 1.1 envelope answering a SOAP 1.2 request or the reverse,
and an answer element in the wrong namespace are :class:`~adapters.errors.BadResponseError` (transient) with a
one-line message that never quotes the answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import hashlib
import json
import logging
import os
import re
import threading
import urllib.parse
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Literal

import httpx
import zeep
import zeep.exceptions
from lxml import etree
from zeep.helpers import serialize_object
from zeep.plugins import Plugin
from zeep.proxy import AsyncServiceProxy
from zeep.transports import AsyncTransport
from zeep.wsdl.bindings.soap import Soap11Binding, Soap12Binding, SoapBinding
from zeep.wsdl.messages.soap import DocumentMessage
from zeep.wsdl.utils import etree_to_string
from zeep.wsse.username import UsernameToken
from zeep.xsd.context import XmlParserContext
from zeep.xsd.elements.any import Any as XsdAny
from zeep.xsd.elements.element import Element as XsdElement
from zeep.xsd.elements.indicators import Choice, Group, OrderIndicator

from adapters.errors import AuthError, BadResponseError, PermanentError, TransientError, UpstreamError
from adapters.http import ClientFactory, default_factory, error_for_response, map_http_errors
from adapters.http import settings_from_document as _settings_from_document
from adapters.netguard import AddressPolicy
from adapters.onestop import wsdl as _shipped
from adapters.onestop.port import Acknowledgement, AgencyStatus, DeliveryReceipt
from adapters.onestop.rest import AGENCY_TIME

__all__ = [
    "DEFAULT_MAX_ANSWER_BYTES",
    "OPERATIONS",
    "REFERENCE_NAMESPACE",
    "REFERENCE_OPERATIONS",
    "SOAP11_ENVELOPE",
    "SOAP12_ENVELOPE",
    "ZEEP_SETTINGS",
    "FetchedWsdl",
    "LoadedWsdl",
    "SoapFaultError",
    "SoapMapping",
    "SoapOneStopClient",
    "WsdlCache",
    "WsdlError",
    "WsdlLimits",
    "build_document",
    "clear_wsdl_cache",
    "dossier_to_hoso",
    "fetch_wsdl_documents",
    "load_wsdl",
    "reference_document",
    "select_port",
    "soap_version_of",
    "wsdl_cache_stats",
]

logger = logging.getLogger(__name__)

REFERENCE_NAMESPACE = _shipped.REFERENCE_NAMESPACE
OPERATIONS = ("deliver", "status", "supplement", "withdraw")
#: Our operation → the reference service's operation (Vietnamese domain names).
REFERENCE_OPERATIONS: Mapping[str, str] = MappingProxyType(
    {"deliver": "TiepNhanHoSo", "status": "LayTrangThaiHoSo", "supplement": "BoSungHoSo", "withdraw": "RutHoSo"}
)
SOAP11_ENVELOPE = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENVELOPE = "http://www.w3.org/2003/05/soap-envelope"
_ENVELOPE_VERSIONS = {SOAP11_ENVELOPE: "1.1", SOAP12_ENVELOPE: "1.2"}

#: zeep's settings for every document and answer: strict parsing, no DTD, no entities, no transitive fetches of its
#: own (documents come from :func:`fetch_wsdl_documents`), no huge trees, sequence order enforced.
ZEEP_SETTINGS = zeep.Settings(
    strict=True,
    xml_huge_tree=False,
    forbid_dtd=True,
    forbid_entities=True,
    forbid_external=True,
    xsd_ignore_sequence_order=False,
)

#: Answers to operations larger than this are abandoned while streaming (documents travel by URL, not in answers).
DEFAULT_MAX_ANSWER_BYTES = 10 * 1024 * 1024

#: Business fault codes with a meaning for the gateway (any other code is a rejection too).
FAULT_ALREADY_EXISTS = "DA_TON_TAI"

_WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
_WSDL20_NS = "http://www.w3.org/ns/wsdl"
_XSD_NAMESPACES = (
    "http://www.w3.org/2001/XMLSchema",
    "http://www.w3.org/2000/10/XMLSchema",
    "http://www.w3.org/1999/XMLSchema",
)
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_PSEUDO_PREFIX = "file:///dvc-gateway-wsdl/"
_XML_XSD_PSEUDO = _PSEUDO_PREFIX + "shipped/xml.xsd"
_EXCERPT = 200
_NCNAME = re.compile(r"[A-Za-z_][\w.\-]*\Z")


def _short(text: str, limit: int = _EXCERPT) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# ----------------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------------


class SoapFaultError(PermanentError):
    """The agency rejected the request with a SOAP fault carrying a business detail (``LoiNghiepVu``)."""

    def __init__(
        self,
        message: str,
        *,
        upstream: str = "",
        status_code: int | None = None,
        fault_code: str | None = None,
        business_code: str | None = None,
        business_message: str | None = None,
    ) -> None:
        super().__init__(message, upstream=upstream, status_code=status_code)
        self.fault_code = fault_code
        self.business_code = business_code
        self.business_message = business_message


class WsdlError(PermanentError):
    """The service description cannot be used (a document missing, not XML, too large, invalid, refused)."""


# ----------------------------------------------------------------------------------------------------------------------
# Mapping
# ----------------------------------------------------------------------------------------------------------------------

_MAPPING_KEYS = frozenset({"operations", "fields", "statuses", "soap_version", "port"})


def _name_map(value: Any, name: str, *, xml_names: bool) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()
    ):
        raise ValueError(f"mapping.{name} must map names to non-empty strings")
    if xml_names:
        for key, theirs in value.items():
            if not _NCNAME.match(theirs):
                raise ValueError(f"mapping.{name}.{key}: {theirs!r} is not an XML name")
    return dict(value)


@dataclass(frozen=True)
class SoapMapping:
    """An agency's differences from the reference service: operation names, element names, status values, port."""

    operations: Mapping[str, str] = field(default_factory=lambda: dict(REFERENCE_OPERATIONS))
    fields: Mapping[str, str] = field(default_factory=dict)  # reference element name → theirs
    statuses: Mapping[str, str] = field(default_factory=dict)  # theirs → ours
    soap_version: Literal["1.1", "1.2"] | None = None
    port: str | None = None

    @classmethod
    def parse(cls, mapping: Mapping[str, Any] | None) -> SoapMapping:
        """Validate a registration document's ``mapping`` (``ValueError`` with a clear message when invalid)."""
        if not mapping:
            return cls()
        if not isinstance(mapping, Mapping):
            raise ValueError("mapping must be an object")
        unknown = set(mapping) - _MAPPING_KEYS
        if unknown:
            raise ValueError(f"mapping: unknown keys {sorted(unknown)} (allowed: {sorted(_MAPPING_KEYS)})")
        operations = _name_map(mapping.get("operations"), "operations", xml_names=True)
        for operation in operations:
            if operation not in OPERATIONS:
                raise ValueError(
                    f"mapping.operations: unknown operation {operation!r} (allowed: {', '.join(OPERATIONS)})"
                )
        fields = _name_map(mapping.get("fields"), "fields", xml_names=True)
        if len(set(fields.values())) != len(fields):
            raise ValueError("mapping.fields: two fields are mapped to the same name")
        statuses = _name_map(mapping.get("statuses"), "statuses", xml_names=False)
        version = mapping.get("soap_version")
        if version is not None and version not in ("1.1", "1.2"):
            raise ValueError("mapping.soap_version must be '1.1' or '1.2'")
        port = mapping.get("port")
        if port is not None and (not isinstance(port, str) or not port):
            raise ValueError("mapping.port must be a port name")
        return cls(
            operations={**REFERENCE_OPERATIONS, **operations},
            fields=fields,
            statuses=statuses,
            soap_version=version,
            port=port,
        )

    def operation(self, operation: str) -> str:
        """Their name of our operation (``deliver`` → ``TiepNhanHoSo`` by default)."""
        return self.operations[operation]

    def name(self, reference: str) -> str:
        """Their name of a reference element."""
        return self.fields.get(reference, reference)

    def reference_name(self, theirs: str) -> str:
        """The reference name of one of their elements."""
        for ours, mapped in self.fields.items():
            if mapped == theirs:
                return ours
        return theirs

    def outbound(self, value: Any) -> Any:
        """``value`` (dicts and lists, reference names) with element names renamed to theirs, at any depth."""
        if isinstance(value, Mapping):
            return {self.name(key): self.outbound(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.outbound(item) for item in value]
        return value

    def inbound(self, value: Any) -> Any:
        """``value`` with their element names renamed to the reference names, at any depth."""
        if isinstance(value, Mapping):
            return {self.reference_name(key): self.inbound(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.inbound(item) for item in value]
        return value

    def status(self, value: Any) -> str | None:
        """Our status name for the agency's status value."""
        if value is None:
            return None
        text = str(value).strip()
        return self.statuses.get(text, text) or None


# ----------------------------------------------------------------------------------------------------------------------
# Fetching the service description
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WsdlLimits:
    """Bounds on fetching one service description (the WSDL and everything it imports or includes)."""

    max_document_bytes: int = 2 * 1024 * 1024
    max_documents: int = 32

    def __post_init__(self) -> None:
        if self.max_document_bytes < 1 or self.max_documents < 1:
            raise ValueError("WSDL limits must be positive")


@dataclass(frozen=True)
class FetchedWsdl:
    """The documents of one service description, as fetched (originals, not rewritten); the root first."""

    url: str
    documents: Mapping[str, bytes] = field(repr=False)
    from_cache: bool = False
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _hardened_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
    )


_HTML_START = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)", re.I | re.S)


def _shown(url: str) -> str:
    """A URL as shown in messages (no query credentials expected; cut when long)."""
    return _short(url, 120)


def _parse_document(content: bytes, url: str) -> etree._Element:
    """A fetched document's root (hardened parse); :class:`WsdlError` naming the document otherwise."""
    if _HTML_START.match(content[:4096]):
        raise WsdlError(f"{_shown(url)} is an HTML page, not XML")
    try:
        root = etree.fromstring(content, parser=_hardened_parser(), base_url=url)
    except etree.XMLSyntaxError as exc:
        raise WsdlError(f"{_shown(url)} is not well-formed XML ({_short(exc.msg or 'syntax error', 80)})") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise WsdlError(f"{_shown(url)} carries a DTD (refused: no DTDs or entities in service descriptions)")
    qname = etree.QName(root)
    if qname.namespace == _WSDL20_NS:
        raise WsdlError(f"{_shown(url)} is a WSDL 2.0 description (only WSDL 1.1 is supported)")
    if not (
        (qname.namespace == _WSDL_NS and qname.localname == "definitions")
        or (qname.namespace in _XSD_NAMESPACES and qname.localname == "schema")
    ):
        raise WsdlError(f"{_shown(url)} is not a WSDL or XML Schema document (root element {qname.localname})")
    return root


@dataclass(frozen=True)
class _Reference:
    element: etree._Element
    attribute: str
    location: str | None  # None: an import of the XML namespace without a location (served from the package)


def _references(root: etree._Element) -> Iterator[_Reference]:
    """The imports and includes of a WSDL or XSD document (in WSDL types too)."""
    for element in root.iter(etree.Element):
        qname = etree.QName(element)
        if qname.namespace == _WSDL_NS and qname.localname == "import":
            location = element.get("location")
            if location:
                yield _Reference(element, "location", location.strip())
        elif qname.namespace in _XSD_NAMESPACES and qname.localname in ("import", "include", "redefine"):
            location = element.get("schemaLocation")
            if location:
                yield _Reference(element, "schemaLocation", location.strip())
            elif qname.localname == "import" and element.get("namespace") == _XML_NS:
                yield _Reference(element, "schemaLocation", None)


def _absolute(location: str, base: str) -> str:
    """``location`` resolved against ``base``, without a fragment; only http(s) URLs are accepted."""
    url, _fragment = urllib.parse.urldefrag(urllib.parse.urljoin(base, location))
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise WsdlError(f"{_shown(base)} refers to {_shown(location)}: only http(s) references are followed")
    return url


async def _get_document(
    http: httpx.AsyncClient, url: str, *, upstream: str, limits: WsdlLimits, referrer: str | None
) -> bytes:
    via = f" (imported by {_shown(referrer)})" if referrer else ""
    headers = {"Accept": "application/wsdl+xml, application/xml, text/xml;q=0.9, */*;q=0.1"}
    with map_http_errors(upstream):
        async with http.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                await response.aclose()
                error = error_for_response(response, upstream)
                status = response.status_code
                text = f"HTTP {status} fetching {_shown(url)}{via}"
                if isinstance(error, TransientError):
                    raise TransientError(text, upstream=upstream, status_code=status)
                if isinstance(error, AuthError):
                    raise AuthError(text, upstream=upstream, status_code=status)
                raise WsdlError(text, upstream=upstream, status_code=status)
            declared = response.headers.get("Content-Length", "").strip()
            if declared.isdigit() and int(declared) > limits.max_document_bytes:
                raise WsdlError(
                    f"{_shown(url)}{via} is too large ({declared} bytes, the limit is {limits.max_document_bytes})",
                    upstream=upstream,
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > limits.max_document_bytes:
                    raise WsdlError(
                        f"{_shown(url)}{via} is too large (over the limit of {limits.max_document_bytes} bytes)",
                        upstream=upstream,
                    )
                chunks.append(chunk)
    return b"".join(chunks)


async def fetch_wsdl_documents(
    url: str, http: httpx.AsyncClient, *, upstream: str = "wsdl", limits: WsdlLimits | None = None
) -> FetchedWsdl:
    """Fetch the WSDL at ``url`` and, transitively, every document it imports or includes, through ``http``.

    ``http`` is a client from the :class:`~adapters.http.ClientFactory` (its address policy, TLS settings, timeouts
    and wrappers apply to every document). Raises :class:`WsdlError` (a permanent error) naming the document at
    fault, :class:`~adapters.errors.TransientError` for network failures and 5xx answers,
    :class:`~adapters.errors.AuthError` for 401/403 and :class:`~adapters.errors.PermanentError` for addresses the
    policy refuses.
    """
    limits = limits or WsdlLimits()
    url = _absolute(url, url)
    documents: dict[str, bytes] = {}
    queue: list[tuple[str, str | None]] = [(url, None)]
    seen = {url}
    while queue:
        current, referrer = queue.pop(0)
        if len(documents) >= limits.max_documents:
            raise WsdlError(
                f"the service description has more than {limits.max_documents} documents", upstream=upstream
            )
        content = await _get_document(http, current, upstream=upstream, limits=limits, referrer=referrer)
        root = _parse_document(content, current)
        if not documents and etree.QName(root).localname != "definitions":
            raise WsdlError(f"{_shown(current)} is an XML Schema, not a WSDL", upstream=upstream)
        documents[current] = content
        for reference in _references(root):
            if reference.location is None:
                continue
            target = _absolute(reference.location, current)
            if target not in seen:
                seen.add(target)
                queue.append((target, current))
    logger.info("Service description %s fetched (%d documents)", _shown(url), len(documents))
    return FetchedWsdl(url=url, documents=documents)


# ----------------------------------------------------------------------------------------------------------------------
# Offline cache of fetched documents
# ----------------------------------------------------------------------------------------------------------------------


def _digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


class WsdlCache:
    """Fetched service descriptions kept on disk, so that a restart loads them without the network.

    One directory per WSDL URL (named by its SHA-256) holds ``manifest.json`` (the URL, when it was fetched, and
    each document's URL, file and SHA-256) and the documents as fetched. Writes are atomic (a new manifest replaces
    the old one); a document whose digest does not match is ignored with the whole entry.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _entry(self, url: str) -> Path:
        return self.directory / _digest(url)[:32]

    def write(self, fetched: FetchedWsdl) -> None:
        entry = self._entry(fetched.url)
        entry.mkdir(parents=True, exist_ok=True)
        files = []
        for url, content in fetched.documents.items():
            name = _digest(content) + ".xml"
            path = entry / name
            if not path.exists():
                temporary = entry / f".{name}.{os.getpid()}.tmp"
                temporary.write_bytes(content)
                os.replace(temporary, path)
            files.append({"url": url, "file": name, "sha256": _digest(content)})
        manifest = {"url": fetched.url, "fetched_at": fetched.fetched_at.isoformat(), "documents": files}
        temporary = entry / f".manifest.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(temporary, entry / "manifest.json")
        keep = {item["file"] for item in files} | {"manifest.json"}
        for stale in entry.iterdir():
            if stale.name not in keep and not stale.name.startswith("."):
                stale.unlink(missing_ok=True)

    def read(self, url: str, limits: WsdlLimits | None = None) -> FetchedWsdl | None:
        """The cached description of ``url`` (``None`` when there is none or it is damaged)."""
        limits = limits or WsdlLimits()
        entry = self._entry(url)
        try:
            manifest = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
            if manifest.get("url") != url:
                return None
            items = manifest["documents"]
            if not isinstance(items, list) or not items or len(items) > limits.max_documents:
                return None
            documents: dict[str, bytes] = {}
            for item in items:
                path = entry / Path(str(item["file"])).name
                if path.stat().st_size > limits.max_document_bytes:
                    return None
                content = path.read_bytes()
                if _digest(content) != item["sha256"]:
                    logger.warning("Cached service description of %s is damaged: ignored", _shown(url))
                    return None
                documents[str(item["url"])] = content
            fetched_at = datetime.fromisoformat(manifest["fetched_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if next(iter(documents)) != url:
            return None
        return FetchedWsdl(url=url, documents=documents, from_cache=True, fetched_at=fetched_at)


# ----------------------------------------------------------------------------------------------------------------------
# Building zeep's document (no network: documents served from memory)
# ----------------------------------------------------------------------------------------------------------------------


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
    return f"{_PSEUDO_PREFIX}{index:03d}-{_digest(url)[:16]}/{tail}"


def _zeep_documents(fetched: FetchedWsdl) -> tuple[str, dict[str, bytes], dict[str, str]]:
    """The fetched documents with every reference rewritten to the opaque names :class:`_DocumentSource` serves.

    Returns the root's name, the documents by name and the names back to the original URLs (for messages).
    """
    names = {url: _pseudo(url, index) for index, url in enumerate(fetched.documents)}
    served: dict[str, bytes] = {}
    for url, content in fetched.documents.items():
        root = _parse_document(content, url)
        for reference in _references(root):
            if reference.location is None:
                reference.element.set(reference.attribute, _XML_XSD_PSEUDO)
                served[_XML_XSD_PSEUDO] = _shipped.read(_shipped.XML_XSD)
                continue
            target = _absolute(reference.location, url)
            if target not in names:  # fetched elsewhere than this entry (a damaged cache entry)
                raise WsdlError(f"{_shown(target)} (referenced by {_shown(url)}) was not fetched")
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
    try:
        return zeep.wsdl.Document(root, _DocumentSource(served), settings=ZEEP_SETTINGS)
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
        raise WsdlError(f"the service description is invalid: {_short(_unpseudo(reason, originals))}") from exc


def reference_document() -> zeep.wsdl.Document:
    """The reference service description shipped with the gateway, parsed (cached)."""
    return _reference_document()


_reference_lock = threading.Lock()
_reference_cache: list[zeep.wsdl.Document] = []


def _reference_document() -> zeep.wsdl.Document:
    with _reference_lock:
        if not _reference_cache:
            base = "https://reference.dvc-gateway.invalid/"
            fetched = FetchedWsdl(
                url=base + _shipped.REFERENCE_WSDL,
                documents={
                    base + _shipped.REFERENCE_WSDL: _shipped.read(_shipped.REFERENCE_WSDL),
                    base + _shipped.REFERENCE_XSD: _shipped.read(_shipped.REFERENCE_XSD),
                },
            )
            _reference_cache.append(build_document(fetched))
        return _reference_cache[0]


# ----------------------------------------------------------------------------------------------------------------------
# Loaded descriptions, cached per process
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedWsdl:
    """A parsed service description (shared by every client of the same WSDL URL and fetch settings)."""

    url: str
    document: zeep.wsdl.Document = field(repr=False)
    documents: tuple[str, ...]
    from_cache: bool
    fetched_at: datetime


_CacheKey = tuple[Any, ...]
_MAX_LOADED = 128
_loaded_lock = threading.Lock()
_loaded: OrderedDict[_CacheKey, LoadedWsdl] = OrderedDict()
_inflight: dict[_CacheKey, tuple[asyncio.AbstractEventLoop, asyncio.Future[LoadedWsdl]]] = {}
_stats: Counter[str] = Counter()


def wsdl_cache_stats() -> dict[str, int]:
    """How often descriptions were fetched, read from the offline cache, or served from the process cache."""
    with _loaded_lock:
        return dict(_stats)


def clear_wsdl_cache() -> None:
    """Forget every description loaded in this process (the offline cache on disk stays)."""
    with _loaded_lock:
        _loaded.clear()
        _stats.clear()


async def load_wsdl(
    url: str,
    http: httpx.AsyncClient,
    *,
    upstream: str = "wsdl",
    limits: WsdlLimits | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    settings_key: Any = None,
) -> LoadedWsdl:
    """The parsed description at ``url``: from the process cache, else fetched (else from the offline cache).

    The process cache is keyed by ``url``, ``limits``, ``cache_dir`` and ``settings_key`` (what else decides how the
    documents are fetched: the address policy, for instance); concurrent first calls share one load. When fetching
    fails for a transient reason (the agency unreachable, a timeout, a 5xx) and ``cache_dir`` holds the description,
    that copy is used.
    """
    limits = limits or WsdlLimits()
    key: _CacheKey = (url, limits, str(cache_dir) if cache_dir is not None else None, settings_key)
    loop = asyncio.get_running_loop()
    with _loaded_lock:
        hit = _loaded.get(key)
        if hit is not None:
            _loaded.move_to_end(key)
            _stats["hits"] += 1
            return hit
        pending = _inflight.get(key)
        owner = pending is None or pending[0] is not loop
        if owner:
            future: asyncio.Future[LoadedWsdl] = loop.create_future()
            _inflight[key] = (loop, future)
        else:
            assert pending is not None
            future = pending[1]
    if not owner:
        return await asyncio.shield(future)
    try:
        loaded = await _load_uncached(url, http, upstream=upstream, limits=limits, cache_dir=cache_dir)
    except BaseException as exc:
        with _loaded_lock:
            if _inflight.get(key, (None, None))[1] is future:
                del _inflight[key]
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        elif not future.done():
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
        raise
    with _loaded_lock:
        _loaded[key] = loaded
        while len(_loaded) > _MAX_LOADED:
            _loaded.popitem(last=False)
        if _inflight.get(key, (None, None))[1] is future:
            del _inflight[key]
    future.set_result(loaded)
    return loaded


async def _load_uncached(
    url: str,
    http: httpx.AsyncClient,
    *,
    upstream: str,
    limits: WsdlLimits,
    cache_dir: str | os.PathLike[str] | None,
) -> LoadedWsdl:
    cache = WsdlCache(cache_dir) if cache_dir is not None else None
    try:
        fetched = await fetch_wsdl_documents(url, http, upstream=upstream, limits=limits)
    except TransientError as exc:
        cached = await asyncio.to_thread(cache.read, url, limits) if cache is not None else None
        if cached is None:
            raise
        logger.warning("Service description %s unreachable (%s): using the offline copy", _shown(url), exc.message)
        fetched = cached
        with _loaded_lock:
            _stats["offline"] += 1
    else:
        with _loaded_lock:
            _stats["fetched"] += 1
        if cache is not None:
            try:
                await asyncio.to_thread(cache.write, fetched)
            except OSError as exc:
                logger.warning("Cannot keep an offline copy of %s: %s", _shown(url), exc.strerror or exc)
    document = await asyncio.to_thread(build_document, fetched)
    return LoadedWsdl(
        url=url,
        document=document,
        documents=tuple(fetched.documents),
        from_cache=fetched.from_cache,
        fetched_at=fetched.fetched_at,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Ports and schema walking (shared with adapters.onestop.wsdlcheck)
# ----------------------------------------------------------------------------------------------------------------------


def soap_version_of(binding: Any) -> str | None:
    """``"1.1"`` or ``"1.2"`` for a zeep SOAP binding, ``None`` for other bindings."""
    if isinstance(binding, Soap12Binding):
        return "1.2"
    if isinstance(binding, Soap11Binding):
        return "1.1"
    return None


def select_port(document: zeep.wsdl.Document, *, soap_version: str | None = None, port: str | None = None) -> Any:
    """The zeep port a client uses: ``port`` by name, else the first SOAP port (of ``soap_version``, if given)."""
    candidates = [
        candidate
        for service in document.services.values()
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
        yield indicator.name, indicator, required and (indicator.min_occurs or 0) >= 1
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


def _fit(value: Any, xsd_type: Any) -> Any:
    """``value`` reduced to what ``xsd_type`` declares (the agency's schema decides what is sent)."""
    if isinstance(value, Mapping):
        children = {name: element for name, element, _required in type_children(xsd_type)}
        if not children:
            return value
        fitted = {}
        for name, item in value.items():
            element = children.get(name)
            if element is None or item is None:
                continue
            fitted[name] = _fit(item, element.type)
        return fitted
    if isinstance(value, list):
        return [_fit(item, xsd_type) for item in value]
    return value


# ----------------------------------------------------------------------------------------------------------------------
# The dossier in the reference service's names
# ----------------------------------------------------------------------------------------------------------------------


def _aware(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise ValueError(f"{name} is not an ISO 8601 timestamp") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=AGENCY_TIME)
    offset = parsed.utcoffset()
    return parsed if offset is None else parsed.replace(tzinfo=timezone(offset))  # isodate's tzinfo → stdlib's


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _component(component: Mapping[str, Any]) -> dict[str, Any]:
    code = component.get("code")
    if not isinstance(code, str) or not code:
        raise ValueError("every component needs a code")
    item: dict[str, Any] = {
        "MaThanhPhan": code,
        "TenThanhPhan": _text(component.get("name")),
        "TenTep": _text(component.get("filename")),
        "LoaiNoiDung": _text(component.get("content_type")),
    }
    digest = component.get("sha256")
    if isinstance(digest, str) and re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        item["MaBam"] = digest.lower()
    content = component.get("content_base64")
    if content:
        try:
            item["NoiDung"] = base64.b64decode(str(content), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"component {code}: content_base64 is not base64") from exc
    elif component.get("fetch_url"):
        item["DuongDan"] = str(component["fetch_url"])
    else:
        raise ValueError(f"component {code} has neither content_base64 nor fetch_url")
    return {key: value for key, value in item.items() if value is not None}


def dossier_to_hoso(dossier: Mapping[str, Any]) -> dict[str, Any]:
    """A dossier (the reference REST contract's shape) as the reference ``HoSo`` element's content."""
    code = dossier.get("code")
    procedure = dossier.get("procedure_code")
    if not isinstance(code, str) or not code.strip():
        raise ValueError("the dossier code must be a non-empty string")
    if not isinstance(procedure, str) or not procedure:
        raise ValueError("the dossier has no procedure_code")
    applicant = dossier.get("applicant") or {}
    person = None
    if isinstance(applicant, Mapping) and applicant.get("full_name"):
        person = {
            "LoaiDoiTuong": _text(applicant.get("kind")),
            "HoTen": str(applicant["full_name"]),
            "SoGiayTo": _text(applicant.get("id_number")),
            "SoDienThoai": _text(applicant.get("phone")),
            "Email": _text(applicant.get("email")),
            "DiaChi": _text(applicant.get("address")),
        }
        person = {key: value for key, value in person.items() if value is not None}
    fees = []
    for fee in dossier.get("fees") or ():
        amount = fee.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0 or amount != int(amount):
            raise ValueError(f"fee {fee.get('code')}: amount must be a non-negative whole number of VND")
        entry = {"MaPhi": str(fee.get("code") or ""), "TenPhi": _text(fee.get("name")), "SoTien": int(amount)}
        if not entry["MaPhi"]:
            raise ValueError("every fee needs a code")
        fees.append({key: value for key, value in entry.items() if value is not None})
    # A fixed time (never "now"): a retry must send the very same request, or the agency sees a reused key.
    received = None
    for name in ("received_at", "submitted_at", "created_at"):
        received = _aware(dossier.get(name), name)
        if received is not None:
            break
    if received is None:
        raise ValueError("the dossier has no received_at (nor submitted_at) for NgayTiepNhan")
    hoso: dict[str, Any] = {
        "MaHoSo": code,
        "MaTTHC": procedure,
        "MaCoQuan": _text(dossier.get("agency_code")),
        "TrichYeu": _text(dossier.get("summary")),
        "KenhNop": _text(dossier.get("channel")),
        "NgayTiepNhan": received,
        "NgayHenTra": _aware(dossier.get("due_at"), "due_at"),
        "NguoiNop": person,
        "ThanhPhanHoSo": [_component(component) for component in dossier.get("components") or ()],
        "PhiLePhi": fees,
        "YeuCauDoiChieuBanGoc": bool(dossier.get("originals_check_required", False)),
        "HinhThucTraKetQua": _text(dossier.get("return_method")),
    }
    return {key: value for key, value in hoso.items() if value is not None and value != []}


def _checked_code(code: Any) -> str:
    if not isinstance(code, str) or not code.strip() or any(ord(c) < 32 for c in code):
        raise ValueError("the dossier code must be a non-empty string")
    return code


def _checked_key(key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > 255 or not key.isascii() or not key.isprintable():
        raise ValueError("the idempotency key must be 1-255 printable ASCII characters")
    return key


# ----------------------------------------------------------------------------------------------------------------------
# zeep plumbing: transport, answer checks, WS-Security
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class _CallState:
    """What one operation call learnt on its way (set by the transport and the plugin, read by the client)."""

    sent: bool = False
    status_code: int | None = None
    envelope: etree._Element | None = None


_CALL: contextvars.ContextVar[_CallState | None] = contextvars.ContextVar("dvc_soap_call", default=None)

_PROLOG = re.compile(rb"\A(?:\xef\xbb\xbf)?(?:\s+|<\?.*?\?>|<!--.*?-->)*", re.S)
_XML_MEDIA = ("text/xml", "application/xml", "application/soap+xml")


def _envelope_root(content: bytes) -> tuple[etree.QName | None, str | None]:
    """The root element's name, read from the start of ``content`` only; else ``(None, the parser's complaint)``."""
    parser = etree.XMLPullParser(
        events=("start",), resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        for offset in range(0, min(len(content), 256 * 1024), 16 * 1024):
            parser.feed(content[offset : offset + 16 * 1024])
            for _event, element in parser.read_events():
                return etree.QName(element), None
    except etree.XMLSyntaxError as exc:
        return None, str(exc.msg or "")
    return None, None


class GatewayAsyncTransport(AsyncTransport):
    """zeep's async transport over a gateway ``httpx.AsyncClient`` (from the factory), with the answer screened.

    ``AsyncTransport.__init__`` is deliberately not called: it would build its own ``httpx.Client`` (for WSDL
    loading) and ``httpx.AsyncClient`` outside the factory. Documents are served by :meth:`load` from what
    :func:`fetch_wsdl_documents` fetched; operations are posted through ``client`` and their answers read while
    streaming, up to ``max_answer_bytes``.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        upstream: str,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        documents: Mapping[str, bytes] | None = None,
    ) -> None:
        self.client = client
        self.wsdl_client = None
        self.cache = None
        self.load_timeout = None
        self.operation_timeout = None
        self.logger = logger
        self._close_session = False
        self.upstream = upstream
        self.max_answer_bytes = max_answer_bytes
        self._documents = dict(documents or {})

    def load(self, url: str) -> bytes:
        try:
            return self._documents[url]
        except KeyError:
            raise zeep.exceptions.TransportError(f"{url} was not fetched by the gateway") from None

    async def aclose(self) -> None:
        """The ``httpx.AsyncClient`` belongs to the caller: nothing to close here."""

    async def get(self, address: str, params: Any, headers: Any) -> Any:
        raise PermanentError("HTTP GET bindings are not supported", upstream=self.upstream)

    async def post(self, address: str, message: bytes, headers: Mapping[str, str]) -> httpx.Response:
        state = _CALL.get()
        if state is not None:
            state.sent = True
        request = self.client.build_request("POST", address, content=message, headers=dict(headers))
        with map_http_errors(self.upstream):
            response = await self.client.send(request, stream=True)
            try:
                declared = response.headers.get("Content-Length", "").strip()
                if declared.isdigit() and int(declared) > self.max_answer_bytes:
                    raise BadResponseError(
                        f"answer too large ({declared} bytes declared, the limit is {self.max_answer_bytes})",
                        upstream=self.upstream,
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if size > self.max_answer_bytes:
                        raise BadResponseError(
                            f"answer larger than the limit of {self.max_answer_bytes} bytes: abandoned",
                            upstream=self.upstream,
                        )
                    chunks.append(chunk)
            finally:
                await response.aclose()
        if state is not None:
            state.status_code = response.status_code
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            content=b"".join(chunks),
            request=request,
        )

    async def post_xml(self, address: str, envelope: etree._Element, headers: Mapping[str, str]) -> Any:
        message = etree_to_string(envelope)
        expected = etree.QName(envelope).namespace or ""
        response = await self.post(address, message, headers)
        self._screen(response, _ENVELOPE_VERSIONS.get(expected, "1.1"))
        return self.new_response(response)

    def _screen(self, response: httpx.Response, version: str) -> None:
        """Refuse, before zeep parses it, an answer that is not a SOAP envelope of the version we spoke."""
        status = response.status_code
        media = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        content = response.content
        if status in (401, 403):
            raise error_for_response(response, self.upstream) or AuthError("credentials refused")
        if not content.strip():
            if 200 <= status < 300:
                if status == 200:
                    raise BadResponseError("empty answer where a SOAP envelope was expected", upstream=self.upstream)
                return  # 202/204 and the like: accepted without an answer
            raise error_for_response(response, self.upstream) or BadResponseError("empty answer")
        if media == "multipart/related":
            return  # MTOM/XOP: zeep decodes the parts
        xml_media = media in _XML_MEDIA or media.endswith("+xml")
        if not xml_media or _HTML_START.match(content[:4096]):
            if status >= 300:
                raise error_for_response(response, self.upstream) or BadResponseError("unexpected answer")
            shown = "an HTML page" if media == "text/html" or _HTML_START.match(content[:4096]) else media
            raise BadResponseError(
                f"expected a SOAP envelope, got {_short(shown or 'no content type', 60)}",
                upstream=self.upstream,
                status_code=status,
            )
        prolog = _PROLOG.match(content[:65536])
        rest = content[prolog.end() if prolog else 0 :]
        dtd = "the answer carries a DTD or entities (refused: entity expansion)"
        if rest[:9].upper() == b"<!DOCTYPE" or b"<!ENTITY" in content[:65536]:
            raise BadResponseError(dtd, upstream=self.upstream, status_code=status)
        root, complaint = _envelope_root(content)  # libxml2 refuses entity amplification in other encodings too
        if root is None:
            lowered = (complaint or "").lower()
            if "entit" in lowered or "amplification" in lowered:
                raise BadResponseError(dtd, upstream=self.upstream, status_code=status)
            raise BadResponseError("the answer is not well-formed XML", upstream=self.upstream, status_code=status)
        answered = _ENVELOPE_VERSIONS.get(root.namespace or "")
        if answered is None or root.localname != "Envelope":
            if status >= 300 and status not in (400, 500):
                raise error_for_response(response, self.upstream) or BadResponseError("unexpected answer")
            raise BadResponseError(
                f"the answer is not a SOAP envelope (root element {root.localname} in namespace "
                f"{_short(root.namespace or 'none', 60)})",
                upstream=self.upstream,
                status_code=status,
            )
        if answered != version:
            raise BadResponseError(
                f"a SOAP {answered} envelope answered a SOAP {version} request",
                upstream=self.upstream,
                status_code=status,
            )
        if status >= 300 and status not in (400, 500):
            raise error_for_response(response, self.upstream) or BadResponseError("unexpected answer")


def _expected_answer(operation: Any) -> etree.QName | None:
    """The element an operation's answer must carry in its Body (``None``: no single expected element)."""
    message = getattr(operation, "output", None)
    body = getattr(message, "body", None)
    if body is None or getattr(message, "_is_body_wrapped", False):
        return None
    qname = getattr(body, "qname", None)
    return etree.QName(qname) if qname is not None else None


class _AnswerCheck(Plugin):
    """Checks the parsed answer's payload element and keeps the envelope for the client (one call at a time)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream

    def ingress(self, envelope: etree._Element, http_headers: Any, operation: Any) -> tuple[Any, Any]:
        state = _CALL.get()
        if state is not None:
            state.envelope = envelope
        namespace = etree.QName(envelope).namespace
        body = envelope.find(f"{{{namespace}}}Body")
        if body is None:
            raise BadResponseError("the SOAP answer has no Body", upstream=self.upstream)
        children = [child for child in body if isinstance(child.tag, str)]
        if not children or etree.QName(children[0]).localname == "Fault":
            return envelope, http_headers
        expected = _expected_answer(operation)
        found = etree.QName(children[0])
        if expected is not None and (found.namespace, found.localname) != (expected.namespace, expected.localname):
            if found.localname == expected.localname:
                raise BadResponseError(
                    f"the answer's {found.localname} is in namespace {_short(found.namespace or 'none', 60)}, "
                    f"expected {_short(expected.namespace or 'none', 60)}",
                    upstream=self.upstream,
                )
            raise BadResponseError(
                f"unexpected answer element {found.localname} (expected {expected.localname})", upstream=self.upstream
            )
        return envelope, http_headers


class LazyUsernameToken(UsernameToken):
    """WS-Security UsernameToken whose password is obtained when each message is signed, and dropped after."""

    def __init__(self, username: str, password: Callable[[], str], *, use_digest: bool = False) -> None:
        super().__init__(username, password=None, use_digest=use_digest)
        self._secret = password

    def apply(self, envelope: etree._Element, headers: Any) -> tuple[Any, Any]:
        self.password = self._secret()
        try:
            return super().apply(envelope, headers)
        finally:
            self.password = None

    def __repr__(self) -> str:
        return f"LazyUsernameToken(username={self.username!r}, password=***, digest={self.use_digest})"


# ----------------------------------------------------------------------------------------------------------------------
# The client
# ----------------------------------------------------------------------------------------------------------------------

_SECURITY_FAULTS = frozenset(
    {"FailedAuthentication", "InvalidSecurity", "InvalidSecurityToken", "FailedCheck", "SecurityTokenUnavailable"}
)


def _local(code: Any) -> str:
    if code is None:
        return ""
    text = code.localname if isinstance(code, etree.QName) else str(code)
    return text.rsplit("}", 1)[-1].rsplit(":", 1)[-1].strip()


class SoapOneStopClient:
    """An agency one-stop system speaking the reference SOAP service (or a mapped variant of it).

    ``http`` comes from :meth:`adapters.http.ClientFactory.client` (the agency's settings and auth); it fetches the
    service description and carries every operation, and is not closed by this object unless it was made by
    :meth:`from_document`. The description is loaded at the first call (or by :meth:`load`), once per process for
    each WSDL URL.

    :param wsdl: the WSDL's URL.
    :param endpoint: the service address, overriding the WSDL's ``soap:address``.
    :param mapping: a registration document's ``mapping`` (:class:`SoapMapping`).
    :param wsse: a WS-Security token (:class:`LazyUsernameToken`) added to every message.
    :param cache_dir: where fetched descriptions are kept for offline restarts (none: not kept).
    :param max_answer_bytes: answers larger than this are abandoned while streaming.
    :param address_policy: the policy ``http`` enforces (part of the description cache's key).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        agency_code: str,
        wsdl: str,
        endpoint: str | None = None,
        mapping: Mapping[str, Any] | None = None,
        upstream: str | None = None,
        wsse: UsernameToken | None = None,
        limits: WsdlLimits | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        address_policy: AddressPolicy | None = None,
    ) -> None:
        for name, url in (("wsdl", wsdl), ("endpoint", endpoint)):
            if url is not None and urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
                raise ValueError(f"{name} must be an absolute http:// or https:// URL")
        self._http = http
        self.agency_code = agency_code
        self.wsdl = wsdl
        self.endpoint = endpoint
        self.mapping = SoapMapping.parse(mapping)
        self.upstream = upstream or f"agency:{agency_code}"
        self.limits = limits or WsdlLimits()
        self.cache_dir = cache_dir
        self.address_policy = address_policy
        self._transport = GatewayAsyncTransport(http, upstream=self.upstream, max_answer_bytes=max_answer_bytes)
        self._wsse = wsse
        self._owns_client = False
        self._proxy: AsyncServiceProxy | None = None
        self._binding: Any = None
        self.address: str | None = None
        self.soap_version: str | None = None
        self.port_name: str | None = None

    @classmethod
    def from_document(
        cls,
        document: Mapping[str, Any],
        *,
        resolve_secret: Callable[[str], str],
        factory: ClientFactory | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        limits: WsdlLimits | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        **settings: Any,
    ) -> SoapOneStopClient:
        """A client (owning its ``httpx.AsyncClient``) for an agency registration document with protocol ``soap``.

        ``auth`` may also be ``{"type": "wsse", "username": …, "password": "env:…", "digest": false}``: a
        WS-Security UsernameToken in every message (PasswordText, or PasswordDigest with ``digest``), the password
        resolved when each message is built. ``settings`` are further :class:`~adapters.http.ClientSettings` fields.
        """
        if document.get("protocol") != "soap":
            raise ValueError("the registration document's protocol is not 'soap'")
        code = _checked_code(document.get("code"))
        wsdl = document.get("wsdl")
        if not isinstance(wsdl, str) or not wsdl:
            raise ValueError("wsdl is required for protocol soap")
        mapping = document.get("mapping")
        SoapMapping.parse(mapping)  # validated before a client exists: nothing to close on error
        auth = document.get("auth") or {"type": "none"}
        wsse: UsernameToken | None = None
        http_document = dict(document)
        if auth.get("type") == "wsse":
            username, reference = auth.get("username"), auth.get("password")
            if not isinstance(username, str) or not username or not isinstance(reference, str) or not reference:
                raise ValueError("auth.username and auth.password are required for auth type 'wsse'")
            resolve_secret(reference)  # a missing variable or file is reported now, the value dropped

            def password() -> str:
                return resolve_secret(reference)

            wsse = LazyUsernameToken(username, password, use_digest=bool(auth.get("digest", False)))
            http_document["auth"] = {"type": "none"}
        client_settings, http_auth = _settings_from_document(http_document, resolve_secret, **settings)
        upstream = f"agency:{code}"
        http = (factory or default_factory).client(upstream, client_settings, auth=http_auth)
        instance = cls(
            http,
            agency_code=code,
            wsdl=wsdl,
            endpoint=document.get("endpoint") or None,
            mapping=mapping,
            upstream=upstream,
            wsse=wsse,
            limits=limits,
            cache_dir=cache_dir,
            max_answer_bytes=max_answer_bytes,
            address_policy=client_settings.address_policy,
        )
        instance._owns_client = True
        return instance

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    async def __aenter__(self) -> SoapOneStopClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- binding -------------------------------------------------------------------------------------------------------

    async def load(self) -> AsyncServiceProxy:
        """Load the service description (once per process) and bind the async service proxy (once per client)."""
        if self._proxy is not None:
            return self._proxy
        loaded = await load_wsdl(
            self.wsdl,
            self._http,
            upstream=self.upstream,
            limits=self.limits,
            cache_dir=self.cache_dir,
            settings_key=self.address_policy,
        )
        port = select_port(loaded.document, soap_version=self.mapping.soap_version, port=self.mapping.port)
        address = self.endpoint or (port.binding_options or {}).get("address")
        if not isinstance(address, str) or urllib.parse.urlsplit(address).scheme.lower() not in ("http", "https"):
            raise WsdlError(f"port {port.name} has no http(s) address: register an endpoint", upstream=self.upstream)
        client = zeep.AsyncClient(
            wsdl=loaded.document,
            wsse=self._wsse,
            transport=self._transport,
            plugins=[_AnswerCheck(self.upstream)],
            settings=ZEEP_SETTINGS,
        )
        # Not client.create_service(): inherited from the sync client, it returns a sync ServiceProxy.
        self._proxy = AsyncServiceProxy(client, port.binding, address=address)
        self._binding = port.binding
        self.address = address
        self.soap_version = soap_version_of(port.binding)
        self.port_name = port.name
        return self._proxy

    async def _call(self, operation: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Call ``operation`` with ``values`` (reference names); the answer's payload in reference names."""
        proxy = await self.load()
        name = self.mapping.operation(operation)
        zeep_operation = self._binding._operations.get(name)
        if zeep_operation is None:
            raise WsdlError(f"the service has no operation {name} ({operation})", upstream=self.upstream)
        parameters = _fit(self.mapping.outbound(dict(values)), message_type(zeep_operation.input))
        state = _CallState()
        token = _CALL.set(state)
        try:
            with map_http_errors(self.upstream):
                await proxy[name](**parameters)
        except UpstreamError:
            raise
        except zeep.exceptions.Fault as fault:
            raise self._fault_error(fault, name, state) from None
        except (zeep.exceptions.DTDForbidden, zeep.exceptions.EntitiesForbidden) as exc:
            raise BadResponseError("the answer carries a DTD or entities (refused)", upstream=self.upstream) from exc
        except zeep.exceptions.TransportError as exc:
            status = exc.status_code or state.status_code
            if status and status >= 500 and not exc.content:
                raise TransientError(
                    "server error without content", upstream=self.upstream, status_code=status
                ) from exc
            raise BadResponseError(
                "the answer is not well-formed XML (truncated or damaged)", upstream=self.upstream, status_code=status
            ) from exc
        except (zeep.exceptions.Error, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            reason = _short(str(exc) or type(exc).__name__, 160)
            if not state.sent:
                raise PermanentError(f"cannot build the {name} request: {reason}", upstream=self.upstream) from exc
            raise BadResponseError(
                f"the {name} answer does not match the service description: {reason}",
                upstream=self.upstream,
                status_code=state.status_code,
            ) from exc
        finally:
            _CALL.reset(token)
        return self.mapping.inbound(self._payload(zeep_operation, state))

    def _payload(self, operation: Any, state: _CallState) -> dict[str, Any]:
        """The answer's payload as a dict (their names), parsed by zeep's own types without zeep's unwrapping."""
        envelope = state.envelope
        if envelope is None:  # accepted without an answer (202)
            return {}
        namespace = etree.QName(envelope).namespace
        body = envelope.find(f"{{{namespace}}}Body")
        children = [child for child in body if isinstance(child.tag, str)] if body is not None else []
        message = operation.output
        if not children or message is None or message.body is None:
            return {}
        context = XmlParserContext(settings=ZEEP_SETTINGS)
        try:
            if isinstance(message, DocumentMessage) and message._is_body_wrapped:
                value = message.body.parse(body, message.wsdl.types, context=context)
            else:
                value = message.body.parse(children[0], message.wsdl.types, context=context)
        except (zeep.exceptions.Error, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise BadResponseError(
                f"the {operation.name} answer does not match the service description: {_short(str(exc), 160)}",
                upstream=self.upstream,
            ) from exc
        data = serialize_object(value, dict)
        return data if isinstance(data, dict) else {}

    def _fault_error(self, fault: zeep.exceptions.Fault, operation: str, state: _CallState) -> UpstreamError:
        codes = [_local(fault.code), *(_local(code) for code in fault.subcodes or ())]
        detail = fault.detail if isinstance(fault.detail, etree._Element) else None
        business_code = business_message = None
        if detail is not None:
            wanted = self.mapping.name("LoiNghiepVu")
            for element in detail.iter(etree.Element):
                if etree.QName(element).localname == wanted:
                    values = {etree.QName(child).localname: (child.text or "").strip() for child in element}
                    business_code = values.get(self.mapping.name("MaLoi")) or None
                    business_message = values.get(self.mapping.name("MoTa")) or None
                    break
        text = _short(fault.message or "", 160)
        status = state.status_code
        if business_code:
            described = f": {_short(business_message, 160)}" if business_message else ""
            return SoapFaultError(
                f"{operation} refused ({business_code}){described}",
                upstream=self.upstream,
                status_code=status,
                fault_code=codes[0] or None,
                business_code=business_code,
                business_message=business_message,
            )
        shown = f": {text}" if text else ""
        if any(code in _SECURITY_FAULTS for code in codes):
            return AuthError(f"WS-Security credentials refused{shown}", upstream=self.upstream, status_code=status)
        if "VersionMismatch" in codes:
            return BadResponseError(
                "the agency refused the SOAP version (VersionMismatch)", upstream=self.upstream, status_code=status
            )
        if codes[0] in ("Server", "Receiver") or (not codes[0] and (status or 500) >= 500):
            return TransientError(
                f"SOAP fault {codes[0] or 'without code'}{shown}", upstream=self.upstream, status_code=status
            )
        return PermanentError(
            f"SOAP fault {codes[0] or 'without code'}{shown}", upstream=self.upstream, status_code=status
        )

    # -- operations ----------------------------------------------------------------------------------------------------

    async def deliver(self, dossier: Mapping[str, Any], idempotency_key: str) -> DeliveryReceipt:
        """``TiepNhanHoSo``; a ``DA_TON_TAI`` rejection means the agency already has the dossier (delivered)."""
        hoso = dossier_to_hoso(dossier)
        code = hoso["MaHoSo"]
        try:
            answer = await self._call("deliver", {"KhoaYeuCau": _checked_key(idempotency_key), "HoSo": hoso})
        except SoapFaultError as exc:
            if exc.business_code != FAULT_ALREADY_EXISTS:
                raise
            logger.info("Dossier %s already at %s", code, self.upstream)
            return DeliveryReceipt(dossier_code=code, duplicate=True, status_code=exc.status_code)
        answered = answer.get("MaHoSo")
        if answered not in (None, "") and str(answered) != code:
            raise BadResponseError("the delivery answer is about another dossier", upstream=self.upstream)
        logger.info("Dossier %s delivered to %s (SOAP %s)", code, self.upstream, self.soap_version)
        reference = answer.get("MaThamChieu")
        return DeliveryReceipt(
            dossier_code=code,
            duplicate=bool(answer.get("LapLai")),
            agency_reference=str(reference) if reference not in (None, "") else None,
            status=self.mapping.status(answer.get("TrangThai")),
            received_at=self._time(answer.get("ThoiDiemTiepNhan")),
            status_code=200,
            body=answer,
        )

    async def get_status(self, code: str) -> AgencyStatus:
        """``LayTrangThaiHoSo`` with ``MaHoSo``."""
        code = _checked_code(code)
        answer = await self._call("status", {"MaHoSo": code})
        entries = [self._status(entry) for entry in _as_list(answer.get("TrangThaiHoSo"))]
        if not entries:
            raise BadResponseError("the status answer has no status", upstream=self.upstream)
        for entry in entries:
            if entry.dossier_code == code:
                return entry
        raise BadResponseError("the status answer is about another dossier", upstream=self.upstream)

    async def changes_since(self, since: datetime) -> list[AgencyStatus]:
        """``LayTrangThaiHoSo`` with ``TuThoiDiem``: every dossier whose status changed since ``since`` (polling)."""
        answer = await self._call("status", {"TuThoiDiem": _aware(since, "since")})
        return [self._status(entry) for entry in _as_list(answer.get("TrangThaiHoSo"))]

    async def supplement(
        self, code: str, components: Sequence[Mapping[str, Any]], idempotency_key: str
    ) -> Acknowledgement:
        """``BoSungHoSo``."""
        code = _checked_code(code)
        if not components:
            raise ValueError("a supplement needs at least one component")
        values = {
            "KhoaYeuCau": _checked_key(idempotency_key),
            "MaHoSo": code,
            "ThanhPhanHoSo": [_component(component) for component in components],
        }
        return self._acknowledgement(code, await self._call("supplement", values))

    async def withdraw(self, code: str, reason: str, idempotency_key: str) -> Acknowledgement:
        """``RutHoSo``."""
        code = _checked_code(code)
        values = {"KhoaYeuCau": _checked_key(idempotency_key), "MaHoSo": code, "LyDo": _text(reason)}
        return self._acknowledgement(code, await self._call("withdraw", values))

    # -- answers -------------------------------------------------------------------------------------------------------

    def _acknowledgement(self, code: str, answer: dict[str, Any]) -> Acknowledgement:
        answered = answer.get("MaHoSo")
        if answered not in (None, "") and str(answered) != code:
            raise BadResponseError("the answer is about another dossier", upstream=self.upstream)
        if answer.get("ChapNhan") is False:
            raise PermanentError("the agency did not accept the request", upstream=self.upstream)
        return Acknowledgement(
            dossier_code=code,
            duplicate=bool(answer.get("LapLai")),
            status=self.mapping.status(answer.get("TrangThai")),
            status_code=200,
            body=answer,
        )

    def _status(self, entry: Any) -> AgencyStatus:
        if not isinstance(entry, Mapping):
            raise BadResponseError("the status answer has an unreadable entry", upstream=self.upstream)
        code, status = entry.get("MaHoSo"), self.mapping.status(entry.get("TrangThai"))
        if not code or not status:
            raise BadResponseError("a status entry has no MaHoSo or TrangThai", upstream=self.upstream)
        result = entry.get("KetQua")
        if isinstance(result, Mapping):
            signed = self._time(result.get("NgayKy"))
            result = {
                key: value
                for key, value in {
                    "number": result.get("SoKetQua"),
                    "signed_at": signed.isoformat() if signed else None,
                    "url": result.get("DuongDan"),
                    "note": result.get("GhiChu"),
                }.items()
                if value is not None
            }
        return AgencyStatus(
            dossier_code=str(code),
            status=status,
            at=self._time(entry.get("ThoiDiem")),
            note=_text(entry.get("GhiChu")),
            reason=_text(entry.get("LyDo")),
            due_at=self._time(entry.get("NgayHenTra")),
            transfer_to=_text(entry.get("ChuyenDen")),
            result=result,
            body=dict(entry),
        )

    def _time(self, value: Any) -> datetime | None:
        try:
            return _aware(value, "timestamp")
        except ValueError as exc:
            raise BadResponseError("a timestamp in the answer is not ISO 8601", upstream=self.upstream) from exc


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
