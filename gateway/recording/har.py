"""HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/) reading and writing.

One :class:`Exchange` is one HAR entry. Writing produces every field HAR 1.2 requires (cookies, headersSize,
bodySize, cache, timings...), so standard HAR tools read our cassettes. Reading is tolerant: browsers' captures
omit or garble optional fields, and only what replay needs is required (``request.method``, ``request.url``,
``response.status``); a missing required field is one clear line naming the file and the entry.

Bodies are bytes in memory; on disk a body is ``text`` when it is text in the charset its ``Content-Type`` declares
(UTF-8 without one), else base64 with ``encoding: "base64"`` (HAR's own convention for binary content). A request
body (``postData``, which has no ``encoding`` in HAR 1.2) that is not text is written as browsers export it, as
UTF-8 text with U+FFFD for the bytes that are not, with its exact bytes in the custom field ``_base64``. A response
body is kept decoded, as HAR 1.2 says: :func:`~gateway.recording.bodies.decoded_response` drops ``Content-Encoding``
and decodes a body some tool stored still encoded. A failed exchange (no response: connection refused, timeout)
is an entry with ``response.status`` 0 and our custom field ``response._error`` naming the httpx exception.

HAR's optional standard fields are kept from reading to writing: ``log.pages`` (:class:`HarDocument`), each entry's
``pageref``, ``serverIPAddress``, ``connection``, ``comment``, the request's and response's ``cookies``, the recorded
``timings`` and the response's own ``httpVersion``. A field of the wrong type is dropped when read (the written file
stays valid HAR 1.2), but for a ``serverIPAddress`` that is not an IP address, kept as the custom field
``_serverIPAddress``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .bodies import bytes_to_text, decoded_response, text_to_bytes

__all__ = [
    "HAR_VERSION",
    "Exchange",
    "HarDocument",
    "HarError",
    "dump_har",
    "dumps_har",
    "entry_to_exchange",
    "exchange_to_entry",
    "load_directory",
    "load_har",
    "loads_har",
    "read_har",
    "reads_har",
    "write_har",
    "write_new_file",
]

HAR_VERSION = "1.2"
CREATOR = {"name": "dvc-gateway", "version": "0.1.0"}

Headers = tuple[tuple[str, str], ...]
#: HAR ``cookies`` objects (name, value, path, domain, expires, httpOnly, secure, comment).
Cookies = tuple[Mapping[str, Any], ...]

_TEXT_TYPES = ("json", "xml", "text/", "javascript", "x-www-form-urlencoded", "html", "csv", "yaml")


class HarError(ValueError):
    """A HAR document cannot be used; the message names the file and the entry, in one line."""


@dataclass(frozen=True)
class Exchange:
    """One recorded request and its response (or its failure)."""

    method: str
    url: str
    request_headers: Headers = ()
    request_body: bytes | None = None
    status: int = 0
    status_text: str = ""
    response_headers: Headers = ()
    response_body: bytes = b""
    started: str = ""  # ISO 8601, HAR's startedDateTime
    time_ms: float = 0.0
    http_version: str = "HTTP/1.1"
    upstream: str = ""  # custom field _upstream: the gateway's upstream name
    error: str | None = None  # "ConnectError: ..." for a failed exchange (status 0)
    source: str = ""  # where it was read from ("file.har#3"); not written
    extra: Mapping[str, Any] = field(default_factory=dict)  # fields of the entry we do not model (kept on rewrite)
    # HAR's optional standard fields, kept as recorded ("" / () / None: absent).
    pageref: str = ""
    server_ip: str = ""  # serverIPAddress
    connection: str = ""
    comment: str = ""
    request_cookies: Cookies = ()
    response_cookies: Cookies = ()
    timings: Mapping[str, Any] | None = None  # the recorded timings (send, wait, receive required)
    response_http_version: str = ""  # the response's httpVersion when it differs from the request's

    def header(self, name: str, *, response: bool = False) -> str | None:
        wanted = name.lower()
        for key, value in self.response_headers if response else self.request_headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def request_type(self) -> str:
        return self.header("content-type") or ""

    @property
    def response_type(self) -> str:
        return self.header("content-type", response=True) or ""

    def with_(self, **changes: Any) -> Exchange:
        return replace(self, **changes)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ----------------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------------


def _is_text(mime: str) -> bool:
    mime = mime.lower()
    return any(marker in mime for marker in _TEXT_TYPES)


def _content(body: bytes, mime: str) -> dict[str, Any]:
    """HAR ``text`` (+ ``encoding``) for a body: plain when it is text in its charset, base64 otherwise."""
    if not body:
        return {"text": ""}
    if _is_text(mime) or not mime:
        text = bytes_to_text(body, mime)
        if text is not None:
            return {"text": text}
    return {"text": base64.b64encode(body).decode("ascii"), "encoding": "base64"}


def _post_data(body: bytes, mime: str) -> dict[str, Any]:
    """HAR ``postData`` ``text`` for a request body. HAR 1.2 has no ``encoding`` there, so a body that is not text in
    its charset (multipart with a file's bytes) gets ``text`` as browsers export it (UTF-8, U+FFFD for bytes that are
    not), and its exact bytes in base64 in the custom field ``_base64``, which :func:`_read_post_data` prefers."""
    if not body:
        return {"text": ""}
    text = bytes_to_text(body, mime)
    if text is not None:
        return {"text": text}
    return {"text": body.decode("utf-8", "replace"), "_base64": base64.b64encode(body).decode("ascii")}


def _query(url: str) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)]


def _headers(headers: Headers) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in headers]


def _headers_size(headers: Headers) -> int:
    return sum(len(name) + len(value) + 4 for name, value in headers) + 2


def exchange_to_entry(exchange: Exchange) -> dict[str, Any]:
    """The HAR 1.2 entry of ``exchange``."""
    request: dict[str, Any] = {
        "method": exchange.method,
        "url": exchange.url,
        "httpVersion": exchange.http_version,
        "cookies": [dict(cookie) for cookie in exchange.request_cookies],
        "headers": _headers(exchange.request_headers),
        "queryString": _query(exchange.url),
        "headersSize": _headers_size(exchange.request_headers),
        "bodySize": len(exchange.request_body or b""),
    }
    if exchange.request_body is not None:
        mime = exchange.request_type or "application/octet-stream"
        request["postData"] = {"mimeType": mime, "params": [], **_post_data(exchange.request_body, mime)}
    mime = exchange.response_type
    response: dict[str, Any] = {
        "status": exchange.status,
        "statusText": exchange.status_text,
        "httpVersion": exchange.response_http_version or exchange.http_version,
        "cookies": [dict(cookie) for cookie in exchange.response_cookies],
        "headers": _headers(exchange.response_headers),
        "content": {
            "size": len(exchange.response_body),
            "mimeType": mime or "x-unknown",
            **_content(exchange.response_body, mime),
        },
        "redirectURL": exchange.header("location", response=True) or "",
        "headersSize": _headers_size(exchange.response_headers) if exchange.status else -1,
        "bodySize": len(exchange.response_body) if exchange.status else -1,
    }
    if exchange.error:
        response["_error"] = exchange.error
    elapsed = round(max(exchange.time_ms, 0.0), 3)
    entry: dict[str, Any] = {
        **{k: v for k, v in exchange.extra.items() if k.startswith("_")},
        **({"pageref": exchange.pageref} if exchange.pageref else {}),
        "startedDateTime": exchange.started or now_iso(),
        "time": elapsed,
        "request": request,
        "response": response,
        "cache": {},
        "timings": dict(exchange.timings)
        if exchange.timings
        else {"blocked": -1, "dns": -1, "connect": -1, "send": 0, "wait": elapsed, "receive": 0, "ssl": -1},
    }
    for key, value in (
        ("serverIPAddress", exchange.server_ip),
        ("connection", exchange.connection),
        ("comment", exchange.comment),
    ):
        if value:
            entry[key] = value
    if exchange.upstream:
        entry["_upstream"] = exchange.upstream
    return entry


def dump_har(
    exchanges: Iterable[Exchange], *, comment: str | None = None, pages: Iterable[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """A HAR 1.2 document holding ``pages`` (HAR ``log.pages`` objects) and ``exchanges``."""
    log: dict[str, Any] = {
        "version": HAR_VERSION,
        "creator": dict(CREATOR),
        "pages": [dict(page) for page in pages],
        "entries": [exchange_to_entry(exchange) for exchange in exchanges],
    }
    if comment:
        log["comment"] = comment
    return {"log": log}


def dumps_har(
    exchanges: Iterable[Exchange], *, comment: str | None = None, pages: Iterable[Mapping[str, Any]] = ()
) -> bytes:
    document = dump_har(exchanges, comment=comment, pages=pages)
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")


def write_har(
    path: str | os.PathLike[str],
    exchanges: Iterable[Exchange],
    *,
    comment: str | None = None,
    pages: Iterable[Mapping[str, Any]] = (),
) -> int:
    """Write ``exchanges`` to ``path`` atomically (a reader never sees half a file); the number of bytes written."""
    return write_bytes_atomically(Path(path), dumps_har(exchanges, comment=comment, pages=pages))


def write_bytes_atomically(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return len(data)


def write_new_file(candidates: Iterable[Path], data: bytes) -> Path:
    """Write ``data`` to the first of ``candidates`` that does not exist, atomically, never replacing a file (two
    writers racing for one name get two names); the path written."""
    paths = iter(candidates)
    first = next(paths)
    first.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{first.name}.", dir=first.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        for path in itertools.chain([first], paths):
            try:
                os.link(temporary, path)  # fails when the name is taken: no window between a check and a write
            except FileExistsError:
                continue
            except OSError:  # a file system without hard links: check, then move
                if path.exists():
                    continue
                os.replace(temporary, path)
            return path
        raise FileExistsError("no free name")
    finally:
        Path(temporary).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A header or form value as text: ``null`` (or absent) is the empty string, never ``"None"``."""
    return "" if value is None else str(value)


