"""Matching live requests to recorded exchanges.

A request's key is ``(method, normalised URL, selected headers, body fingerprint)``:

* the URL with its query parameters sorted and volatile ones dropped (``ignore_query_params``), and without scheme
  and host when the index ignores the host (``replay serve`` answers for any host);
* the body's fingerprint: JSON parsed, ``ignore_json_keys`` removed at any depth, dumped with sorted keys; XML (SOAP)
  parsed with the hardened parser, ``ignore_xml_elements`` (WS-Addressing ``MessageID``, WS-Security ``Timestamp``,
  ``Created``, ``Expires``, ``Nonce``, ``ds:Signature``..., and a UsernameToken's ``PasswordDigest``, computed from
  the nonce and the time) and ``ignore_xml_attributes`` removed, blank text dropped,
  then canonicalised (C14N 2.0); forms with sorted fields; anything else byte for byte;
* ``match_headers`` (none by default; ``SOAPAction`` is a typical choice).

:class:`ReplayIndex` keeps the recorded exchanges in a dict from key to the queue of exchanges recorded with it, so
a lookup is one hash probe whatever the cassette's size; repeated identical requests get the recorded answers in
recorded order, then the last one again. A miss raises :class:`NoMatch` naming the closest recorded request and the
first difference (the path of a JSON key, an XML element, a query parameter or a header).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import threading
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from adapters.errors import PermanentError
from adapters.xmlguard import hardened_parser

from .har import Exchange, Headers
from .redact import body_kind

__all__ = [
    "DEFAULT_IGNORE_JSON_KEYS",
    "DEFAULT_IGNORE_XML_ELEMENTS",
    "MatchSettings",
    "NoMatch",
    "ReplayIndex",
    "RequestKey",
    "first_difference",
]

#: WS-Addressing and WS-Security volatiles, and the times the gateway sends (another run sends other times).
DEFAULT_IGNORE_XML_ELEMENTS = (
    "MessageID",
    "RelatesTo",
    "Timestamp",
    "Created",
    "Expires",
    "Nonce",
    "Signature",
    "NgayTiepNhan",
    "NgayHenTra",
    "ThoiDiem",
)
DEFAULT_IGNORE_XML_ATTRIBUTES = ()
DEFAULT_IGNORE_JSON_KEYS = (
    "at",
    "submitted_at",
    "received_at",
    "acknowledge_by",
    "due_at",
    "NgayTiepNhan",
    "NgayHenTra",
    "vnp_RequestId",
    "vnp_CreateDate",
    "vnp_SecureHash",
)
DEFAULT_IGNORE_QUERY_PARAMS = ("_", "nocache", "vnp_CreateDate", "vnp_ExpireDate")

RequestKey = tuple[str, str, tuple[tuple[str, str], ...], str]


class NoMatch(PermanentError, LookupError):
    """No recorded exchange answers a request; the message names the closest one and the first difference.

    A :class:`~adapters.errors.PermanentError`: trying again cannot make a cassette answer, so the gateway's outbox
    parks the message as dead at once, with this message as its reason.
    """

    def __init__(self, message: str, *, closest: Exchange | None = None, difference: str | None = None) -> None:
        super().__init__(message, upstream="replay")
        self.closest = closest
        self.difference = difference


@dataclass(frozen=True)
class MatchSettings:
    ignore_json_keys: tuple[str, ...] = DEFAULT_IGNORE_JSON_KEYS
    ignore_xml_elements: tuple[str, ...] = DEFAULT_IGNORE_XML_ELEMENTS
    ignore_xml_attributes: tuple[str, ...] = DEFAULT_IGNORE_XML_ATTRIBUTES
    ignore_query_params: tuple[str, ...] = DEFAULT_IGNORE_QUERY_PARAMS
    match_headers: tuple[str, ...] = ()
    sort_query: bool = True
    ignore_host: bool = False

    def __post_init__(self) -> None:
        # Compared lower-case (JSON keys and parameters) or by XML local name, whatever the configured spelling.
        object.__setattr__(self, "_json", frozenset(k.lower() for k in self.ignore_json_keys))
        object.__setattr__(self, "_xml", frozenset(e.lower() for e in self.ignore_xml_elements))
        object.__setattr__(self, "_attrs", frozenset(a.lower() for a in self.ignore_xml_attributes))
        object.__setattr__(self, "_params", frozenset(p.lower() for p in self.ignore_query_params))


# ----------------------------------------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------------------------------------


def normalise_url(url: str, settings: MatchSettings) -> str:
    parts = urllib.parse.urlsplit(url)
    pairs = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in settings._params  # type: ignore[attr-defined]
    ]
    if settings.sort_query:
        pairs.sort()
    query = urllib.parse.urlencode(pairs)
    # Decoded segment by segment: "%2F" inside a segment stays a different path from a "/" (written "%2F" again,
    # and a literal "%" as "%25", so the form is unambiguous).
    path = "/".join(
        urllib.parse.unquote(segment).replace("%", "%25").replace("/", "%2F") for segment in parts.path.split("/")
    )
    path = path or "/"
    if settings.ignore_host:
        return f"{path}?{query}" if query else path
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    host = (parts.hostname or "").lower()
    base = f"{parts.scheme.lower()}://{host}:{port}{path}"
    return f"{base}?{query}" if query else base


def _strip_json(value: Any, ignored: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _strip_json(v, ignored) for k, v in value.items() if k.lower() not in ignored}
    if isinstance(value, list):
        return [_strip_json(v, ignored) for v in value]
    return value


def _strip_xml(root: etree._Element, settings: MatchSettings) -> etree._Element:
    ignored: frozenset[str] = settings._xml  # type: ignore[attr-defined]
    attributes: frozenset[str] = settings._attrs  # type: ignore[attr-defined]
    doomed = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            doomed.append(element)  # comments and processing instructions do not change a message's meaning
            continue
        local = etree.QName(element).localname.lower()
        if local in ignored or (local == "password" and element.get("Type", "").endswith("#PasswordDigest")):
            # A WS-Security PasswordDigest is computed from the nonce and the creation time: as volatile as they.
            doomed.append(element)
            continue
        for name in list(element.attrib):
            if etree.QName(name).localname.lower() in attributes:
                del element.attrib[name]
        if element.text is not None and not element.text.strip():
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    for element in doomed:
        parent = element.getparent()
        if parent is not None:
            _remove_keeping_tail(parent, element)
    return root


def _without_prefixes(root: etree._Element) -> etree._Element:
    """A copy of ``root`` whose namespace prefixes are lxml's generated ones (``ns0``, ``ns1``... in document
    order), so two messages differing only in their prefixes canonicalise alike."""

    def copy_into(source: etree._Element, parent: etree._Element | None) -> etree._Element:
        attributes = dict(source.attrib)
        target = (
            etree.Element(source.tag, attributes)
            if parent is None
            else etree.SubElement(parent, source.tag, attributes)
        )
        target.text = source.text
        target.tail = source.tail
        for child in source:
            if isinstance(child.tag, str):
                copy_into(child, target)
        return target

    return copy_into(root, None)


def _remove_keeping_tail(parent: etree._Element, element: etree._Element) -> None:
    tail = element.tail if element.tail and element.tail.strip() else None
    if tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


@dataclass(frozen=True)
class Body:
    """A body as compared: its kind and its normal form (JSON value, canonical XML tree, form pairs, bytes)."""

    kind: str
    value: Any
    fingerprint: str


def canonical_body(body: bytes | None, content_type: str, settings: MatchSettings) -> Body:
    if not body:
        return Body("empty", None, "-")
    kind = body_kind(body, content_type)
    if kind == "json":
        try:
            value = _strip_json(json.loads(body), settings._json)  # type: ignore[attr-defined]
        except (ValueError, UnicodeDecodeError):
            kind = "raw"
        else:
            text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            return Body("json", value, "j" + hashlib.sha256(text.encode("utf-8")).hexdigest())
    if kind == "xml":
        try:
            root = etree.fromstring(body, hardened_parser())
        except etree.XMLSyntaxError:
            kind = "raw"
        else:
            if root is not None:
                root = _without_prefixes(_strip_xml(root, settings))
                canonical = etree.tostring(root, method="c14n2", strip_text=True)
                return Body("xml", root, "x" + hashlib.sha256(canonical).hexdigest())
            kind = "raw"
    if kind == "form":
        try:
            pairs = sorted(urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True))
        except UnicodeDecodeError:
            pass
        else:
            ignored = settings._json | settings._params  # type: ignore[attr-defined]
            pairs = [(k, v) for k, v in pairs if k.lower() not in ignored]
            return Body("form", pairs, "f" + hashlib.sha256(repr(pairs).encode()).hexdigest())
    return Body("raw", body, "r" + hashlib.sha256(body).hexdigest())


def selected_headers(headers: Headers, settings: MatchSettings) -> tuple[tuple[str, str], ...]:
    if not settings.match_headers:
        return ()
    wanted = [name.lower() for name in settings.match_headers]
    present = {name.lower(): value.strip() for name, value in headers}
    return tuple((name, present.get(name, "")) for name in wanted)


@dataclass(frozen=True)
class Prepared:
    """A request as the index sees it."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: Body

    @property
    def key(self) -> RequestKey:
        return (self.method, self.url, self.headers, self.body.fingerprint)

    def describe(self) -> str:
        return f"{self.method} {self.url}"


