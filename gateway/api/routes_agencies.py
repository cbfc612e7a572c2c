"""Agencies' status events (callbacks): ``POST /api/v1/agencies/{agency}/events``, that agency's token only."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from ..auth import AGENCY, Principal
from ..domain.status import IllegalTransition
from ..services.events import AgencyEvent, apply_event
from ..validation import parse_model
from .errors import ApiError
from .routes_common import clock, context_of_request, json_body_doc, read_json, require
from .schemas import EventOutcome, error_responses

router = APIRouter(prefix="/api/v1/agencies", tags=["agencies"])
log = logging.getLogger("gateway.events")


@router.post(
    "/{agency}/events",
    summary="A status event from an agency's one-stop system",
    openapi_extra=json_body_doc(AgencyEvent),
    response_model=None,
    responses={
        200: {"model": EventOutcome, "description": "The dossier after the event (duplicate: a repeat, no change)"},
        **error_responses(400, 401, 403, 404, 409, 413, 415, 422),
    },
)
async def agency_event(
    agency: str, request: Request, principal: Annotated[Principal, Depends(require(AGENCY))]
) -> dict[str, Any]:
    if principal.agency_code != agency:
        raise ApiError(403, f"this token is agency {principal.agency_code}'s, not agency {agency}'s")
    event = parse_model(AgencyEvent, await read_json(request))
    try:
        outcome = await apply_event(context_of_request(request), principal, event, now=clock(request))
    except IllegalTransition as exc:
        log.warning(
            "illegal transition refused",
            extra={"dossier_code": event.dossier_code, "agency": agency, "from": exc.source.value, "to": exc.target},
        )
        raise
    request.app.state.metrics.events.labels(
        status=event.status.value, outcome="duplicate" if outcome.duplicate else "applied"
    ).inc()
    return outcome.to_json()
