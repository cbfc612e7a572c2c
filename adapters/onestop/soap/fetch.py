"""Fetching a service description: the WSDL and every document it imports or includes, and their copy on disk.

:func:`fetch_wsdl_documents` walks every ``wsdl:import``, ``xsd:import``, ``xsd:include`` and ``xsd:redefine`` with
the agency's own client from the :class:`~adapters.http.ClientFactory` (address policy, TLS, timeouts, the size cap
of :func:`~adapters.http.response_limit` per document), parsing each with a hardened parser; :class:`WsdlCache` keeps
what was fetched on disk so that a restart with the agency unreachable still loads the description.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from lxml import etree

from adapters.errors import AuthError, TransientError
from adapters.http import ResponseTooLargeError, error_for_response, map_http_errors, response_limit
from adapters.onestop import wsdl as _shipped
from adapters.onestop.soap.errors import WsdlError, one_line
from adapters.onestop.soap.repairs import bind_known_prefixes

__all__ = ["FetchedWsdl", "WsdlCache", "WsdlLimits", "fetch_wsdl_documents"]

logger = logging.getLogger(__name__)

_WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
_WSDL20_NS = "http://www.w3.org/ns/wsdl"
_XSD_NAMESPACES = (
    "http://www.w3.org/2001/XMLSchema",
    "http://www.w3.org/2000/10/XMLSchema",
    "http://www.w3.org/1999/XMLSchema",
)
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_ACCEPT = "application/wsdl+xml, application/xml, text/xml;q=0.9, */*;q=0.1"

#: An HTML page (a login page, a proxy's error page) where XML was expected.
HTML_START = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)", re.I | re.S)


#: Defaults of :class:`WsdlLimits` (also those of the ``[registry] wsdl_*`` settings).
DEFAULT_MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_TOTAL_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_DOCUMENTS = 32
DEFAULT_LOAD_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class WsdlLimits:
    """Bounds on loading one service description (the WSDL and everything it imports or includes): the size of
    each document, their total size and number, and the time to fetch and parse them all."""

    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    max_documents: int = DEFAULT_MAX_DOCUMENTS
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    load_timeout_seconds: float = DEFAULT_LOAD_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if min(self.max_document_bytes, self.max_documents, self.max_total_bytes, self.load_timeout_seconds) <= 0:
            raise ValueError("WSDL limits must be positive")


@dataclass(frozen=True)
class FetchedWsdl:
    """The documents of one service description, as fetched (originals, not rewritten); the root first."""

    url: str
    documents: Mapping[str, bytes] = field(repr=False)
    from_cache: bool = False
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))


#: A long URL in a message keeps this many characters of its start and of its end (the document's name).
_SHOWN_HEAD, _SHOWN_TAIL = 40, 100


def shown(url: str) -> str:
    """A URL as shown in messages (no query credentials expected): one line, a long one cut in its middle so that
    both its host and the document's name remain."""
    flat = " ".join(url.split())
    if len(flat) <= _SHOWN_HEAD + _SHOWN_TAIL + 1:
        return flat
    return f"{flat[:_SHOWN_HEAD]}…{flat[-_SHOWN_TAIL:]}"


