"""The gateway's SOAP callback service: ``GET /soap/callback?wsdl`` and ``POST /soap/callback``
(``CapNhatTrangThaiHoSo``, :mod:`gateway.soap_callback`).

An agency reports a status change in SOAP instead of ``POST /api/v1/agencies/{agency}/events``; the event takes the
same path: :func:`gateway.services.events.apply_event` in one unit of work, with the same fan-out, audit entry,
idempotency (dossier, status, ``ThoiDiem``, agency) and metrics.

Authentication, per agency: ``Authorization: Bearer <token>`` with the agency's token (role ``agency:<code>``), or a
WS-Security UsernameToken whose ``Username`` is the agency code and whose ``Password`` (``PasswordText``; tokens
are stored hashed, so a ``PasswordDigest`` cannot be checked) is that token. A bearer token, when present, is
checked before the body is read; a UsernameToken once the (size-limited, hardened) envelope is parsed.

Answers: ``CapNhatTrangThaiHoSoResponse`` (HTTP 200), or a SOAP fault in the request's SOAP version whose
``LoiNghiepVu`` detail says why, with the HTTP status the REST endpoint would have answered (``MaHTTP``):

=================================  ======  =====================================================================
MaLoi                              MaHTTP  fault code (1.1 / 1.2), HTTP status
=================================  ======  =====================================================================
KHONG_XAC_THUC                     401     Client / Sender, HTTP 401 (``WWW-Authenticate: Bearer``)
KHONG_CO_QUYEN                     403     Client / Sender (a token of another role, or another agency's dossier)
KHONG_TIM_THAY                     404     Client / Sender (no such dossier)
KHONG_HOP_LE                       400/422 Client / Sender (not XML, not SOAP, not valid against capnhat.xsd,
                                           a missing or wrong field); VersionMismatch for the wrong envelope
CHUYEN_TRANG_THAI_KHONG_HOP_LE     409     Client / Sender (the state machine refuses the transition)
XUNG_DOT                           409     Client / Sender (another conflict)
QUA_LON                            413     Client / Sender, HTTP 413 (the body is over ``[server] max_body_bytes``)
LOI_HE_THONG                       500/503 Server / Receiver (try again later)
=================================  ======  =====================================================================

Otherwise SOAP 1.1 faults are HTTP 500, SOAP 1.2 ``Sender`` faults 400 and ``Receiver`` faults 500.

``GET /soap/callback?wsdl&single`` gives the description as one self-contained document (the schema inlined), for
SOAP stacks that cannot follow schema imports; ``&soap=1.1`` or ``&soap=1.2`` keeps only that version's binding.

Both routes are left out of ``/openapi.json`` (the JSON API's description): the service is described by its WSDL.
"""

from __future__ import annotations

import functools
import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from adapters.onestop.wsdl.single import SOAP_VERSIONS, single_wsdl

from .. import soap_callback
from ..auth import AGENCY, Principal, TokenStore
from ..domain.status import IllegalTransition
from ..errors import ServiceError
from ..registry import get_agency
from ..services.events import AgencyEvent, apply_event
from ..soap_callback import CallbackFault
from ..validation import parse_model
from .errors import ApiError, BodyTooLarge, log_exception, status_of
from .routes_common import clock, context_of_request, runtime_of

__all__ = ["router"]

router = APIRouter(prefix="/soap", tags=["soap"])
log = logging.getLogger("gateway.events")

_XML = "text/xml; charset=utf-8"


def _address(request: Request) -> str:
    return str(request.url.replace(query="", fragment=""))


@router.get("/callback", include_in_schema=False)
async def callback_description(request: Request) -> Response:
    params = {key.lower(): value for key, value in request.query_params.items()}
    if "wsdl" in params and "single" in params:
        version = params.get("soap") or None
        if version not in (None, *SOAP_VERSIONS):
            message = f"must be one of {', '.join(SOAP_VERSIONS)}"
            raise ApiError(422, f"soap: {message}", details=[{"field": "soap", "message": message}])
        document = single_wsdl("callback", version, address=_address(request))
        return Response(document, media_type=_XML)
    if "wsdl" in params:
        return Response(soap_callback.service_wsdl(_address(request)), media_type=_XML)
    if params.get("xsd") == soap_callback.XSD_NAME:
        return Response(soap_callback.service_xsd(), media_type=_XML)
    raise ApiError(404, f"the service is described at ?wsdl (its schema at ?xsd={soap_callback.XSD_NAME})")


def _fault_response(version: str, fault: CallbackFault) -> Response:
    status, content = soap_callback.fault_envelope(version, fault)
    headers = {"WWW-Authenticate": "Bearer"} if fault.http_status == 401 else None
    return Response(content, status_code=status, media_type=soap_callback.soap_media_type(version), headers=headers)


def _unauthenticated(message: str) -> CallbackFault:
    return CallbackFault("client", soap_callback.UNAUTHENTICATED, message, 401)


