"""The public postal service's tracking events and their webhook (``POST /api/v1/postal/events``, ``docs/api.md``).

::

    POST <gateway>/api/v1/postal/events
    X-Signature: <hex HMAC-SHA256 of the raw body with the shared secret>
    {"order_code": "EL000000001VN", "status": "accepted|in_transit|delivered|failed|returned",
     "at": "2026-11-23T08:30:00+07:00", "note": "..."}

:func:`verify_webhook` checks the signature over the raw bytes first (constant-time), then reads the event:
:class:`InvalidSignature` or :class:`InvalidEvent` otherwise, so a caller answers 401 or 400 and changes nothing.
Times without an offset are read in Vietnam's time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from adapters import jsonguard

__all__ = [
    "MAX_BODY_BYTES",
    "POSTAL_TIME",
    "SIGNATURE_HEADER",
    "InvalidEvent",
    "InvalidSignature",
    "PostalError",
    "TrackingEvent",
    "TrackingStatus",
    "parse_event",
    "sign_body",
    "verify_signature",
    "verify_webhook",
]

SIGNATURE_HEADER = "X-Signature"
#: Larger webhook bodies are refused before any parsing.
MAX_BODY_BYTES = 64 * 1024
#: Vietnam's time (UTC+7, no daylight saving): times sent without an offset are read in it.
POSTAL_TIME = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_MAX_CODE = 64
_MAX_NOTE = 2000


class PostalError(Exception):
    """A postal message that cannot be accepted."""


class InvalidSignature(PostalError):
    """The ``X-Signature`` header is missing, malformed or wrong."""


class InvalidEvent(PostalError, ValueError):
    """A correctly signed body that is not a valid tracking event."""


class TrackingStatus(StrEnum):
    """Where a shipment stands."""

    ACCEPTED = "accepted"  # the postal service took the order (and, for a pickup, the parcel)
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    FAILED = "failed"  # a delivery attempt failed
    RETURNED = "returned"  # returned to the sender


@dataclass(frozen=True)
class TrackingEvent:
    """One tracking event of a postal order."""

    order_code: str
    status: TrackingStatus
    at: datetime
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "order_code": self.order_code,
            "status": self.status.value,
            "at": self.at.isoformat(),
            "note": self.note,
        }


def _secret_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not secret:
        raise ValueError("the shared secret must not be empty")
    return secret


def sign_body(raw_body: bytes, secret: str | bytes) -> str:
    """The ``X-Signature`` of ``raw_body``: hex HMAC-SHA256 with the shared secret."""
    return hmac.new(_secret_bytes(secret), raw_body, hashlib.sha256).hexdigest()


def verify_signature(raw_body: bytes, signature_header: str | None, secret: str | bytes) -> None:
    """Return when ``signature_header`` is ``raw_body``'s signature; :class:`InvalidSignature` otherwise.

    A ``sha256=`` prefix is tolerated; hex digits in either case.
    """
    if not isinstance(signature_header, str) or not signature_header.strip():
        raise InvalidSignature("the X-Signature header is missing")
    given = signature_header.strip()
    if given[:7].lower() == "sha256=":
        given = given[7:]
    if not _HEX_SHA256.fullmatch(given):
        raise InvalidSignature("the X-Signature header is not a hex HMAC-SHA256")
    expected = sign_body(raw_body, secret)
    if not hmac.compare_digest(given.lower().encode("ascii"), expected.encode("ascii")):
        raise InvalidSignature("the X-Signature does not match the body")


def parse_event(value: Any) -> TrackingEvent:
    """The tracking event a decoded JSON value holds; :class:`InvalidEvent` otherwise."""
    if not isinstance(value, Mapping):
        raise InvalidEvent("expected a JSON object")
    code = value.get("order_code")
    if not isinstance(code, str) or not code.strip() or len(code) > _MAX_CODE or not code.isprintable():
        raise InvalidEvent(f"order_code must be a non-empty printable string of at most {_MAX_CODE} characters")
    status = value.get("status")
    try:
        known = TrackingStatus(status) if isinstance(status, str) else None
    except ValueError:
        known = None
    if known is None:
        raise InvalidEvent(f"unknown status (expected one of {', '.join(s.value for s in TrackingStatus)})")
    at_text = value.get("at")
    if not isinstance(at_text, str) or not at_text:
        raise InvalidEvent("at must be an ISO 8601 time")
    try:
        at = datetime.fromisoformat(at_text)
    except ValueError:
        raise InvalidEvent("at must be an ISO 8601 time") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=POSTAL_TIME)
    note = value.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > _MAX_NOTE):
        raise InvalidEvent(f"note must be a string of at most {_MAX_NOTE} characters (or null)")
    return TrackingEvent(order_code=code, status=known, at=at, note=note or None)


def verify_webhook(raw_body: bytes, signature_header: str | None, secret: str | bytes) -> TrackingEvent:
    """The tracking event a webhook delivers, once its signature is verified.

    :raises InvalidSignature: missing, malformed or wrong ``X-Signature`` (answer 401).
    :raises InvalidEvent: an oversized body, malformed JSON, a missing field or an unknown status (answer 400).
    """
    if not isinstance(raw_body, bytes | bytearray):
        raise TypeError("raw_body must be the request's bytes, as received")
    raw = bytes(raw_body)
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidEvent(f"body larger than {MAX_BODY_BYTES} bytes")
    verify_signature(raw, signature_header, secret)
    try:
        value = jsonguard.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidEvent("the body is not valid UTF-8 JSON") from None
    return parse_event(value)
