"""Citizens' channels: the satisfaction rating of a returned dossier and questions to the competent agency.

- ``POST /api/v1/dossiers/{code}/ratings`` (portal): one rating per returned dossier (409 ``not_returned``,
  409 ``already_rated``, 422 for an unknown criterion or a score outside 1..5).
- ``POST /api/v1/questions``, ``GET /api/v1/questions/{id}`` (portal): ask, and read the question and its answer.
- ``GET /api/v1/agencies/{agency}/questions``, ``POST /api/v1/agencies/{agency}/questions/{id}/answer`` (that
  agency's token only): the questions to answer, and the answer (409 ``already_answered`` the second time).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from ..auth import AGENCY, PORTAL, Principal
from ..services import questions, ratings
from .errors import ApiError
from .routes_common import clock, context_of_request, json_body_doc, read_json, require, runtime_of
from .schemas import AgencyQuestion, AgencyQuestionList, QuestionView, RatingView, error_responses

router = APIRouter(tags=["citizens"])

_BODY_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422)
#: A question id the database can hold (a larger one is 422, never a database error).
QuestionId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _own_agency(principal: Principal, agency: str) -> None:
    if principal.agency_code != agency:
        raise ApiError(403, f"this token is agency {principal.agency_code}'s, not agency {agency}'s")


@router.post(
    "/api/v1/dossiers/{code}/ratings",
    status_code=201,
    summary="The applicant's satisfaction rating of a returned dossier (one per dossier)",
    openapi_extra=json_body_doc(ratings.RatingRequest),
    response_model=None,
    responses={201: {"model": RatingView, "description": "The rating stored"}, **error_responses(*_BODY_ERRORS)},
)
async def rate_dossier(
    code: str, request: Request, principal: Annotated[Principal, Depends(require(PORTAL))]
) -> JSONResponse:
    document = await read_json(request)
    view = await ratings.rate(context_of_request(request), principal, code, document, now=clock(request))
    return JSONResponse(view, status_code=201, headers={"Location": f"/api/v1/dossiers/{code}"})


@router.post(
    "/api/v1/questions",
    status_code=201,
    summary="A citizen's question to the competent agency",
    openapi_extra=json_body_doc(questions.QuestionRequest),
    response_model=None,
    responses={
        201: {"model": QuestionView, "description": "The question, routed to its agency"},
        **error_responses(400, 401, 403, 413, 415, 422),
    },
)
async def ask_question(request: Request, principal: Annotated[Principal, Depends(require(PORTAL))]) -> JSONResponse:
    document = await read_json(request)
    days = runtime_of(request).settings.questions.answer_within_days
    view = await questions.ask(context_of_request(request), principal, document, now=clock(request), days=days)
    return JSONResponse(view, status_code=201, headers={"Location": f"/api/v1/questions/{view['id']}"})


@router.get(
    "/api/v1/questions/{question_id}",
    summary="A citizen's question and, once given, its answer",
    response_model=None,
    responses={200: {"model": QuestionView, "description": "The question"}, **error_responses(401, 403, 404, 422)},
)
async def get_question(
    question_id: QuestionId, request: Request, principal: Annotated[Principal, Depends(require(PORTAL))]
) -> dict[str, Any]:
    return await questions.read(context_of_request(request), principal, question_id, now=clock(request))


@router.get(
    "/api/v1/agencies/{agency}/questions",
    summary="The citizens' questions of an agency (unanswered by default)",
    response_model=None,
    responses={
        200: {"model": AgencyQuestionList, "description": "The questions, oldest first"},
        **error_responses(401, 403, 422),
    },
)
async def agency_questions(
    agency: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(AGENCY))],
    state: Annotated[Literal["unanswered", "answered", "all"], Query()] = "unanswered",
) -> dict[str, Any]:
    _own_agency(principal, agency)
    return {"questions": await questions.agency_questions(context_of_request(request), agency, state)}


@router.post(
    "/api/v1/agencies/{agency}/questions/{question_id}/answer",
    summary="The agency's answer to a citizen's question (once)",
    openapi_extra=json_body_doc(questions.AnswerRequest),
    response_model=None,
    responses={
        200: {"model": AgencyQuestion, "description": "The question answered"},
        **error_responses(*_BODY_ERRORS),
    },
)
async def answer_question(
    agency: str,
    question_id: QuestionId,
    request: Request,
    principal: Annotated[Principal, Depends(require(AGENCY))],
) -> dict[str, Any]:
    _own_agency(principal, agency)
    document = await read_json(request)
    return await questions.answer(context_of_request(request), principal, question_id, document, now=clock(request))
