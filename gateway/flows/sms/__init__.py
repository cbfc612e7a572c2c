"""Lookup by SMS: the replies queued by the inbound webhook (``sms.send``) sent through the SMS gateway.

The reply itself is decided by :mod:`gateway.services.sms_lookup`; the composition root builds the SMS gateway's
client (:mod:`gateway.bootstrap.upstreams`). The recipient's number is never logged.
"""

from gateway.flows.sms.handler import SmsSender, SmsSendHandler

__all__ = ["SmsSendHandler", "SmsSender"]