def prepare(method: str, url: str, headers: Headers, body: bytes | None, settings: MatchSettings) -> Prepared:
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    return Prepared(
        method=method.upper(),
        url=normalise_url(url, settings),
        headers=selected_headers(headers, settings),
        body=canonical_body(body, content_type, settings),
    )


# ----------------------------------------------------------------------------------------------------------------------
# First difference
# ----------------------------------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _json_difference(recorded: Any, live: Any, path: str = "$") -> str | None:
    if isinstance(recorded, dict) and isinstance(live, dict):
        for key in sorted(set(recorded) | set(live), key=str):
            where = f"{path}.{key}"
            if key not in live:
                return f"{where}: recorded but absent from the request"
            if key not in recorded:
                return f"{where}: in the request but not recorded"
            found = _json_difference(recorded[key], live[key], where)
            if found:
                return found
        return None
    if isinstance(recorded, list) and isinstance(live, list):
        for index, (a, b) in enumerate(zip(recorded, live, strict=False)):
            found = _json_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        if len(recorded) != len(live):
            return f"{path}: {len(recorded)} items recorded, {len(live)} in the request"
        return None
    if recorded != live:
        return f"{path}: recorded {_show(recorded)}, request has {_show(live)}"
    return None


def _xml_path(element: etree._Element) -> str:
    names = []
    node: etree._Element | None = element
    while node is not None:
        names.append(etree.QName(node).localname)
        node = node.getparent()
    return "/" + "/".join(reversed(names))


