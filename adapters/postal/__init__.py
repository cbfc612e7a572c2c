"""Public postal service (*bưu chính công ích*) client and tracking webhook verification.

Pickup orders (the applicant's originals) and delivery orders (the result), tracking by order code, and the signed
tracking webhook (``POST /api/v1/postal/events``, ``docs/api.md``). The gateway depends on
:class:`~adapters.postal.port.PostalService` only. Usable on its own by a portal backend: nothing here
imports the daemon::

    from adapters.postal import PostalClient, verify_webhook, InvalidSignature, InvalidEvent
"""

from adapters.postal.client import KINDS, Order, OrderKind, PostalClient, request_signature
from adapters.postal.port import PostalService
from adapters.postal.webhook import (
    SIGNATURE_HEADER,
    InvalidEvent,
    InvalidSignature,
    PostalError,
    TrackingEvent,
    TrackingStatus,
    parse_event,
    sign_body,
    verify_signature,
    verify_webhook,
)

__all__ = [
    "KINDS",
    "SIGNATURE_HEADER",
    "InvalidEvent",
    "InvalidSignature",
    "Order",
    "OrderKind",
    "PostalClient",
    "PostalError",
    "PostalService",
    "TrackingEvent",
    "TrackingStatus",
    "parse_event",
    "request_signature",
    "sign_body",
    "verify_signature",
    "verify_webhook",
]
