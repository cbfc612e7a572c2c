"""Redaction of secrets and personal data before an exchange touches disk.

A redacted value becomes ``<redacted:0123456789ab>``: a prefix of HMAC-SHA256(salt, value) (never twelve digits,
which would read as an ID number: the first is then a letter ``g``-``p``), the salt being one per
cassette directory (file ``.redaction-salt``, created on first use). Equal values map to equal placeholders, so a
live request redacted with the same salt still matches its recording; without the salt the placeholder does not
tell the value (within one directory, guessing a value is possible for whoever holds that directory's salt: keep the
salt with the cassettes, out of wider reach when the cassettes hold real traffic).

What is redacted: configured headers, JSON keys (at any depth, case-insensitive), XML elements and attributes by
local name (any namespace), form fields and query parameters; every value found there wherever else it appears in
the same exchange (the applicant's name repeated in a signature report); each cookie value (8 characters or more) of
a redacted ``Cookie``/``Set-Cookie`` header wherever else it appears in the exchange, and in the cassette's other
answers; and, in any remaining text, Vietnamese ID numbers (9 or 12 digits, not a UUID's last group), phone numbers
(0 or 84 followed by 9-10 digits) and e-mail addresses. Only what is redacted changes: a URL's segments and query
parameters and a form's fields stay as recorded otherwise; a form body that is not ``name=value`` pairs is text.
HAR's ``cookies`` arrays get what their header gets: each value of a redacted ``Cookie``/``Set-Cookie`` header's
array becomes its placeholder (and is redacted elsewhere like the header's cookie values); comments and page titles
are free text.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.xmlguard import hardened_parser

from .bodies import bodiless, bytes_to_text, text_to_bytes
from .har import Cookies, Exchange, Headers

__all__ = [
    "DEFAULT_REDACT_HEADERS",
    "DEFAULT_REDACT_JSON_KEYS",
    "DEFAULT_REDACT_XML_ELEMENTS",
    "Redactor",
    "directory_salt",
]

SALT_FILE = ".redaction-salt"
PLACEHOLDER = re.compile(r"<redacted:[0-9a-p]{12}>")

DEFAULT_REDACT_HEADERS = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-signature",
    "x-api-key",
    "x-auth-token",
    "x-access-token",
    "dstcode-token",
)
DEFAULT_REDACT_JSON_KEYS = (
    "full_name",
    "fullname",
    "name_of_applicant",
    "id_number",
    "cccd",
    "cmnd",
    "phone",
    "phone_number",
    "mobile",
    "email",
    "address",
    "delivery_address",
    "date_of_birth",
    "birth_date",
    "password",
    "session",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "secret",
    "hoten",
    "socccd",
    "sodienthoai",
    "diachi",
    "content_base64",
    "detached_signature_base64",
    "chuhoso",
    "madoituong",
    "sogiayto",
    "sender",
    "receiver",
    "signer",
    "chain",
    "citizen_id",
    "tax_code",
    # Citizens' own words: a question sent to an agency, its answer relayed to the portal (whose notice's whole
    # ``question`` object is redacted with it), a rating's comment sent to the national portal.
    "question",
    "answer",
    "noidunggopy",
)
DEFAULT_REDACT_XML_ELEMENTS = (
    "HoTen",
    "SoCCCD",
    "SoCMND",
    "SoGiayTo",
    "ChuHoSo",
    "NoiDung",
    "SoDinhDanh",
    "SoDienThoai",
    "DienThoai",
    "Email",
    "DiaChi",
    "NgaySinh",
    "Password",
    "Nonce",
    "BinarySecurityToken",
    "Token",
    "SessionToken",
)
DEFAULT_REDACT_PARAMS = (
    "password",
    "client_secret",
    "token",
    "access_token",
    "session",
    "phone",
    "email",
    "id_number",
)

# Digits not touching other digits or letters (a dossier code, a timestamp or an amount of another length is kept).
# Nor the last group of a UUID (8-4-4-4-12 hex digits), which may be all digits.
_NOT_UUID_TAIL = r"(?<![0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-)"
_ID_NUMBER = _NOT_UUID_TAIL + r"(?<![\w.])(?:\d{12}|\d{9})(?![\w.])"
_PHONE = _NOT_UUID_TAIL + r"(?<![\w.+])(?:\+?84|0)\d{9,10}(?![\w.])"
_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
_FREE_TEXT = re.compile(f"{_EMAIL}|{_PHONE}|{_ID_NUMBER}")


def directory_salt(directory: str | os.PathLike[str], *, create: bool = True) -> bytes:
    """The redaction salt of a cassette directory (created, mode 0600, when absent and ``create``)."""
    path = Path(directory) / SALT_FILE
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        if not create:
            return b""
    except ValueError:
        raise ValueError(f"{path}: not a hexadecimal salt") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: use theirs
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(salt.hex() + "\n")
    return salt


def _lower(names: Iterable[str]) -> frozenset[str]:
    return frozenset(name.lower() for name in names)


class Redactor:
    """Replaces secrets and personal data with stable placeholders (see the module's documentation).

    Values found under a redacted header, key, element or parameter are also replaced wherever else they appear in
    the same exchange (a name repeated in a signature report, a token echoed in a message): the request's values in
    the request, the request's and the response's in the response. A request's redaction depends on that request
    alone, so a live request redacted for matching comes out exactly as its recording did.
    """

    def __init__(
        self,
        salt: bytes,
        *,
        headers: Iterable[str] = DEFAULT_REDACT_HEADERS,
        json_keys: Iterable[str] = DEFAULT_REDACT_JSON_KEYS,
        xml_elements: Iterable[str] = DEFAULT_REDACT_XML_ELEMENTS,
        params: Iterable[str] = DEFAULT_REDACT_PARAMS,
        patterns: bool = True,
    ) -> None:
        self._salt = salt
        self.headers = _lower(headers)
        self.json_keys = _lower(json_keys)
        self.xml_elements = _lower(xml_elements)
        self.params = _lower(params) | self.json_keys
        self.patterns = patterns

    # -- values --------------------------------------------------------------------------------------------------------

    def placeholder(self, value: str) -> str:
        if PLACEHOLDER.fullmatch(value):
            return value  # already redacted: redaction is idempotent
        digest = hmac.new(self._salt, value.encode("utf-8"), hashlib.sha256).hexdigest()[:12]
        if digest.isdigit():
            # Twelve digits would read as an ID number: the first becomes a letter outside hex (g-p), deterministically.
            digest = chr(ord("g") + int(digest[0])) + digest[1:]
        return f"<redacted:{digest}>"

    def text(self, value: str, known: Known = frozenset()) -> str:
        """Free text with the ``known`` values, ID numbers, phone numbers and e-mail addresses replaced."""
        pattern = _pattern(known, self.patterns)
        if pattern is None:
            return value
        return pattern.sub(lambda match: self.placeholder(match.group(0)), value)

    # -- learning the values to redact everywhere ----------------------------------------------------------------------

    def learn_headers(self, headers: Headers) -> set[str]:
        found: set[str] = set()
        for name, value in headers:
            lower = name.lower()
            if lower in self.headers:
                scheme, _, credentials = value.partition(" ")
                _add(found, credentials if credentials and scheme.isalpha() and len(scheme) <= 16 else value)
                if lower in _COOKIE_HEADERS:
                    found |= cookie_values(value, set_cookie=lower == "set-cookie")
        return found

    def cookie_values(self, exchanges: Iterable[Exchange]) -> frozenset[str]:
        """The cookie values of every redacted ``Cookie`` and ``Set-Cookie`` header of ``exchanges`` (a cassette):
        given to :meth:`exchange` as ``elsewhere``, they are redacted in every response of the cassette too."""
        found: set[str] = set()
        for exchange in exchanges:
            for name, value in (*exchange.request_headers, *exchange.response_headers):
                lower = name.lower()
                if lower in _COOKIE_HEADERS and lower in self.headers:
                    found |= cookie_values(value, set_cookie=lower == "set-cookie")
            found |= self._array_values(exchange)
        return frozenset(found)

    def _array_values(self, exchange: Exchange) -> set[str]:
        """The values of HAR ``cookies`` arrays whose header (``Cookie``, ``Set-Cookie``) is redacted."""
        found: set[str] = set()
        for name, cookies in (("cookie", exchange.request_cookies), ("set-cookie", exchange.response_cookies)):
            if name in self.headers:
                for cookie in cookies:
                    found |= cookie_values(f"{cookie.get('name')}={cookie.get('value') or ''}", set_cookie=False)
        return found

    def cookies(self, cookies: Cookies, header: str, known: Known = frozenset()) -> Cookies:
        """A HAR ``cookies`` array redacted as its header is: each value a placeholder when ``header`` (``cookie`` or
        ``set-cookie``) is redacted, else free text; comments are free text."""
        redacted = []
        for cookie in cookies:
            item = dict(cookie)
            value = str(item.get("value") or "")
            item["value"] = self.placeholder(value) if value and header in self.headers else self.text(value, known)
            if isinstance(item.get("comment"), str):
                item["comment"] = self.text(item["comment"], known)
            redacted.append(item)
        return tuple(redacted)

    def page(self, page: Mapping[str, Any]) -> dict[str, Any]:
        """A HAR page (``log.pages``) with its title and comments redacted as free text."""
        result = dict(page)
        for key in ("title", "comment"):
            if isinstance(result.get(key), str):
                result[key] = self.text(result[key])
        timings = result.get("pageTimings")
        if isinstance(timings, Mapping) and isinstance(timings.get("comment"), str):
            result["pageTimings"] = {**timings, "comment": self.text(timings["comment"])}
        return result

    def learn_url(self, url: str) -> set[str]:
        query = urllib.parse.urlsplit(url).query
        return self._learn_form(query) if query else set()

    def learn_body(self, body: bytes | None, content_type: str) -> set[str]:
        found: set[str] = set()
        if not body:
            return found
        kind = body_kind(body, content_type)
        if kind == "json":
            try:
                self._learn_json(json.loads(body), found)
            except (ValueError, UnicodeDecodeError, RecursionError):
                pass
        elif kind == "xml":
            root = _parse_xml(body)
            if root is not None:
                for element in root.iter():
                    if not isinstance(element.tag, str):
                        continue
                    if etree.QName(element).localname.lower() in self.xml_elements:
                        _add(found, "".join(element.itertext()))
                    for name, value in element.attrib.items():
                        if etree.QName(name).localname.lower() in self.xml_elements:
                            _add(found, value)
        elif kind == "form":
            try:
                found |= self._learn_form(body.decode("ascii"))
            except UnicodeDecodeError:
                pass
        return found

    def _learn_form(self, text: str) -> set[str]:
        found: set[str] = set()
        for key, value in urllib.parse.parse_qsl(text, keep_blank_values=True):
            if key.lower() in self.params:
                _add(found, value)
        return found

    def _learn_json(self, value: Any, found: set[str], inside: bool = False) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                self._learn_json(item, found, inside or (isinstance(key, str) and key.lower() in self.json_keys))
        elif isinstance(value, list):
            for item in value:
                self._learn_json(item, found, inside)
        elif inside and isinstance(value, str | int) and not isinstance(value, bool):
            _add(found, str(value))

    def learn_request(self, url: str, headers: Headers, body: bytes | None) -> frozenset[str]:
        """The values of a request to redact wherever they appear (from its redacted fields)."""
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        return frozenset(self.learn_url(url) | self.learn_headers(headers) | self.learn_body(body, content_type))

    # -- parts of an exchange ------------------------------------------------------------------------------------------

    def redact_headers(self, headers: Headers, known: Known = frozenset()) -> Headers:
        result = []
        for name, value in headers:
            if name.lower() in self.headers:
                value = self._header_value(value)
            elif known:
                value = self.text(value, known)
            result.append((name, value))
        return tuple(result)

    def _header_value(self, value: str) -> str:
        # Keep the scheme word ("Bearer", "Basic") so a reader still sees which authentication was used.
        scheme, _, credentials = value.partition(" ")
        if credentials and scheme.isalpha() and len(scheme) <= 16:
            return f"{scheme} {self.placeholder(credentials)}"
        return self.placeholder(value)

    def redact_url(self, url: str, known: Known = frozenset()) -> str:
        parts = urllib.parse.urlsplit(url)
        # Segment by segment: an encoded slash (%2F) inside a segment is data (GitLab's "group%2Fproject"), not a
        # separator, and stays encoded.
        path = "/".join(self._segment(segment, known) for segment in parts.path.split("/"))
        query = self._form(parts.query, known) if parts.query else ""
        if path == parts.path and query == parts.query and not parts.fragment:
            return url  # nothing redacted: the URL as recorded (a trailing "?" too)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, ""))

    def _segment(self, segment: str, known: Known) -> str:
        """A path segment as recorded, or re-encoded when something in it is redacted."""
        decoded = urllib.parse.unquote(segment)
        redacted = self.text(decoded, known)
        return segment if redacted == decoded else urllib.parse.quote(redacted, safe=":@!$&'()*+,;=-._~<>")

    def _form(self, text: str, known: Known = frozenset()) -> str:
        """A query string or form body with its redacted parameters' values replaced, and nothing else changed:
        a part where nothing is redacted stays as recorded (``delimiter=/``, ``%3A``, a bare ``notify_self``)."""
        parts = []
        for part in text.split("&"):
            name, equals, value = part.partition("=")
            if not equals:
                decoded = urllib.parse.unquote_plus(name)
                redacted = self.text(decoded, known)
                parts.append(part if redacted == decoded else _form_quote(redacted))
                continue
            decoded = urllib.parse.unquote_plus(value)
            if urllib.parse.unquote_plus(name).lower() in self.params and decoded:
                redacted = self.placeholder(decoded)
            else:
                redacted = self.text(decoded, known)
            parts.append(part if redacted == decoded else f"{name}={_form_quote(redacted)}")
        return "&".join(parts)

    def redact_body(self, body: bytes | None, content_type: str, known: Known = frozenset()) -> bytes | None:
        if not body:
            return body
        kind = body_kind(body, content_type)
        if kind == "json":
            try:
                value = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                return self._raw(body, known, content_type)
            return json.dumps(self._json(value, known), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if kind == "xml":
            return self._xml(body, known, content_type)
        if kind == "form":
            try:
                return self._form(body.decode("ascii"), known).encode("ascii")
            except UnicodeDecodeError:
                return self._raw(body, known, content_type)
        return self._raw(body, known, content_type)

    def redact_request(
        self, url: str, headers: Headers, body: bytes | None
    ) -> tuple[str, Headers, bytes | None, frozenset[str]]:
        """A request redacted (URL, headers, body) and the values learned from it, for its response."""
        known = self.learn_request(url, headers, body)
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        redacted_body = self.redact_body(body, content_type, known)
        return self.redact_url(url, known), self.redact_headers(headers, known), redacted_body, known

    def _raw(self, body: bytes, known: Known = frozenset(), content_type: str = "") -> bytes:
        """Text in its declared charset (UTF-8 without one) with free text redacted; anything else as it is."""
        text = bytes_to_text(body, content_type)
        if text is None:
            return body  # binary (a PDF...): left as it is; its personal data is not in a searchable form
        return text_to_bytes(self.text(text, known), content_type)

    def _json(self, value: Any, known: Known = frozenset()) -> Any:
        if isinstance(value, dict):
            result = {}
            for key, item in value.items():
                if isinstance(key, str) and key.lower() in self.json_keys and item not in (None, "", [], {}):
                    text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False, sort_keys=True)
                    result[key] = self.placeholder(text)
                else:
                    result[key] = self._json(item, known)
            return result
        if isinstance(value, list):
            return [self._json(item, known) for item in value]
        if isinstance(value, str):
            return self.text(value, known)
        return value

    def _xml(self, body: bytes, known: Known = frozenset(), content_type: str = "") -> bytes:
        root = _parse_xml(body)
        if root is None:
            return self._raw(body, known, content_type)  # HTML, or broken XML: text in its declared charset
        for element in root.iter():
            if not isinstance(element.tag, str):
                if element.text:  # comments and processing instructions
                    element.text = self.text(element.text, known)
                continue
            local = etree.QName(element).localname.lower()
            if local in self.xml_elements:
                content = "".join(element.itertext())
                for child in list(element):
                    element.remove(child)
                element.text = self.placeholder(content) if content else content
            elif element.text:
                element.text = self.text(element.text, known)
            if element.tail:
                element.tail = self.text(element.tail, known)
            for name, value in element.attrib.items():
                attr = etree.QName(name).localname.lower()
                element.set(name, self.placeholder(value) if attr in self.xml_elements else self.text(value, known))
        declaration = body.lstrip().startswith(b"<?xml")
        return etree.tostring(root, encoding="utf-8", xml_declaration=declaration)

    def exchange(self, exchange: Exchange, elsewhere: Known = frozenset()) -> Exchange:
        """``exchange`` with everything redacted (request and response); its Content-Length headers corrected, but
        for an answer without a body (HEAD, 304), whose recorded Content-Length is the size of the resource.

        ``elsewhere``: values learned from other exchanges of the cassette (:meth:`cookie_values`), redacted in the
        response too. The request is redacted with its own values only, so a live request still matches it.
        """
        url, request_headers, request_body, known = self.redact_request(
            exchange.url, exchange.request_headers, exchange.request_body
        )
        known = known | elsewhere | self.learn_headers(exchange.response_headers) | self._array_values(exchange)
        known = known | self.learn_body(exchange.response_body, exchange.response_type)
        response_body = self.redact_body(exchange.response_body, exchange.response_type, known) or b""
        response_headers = self.redact_headers(exchange.response_headers, known)
        if not bodiless(exchange.method, exchange.status):
            response_headers = _fix_length(response_headers, response_body)
        timings = exchange.timings
        if timings and isinstance(timings.get("comment"), str):
            timings = {**timings, "comment": self.text(timings["comment"], known)}
        return exchange.with_(
            url=url,
            request_headers=_fix_length(request_headers, request_body),
            request_body=request_body,
            response_headers=response_headers,
            response_body=response_body,
            error=self.text(exchange.error, known) if exchange.error else None,
            comment=self.text(exchange.comment, known),
            request_cookies=self.cookies(exchange.request_cookies, "cookie", known),
            response_cookies=self.cookies(exchange.response_cookies, "set-cookie", known),
            timings=timings,
        )


#: Values learned from an exchange's redacted fields, replaced wherever else they appear.
Known = frozenset[str]
#: Shorter values are not replaced elsewhere (they would match too much); their own field is still redacted.
MIN_KNOWN_LENGTH = 4


#: Headers carrying cookies: besides the whole header, each cookie value is redacted wherever else it appears.
_COOKIE_HEADERS = frozenset({"cookie", "set-cookie"})
#: Shorter cookie values (``lang=vi``, ``consent=1``) are not secrets and would match too much.
MIN_COOKIE_LENGTH = 8


def cookie_values(value: str, *, set_cookie: bool) -> set[str]:
    """The values of a ``Cookie`` header (``a=1; b=2``) or of a ``Set-Cookie`` header (``a=1; Path=/``, one cookie a
    line when a capture joins several), as sent and percent-decoded, of at least :data:`MIN_COOKIE_LENGTH`."""
    pairs = [line.split(";", 1)[0] for line in value.splitlines()] if set_cookie else value.split(";")
    found: set[str] = set()
    for pair in pairs:
        _, equals, cookie = pair.partition("=")
        cookie = cookie.strip().strip('"')
        if not equals:
            continue
        for variant in {cookie, urllib.parse.unquote(cookie)}:
            if len(variant) >= MIN_COOKIE_LENGTH and not PLACEHOLDER.search(variant):
                found.add(variant)
    return found


def _add(found: set[str], value: str) -> None:
    value = value.strip()
    if len(value) >= MIN_KNOWN_LENGTH and not PLACEHOLDER.fullmatch(value):
        found.add(value)


@functools.lru_cache(maxsize=256)
def _pattern(known: Known, patterns: bool) -> re.Pattern[str] | None:
    """Existing placeholders first (left alone), then the known values (longest first), then the free-text kinds."""
    parts = [PLACEHOLDER.pattern, *(re.escape(value) for value in sorted(known, key=lambda v: (-len(v), v)))]
    if patterns:
        parts.append(_FREE_TEXT.pattern)
    if len(parts) == 1:
        return None
    return re.compile("|".join(parts))


def _parse_xml(body: bytes) -> etree._Element | None:
    try:
        return etree.fromstring(body, hardened_parser())
    except etree.XMLSyntaxError:
        return None


def _fix_length(headers: Headers, body: bytes | None) -> Headers:
    return tuple(
        (name, str(len(body or b"")) if name.lower() == "content-length" else value) for name, value in headers
    )


def _form_quote(value: str) -> str:
    return urllib.parse.quote_plus(value, safe="<>:")


#: A part of a form body: a name without spaces, quotes, brackets or braces as sent (browsers encode them), and
#: ``=value`` or nothing.
_FORM_PART = re.compile(r"[^=\s\"'{}\[\]<>]*(?:=.*)?", re.DOTALL)


def is_form(body: bytes) -> bool:
    """Whether a body is ``name=value`` pairs (at least one ``=``; Google's ``[[1,null,...`` sent as a form is not)."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return False
    parts = [part for part in text.split("&") if part]
    return any("=" in part for part in parts) and all(_FORM_PART.fullmatch(part) for part in parts)


def body_kind(body: bytes, content_type: str) -> str:
    """``json``, ``xml``, ``form`` or ``raw``: how a body is redacted and compared (a body sent as a form that is
    not ``name=value`` pairs is text, ``raw``)."""
    mime = content_type.lower()
    if "json" in mime:
        return "json"
    if "xml" in mime:
        return "xml"
    if "x-www-form-urlencoded" in mime:
        return "form" if is_form(body) else "raw"
    head = body[:64].lstrip()
    if head.startswith((b"{", b"[")):
        return "json"
    if head.startswith(b"<"):
        return "xml"
    return "raw"
