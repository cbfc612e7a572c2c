"""The SMS gateway's wire: the shared-secret signature of both directions, the inbound text, the lookup command, and
plain-ASCII texts that fit one SMS.

Both the gateway's sends (``POST {base_url}/send`` ``{"to", "text"}``) and the SMS gateway's inbound webhook
(``{"from", "text", "received_at"}``) carry ``X-Signature``: the hex HMAC-SHA256 of the raw body with the shared
secret. Texts are Vietnamese without diacritics (``đ`` → ``d``), at most :data:`SMS_MAX_CHARS` characters: one
GSM-7 message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LOOKUP_KEYWORDS",
    "MAX_BODY_BYTES",
    "SIGNATURE_HEADER",
    "SMS_MAX_CHARS",
    "InboundText",
    "InvalidInbound",
    "InvalidSignature",
    "fit_sms",
    "lookup_code",
    "parse_inbound",
    "plain_text",
    "sign_body",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Signature"
#: One SMS of the GSM-7 alphabet.
SMS_MAX_CHARS = 160
#: An inbound text is a few hundred bytes; anything much larger is not one.
MAX_BODY_BYTES = 8 * 1024
#: The words that ask for a dossier's status (``TRACUU <code>``, ``TC <code>``; any case).
LOOKUP_KEYWORDS = frozenset({"TRACUU", "TC"})

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_PRINTABLE = re.compile(r"[^\x20-\x7e]+")


class InvalidSignature(Exception):
    """The ``X-Signature`` header is missing, malformed or wrong."""


class InvalidInbound(ValueError):
    """A signed inbound message that is not one (a missing sender or text)."""


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign_body(raw_body: bytes, secret: str | bytes) -> str:
    """The ``X-Signature`` of ``raw_body``: hex HMAC-SHA256 with the shared secret."""
    return hmac.new(_secret_bytes(secret), raw_body, hashlib.sha256).hexdigest()


def verify_signature(raw_body: bytes, signature_header: str | None, secret: str | bytes) -> None:
    """Return when ``signature_header`` is ``raw_body``'s signature; :class:`InvalidSignature` otherwise."""
    if not isinstance(signature_header, str) or not signature_header.strip():
        raise InvalidSignature("the X-Signature header is missing")
    given = signature_header.strip()
    if not _HEX_SHA256.fullmatch(given):
        raise InvalidSignature("the X-Signature header is not a hex HMAC-SHA256")
    expected = sign_body(raw_body, secret)
    if not hmac.compare_digest(given.lower().encode("ascii"), expected.encode("ascii")):
        raise InvalidSignature("the X-Signature does not match the body")


@dataclass(frozen=True)
class InboundText:
    """A text a citizen sent (``sender`` is personal data: left out of ``repr``, never logged)."""

    sender: str
    text: str
    received_at: str | None = None

    def __repr__(self) -> str:
        return f"InboundText(text={self.text[:40]!r}, received_at={self.received_at!r})"


def parse_inbound(document: Any) -> InboundText:
    """The inbound text of the webhook's JSON body; :class:`InvalidInbound` when it is not one."""
    if not isinstance(document, dict):
        raise InvalidInbound("expected a JSON object")
    sender, text, received = document.get("from"), document.get("text"), document.get("received_at")
    if not isinstance(sender, str) or not sender.strip() or len(sender) > 32:
        raise InvalidInbound("from: expected the sender's number")
    if not isinstance(text, str) or len(text) > 1600:
        raise InvalidInbound("text: expected the message's text")
    if received is not None and not isinstance(received, str):
        raise InvalidInbound("received_at: expected a string")
    return InboundText(sender=sender.strip(), text=text, received_at=received)


def lookup_code(text: str) -> str | None:
    """The dossier code of a lookup command (``TRACUU <code>`` or ``TC <code>``, any case, any spaces), else
    ``None``; an empty string when the keyword comes without a code."""
    words = text.split()
    if not words or words[0].upper() not in LOOKUP_KEYWORDS:
        return None
    return " ".join(words[1:2]).upper()


def plain_text(text: str) -> str:
    """``text`` in printable ASCII: Vietnamese diacritics removed (``đ`` → ``d``), anything else dropped."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_PRINTABLE.sub(" ", stripped).split())


def fit_sms(text: str) -> str:
    """``text`` as :func:`plain_text`, cut to one SMS (:data:`SMS_MAX_CHARS`), ending ``...`` when cut."""
    plain = plain_text(text)
    if len(plain) <= SMS_MAX_CHARS:
        return plain
    return plain[: SMS_MAX_CHARS - 3].rstrip() + "..."
