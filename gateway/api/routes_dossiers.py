"""The portal's dossier endpoints: submit, read, supplement, withdraw."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from ..auth import AGENCY, PORTAL, Principal
from ..services import intake, supplements, withdrawal
from ..services.changes import find_dossier
from ..services.context import Render
from ..services.idempotency import Answer, DossierRequest
from ..store.models import Dossier
from ..views import can_read, dossier_view
from .errors import ApiError
from .routes_common import clock, context_of_request, json_body_doc, read_json, require, runtime_of

router = APIRouter(prefix="/api/v1/dossiers", tags=["dossiers"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Repeating a request with the same key returns the first answer and changes nothing.",
    ),
]


def _answer(answer: Answer, code: str | None = None) -> JSONResponse:
    headers = {}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    if code:
        headers["Location"] = f"/api/v1/dossiers/{code}"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


def _render(request: Request) -> Render:
    calendar = runtime_of(request).calendar

    def render(session: Session, dossier: Dossier, now: datetime) -> dict[str, Any]:
        return dossier_view(session, dossier, calendar=calendar, now=now)

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


@router.post(
    "",
    status_code=201,
    summary="Submit a dossier",
    openapi_extra=json_body_doc(intake.Submission),
    responses={201: {"description": "The dossier, as GET answers it"}, 422: {"description": "Refused"}},
)
async def submit_dossier(
    request: Request,
    principal: Annotated[Principal, Depends(require(PORTAL))],
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    document = await read_json(request)
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
        request.app.state.metrics.submitted.labels(agency=answer.body.get("agency_code", "")).inc()
    return _answer(answer, answer.body.get("code"))


@router.get("/{code}", summary="A dossier: status, history, verification, deadlines")
async def get_dossier(
    code: str, request: Request, principal: Annotated[Principal, Depends(require(PORTAL, AGENCY))]
) -> dict[str, Any]:
    runtime = runtime_of(request)
    now = clock(request)

    def read(session: Session) -> dict[str, Any]:
        dossier = find_dossier(session, code)
        if not can_read(principal, dossier):
            raise ApiError(403, f"dossier {code} is not handled by agency {principal.agency_code}")
        return dossier_view(session, dossier, calendar=runtime.calendar, now=now)

    return await runtime.db.run(read)


@router.post(
    "/{code}/supplements",
    summary="Add or replace components after a supplement request",
    openapi_extra=json_body_doc(supplements.Supplement),
)
async def add_supplement(
    code: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(PORTAL))],
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    dossier_request = await _dossier_request(request, principal, code, idempotency_key)
    return _answer(await supplements.supplement(context_of_request(request), dossier_request))


@router.post(
    "/{code}/withdraw",
    summary="The applicant withdraws the dossier",
    openapi_extra=json_body_doc(withdrawal.WithdrawRequest),
)
async def withdraw_dossier(
    code: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(PORTAL))],
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    dossier_request = await _dossier_request(request, principal, code, idempotency_key)
    return _answer(await withdrawal.withdraw_dossier(context_of_request(request), dossier_request))
