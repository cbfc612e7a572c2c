"""Bodies as a cassette keeps them: decoded (no content coding), text in the charset the message declares.

HAR 1.2 stores a response's ``content.text`` *decoded*: a browser's capture of a ``Content-Encoding: gzip`` answer
holds the plain text and still lists the header (``content.encoding`` is only HAR's own base64, never the HTTP
content coding). Other sources keep the bytes as they came over the wire: VCR.py (unless
``decode_compressed_response``), and cassettes written by older versions of the gateway. :func:`decoded_response`
brings both to one form: the decoded body without ``Content-Encoding``, so replay answers a consistent message and
redaction sees the real text.

A body still encoded is recognised when it is a complete, valid stream of the declared coding (gzip's magic number
and CRC, zlib's header and checksum, a whole brotli stream when a brotli module is installed). Anything else is
taken as decoded, as HAR 1.2 says.

Text in HAR is Unicode; on the wire it was bytes in the charset of the ``Content-Type`` (``charset=ISO-8859-1``).
:func:`text_to_bytes` and :func:`bytes_to_text` convert with that charset, so a Latin-1 page is replayed as the
Latin-1 bytes its header announces.
"""

from __future__ import annotations

import codecs
import gzip
import importlib
import zlib
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from typing import Any

__all__ = ["bodiless", "bytes_to_text", "charset_of", "decode_content", "decoded_response", "text_to_bytes"]

Headers = tuple[tuple[str, str], ...]


def bodiless(method: str, status: int) -> bool:
    """Whether an answer has no body whatever its Content-Length says: to HEAD, a 1xx, 204 or 304 (RFC 9110)."""
    return method.upper() == "HEAD" or status < 200 or status in (204, 304)


def _brotli() -> Any:
    for name in ("brotli", "brotlicffi"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _gunzip(body: bytes) -> bytes:
    if not body.startswith(b"\x1f\x8b"):
        raise ValueError("no gzip magic number")
    return gzip.decompress(body)


def _inflate(body: bytes) -> bytes:
    # The zlib wrapper (RFC 1950) is what "deflate" means; its header and Adler-32 tell a stream from plain text.
    return zlib.decompress(body)


def _unbrotli(body: bytes) -> bytes:
    module = _brotli()
    if module is None:
        raise ValueError("no brotli module installed")
    return bytes(module.decompress(body))


_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": _gunzip,
    "x-gzip": _gunzip,
    "deflate": _inflate,
    "br": _unbrotli,
}


def content_codings(headers: Headers) -> list[str]:
    """The content codings of ``Content-Encoding`` headers, in the order they were applied (``identity`` left out)."""
    codings: list[str] = []
    for name, value in headers:
        if name.lower() == "content-encoding":
            codings.extend(part.strip().lower() for part in value.split(",") if part.strip())
    return [coding for coding in codings if coding != "identity"]


def decode_content(body: bytes, codings: Sequence[str]) -> bytes | None:
    """``body`` decoded from ``codings`` (applied in that order), or None when it is not such a stream."""
    for coding in reversed(codings):
        decoder = _DECODERS.get(coding)
        if decoder is None:
            return None
        try:
            body = decoder(body)
        except Exception:  # noqa: BLE001 - any failure (zlib, gzip, brotli's own error) means "not such a stream"
            return None
    return body


def decoded_response(headers: Headers, body: bytes, *, har: bool) -> tuple[Headers, bytes]:
    """The response ``headers`` and ``body`` with the body decoded and ``Content-Encoding`` gone.

    ``har``: the body comes from a HAR file, whose ``content.text`` is decoded by definition (HAR 1.2), unless it is
    still a valid encoded stream (a cassette of an older gateway). Otherwise (VCR.py, a live recording) the body is
    as it came over the wire: it is decoded when it can be, and left encoded, with its header, when it cannot
    (a coding no installed library reads, a corrupt stream). A bodiless answer (HEAD, 304) keeps its headers.
    """
    codings = content_codings(headers)
    if not codings or not body:
        return headers, body
    decoded = decode_content(body, codings)
    if decoded is None and not har:
        return headers, body
    if decoded is not None:
        body = decoded
    kept = []
    for name, value in headers:
        lower = name.lower()
        if lower == "content-encoding":
            continue
        kept.append((name, str(len(body)) if lower == "content-length" else value))
    return tuple(kept), body


# ----------------------------------------------------------------------------------------------------------------------
# Charsets
# ----------------------------------------------------------------------------------------------------------------------

#: Browsers read these labels as windows-1252 (WHATWG Encoding), so a HAR's text may hold its characters (``€``).
_LATIN1_FAMILY = frozenset({"latin-1", "iso8859-1", "ascii"})


def charset_of(mime: str) -> str | None:
    """The Python codec name of the ``charset`` parameter of a media type, or None (absent, unknown, UTF-8)."""
    if not mime or "charset" not in mime.lower():
        return None
    message = EmailMessage()
    try:
        message["Content-Type"] = mime
        charset = message.get_content_charset()
    except (ValueError, TypeError, IndexError):
        return None
    if not charset:
        return None
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return None
    return None if name in ("utf-8", "utf-8-sig") else name


def text_to_bytes(text: str, mime: str) -> bytes:
    """HAR text as the bytes a server sent: in the declared charset when it can spell the text, else UTF-8."""
    charset = charset_of(mime)
    if charset is not None:
        candidates = [charset, "cp1252"] if charset in _LATIN1_FAMILY else [charset]
        for candidate in candidates:
            try:
                return text.encode(candidate)
            except UnicodeEncodeError:
                continue
    return text.encode("utf-8")


def bytes_to_text(body: bytes, mime: str) -> str | None:
    """A body as HAR text (its declared charset, else UTF-8), or None when it is not text in that charset."""
    charset = charset_of(mime) or "utf-8"
    try:
        text = body.decode(charset)
    except UnicodeDecodeError:
        return None
    # Only a text that gives back the same bytes is stored as text (a charset that normalises is no round trip).
    return text if text_to_bytes(text, mime) == body else None
