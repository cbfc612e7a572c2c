"""One error shape for every refusal: ``{"error": {"code", "message", "details"}}``.

=====  ===========================  ===================================================================
400    ``malformed_request``        malformed JSON, an unreadable body or form
401    ``unauthorized``             missing or unknown bearer token (with ``WWW-Authenticate: Bearer``)
403    ``forbidden``                a token of another role or agency
404    ``not_found``                no such route, dossier, agency or message
405    ``method_not_allowed``
409    ``conflict``                 a state that does not allow it (``illegal_transition`` for the state machine)
413    ``payload_too_large``        the body (or a file) is over the limit, refused before it is parsed
415    ``unsupported_media_type``   a JSON endpoint called with another content type
422    ``validation_failed``        ``details``: ``[{"field": "components[0].code", "message": "…"}]``
500    ``internal_error``           nothing about the internals: the request id says where to look in the logs
503    ``not_ready`` / ``unavailable`` ``database_unavailable`` with ``Retry-After``: the database cannot be reached
507    ``insufficient_storage``     the database's disk is full (``Retry-After``); nothing was written
=====  ===========================  ===================================================================
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..domain.status import IllegalTransition
from ..errors import Conflict, Forbidden, Invalid, NotFound, ServiceError, Unavailable

__all__ = [
    "ApiError",
    "BodyTooLarge",
    "database_error_response",
    "error_body",
    "error_response",
    "install_handlers",
    "log_exception",
    "status_of",
]

log = logging.getLogger("gateway.api")

_CODES = {
    400: "malformed_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
    507: "insufficient_storage",
}

#: ``Retry-After`` (seconds) when the database is unreachable or full: a restart or fail-over takes about this long.
DATABASE_RETRY_AFTER = 5
#: SQLite's result code for a full disk or database (``SQLITE_FULL``).
_SQLITE_FULL = 13


#: The HTTP status of each use-case refusal (:mod:`gateway.errors`): the one place they meet.
SERVICE_STATUSES: dict[type[ServiceError], int] = {
    Invalid: 422,
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    Unavailable: 503,
}


def status_of(exc: ServiceError) -> int:
    """The HTTP status of a use-case refusal (400 for a refusal of no known kind)."""
    for kind in type(exc).__mro__:
        if kind in SERVICE_STATUSES:
            return SERVICE_STATUSES[kind]
    return 400


class ApiError(Exception):
    """A refusal raised by a route: its status, code, one-sentence message and details."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Sequence[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.details = list(details or [])
        self.headers = headers


class BodyTooLarge(Exception):
    """Raised from the request stream when the body passes the limit (see :class:`gateway.api.app.BodyLimit`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


def error_body(code: str, message: str, details: Sequence[Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": list(details or [])}}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: Sequence[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code or _CODES.get(status, "error"), message, details), status_code=status, headers=headers
    )


def _field(loc: Sequence[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def log_exception(exc: BaseException, request_id: str | None = None) -> None:
    """Log an unexpected error: its type and where it happened, never its message (which may quote data)."""
    frames = "".join(traceback.format_tb(exc.__traceback__)) if exc.__traceback__ else ""
    log.error("unexpected %s (request %s)\n%s", type(exc).__name__, request_id or "-", frames.rstrip(), exc_info=False)


def _disk_full(exc: DBAPIError) -> bool:
    original = exc.orig
    if getattr(original, "sqlite_errorcode", None) == _SQLITE_FULL:
        return True
    # PostgreSQL: class 53 (insufficient resources), 53100 disk_full.
    return getattr(original, "sqlstate", None) == "53100" or "disk is full" in str(original)


def database_error_response(exc: BaseException) -> JSONResponse | None:
    """The answer to a database failure that retrying later may cure: 507 when its disk is full, 503 when it cannot
    be reached or is busy (both with ``Retry-After``); None for any other error (a bug: 500)."""
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER)}
    unavailable = error_response(
        503, "the database is unavailable: try again later", code="database_unavailable", headers=headers
    )
    if isinstance(exc, PoolTimeout):  # every connection busy
        log.error("database unavailable: no free connection")
        return unavailable
    if not isinstance(exc, DBAPIError):
        return None
    if _disk_full(exc):
        log.error("database full: %s refused", type(exc).__name__)
        return error_response(
            507, "the database has no space left: nothing was stored, try again later", headers=headers
        )
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        log.error("database unavailable: %s", type(exc).__name__)
        return unavailable
    return None


def install_handlers(app: FastAPI) -> None:
    """Map every exception the routes raise to the error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, code=exc.code, details=exc.details, headers=exc.headers)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(status_of(exc), exc.message, code=exc.code, details=exc.details)

    @app.exception_handler(IllegalTransition)
    async def _illegal(request: Request, exc: IllegalTransition) -> JSONResponse:
        return error_response(
            409,
            str(exc),
            code="illegal_transition",
            details=[{"from": exc.source.value, "to": exc.target.value}],
        )

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(413, str(exc))

    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeout)
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        answer = database_error_response(exc)
        if answer is not None:
            return answer
        return await _unexpected(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(error.get("type") == "json_invalid" for error in errors):
            return error_response(400, "the request body is not valid JSON")
        details = [{"field": _field(error.get("loc", ())), "message": str(error.get("msg", ""))} for error in errors]
        first = details[0] if details else {"field": "", "message": "invalid request"}
        return error_response(
            422, f"{first['field']}: {first['message']}" if first["field"] else first["message"], details=details
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such resource"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        answer = database_error_response(exc)
        if answer is not None:
            return answer
        request_id = getattr(request.state, "request_id", None)
        log_exception(exc, request_id)
        return error_response(500, f"internal error (request {request_id or '-'})")