def _xml_difference(recorded: etree._Element, live: etree._Element) -> str | None:
    if recorded.tag != live.tag:
        return f"{_xml_path(recorded)}: element {etree.QName(live).localname} in the request instead"
    if dict(recorded.attrib) != dict(live.attrib):
        for name in sorted(set(recorded.attrib) | set(live.attrib)):
            if recorded.get(name) != live.get(name):
                label = etree.QName(name).localname
                return f"{_xml_path(recorded)}/@{label}: recorded {_show(recorded.get(name))}, request has " + _show(
                    live.get(name)
                )
    if (recorded.text or "").strip() != (live.text or "").strip():
        return f"{_xml_path(recorded)}: recorded {_show(recorded.text or '')}, request has {_show(live.text or '')}"
    children_a, children_b = list(recorded), list(live)
    for a, b in zip(children_a, children_b, strict=False):
        found = _xml_difference(a, b)
        if found:
            return found
    if len(children_a) != len(children_b):
        longer = children_a if len(children_a) > len(children_b) else children_b
        extra = longer[min(len(children_a), len(children_b))]
        side = "recorded only" if longer is children_a else "in the request only"
        return f"{_xml_path(extra)}: {side}"
    return None


def _query_difference(recorded: str, live: str) -> str | None:
    a = urllib.parse.parse_qs(urllib.parse.urlsplit(recorded).query, keep_blank_values=True)
    b = urllib.parse.parse_qs(urllib.parse.urlsplit(live).query, keep_blank_values=True)
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            return f"query parameter {name}: recorded {_show(a.get(name))}, request has {_show(b.get(name))}"
    return None


def first_difference(recorded: Prepared, live: Prepared) -> str:
    """Where ``live`` first differs from ``recorded`` (method, URL, query, header, body path)."""
    if recorded.method != live.method:
        return f"method: recorded {recorded.method}, request has {live.method}"
    if recorded.url != live.url:
        return _query_difference(recorded.url, live.url) or f"URL: recorded {recorded.url}"
    for (name, a), (_, b) in zip(recorded.headers, live.headers, strict=True):
        if a != b:
            return f"header {name}: recorded {_show(a)}, request has {_show(b)}"
    ra, rb = recorded.body, live.body
    if ra.kind != rb.kind:
        return f"body: recorded {ra.kind}, request has {rb.kind}"
    found: str | None = None
    if ra.kind == "json":
        found = _json_difference(ra.value, rb.value)
    elif ra.kind == "xml":
        found = _xml_difference(ra.value, rb.value)
    elif ra.kind == "form":
        found = _json_difference(dict(ra.value), dict(rb.value), "form")
    if found:
        return f"body {found}"
    return "body: the bytes differ"


# ----------------------------------------------------------------------------------------------------------------------
# Index
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class _Slot:
    exchanges: list[Exchange]
    prepared: Prepared
    served: int = 0


@dataclass
class IndexStats:
    lookups: int = 0
    hits: int = 0
    misses: int = 0
    examined: int = 0  # recorded exchanges looked at to answer hits (one per hit: a hash probe, never a scan)


