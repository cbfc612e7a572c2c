"""Parsing a fetched service description with zeep, without any network access.

Every reference between the fetched documents is rewritten to an opaque ``file:///dvc-gateway-wsdl/…`` name that
only :class:`_DocumentSource` serves (from memory), and zeep runs with :data:`ZEEP_SETTINGS` (``forbid_external``,
no DTDs, no entities), so zeep never fetches anything itself. The well-known schemas (SOAP encoding…) are served
from the copies shipped in :mod:`adapters.onestop.wsdl`: zeep's automatic import of SOAP encoding happens before
its transport is asked (and ``forbid_external`` refuses it there), so each schema that has such a namespace in scope
gets an explicit import of the shipped copy instead. When the description does not load as it is, a second attempt
repairs its known defects (:mod:`.repairs`) and lists each repair as a warning. What zeep leaves out of a description
it loads (a message whose part names an undefined element, an operation its port type lacks) it says with Python
warnings; those become warnings of the description too, instead of lines on standard error, and so do the ports it
drops without a word (:mod:`.ports`).
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zeep
import zeep.exceptions
from lxml import etree

from adapters.onestop import wsdl as _shipped
from adapters.onestop.soap import repairs
from adapters.onestop.soap.errors import WsdlError, one_line
from adapters.onestop.soap.explain import explain, qname_of
from adapters.onestop.soap.fetch import FetchedWsdl, absolute, digest, parse_document, references, shown
from adapters.onestop.soap.ports import ports_left_out

__all__ = ["ZEEP_SETTINGS", "BuiltDocument", "build_description", "build_document", "reference_document"]

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
_XSD_NAMESPACES = ("http://www.w3.org/2001/XMLSchema",)
#: At most this many undefined types or elements are read as ``anyType`` before the description is refused.
_MAX_UNRESOLVED = 20
_REFERENCE_BASE = "https://reference.dvc-gateway.invalid/"


class _DocumentSource(zeep.Transport):
    """What zeep loads documents through while parsing a description: the fetched documents and the well-known
    schemas shipped with the gateway (also under their namespace, zeep's own automatic import), nothing else.

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
            raise zeep.exceptions.TransportError(url) from None


@dataclass(frozen=True)
class BuiltDocument:
    """A parsed description and its warnings: the repairs the lenient attempt made to load it, and what zeep left out
    of it (one line each)."""

    document: zeep.wsdl.Document
    warnings: tuple[str, ...] = ()


def _pseudo(url: str, index: int) -> str:
    tail = urllib.parse.quote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1] or "document", safe="")
    return f"{_PSEUDO_PREFIX}{index:03d}-{digest(url)[:16]}/{tail}"


def _well_known(namespace: str) -> str:
    return _PSEUDO_PREFIX + "shipped/" + _shipped.WELL_KNOWN[namespace]


def _import_well_known(root: etree._Element) -> None:
    """Import, in each schema, the well-known namespaces in its scope that it does not import.

    zeep imports SOAP encoding by itself when a schema uses it without importing it, but through a path that
    ``forbid_external`` closes before the transport is asked; an explicit import of the shipped copy avoids it. A
    well-known schema imports itself (by the same location it is served under) for the same reason.
    """
    for schema in root.iter(*(f"{{{ns}}}schema" for ns in _XSD_NAMESPACES)):
        imported = {
            child.get("namespace")
            for child in schema
            if isinstance(child.tag, str) and etree.QName(child).localname == "import"
        }
        for namespace in sorted(set(schema.nsmap.values()) & set(_shipped.WELL_KNOWN)):
            if namespace in imported:
                continue
            node = etree.Element(f"{{{etree.QName(schema).namespace}}}import")
            node.set("namespace", namespace)
            node.set("schemaLocation", _well_known(namespace))
            schema.insert(0, node)