def _read_headers(value: Any, where: str) -> Headers:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise HarError(f"{where}: headers must be a list")
    result = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise HarError(f"{where}: a header without a name")
        result.append((item["name"], _text(item.get("value"))))
    # HTTP/2 captures carry pseudo-headers (":authority"...): not headers to send or compare.
    return tuple((name, value) for name, value in result if not name.startswith(":"))


def _read_content(content: Any, where: str, mime: str = "") -> bytes:
    """The bytes of a HAR ``content`` or ``postData``: base64, or text in the charset of ``mime``."""
    if not isinstance(content, Mapping):
        return b""
    text = content.get("text")
    if text is None:
        return b""
    if not isinstance(text, str):
        raise HarError(f"{where}: text must be a string")
    if str(content.get("encoding", "")).lower() == "base64":
        try:
            return base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise HarError(f"{where}: invalid base64 content") from exc
    return text_to_bytes(text, mime)


def _read_post_data(post: Any, where: str) -> tuple[bytes | None, str | None]:
    if post is None:
        return None, None
    if not isinstance(post, Mapping):
        raise HarError(f"{where}: postData must be an object")
    mime = post.get("mimeType") if isinstance(post.get("mimeType"), str) else None
    if post.get("text") is None and post.get("params"):
        # Browsers may give a form as params only.
        if not isinstance(post["params"], list):
            raise HarError(f"{where}: params must be a list")
        pairs = [(_text(p.get("name")), _text(p.get("value"))) for p in post["params"] if isinstance(p, Mapping)]
        return urlencode(pairs).encode("ascii"), mime
    exact = post.get("_base64")
    if isinstance(exact, str):  # a binary body as we write it: the exact bytes beside the readable text
        return _read_content({"text": exact, "encoding": "base64"}, where), mime
    return _read_content(post, where, mime or ""), mime


