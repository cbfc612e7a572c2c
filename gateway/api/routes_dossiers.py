"""The portal's dossier endpoints: submit, read, supplement, withdraw."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from .. import dossiers, intake
from ..auth import AGENCY, PORTAL, Principal
from ..fanout import Fanout
from ..intake import Answer, ComponentIn, IdempotencyContext, Invalid, Submission, find_dossier, parse_model
from .errors import ApiError
from .routes_common import clock, json_body_doc, read_json, require, runtime_of

router = APIRouter(prefix="/api/v1/dossiers", tags=["dossiers"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Repeating a request with the same key returns the first answer and changes nothing.",
    ),
]


class Supplement(BaseModel):
    """Components added or replaced after ``supplement_requested`` (the same shape as at submission)."""

    model_config = ConfigDict(extra="forbid")

    components: Annotated[list[ComponentIn], Field(min_length=1)]
    note: Annotated[str, Field(max_length=4000)] | None = None


def _answer(request: Request, answer: Answer, code: str | None = None) -> JSONResponse:
    headers = {}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    if code:
        headers["Location"] = f"/api/v1/dossiers/{code}"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


@router.post(
    "",
    status_code=201,
    summary="Submit a dossier",
    openapi_extra=json_body_doc(Submission),
    responses={201: {"description": "The dossier, as GET answers it"}, 422: {"description": "Refused"}},
)
async def submit_dossier(
    request: Request,
    principal: Annotated[Principal, Depends(require(PORTAL))],
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    runtime = runtime_of(request)
    document = await read_json(request)
    answer = await intake.submit(
        runtime,
        principal,
        document,
        idempotency_key=idempotency_key,
        now=clock(request),
        path=request.url.path,
        calendar=runtime.calendar,
    )
    if not answer.replayed:
        request.app.state.metrics.submitted.labels(agency=answer.body.get("agency_code", "")).inc()
    return _answer(request, answer, answer.body.get("code"))


@router.get("/{code}", summary="A dossier: status, history, verification, deadlines")
async def get_dossier(
    code: str, request: Request, principal: Annotated[Principal, Depends(require(PORTAL, AGENCY))]
) -> dict[str, Any]:
    runtime = runtime_of(request)
    now = clock(request)

    def read(session: Session) -> dict[str, Any]:
        dossier = find_dossier(session, code)
        if not dossiers.can_read(principal, dossier):
            raise ApiError(403, f"dossier {code} is not handled by agency {principal.agency_code}")
        return dossiers.dossier_view(session, dossier, calendar=runtime.calendar, now=now)

    return await runtime.db.run(read)


@router.post(
    "/{code}/supplements",
    summary="Add or replace components after a supplement request",
    openapi_extra=json_body_doc(Supplement),
)
async def add_supplement(
    code: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(PORTAL))],
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    runtime = runtime_of(request)
    now = clock(request)
    document = await read_json(request)
    context = await IdempotencyContext.build(principal, idempotency_key, "POST", request.url.path, document)
    if context is not None:
        earlier = await runtime.db.run(context.lookup)
        if earlier is not None:
            return _answer(request, Answer(earlier[0], earlier[1], replayed=True))
    body = parse_model(Supplement, document)

    def check(session: Session) -> None:
        dossier = find_dossier(session, code)
        if dossier.status != "supplement_requested":
            raise intake.Conflict(
                f"dossier {code} is {dossier.status}: supplements are accepted only after supplement_requested"
            )

    await runtime.db.run(check)
    items = [(f"components[{i}]", c.code, c) for i, c in enumerate(body.components)]
    files, errors = await intake.prepare_files(items, max_bytes=runtime.max_file_bytes)
    if errors:
        raise Invalid(errors)
    await intake.verify_files(runtime.verifier, files)
    fanout = Fanout.from_runtime(runtime)

    def work(session: Session) -> tuple[int, dict[str, Any]]:
        dossier = find_dossier(session, code, for_update=True)
        dossiers.add_supplement(
            session,
            dossier,
            files,
            actor=principal,
            calendar=runtime.calendar,
            now=now,
            note=body.note,
            fanout=fanout,
        )
        return 200, dossiers.dossier_view(session, dossier, calendar=runtime.calendar, now=now)

    return _answer(request, await intake.run_idempotent(runtime, context, work))


@router.post(
    "/{code}/withdraw",
    summary="The applicant withdraws the dossier",
    openapi_extra=json_body_doc(dossiers.WithdrawRequest),
)
async def withdraw_dossier(
    code: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(PORTAL))],
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    runtime = runtime_of(request)
    now = clock(request)
    document = await read_json(request)
    context = await IdempotencyContext.build(principal, idempotency_key, "POST", request.url.path, document)
    body = parse_model(dossiers.WithdrawRequest, document)
    fanout = Fanout.from_runtime(runtime)

    def work(session: Session) -> tuple[int, dict[str, Any]]:
        dossier = find_dossier(session, code, for_update=True)
        dossiers.withdraw(
            session, dossier, body.reason, actor=principal, calendar=runtime.calendar, now=now, fanout=fanout
        )
        return 200, dossiers.dossier_view(session, dossier, calendar=runtime.calendar, now=now)

    return _answer(request, await intake.run_idempotent(runtime, context, work))