class _Prepared:
    """The documents of one attempt, parsed, with every reference rewritten to the names zeep is served."""

    def __init__(self, fetched: FetchedWsdl, *, lenient: bool) -> None:
        self.names = {url: _pseudo(url, index) for index, url in enumerate(fetched.documents)}
        self.originals = {name: url for url, name in self.names.items()}
        self.root = self.names[fetched.url]
        self.warnings: list[str] = []
        self.trees: dict[str, etree._Element] = {}
        for url, content in fetched.documents.items():
            if lenient:
                content = self._repaired_bytes(url, content)
            self.trees[self.names[url]] = parse_document(content, url)
        if lenient:
            self._align_imports()
            for name in repairs.drop_empty_body_namespaces(self.trees.items()):
                self.warnings.append(f'{shown(self.originals[name])}: soap:body namespace="" read as no namespace')
        for name, tree in self.trees.items():
            self._rewrite(tree, self.originals[name])
            _import_well_known(tree)

    def _repaired_bytes(self, url: str, content: bytes) -> bytes:
        content, modernised = repairs.modern_xsd_namespace(content)
        if modernised:
            self.warnings.append(f"{shown(url)}: the 1999/2000 XML Schema namespace read as XML Schema 2001")
        content, bound = repairs.bind_known_prefixes(content)
        for prefix in bound:
            namespace = repairs.KNOWN_PREFIXES[prefix]
            self.warnings.append(f"{shown(url)}: prefix {prefix}: used without declaration, bound to {namespace}")
        return content

    def _align_imports(self) -> None:
        def target_namespace_of(location: str, name: str) -> str | None:
            try:
                target = absolute(location, self.originals[name])
            except WsdlError:
                return None
            tree = self.trees.get(self.names.get(target, ""))
            return tree.get("targetNamespace") if tree is not None else None

        changed = repairs.align_import_namespaces(self.trees.items(), target_namespace_of)
        for name, declared, actual in changed:
            self.warnings.append(
                f"{shown(self.originals[name])}: xsd:import of namespace {declared} takes {actual}, "
                "the imported schema's target namespace"
            )

    def _rewrite(self, tree: etree._Element, url: str) -> None:
        for reference in references(tree):
            if reference.location is None:
                if reference.namespace not in _shipped.WELL_KNOWN:  # XML Schema itself: built in, nothing to load
                    reference.element.attrib.pop(reference.attribute, None)
                else:
                    reference.element.set(reference.attribute, _well_known(str(reference.namespace)))
                continue
            target = absolute(reference.location, url)
            if target not in self.names:  # fetched elsewhere than this entry (a damaged cache entry)
                raise WsdlError(f"{shown(target)} (referenced by {shown(url)}) was not fetched")
            reference.element.set(reference.attribute, self.names[target])

    def served(self) -> dict[str, bytes]:
        """The documents by name, with the well-known schemas (by name and by namespace)."""
        served = {
            name: etree.tostring(tree, xml_declaration=True, encoding="utf-8") for name, tree in self.trees.items()
        }
        for namespace, file in _shipped.WELL_KNOWN.items():
            tree = etree.fromstring(_shipped.read(file))
            self._rewrite(tree, _well_known(namespace))
            _import_well_known(tree)
            content = etree.tostring(tree, xml_declaration=True, encoding="utf-8")
            served[_well_known(namespace)] = served[namespace] = content
        return served

    def shown(self, text: str) -> str:
        """``text`` with the internal names of the documents replaced by their URLs."""
        for name, url in self.originals.items():
            text = text.replace(name, url)
        return text.replace(_PSEUDO_PREFIX + "shipped/", "(well-known schema) ")


#: ``warnings.catch_warnings`` swaps the process's warning settings and puts them back on exit: two threads doing so
#: at once could put back each other's, so the parses that catch zeep's warnings take turns.
_catching = threading.Lock()


def _from_zeep(caught: warnings.WarningMessage) -> bool:
    return "/zeep/" in caught.filename.replace("\\", "/")


def _zeep(prepared: _Prepared) -> BuiltDocument:
    """The description parsed by zeep, with ``prepared``'s repairs and what zeep warned it left out as warnings.

    The warnings filters are the process's: a warning another thread raises meanwhile is caught here too, and
    passed on as it would have been; two threads parsing at once take turns (:data:`_catching`)."""
    source: Any = _DocumentSource(prepared.served())  # zeep's annotation asks for a transport class
    with _catching, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        document = zeep.wsdl.Document(prepared.root, source, settings=ZEEP_SETTINGS)
    left_out: list[str] = []
    for item in caught:
        if not _from_zeep(item):
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno, source=item.source)
            continue
        text = f"{one_line(prepared.shown(str(item.message)), 300)}; left out"
        if text not in left_out:
            left_out.append(text)
    left_out.extend(ports_left_out(prepared.trees.values(), document))
    return BuiltDocument(document, (*prepared.warnings, *left_out))


def _lenient(fetched: FetchedWsdl) -> BuiltDocument:
    """The second attempt: every known defect repaired, unresolved types read as ``anyType`` (one round each)."""
    prepared = _Prepared(fetched, lenient=True)
    unresolved: set[str] = set()
    for _round in range(_MAX_UNRESOLVED + 1):
        try:
            return _zeep(prepared)
        except WsdlError:
            raise
        except Exception as exc:
            qname = qname_of(exc)
            if qname is None or qname.text in unresolved or len(unresolved) >= _MAX_UNRESOLVED:
                raise _refusal(exc, prepared) from exc
            if not repairs.unresolved_as_any_type(prepared.trees.values(), qname):
                raise _refusal(exc, prepared) from exc
            unresolved.add(qname.text)
            prepared.warnings.append(f"{qname.localname} ({qname.namespace}) is not defined: read as anyType")
    raise AssertionError("unreachable")  # pragma: no cover


def _refusal(exc: BaseException, prepared: _Prepared) -> WsdlError:
    return WsdlError(f"the service description is invalid: {one_line(explain(exc, prepared.shown), 300)}")


def build_description(fetched: FetchedWsdl) -> BuiltDocument:
    """Parse a fetched description with zeep, without any network access: as it is, else (when that fails) with its
    known defects repaired (:mod:`.repairs`), each repair a warning, as is each part zeep left out. :class:`WsdlError`
    in one line otherwise."""
    try:
        return _zeep(_Prepared(fetched, lenient=False))
    except Exception as exc:  # noqa: BLE001 - zeep lets anything out (AssertionError, KeyError…)
        logger.info("Strict load of %s failed (%s): trying with repairs", shown(fetched.url), type(exc).__name__)
    return _lenient(fetched)  # refuses again what no repair can help (a DTD, a document that is not XML…)


def build_document(fetched: FetchedWsdl) -> zeep.wsdl.Document:
    """The zeep document of :func:`build_description` (its warnings dropped)."""
    return build_description(fetched).document


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