def _agency_principal(principal: Principal | None, how: str) -> Principal:
    if principal is None:
        raise _unauthenticated(f"the {how} is not valid")
    if principal.role != AGENCY:
        raise CallbackFault(
            "client", soap_callback.FORBIDDEN, f"this service is for agency tokens, not {principal.role}", 403
        )
    return principal


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization")
    if value is None:
        return None
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise _unauthenticated("the Authorization header must be 'Bearer <token>'")
    return credentials.strip()


def _from_username_token(tokens: TokenStore, token: soap_callback.UsernameToken | None) -> Principal:
    if token is None:
        raise _unauthenticated(
            "credentials are required: Authorization: Bearer <token>, or a WS-Security UsernameToken"
        )
    if token.digest:
        raise _unauthenticated("a PasswordDigest cannot be checked (tokens are stored hashed): send PasswordText")
    principal = _agency_principal(tokens.authenticate(token.password), "UsernameToken")
    if token.username not in (principal.agency_code, principal.name):
        raise _unauthenticated("the UsernameToken's Username is not the agency its password belongs to")
    return principal


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            chunks.append(chunk)
    except BodyTooLarge as exc:
        raise CallbackFault("client", soap_callback.TOO_LARGE, str(exc), 413) from None
    return b"".join(chunks)


def _statuses(agency_code: str, session: Session) -> dict[str, str]:
    """The agency's registered mapping of its status values to ours (none when it registered none)."""
    try:
        registration = get_agency(session, agency_code)
    except ValueError:
        return {}
    mapping = registration.mapping if registration is not None else None
    statuses = mapping.get("statuses") if isinstance(mapping, dict) else None
    if not isinstance(statuses, dict):
        return {}
    return {str(k): str(v) for k, v in statuses.items()}


def _service_fault(exc: ServiceError) -> CallbackFault:
    codes = {
        403: soap_callback.FORBIDDEN,
        404: soap_callback.NOT_FOUND,
        409: soap_callback.CONFLICT,
        413: soap_callback.TOO_LARGE,
        422: soap_callback.INVALID,
    }
    status = status_of(exc)
    if status >= 500:
        return CallbackFault("server", soap_callback.SERVER_ERROR, exc.message, status)
    details = [d for d in exc.details if isinstance(d, dict)]
    return CallbackFault("client", codes.get(status, soap_callback.INVALID), exc.message, status, details)


@router.post("/callback", include_in_schema=False)  # described by its WSDL, not in the JSON API's OpenAPI
async def callback(request: Request) -> Response:
    runtime = runtime_of(request)
    tokens: TokenStore = request.app.state.tokens
    version = soap_callback.version_of(request.headers.get("content-type")) or "1.1"
    event: AgencyEvent | None = None
    principal: Principal | None = None
    try:
        bearer = _bearer(request)
        if bearer is not None:
            principal = _agency_principal(tokens.authenticate(bearer), "bearer token")
        body = await _read_body(request, runtime.max_body_bytes)
        parsed = soap_callback.parse_request(body, request.headers.get("content-type"))
        if principal is None:
            principal = _from_username_token(tokens, parsed.token)
        request.state.role = principal.role
        agency_code = principal.agency_code
        assert agency_code is not None
        named = soap_callback.agency_of_request(parsed.values)
        if named is not None and named != agency_code:
            raise CallbackFault(
                "client", soap_callback.FORBIDDEN, f"these credentials are agency {agency_code}'s, not {named}'s", 403
            )
        statuses = await runtime.db.run(functools.partial(_statuses, agency_code))
        event = parse_model(AgencyEvent, soap_callback.event_fields(parsed.values, statuses=statuses))
        outcome = await apply_event(context_of_request(request), principal, event, now=clock(request))
    except CallbackFault as fault:
        return _fault_response(version, fault)
    except IllegalTransition as exc:
        assert event is not None and principal is not None
        log.warning(
            "illegal transition refused",
            extra={
                "dossier_code": event.dossier_code,
                "agency": principal.agency_code,
                "from": exc.source.value,
                "to": exc.target,
                "channel": "soap",
            },
        )
        details = [{"field": "status", "message": f"from {exc.source.value} to {exc.target.value}"}]
        return _fault_response(
            version, CallbackFault("client", soap_callback.ILLEGAL_TRANSITION, str(exc), 409, details)
        )
    except ServiceError as exc:
        return _fault_response(version, _service_fault(exc))
    except Exception as exc:  # noqa: BLE001 - the agency gets a Server fault (retry later), never a traceback
        request_id = getattr(request.state, "request_id", None)
        log_exception(exc, request_id)
        message = f"internal error (request {request_id or '-'}): try again later"
        return _fault_response(version, CallbackFault("server", soap_callback.SERVER_ERROR, message, 500))
    request.app.state.metrics.events.labels(
        status=event.status.value, outcome="duplicate" if outcome.duplicate else "applied"
    ).inc()
    return Response(
        soap_callback.response_envelope(version, outcome.to_json()),
        media_type=soap_callback.soap_media_type(version),
    )
