"""The SMS gateway (lookup by SMS): the signed send API's client and the inbound webhook's wire.

Usable on its own: nothing here imports the daemon::

    from adapters.sms import SmsClient, verify_signature, parse_inbound, lookup_code, fit_sms
"""

from adapters.sms.client import SmsClient
from adapters.sms.wire import (
    LOOKUP_KEYWORDS,
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    SMS_MAX_CHARS,
    InboundText,
    InvalidInbound,
    InvalidSignature,
    fit_sms,
    lookup_code,
    parse_inbound,
    plain_text,
    sign_body,
    verify_signature,
)

__all__ = [
    "LOOKUP_KEYWORDS",
    "MAX_BODY_BYTES",
    "SIGNATURE_HEADER",
    "SMS_MAX_CHARS",
    "InboundText",
    "InvalidInbound",
    "InvalidSignature",
    "SmsClient",
    "fit_sms",
    "lookup_code",
    "parse_inbound",
    "plain_text",
    "sign_body",
    "verify_signature",
]
