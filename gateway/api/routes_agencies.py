"""Agencies' status events (callbacks): ``POST /api/v1/agencies/{agency}/events``, that agency's token only."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from .. import dossiers, intake
from ..auth import AGENCY, Principal
from ..domain.status import IllegalTransition, national_code
from ..fanout import Fanout
from ..intake import Invalid, find_dossier, parse_model
from .errors import ApiError
from .routes_common import clock, json_body_doc, read_json, require, runtime_of

router = APIRouter(prefix="/api/v1/agencies", tags=["agencies"])
log = logging.getLogger("gateway.events")


@router.post(
    "/{agency}/events",
    summary="A status event from an agency's one-stop system",
    openapi_extra=json_body_doc(dossiers.AgencyEvent),
    responses={409: {"description": "The state machine refuses the transition"}},
)
async def agency_event(
    agency: str, request: Request, principal: Annotated[Principal, Depends(require(AGENCY))]
) -> dict[str, Any]:
    if principal.agency_code != agency:
        raise ApiError(403, f"this token is agency {principal.agency_code}'s, not agency {agency}'s")
    event = parse_model(dossiers.AgencyEvent, await read_json(request))
    try:
        answer = await apply_event(request, principal, event)
    except IllegalTransition as exc:
        log.warning(
            "illegal transition refused",
            extra={"dossier_code": event.dossier_code, "agency": agency, "from": exc.source.value, "to": exc.target},
        )
        raise
    request.app.state.metrics.events.labels(
        status=event.status.value, outcome="duplicate" if answer["duplicate"] else "applied"
    ).inc()
    return answer


async def apply_event(request: Request, principal: Principal, event: dossiers.AgencyEvent) -> dict[str, Any]:
    """Apply an agency's status event (REST or the SOAP callback) in one unit of work; the answer's body.

    Result files are decoded and verified first; the change fans out as configured.
    """
    runtime = runtime_of(request)
    now = clock(request)
    items = dossiers.result_file_items(event)
    files: list[intake.PreparedFile] = []
    if items:
        files, errors = await intake.prepare_files(items, max_bytes=runtime.max_file_bytes)
        if errors:
            raise Invalid(errors)
        await intake.verify_files(runtime.verifier, files)
    fanout = Fanout.from_runtime(runtime)

    def work(session: Session) -> dict[str, Any]:
        from ..audit import lock_for_write

        lock_for_write(session)
        dossier = find_dossier(session, event.dossier_code, for_update=True)
        applied = dossiers.apply_agency_event(
            session,
            dossier,
            event,
            actor=principal,
            calendar=runtime.calendar,
            now=now,
            result_files=files,
            fanout=fanout,
        )
        return {
            "dossier_code": dossier.code,
            "status": dossier.status,
            "national_status_code": national_code(dossier.status),
            "agency_code": dossier.agency_code,
            "received_at": dossiers.iso(dossier.received_at),
            "due_at": dossiers.iso(dossier.due_at),
            "duplicate": not applied,
        }

    return await runtime.db.run(work)