def _check_unicode(value: Any, where: str) -> None:
    """Refuse text that is not Unicode a request can carry (a lone surrogate, which JSON's ``\\ud800`` can spell)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise HarError(f"{where}: text that is not valid Unicode (a lone surrogate)") from None
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_cookies(value: Any) -> Cookies:
    """HAR ``cookies``: those with a name, their fields of the type HAR 1.2 gives them (others dropped)."""
    if not isinstance(value, list):
        return ()
    cookies = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            continue
        cookie: dict[str, Any] = {"name": item["name"], "value": _text(item.get("value"))}
        for key in ("path", "domain", "expires", "comment"):
            if isinstance(item.get(key), str):
                cookie[key] = item[key]
        if "expires" in item and item["expires"] is None:
            cookie["expires"] = None
        for key in ("httpOnly", "secure"):
            if isinstance(item.get(key), bool):
                cookie[key] = item[key]
        cookies.append(cookie)
    return tuple(cookies)


def _read_timings(value: Any) -> dict[str, Any] | None:
    """HAR ``timings`` with ``send``, ``wait`` and ``receive`` numbers (else ``None``: written from ``time``)."""
    if not isinstance(value, Mapping) or not all(_number(value.get(key)) for key in ("send", "wait", "receive")):
        return None
    keys = ("blocked", "dns", "connect", "send", "wait", "receive", "ssl")
    timings: dict[str, Any] = {key: value[key] for key in keys if _number(value.get(key))}
    if isinstance(value.get("comment"), str):
        timings["comment"] = value["comment"]
    return timings


def _server_ip(value: Any) -> str | None:
    """An IPv4 or IPv6 address as HAR 1.2 wants it (Chrome writes ``[::1]``), or ``None`` (a zone, ``%7``, too)."""
    if not isinstance(value, str) or "%" in value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        return None


def _read_page(page: Any) -> dict[str, Any] | None:
    """A HAR page with the fields HAR 1.2 requires (``title`` and ``pageTimings`` filled in), or ``None``."""
    if not isinstance(page, Mapping) or not isinstance(page.get("id"), str):
        return None
    result = {key: value for key, value in page.items() if isinstance(key, str)}
    result["startedDateTime"] = _text(page.get("startedDateTime")) or now_iso()
    result["title"] = _text(page.get("title"))
    timings = page.get("pageTimings")
    result["pageTimings"] = {
        key: value
        for key, value in (timings.items() if isinstance(timings, Mapping) else ())
        if (key in ("onContentLoad", "onLoad") and _number(value)) or (key == "comment" and isinstance(value, str))
    }
    if not isinstance(result.get("comment", ""), str):
        del result["comment"]
    return result


def entry_to_exchange(entry: Any, where: str) -> Exchange:
    """The :class:`Exchange` of a HAR entry; ``where`` names it in errors (``"capture.har: entry 3"``)."""
    if not isinstance(entry, Mapping):
        raise HarError(f"{where}: not an object")
    _check_unicode(entry, where)
    request = entry.get("request")
    response = entry.get("response")
    if not isinstance(request, Mapping):
        raise HarError(f"{where}: request is missing")
    if not isinstance(response, Mapping):
        raise HarError(f"{where}: response is missing")
    method = request.get("method")
    url = request.get("url")
    if not isinstance(method, str) or not method:
        raise HarError(f"{where}: request.method is missing")
    if not isinstance(url, str) or not url:
        raise HarError(f"{where}: request.url is missing")
    status = response.get("status")
    if isinstance(status, bool) or not isinstance(status, int | float) or not 0 <= status <= 999:
        raise HarError(f"{where}: response.status is missing or not a number")
    request_headers = _read_headers(request.get("headers"), f"{where}: request")
    body, mime = _read_post_data(request.get("postData"), f"{where}: request.postData")
    if mime and not any(name.lower() == "content-type" for name, _ in request_headers):
        request_headers = (*request_headers, ("Content-Type", mime))
    response_headers = _read_headers(response.get("headers"), f"{where}: response")
    content = response.get("content")
    response_mime = content.get("mimeType") if isinstance(content, Mapping) else None
    if (
        isinstance(response_mime, str)
        and response_mime not in ("", "x-unknown")
        and not any(name.lower() == "content-type" for name, _ in response_headers)
    ):
        response_headers = (*response_headers, ("Content-Type", response_mime))
    content_type = next((v for k, v in response_headers if k.lower() == "content-type"), "")
    response_body = _read_content(content, f"{where}: response.content", content_type)
    response_headers, response_body = decoded_response(response_headers, response_body, har=True)
    elapsed = entry.get("time", 0)
    error = response.get("_error")
    extra = {k: v for k, v in entry.items() if isinstance(k, str) and k.startswith("_") and k != "_upstream"}
    server_ip = _server_ip(entry.get("serverIPAddress"))
    if server_ip is None and entry.get("serverIPAddress"):
        extra["_serverIPAddress"] = entry["serverIPAddress"]  # not an IP address: kept, outside HAR's field
    http_version = str(request.get("httpVersion") or "HTTP/1.1")
    response_version = response.get("httpVersion")
    return Exchange(
        method=method.upper(),
        url=url,
        request_headers=request_headers,
        request_body=body,
        status=int(status),
        status_text=str(response.get("statusText") or ""),
        response_headers=response_headers,
        response_body=response_body,
        started=str(entry.get("startedDateTime") or ""),
        time_ms=float(elapsed) if isinstance(elapsed, int | float) and not isinstance(elapsed, bool) else 0.0,
        http_version=http_version,
        upstream=str(entry.get("_upstream") or ""),
        error=str(error) if error else None,
        source=where,
        extra=extra,
        pageref=entry["pageref"] if isinstance(entry.get("pageref"), str) else "",
        server_ip=server_ip or "",
        connection=entry["connection"] if isinstance(entry.get("connection"), str) else "",
        comment=entry["comment"] if isinstance(entry.get("comment"), str) else "",
        request_cookies=_read_cookies(request.get("cookies")),
        response_cookies=_read_cookies(response.get("cookies")),
        timings=_read_timings(entry.get("timings")),
        response_http_version=response_version
        if isinstance(response_version, str) and response_version and response_version != http_version
        else "",
    )


@dataclass(frozen=True)
class HarDocument:
    """A HAR document as read: its exchanges, its pages (``log.pages``) and its ``log.comment``."""

    exchanges: list[Exchange]
    pages: tuple[Mapping[str, Any], ...] = ()
    comment: str | None = None


def loads_har(data: str | bytes | Mapping[str, Any], source: str = "HAR") -> list[Exchange]:
    """The exchanges of a HAR document (text, bytes or already parsed)."""
    return reads_har(data, source).exchanges


def reads_har(data: str | bytes | Mapping[str, Any], source: str = "HAR") -> HarDocument:
    """A HAR document (text, bytes or already parsed): exchanges, pages and comment."""
    if isinstance(data, str | bytes):
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HarError(f"{source}: not JSON ({exc})") from None
        except RecursionError:
            raise HarError(f"{source}: not a HAR document (nested too deeply)") from None
    else:
        document = data
    log = document.get("log") if isinstance(document, Mapping) else None
    if not isinstance(log, Mapping):
        raise HarError(f"{source}: not a HAR document (no 'log' object)")
    entries = log.get("entries")
    if not isinstance(entries, list):
        raise HarError(f"{source}: log.entries must be a list")
    exchanges = [entry_to_exchange(entry, f"{source}: entry {index}") for index, entry in enumerate(entries)]
    pages = log.get("pages")
    _check_unicode(pages, f"{source}: log.pages")
    read = [_read_page(page) for page in (pages if isinstance(pages, list) else [])]
    comment = log.get("comment")
    return HarDocument(exchanges, tuple(page for page in read if page), comment if isinstance(comment, str) else None)


def load_har(path: str | os.PathLike[str]) -> list[Exchange]:
    """The exchanges of a HAR file."""
    return read_har(path).exchanges


def read_har(path: str | os.PathLike[str]) -> HarDocument:
    """A HAR file: exchanges, pages and comment."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HarError(f"{path}: {exc.strerror or exc}") from None
    return reads_har(data, str(path.name))


def har_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The HAR files of a cassette directory (or the one file given), in name order (recording order)."""
    path = Path(directory)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise HarError(f"{path}: no such cassette directory")
    return sorted(p for p in path.rglob("*.har") if p.is_file() and not p.name.startswith("."))


def load_directory(directory: str | os.PathLike[str]) -> list[Exchange]:
    """Every exchange of every HAR file of a cassette directory, files in name order, entries in file order."""
    exchanges: list[Exchange] = []
    for path in har_files(directory):
        exchanges.extend(load_har(path))
    return exchanges


def headers_from(pairs: Sequence[tuple[str, str]] | Mapping[str, str]) -> Headers:
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return tuple((str(k), str(v)) for k, v in items)