@dataclass
class ReplayIndex:
    """Recorded exchanges indexed by request key (see the module's documentation)."""

    settings: MatchSettings = field(default_factory=MatchSettings)
    repeat_last: bool = True  # past the recorded sequence, answer the last recording again (else: a miss)

    def __post_init__(self) -> None:
        self._slots: dict[RequestKey, _Slot] = {}
        self._by_target: dict[tuple[str, str], list[RequestKey]] = {}
        self._lock = threading.Lock()
        self.stats = IndexStats()
        self.size = 0

    @classmethod
    def build(cls, exchanges: Iterable[Exchange], settings: MatchSettings | None = None, **options: Any) -> ReplayIndex:
        index = cls(settings or MatchSettings(), **options)
        for exchange in exchanges:
            index.add(exchange)
        return index

    def prepare(self, method: str, url: str, headers: Headers, body: bytes | None) -> Prepared:
        return prepare(method, url, headers, body, self.settings)

    def add(self, exchange: Exchange) -> None:
        prepared = self.prepare(exchange.method, exchange.url, exchange.request_headers, exchange.request_body)
        slot = self._slots.get(prepared.key)
        if slot is None:
            self._slots[prepared.key] = _Slot([exchange], prepared)
            self._by_target.setdefault((prepared.method, prepared.url), []).append(prepared.key)
        else:
            slot.exchanges.append(exchange)
        self.size += 1

    def lookup(self, method: str, url: str, headers: Headers = (), body: bytes | None = None) -> Exchange:
        """The recorded exchange answering this request (the next one in recorded order); :class:`NoMatch` else."""
        return self.lookup_prepared(self.prepare(method, url, headers, body))

    def lookup_prepared(self, live: Prepared) -> Exchange:
        with self._lock:
            self.stats.lookups += 1
            slot = self._slots.get(live.key)
            if slot is not None and (slot.served < len(slot.exchanges) or (self.repeat_last and slot.exchanges)):
                self.stats.hits += 1
                self.stats.examined += 1
                position = min(slot.served, len(slot.exchanges) - 1)
                slot.served += 1
                return slot.exchanges[position]
            self.stats.misses += 1
        raise self._miss(live, slot)

    def reset(self) -> None:
        """Start every recorded sequence again."""
        with self._lock:
            for slot in self._slots.values():
                slot.served = 0

    def _miss(self, live: Prepared, exhausted: _Slot | None) -> NoMatch:
        if exhausted is not None:
            return NoMatch(
                f"no recorded exchange left for {live.describe()}: its {len(exhausted.exchanges)} recording(s) "
                "were already answered",
                closest=exhausted.exchanges[-1],
                difference="sequence exhausted",
            )
        closest = self._closest(live)
        if closest is None:
            return NoMatch(f"no recorded exchange matches {live.describe()}: the cassette is empty")
        slot = self._slots[closest]
        difference = first_difference(slot.prepared, live)
        recorded = slot.exchanges[0]
        where = f" ({recorded.source})" if recorded.source else ""
        return NoMatch(
            f"no recorded exchange matches {live.describe()}; closest recorded: {slot.prepared.describe()}{where}; "
            f"first difference: {difference}",
            closest=recorded,
            difference=difference,
        )

    def _closest(self, live: Prepared) -> RequestKey | None:
        """Same method and URL first (the most similar body); else the most similar ``METHOD URL``."""
        candidates: Sequence[RequestKey] = self._by_target.get((live.method, live.url), ())
        if not candidates:
            if not self._by_target:
                return None
            targets = list(self._by_target)
            labels = [f"{method} {url}" for method, url in targets]
            best = difflib.get_close_matches(live.describe(), labels, n=1, cutoff=0.0)
            target = targets[labels.index(best[0])] if best else targets[0]
            candidates = self._by_target[target]
        if len(candidates) == 1:
            return candidates[0]
        live_text = _body_text(live.body)

        def similarity(key: RequestKey) -> float:
            recorded = _body_text(self._slots[key].prepared.body)
            return difflib.SequenceMatcher(None, recorded, live_text).ratio()

        return max(candidates, key=similarity)

    def __len__(self) -> int:
        return self.size


def _body_text(body: Body) -> str:
    if body.kind == "json":
        return json.dumps(body.value, sort_keys=True, ensure_ascii=False)
    if body.kind == "xml":
        return etree.tostring(copy.deepcopy(body.value), encoding="unicode")
    if body.kind == "form":
        return repr(body.value)
    if body.kind == "raw":
        return body.value[:2000].decode("utf-8", "replace")
    return ""