def digest(data: bytes | str) -> str:
    """The SHA-256 of ``data`` (text as UTF-8), in hexadecimal."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


#: libxml2's nesting limit without ``huge_tree`` (which stays off).
_MAX_DEPTH = 256


def _hardened_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True
    )


_DTD_REFUSED = "carries a DTD (refused: no DTDs or entities in service descriptions)"


def _xml_error(url: str, exc: etree.XMLSyntaxError) -> WsdlError:
    message = exc.msg or "syntax error"
    if "amplification" in message or "entit" in message.lower():  # an entity bomb, stopped by libxml2 itself
        return WsdlError(f"{shown(url)} {_DTD_REFUSED}")
    if "Excessive depth" in message:
        return WsdlError(f"{shown(url)} is nested more than {_MAX_DEPTH} elements deep (the limit)")
    return WsdlError(f"{shown(url)} is not well-formed XML ({one_line(message, 80)})")


def parse_document(content: bytes, url: str, *, lenient: bool = False) -> etree._Element:
    """A fetched document's root (hardened parse); :class:`WsdlError` naming the document otherwise.

    ``lenient``: a well-known prefix used without its declaration (``xs:``, ``soap:``…) is bound to its usual
    namespace instead of refusing the document.
    """
    if HTML_START.match(content[:4096]):
        raise WsdlError(f"{shown(url)} is an HTML page, not XML")
    try:
        root = etree.fromstring(content, parser=_hardened_parser(), base_url=url)
    except etree.XMLSyntaxError as exc:
        repaired = bind_known_prefixes(content)[0] if lenient else content
        if repaired is content:
            raise _xml_error(url, exc) from exc
        try:
            root = etree.fromstring(repaired, parser=_hardened_parser(), base_url=url)
        except etree.XMLSyntaxError as again:
            raise _xml_error(url, again) from again
    except ValueError as exc:  # an encoding declaration lxml refuses, NUL bytes
        raise WsdlError(f"{shown(url)} is not XML the gateway can read ({one_line(str(exc), 80)})") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise WsdlError(f"{shown(url)} {_DTD_REFUSED}")
    qname = etree.QName(root)
    if qname.namespace == _WSDL20_NS:
        raise WsdlError(f"{shown(url)} is a WSDL 2.0 description (only WSDL 1.1 is supported)")
    if not (
        (qname.namespace == _WSDL_NS and qname.localname == "definitions")
        or (qname.namespace in _XSD_NAMESPACES and qname.localname == "schema")
    ):
        raise WsdlError(f"{shown(url)} is not a WSDL or XML Schema document (root element {qname.localname})")
    return root


@dataclass(frozen=True)
class Reference:
    """One import or include: the element and attribute naming the document, and its location."""

    element: etree._Element
    attribute: str
    location: str | None  # None: an import of a well-known schema, served from the package (never fetched)
    namespace: str | None = None


def references(root: etree._Element) -> Iterator[Reference]:
    """The imports and includes of a WSDL or XSD document (in WSDL types too).

    An ``xsd:import`` of a well-known namespace (:data:`adapters.onestop.wsdl.WELL_KNOWN`: SOAP encoding and
    envelope, the XML namespace, WSDL…) has no location, whatever its ``schemaLocation`` says: the shipped copy is used;
    nor has an import of XML Schema's own namespace, which every schema reader knows.
    """
    for element in root.iter(etree.Element):
        qname = etree.QName(element)
        if qname.namespace == _WSDL_NS and qname.localname == "import":
            location = element.get("location")
            if location:
                yield Reference(element, "location", location.strip(), element.get("namespace"))
        elif qname.namespace in _XSD_NAMESPACES and qname.localname in ("import", "include", "redefine"):
            location = element.get("schemaLocation")
            namespace = element.get("namespace")
            if qname.localname == "import" and (namespace in _shipped.WELL_KNOWN or namespace in _XSD_NAMESPACES):
                yield Reference(element, "schemaLocation", None, namespace)
            elif location:
                yield Reference(element, "schemaLocation", location.strip(), namespace)


def absolute(location: str, base: str) -> str:
    """``location`` resolved against ``base``, without a fragment; only http(s) URLs are accepted."""
    url, _fragment = urllib.parse.urldefrag(urllib.parse.urljoin(base, location))
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise WsdlError(f"{shown(base)} refers to {shown(location)}: only http(s) references are followed")
    return url


def _status_error(response: httpx.Response, url: str, via: str, upstream: str) -> Exception:
    """The error of a document answered with another status than 200: transient, credentials refused, or unusable."""
    status = response.status_code
    error = error_for_response(response, upstream)
    text = f"HTTP {status} fetching {shown(url)}{via}"
    if isinstance(error, TransientError):
        return TransientError(text, upstream=upstream, status_code=status)
    if isinstance(error, AuthError):
        return AuthError(text, upstream=upstream, status_code=status)
    return WsdlError(text, upstream=upstream, status_code=status)


async def _get_document(
    http: httpx.AsyncClient, url: str, *, upstream: str, limits: WsdlLimits, referrer: str | None
) -> bytes:
    via = f" (imported by {shown(referrer)})" if referrer else ""
    headers = {"Accept": _ACCEPT}
    try:
        with map_http_errors(upstream):
            async with http.stream(
                "GET", url, headers=headers, extensions=response_limit(limits.max_document_bytes)
            ) as response:
                if response.status_code != 200:
                    raise _status_error(response, url, via, upstream)
                content = await response.aread()
    except ResponseTooLargeError as exc:
        if exc.declared is not None:
            size = f"{exc.declared} bytes, the limit is {exc.limit}"
        else:
            size = f"over the limit of {exc.limit} bytes"
        raise WsdlError(f"{shown(url)}{via} is too large ({size})", upstream=upstream) from None
    if len(content) > limits.max_document_bytes:  # a client without the factory's size cap (local files)
        size = f"{len(content)} bytes, the limit is {limits.max_document_bytes}"
        raise WsdlError(f"{shown(url)}{via} is too large ({size})", upstream=upstream)
    return content


async def fetch_wsdl_documents(
    url: str, http: httpx.AsyncClient, *, upstream: str = "wsdl", limits: WsdlLimits | None = None
) -> FetchedWsdl:
    """Fetch the WSDL at ``url`` and, transitively, every document it imports or includes, through ``http``.

    ``http`` is a client from the :class:`~adapters.http.ClientFactory` (its address policy, TLS settings, timeouts,
    wrappers and size cap apply to every document; each document is also held to ``max_document_bytes``, at most
    ``max_documents`` in all). Raises :class:`WsdlError` (a permanent error) naming the document at fault,
    :class:`~adapters.errors.TransientError` for network failures and 5xx answers, :class:`~adapters.errors.AuthError`
    for 401/403 and :class:`~adapters.errors.PermanentError` for addresses the policy refuses.
    """
    limits = limits or WsdlLimits()
    url = absolute(url, url)
    documents: dict[str, bytes] = {}
    queue: list[tuple[str, str | None]] = [(url, None)]
    seen = {url}
    total = 0
    while queue:
        current, referrer = queue.pop(0)
        if len(documents) >= limits.max_documents:
            raise WsdlError(
                f"the service description has more than {limits.max_documents} documents",
                upstream=upstream,
            )
        content = await _get_document(http, current, upstream=upstream, limits=limits, referrer=referrer)
        total += len(content)
        if total > limits.max_total_bytes:
            raise WsdlError(
                f"the service description is too large: its documents up to {shown(current)} make {total} bytes, "
                f"the limit is {limits.max_total_bytes}",
                upstream=upstream,
            )
        root = parse_document(content, current, lenient=True)
        if not documents and etree.QName(root).localname != "definitions":
            raise WsdlError(f"{shown(current)} is an XML Schema, not a WSDL", upstream=upstream)
        documents[current] = content
        for reference in references(root):
            if reference.location is None:
                continue
            target = absolute(reference.location, current)
            if target not in seen:
                seen.add(target)
                queue.append((target, current))
    logger.info("Service description %s fetched (%d documents)", shown(url), len(documents))
    return FetchedWsdl(url=url, documents=documents)


class WsdlCache:
    """Fetched service descriptions kept on disk, so that a restart loads them without the network.

    One directory per WSDL URL (named by its SHA-256) holds ``manifest.json`` (the URL, when it was fetched, and
    each document's URL, file and SHA-256) and the documents as fetched. Writes are atomic (a new manifest replaces
    the old one); a document whose digest does not match is ignored with the whole entry.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _entry(self, url: str) -> Path:
        return self.directory / digest(url)[:32]

    def write(self, fetched: FetchedWsdl) -> None:
        """Keep ``fetched`` (replacing what was kept for its URL)."""
        entry = self._entry(fetched.url)
        entry.mkdir(parents=True, exist_ok=True)
        files = []
        for url, content in fetched.documents.items():
            name = digest(content) + ".xml"
            path = entry / name
            if not path.exists():
                temporary = entry / f".{name}.{os.getpid()}.tmp"
                temporary.write_bytes(content)
                os.replace(temporary, path)
            files.append({"url": url, "file": name, "sha256": digest(content)})
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
                if digest(content) != item["sha256"]:
                    logger.warning("Cached service description of %s is damaged: ignored", shown(url))
                    return None
                documents[str(item["url"])] = content
            fetched_at = datetime.fromisoformat(manifest["fetched_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if next(iter(documents)) != url:
            return None
        return FetchedWsdl(url=url, documents=documents, from_cache=True, fetched_at=fetched_at)
