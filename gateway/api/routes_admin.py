"""Administration (admin token): the agency endpoint registry and the outbox's dead letters.

- ``GET /api/v1/admin/agencies``, ``GET /api/v1/admin/agencies/{code}``: registration documents (secrets as the
  ``env:``/``file:`` references given).
- ``POST /api/v1/admin/agencies`` (the registration document): 201; an agency already registered is 409 unless
  ``?replace=true`` (200). ``PUT /api/v1/admin/agencies/{code}`` creates or replaces (201/200).
- ``DELETE /api/v1/admin/agencies/{code}``: 204; refused with 409 while dossiers that are not finished are with it or
  led by it (``?force=true`` removes it anyway).
- ``GET /api/v1/admin/outbox?state=dead&target=…&after_id=…&limit=…``, ``POST /api/v1/admin/outbox/{id}/redrive``.

Every change is written to the audit trail.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from .. import audit, outbox
from ..auth import ADMIN, Principal
from ..catalogue import known_procedure_codes
from ..domain.times import iso
from ..registry import (
    AgencyExistsError,
    Registration,
    RegistrationError,
    endpoint_checker,
    get_agency,
    list_agencies,
    register,
    remove_agency,
    validate_registration,
)
from ..services.agencies import open_dossier_count
from ..store.models import OutboxMessage
from .errors import ApiError
from .routes_common import json_body_doc, read_json, require, runtime_of
from .schemas import AgencyList, AgencyRegistration, OutboxMessageView, OutboxPage, error_responses

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

Admin = Annotated[Principal, Depends(require(ADMIN))]
#: Outbox ids are 64-bit integers in every database.
_MAX_ID = 2**63 - 1


def _registration_errors(exc: RegistrationError, status: int) -> ApiError:
    return ApiError(status, str(exc), details=exc.errors)


async def _validate(request: Request, document: Any) -> Registration:
    runtime = runtime_of(request)
    known = await runtime.db.run(known_procedure_codes)
    settings = runtime.registry_settings
    check = endpoint_checker(settings, factory=runtime.client_factory)  # SOAP: the WSDL loaded and checked
    try:
        # Validation resolves host names (server-side request forgery checks) and may load a WSDL on an event loop
        # of its own: a worker thread, not this event loop.
        return await anyio.to_thread.run_sync(
            lambda: validate_registration(document, settings=settings, known_procedures=known, check_endpoint=check)
        )
    except RegistrationError as exc:
        raise _registration_errors(exc, 422) from None


async def _store(request: Request, principal: Principal, registration: Registration, *, replace: bool) -> JSONResponse:
    runtime = runtime_of(request)

    def work(session: Session) -> bool:
        audit.lock_for_write(session)
        try:
            created = register(session, registration, replace=replace)
        except AgencyExistsError as exc:
            raise _registration_errors(exc, 409) from None
        audit.append(
            session,
            principal.name,
            "agency.registered" if created else "agency.replaced",
            registration.code,
            {"protocol": registration.protocol, "procedures": list(registration.procedures)},
        )
        return created

    created = await runtime.db.write(work)
    return JSONResponse(registration.document(), status_code=201 if created else 200)


_STORED = {"model": AgencyRegistration, "description": "Replaced: the registration as stored"}
_CREATED = {
    "model": AgencyRegistration,
    "description": "Registered: the registration as stored",
    "links": {
        "GetAgency": {"operationId": "agency", "parameters": {"code": "$response.body#/code"}},
        "DeleteAgency": {"operationId": "delete_agency", "parameters": {"code": "$response.body#/code"}},
    },
}


@router.get(
    "/agencies",
    summary="Registered agencies",
    response_model=None,
    responses={200: {"model": AgencyList, "description": "Every registration"}, **error_responses(401, 403)},
)
async def agencies(request: Request, principal: Admin) -> dict[str, Any]:
    registrations = await runtime_of(request).db.run(list_agencies)
    return {"agencies": [r.document() for r in registrations]}


@router.get(
    "/agencies/{code}",
    summary="One agency's registration",
    response_model=None,
    responses={200: {"model": AgencyRegistration, "description": "The registration"}, **error_responses(401, 403, 404)},
)
async def agency(code: str, request: Request, principal: Admin) -> dict[str, Any]:
    registration = await runtime_of(request).db.run(lambda session: get_agency(session, code))
    if registration is None:
        raise ApiError(404, f"agency {code} is not registered")
    return registration.document()


@router.post(
    "/agencies",
    status_code=201,
    summary="Register an agency (409 when registered, unless replace=true)",
    openapi_extra=json_body_doc(Registration),
    response_model=None,
    responses={201: _CREATED, 200: _STORED, **error_responses(400, 401, 403, 409, 413, 415, 422)},
)
async def create_agency(
    request: Request,
    principal: Admin,
    replace: Annotated[bool, Query(description="replace an existing registration")] = False,
) -> JSONResponse:
    registration = await _validate(request, await read_json(request))
    return await _store(request, principal, registration, replace=replace)


@router.put(
    "/agencies/{code}",
    summary="Register or replace an agency",
    openapi_extra=json_body_doc(Registration),
    response_model=None,
    responses={201: _CREATED, 200: _STORED, **error_responses(400, 401, 403, 413, 415, 422)},
)
async def put_agency(code: str, request: Request, principal: Admin) -> JSONResponse:
    document = await read_json(request)
    if isinstance(document, dict) and document.get("code") != code:
        message = f"must be {code}, the agency in the path"
        raise ApiError(422, f"code: {message}", details=[{"field": "code", "message": message}])
    registration = await _validate(request, document)
    return await _store(request, principal, registration, replace=True)


@router.delete(
    "/agencies/{code}",
    status_code=204,
    summary="Remove an agency's registration",
    responses={204: {"description": "Removed"}, **error_responses(401, 403, 404, 409, 422)},
)
async def delete_agency(
    code: str,
    request: Request,
    principal: Admin,
    force: Annotated[bool, Query(description="remove even with unfinished dossiers")] = False,
) -> Response:
    def work(session: Session) -> None:
        audit.lock_for_write(session)
        if get_agency(session, code) is None:
            raise ApiError(404, f"agency {code} is not registered")
        unfinished = open_dossier_count(session, code)
        if unfinished and not force:
            raise ApiError(
                409,
                f"agency {code} has {unfinished} unfinished dossier(s); remove it with force=true if you must",
            )
        remove_agency(session, code)
        audit.append(session, principal.name, "agency.removed", code, {"unfinished_dossiers": unfinished})

    await runtime_of(request).db.write(work)
    return Response(status_code=204)


def _message(message: OutboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "kind": message.kind,
        "target": message.target,
        "ordering_key": message.ordering_key,
        "idempotency_key": message.idempotency_key,
        "payload": message.payload,
        "state": message.state,
        "attempts": message.attempts,
        "next_attempt_at": iso(message.next_attempt_at),
        "last_error": message.last_error,
        "created_at": iso(message.created_at),
        "updated_at": iso(message.updated_at),
        "done_at": iso(message.done_at),
    }


@router.get(
    "/outbox",
    summary="Outbox messages (dead letters with state=dead)",
    response_model=None,
    responses={200: {"model": OutboxPage, "description": "A page of messages"}, **error_responses(401, 403, 422)},
)
async def list_outbox(
    request: Request,
    principal: Admin,
    state: Annotated[str | None, Query(description="pending, in_flight, done or dead")] = None,
    target: Annotated[str | None, Query(description="an agency code, or portal")] = None,
    after_id: Annotated[int, Query(ge=0, le=_MAX_ID, description="page on after this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    if state is not None and state not in outbox.STATES:
        message = f"must be one of {', '.join(outbox.STATES)}"
        raise ApiError(422, f"state: {message}", details=[{"field": "state", "message": message}])

    def read(session: Session) -> dict[str, Any]:
        found = outbox.list_messages(session, state, limit, target=target, after_id=after_id)
        return {"messages": [_message(m) for m in found], "stats": outbox.stats(session)}

    return await runtime_of(request).db.run(read)


@router.post(
    "/outbox/{message_id}/redrive",
    summary="Put a dead message back in the queue",
    response_model=None,
    responses={
        200: {"model": OutboxMessageView, "description": "The message, pending again"},
        **error_responses(401, 403, 404, 409, 422),
    },
)
async def redrive_message(
    message_id: Annotated[int, Path(ge=1, le=_MAX_ID)], request: Request, principal: Admin
) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        audit.lock_for_write(session)
        message = outbox.get(session, message_id)
        if message is None:
            raise ApiError(404, f"no outbox message {message_id}")
        if message.state != outbox.DEAD:
            raise ApiError(409, f"message {message_id} is {message.state}: only dead messages are redriven")
        outbox.redrive(session, message_id)
        session.refresh(message)
        audit.append(
            session, principal.name, "outbox.redrive", str(message_id), {"kind": message.kind, "target": message.target}
        )
        return _message(message)

    return await runtime_of(request).db.write(work)
