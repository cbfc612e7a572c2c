"""The public postal service's tracking webhook: ``POST /api/v1/postal/events`` (``docs/api.md``).

Authenticated by the provider's signature, not a bearer token: ``X-Signature`` is the hex HMAC-SHA256 of the raw body
with ``[postal] secret``. The checks, in the order a caller can act on them:

- the integration is off (no ``[postal] base_url`` or no secret) → 404, as the payment and SMS notifications do; a
  secret reference that cannot be read → 503;
- a body over 64 KiB → 413; a missing, malformed or wrong signature → 401 (logged with the reason, never the body
  or the secret), before the body is read as JSON: nothing changes;
- not JSON → 400; not a tracking event (``order_code``, ``status`` of ``accepted|in_transit|delivered|failed|
  returned``, ``at``, ``note``) → 422;
- an order the gateway did not place → 404.

Otherwise the event is applied (:func:`gateway.services.tracking.apply_tracking_event`) and the answer is ``200``
``{"order_code", "kind", "status", "outcome": "applied|duplicate|late", "dossier_code", "dossier_status"}``:
repeats and late events are accepted (the postal service must not retry them) and change nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from adapters.postal import SIGNATURE_HEADER, InvalidEvent, InvalidSignature, parse_event, verify_signature
from adapters.postal.webhook import MAX_BODY_BYTES

from ..config import ConfigError
from ..services.tracking import receive_tracking_event
from .errors import ApiError
from .routes_common import clock, context_of_request, json_body_doc, parse_json, runtime_of, signed_body
from .schemas import PostalEventOutcome, error_responses

router = APIRouter(prefix="/api/v1/postal", tags=["postal"])
log = logging.getLogger("gateway.postal")


class PostalEvent(BaseModel):
    """A tracking event of the public postal service (signed with ``X-Signature``)."""

    model_config = ConfigDict(extra="ignore")

    order_code: str
    status: str
    at: str
    note: str | None = None


@router.post(
    "/events",
    summary="A tracking event from the public postal service (X-Signature: HMAC-SHA256 of the body)",
    openapi_extra=json_body_doc(PostalEvent),
    response_model=None,
    responses={
        200: {"model": PostalEventOutcome, "description": "What the event did"},
        **error_responses(400, 413, 422),
        401: {**error_responses(401)[401], "description": "Missing or wrong X-Signature"},
        404: {**error_responses(404)[404], "description": "No such postal order, or postal delivery is not configured"},
        503: {**error_responses(503)[503], "description": "The postal secret cannot be read"},
    },
)
async def postal_event(request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    now = clock(request)
    settings = runtime.settings.postal
    try:
        secret = settings.resolve_secret() if settings is not None else None
    except ConfigError as exc:
        log.error("postal webhook unavailable: %s", exc)
        raise ApiError(503, "the postal integration is not configured correctly") from None
    if secret is None:
        raise ApiError(404, "postal delivery is not configured on this gateway")
    raw = await signed_body(
        request,
        verify_signature,
        InvalidSignature,
        secret=secret,
        header=SIGNATURE_HEADER,
        max_bytes=MAX_BODY_BYTES,
        what="postal event",
        log=log,
    )
    try:
        event = parse_event(parse_json(raw))
    except InvalidEvent as exc:
        raise ApiError(422, f"not a tracking event: {exc}") from None
    result = await receive_tracking_event(context_of_request(request), event, now=now)
    log.info(
        "postal event received",
        extra={"order_code": result.order_code, "status": event.status.value, "outcome": result.outcome},
    )
    return result.to_json()
