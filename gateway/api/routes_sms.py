"""The SMS gateway's inbound webhook: ``POST /api/v1/sms/inbound`` (``docs/api.md``): lookup by SMS.

Authenticated by the SMS gateway's signature, not a bearer token: ``X-Signature`` is the hex HMAC-SHA256 of the raw
body with ``[sms] secret``. The checks, in the order a caller can act on them:

- lookup by SMS is off (no ``[sms] base_url`` or no secret) → 404, as the payment notifications do; a secret
  reference that cannot be read → 503;
- a body over 8 KiB → 413; a missing, malformed or wrong signature → 401 (logged with the reason, never the body):
  nothing is queued;
- not JSON → 400; not an inbound text (``from``, ``text``, ``received_at``) → 422.

Otherwise the reply (:mod:`gateway.services.sms_lookup`) is queued for the SMS gateway, at most
``[sms] replies_per_hour`` per phone number in any hour, counted in the outbox, so across every process sharing the
database and across restarts (beyond it the text is answered ``rate_limited`` and gets no reply). The answer is
``200`` ``{"outcome", "replied"}``. The sender's number is logged only as a hash.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.sms import MAX_BODY_BYTES, SIGNATURE_HEADER, InvalidInbound, InvalidSignature, parse_inbound
from adapters.sms import verify_signature as verify_sms_signature

from ..config import ConfigError
from ..services.sms_lookup import SmsReply, phone_key, queue_reply, replies_within_hour, reply_text
from ..store.models import Dossier
from ..views import lookup_view
from .errors import ApiError
from .routes_common import clock, json_body_doc, parse_json, runtime_of, signed_body
from .schemas import SmsInboundOutcome, error_responses

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/sms", tags=["sms"])
log = logging.getLogger("gateway.sms")


class SmsInbound(BaseModel):
    """A text a citizen sent to the lookup number (signed with ``X-Signature``)."""

    model_config = ConfigDict(extra="ignore")

    sender: str = Field(alias="from", description="the sender's phone number")
    text: str
    received_at: str | None = None


def _secret(request: Request) -> str:
    settings = runtime_of(request).settings.sms
    try:
        secret = settings.resolve_secret() if settings.base_url is not None else None
    except ConfigError as exc:
        log.error("SMS webhook unavailable: %s", exc)
        raise ApiError(503, "lookup by SMS is not configured correctly") from None
    if secret is None:
        raise ApiError(404, "lookup by SMS is not configured on this gateway")
    return secret


@router.post(
    "/inbound",
    summary="An inbound text from the SMS gateway (X-Signature: HMAC-SHA256 of the body): lookup by SMS",
    openapi_extra=json_body_doc(SmsInbound),
    response_model=None,
    responses={
        200: {"model": SmsInboundOutcome, "description": "What the text got: a reply queued, or none"},
        **error_responses(400, 413, 422),
        401: {**error_responses(401)[401], "description": "Missing or wrong X-Signature"},
        404: {**error_responses(404)[404], "description": "Lookup by SMS is not configured on this gateway"},
        503: {**error_responses(503)[503], "description": "The SMS secret cannot be read"},
    },
)
async def sms_inbound(request: Request) -> dict[str, Any]:
    secret = _secret(request)
    raw = await signed_body(
        request,
        verify_sms_signature,
        InvalidSignature,
        secret=secret,
        header=SIGNATURE_HEADER,
        max_bytes=MAX_BODY_BYTES,
        what="inbound text",
        log=log,
    )
    try:
        inbound = parse_inbound(parse_json(raw))
    except InvalidInbound as exc:
        raise ApiError(422, f"not an inbound text: {exc}") from None
    phone = phone_key(inbound.sender, secret)
    runtime = runtime_of(request)
    now = clock(request)
    inbound_key = hashlib.sha256(raw).hexdigest()[:32]
    per_hour = runtime.settings.sms.replies_per_hour

    def answer(session: Session) -> SmsReply | None:
        if replies_within_hour(session, phone) >= per_hour:
            return None

        def lookup(code: str) -> dict[str, Any] | None:
            dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one_or_none()
            return None if dossier is None else lookup_view(session, dossier, calendar=runtime.calendar, now=now)

        reply = reply_text(inbound.text, lookup)
        queue_reply(session, to=inbound.sender, reply=reply, inbound_key=inbound_key, phone=phone)
        return reply

    reply = await runtime.db.run(answer)
    if reply is None:
        log.warning("inbound SMS not answered: rate limited", extra={"phone_hash": phone})
        return {"outcome": "rate_limited", "replied": False}
    log.info("inbound SMS answered", extra={"phone_hash": phone, "outcome": reply.outcome, "chars": len(reply.text)})
    return {"outcome": reply.outcome, "replied": True}
