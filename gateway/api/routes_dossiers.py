"""The portal's dossier endpoints: submit, read, supplement, withdraw.

Reading a dossier shows the applicant's personal data: each read is an entry of the audit trail (who, which dossier,
which fields), written in the same transaction as the read.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from .. import audit
from ..auth import AGENCY, PORTAL, Principal
from ..services import intake, supplements, withdrawal
from ..services.changes import find_dossier
from ..services.context import Render
from ..services.idempotency import Answer, DossierRequest
from ..store.models import Dossier
from ..views import can_read, dossier_view
from .errors import ApiError
from .routes_common import clock, context_of_request, json_body_doc, read_json, require, runtime_of
from .schemas import DossierView, error_responses

router = APIRouter(prefix="/api/v1/dossiers", tags=["dossiers"])

#: The personal data a dossier's answer shows: each read of it is an audit entry naming these fields.
PERSONAL_FIELDS = frozenset({"applicant", "delivery_address"})

_KEY_DOC = "Repeating a request with the same key returns the first answer and changes nothing."
#: The ``Idempotency-Key`` header in the OpenAPI description. The routes read it from the request themselves
#: (:func:`_idempotency_key`): a header parameter of the framework's costs more to resolve than the header's look-up.
_KEY_PARAMETER = {
    "description": _KEY_DOC,
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": _KEY_DOC, "title": "Idempotency-Key"},
}


def _idempotency_key(request: Request) -> str | None:
    return request.headers.get("idempotency-key")


def _with_key(body_doc: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` for a JSON body and the ``Idempotency-Key`` header."""
    return {**body_doc, "parameters": [_KEY_PARAMETER]}


_CHANGE_ERRORS = error_responses(400, 401, 403, 404, 409, 413, 415, 422)


def _answer(answer: Answer, code: str | None = None) -> JSONResponse:
    headers = {}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    if code:
        headers["Location"] = f"/api/v1/dossiers/{code}"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


def _render(request: Request) -> Render:
    calendar = runtime_of(request).calendar

    def render(session: Session, dossier: Dossier, now: datetime, /, *, created: bool = False) -> dict[str, Any]:
        return dossier_view(session, dossier, calendar=calendar, now=now, created=created)

    return render


async def _dossier_request(
    request: Request, principal: Principal, code: str, idempotency_key: str | None
) -> DossierRequest:
    document = await read_json(request)
    return DossierRequest(
        principal=principal,
        code=code,
        document=document,
        idempotency_key=idempotency_key,
        now=clock(request),
        render=_render(request),
        path=request.url.path,
    )


#: OpenAPI links from a submitted dossier (its ``code``) to what can be done with it next.
DOSSIER_LINKS = {
    "GetDossier": {"operationId": "get_dossier", "parameters": {"code": "$response.body#/code"}},
    "LookUpDossier": {"operationId": "lookup", "parameters": {"code": "$response.body#/code"}},
    "AddSupplement": {"operationId": "add_supplement", "parameters": {"code": "$response.body#/code"}},
    "WithdrawDossier": {"operationId": "withdraw_dossier", "parameters": {"code": "$response.body#/code"}},
    "ReportAgencyEvent": {
        "operationId": "agency_event",
        "parameters": {"agency": "$response.body#/agency_code"},
        "requestBody": {"dossier_code": "$response.body#/code"},
    },
}


@router.post(
    "",
    status_code=201,
    summary="Submit a dossier",
    openapi_extra=_with_key(json_body_doc(intake.Submission)),
    response_model=None,
    responses={
        201: {
            "model": DossierView,
            "description": "The dossier taken in, as GET answers it (a repeat: the same)",
            "links": DOSSIER_LINKS,
        },
        **error_responses(400, 401, 403, 413, 415, 422, 503),
    },
)
async def submit_dossier(
    request: Request,
    principal: Annotated[Principal, Depends(require(PORTAL))],
) -> JSONResponse:
    idempotency_key = _idempotency_key(request)
    document = await read_json(request)
    started = time.perf_counter()
    answer = await intake.submit(
        context_of_request(request),
        principal,
        document,
        idempotency_key=idempotency_key,
        now=clock(request),
        path=request.url.path,
        render=_render(request),
    )
    if not answer.replayed:
        metrics = request.app.state.metrics
        agency = answer.body.get("agency_code", "")
        metrics.submitted.labels(agency=agency).inc()
        metrics.intake.labels(agency=agency).observe(time.perf_counter() - started)
        for item in answer.body.get("components") or ():
            verdict = (item.get("verification") or {}).get("verdict")
            if isinstance(verdict, str):
                metrics.verdicts.labels(verdict=verdict, source="intake").inc()
    return _answer(answer, answer.body.get("code"))


@router.get(
    "/{code}",
    summary="A dossier: status, history, verification, deadlines",
    response_model=None,
    responses={200: {"model": DossierView, "description": "The dossier"}, **error_responses(401, 403, 404)},
)
async def get_dossier(
    code: str, request: Request, principal: Annotated[Principal, Depends(require(PORTAL, AGENCY))]
) -> dict[str, Any]:
    runtime = runtime_of(request)
    now = clock(request)

    def read(session: Session) -> dict[str, Any]:
        audit.lock_for_write(session)  # the read is recorded: the applicant's personal data was shown
        dossier = find_dossier(session, code)
        if not can_read(principal, dossier):
            raise ApiError(403, f"dossier {code} is not handled by agency {principal.agency_code}")
        view = dossier_view(session, dossier, calendar=runtime.calendar, now=now)
        audit.append(session, principal.name, "dossier.read", code, {"fields": sorted(PERSONAL_FIELDS)}, at=now)
        return view

    return await runtime.db.write(read, short=True)


@router.post(
    "/{code}/supplements",
    summary="Add or replace components after a supplement request",
    openapi_extra=_with_key(json_body_doc(supplements.Supplement)),
    response_model=None,
    responses={200: {"model": DossierView, "description": "The dossier after it"}, **_CHANGE_ERRORS},
)
async def add_supplement(
    code: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(PORTAL))],
) -> JSONResponse:
    dossier_request = await _dossier_request(request, principal, code, _idempotency_key(request))
    return _answer(await supplements.supplement(context_of_request(request), dossier_request))


@router.post(
    "/{code}/withdraw",
    summary="The applicant withdraws the dossier",
    openapi_extra=_with_key(json_body_doc(withdrawal.WithdrawRequest)),
    response_model=None,
    responses={200: {"model": DossierView, "description": "The dossier after it"}, **_CHANGE_ERRORS},
)
async def withdraw_dossier(
    code: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(PORTAL))],
) -> JSONResponse:
    dossier_request = await _dossier_request(request, principal, code, _idempotency_key(request))
    return _answer(await withdrawal.withdraw_dossier(context_of_request(request), dossier_request))
