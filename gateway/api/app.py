"""The HTTP API: :func:`create_app` builds the FastAPI application on a :class:`Runtime`.

Middleware, outermost first, all pure ASGI (they never buffer a body):

- :class:`AccessLog`: one structured JSON line per request on the ``gateway.access`` logger (method, route
  *template*, status, duration, request id, the caller's role), never a body, a query string or a header value;
  Prometheus counters (the process's :class:`~gateway.metrics.GatewayMetrics`); and the last line of defence: an
  unexpected exception becomes a 500 in the error shape, without internals (the log has its type and frames, never
  its message, which could quote personal data).
  The request id is the caller's ``X-Request-ID`` when it is a plain token of at most 64 characters, else a new one;
  it is echoed in the answer's ``X-Request-ID``.
- :class:`NoNulAddress`: no code, key or filter of this API contains the character U+0000 (``%00``), and
  PostgreSQL's text cannot hold it (a look-up would fail, not answer): a path holding it is answered 404 (no such
  resource), a query string holding it 422 (``validation_failed``, field ``query``), before any route sees them.
- :class:`BodyLimit`: a body over ``runtime.max_body_bytes`` is refused with 413: at once when ``Content-Length``
  says so (nothing is read), else as soon as the stream passes the limit (the rest is never read).

Blocking work (the database, file decoding, signature verification, DNS) runs in worker threads.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..auth import TokenStore
from ..metrics import GatewayMetrics
from ..runtime import Runtime
from ..store.models import utcnow
from . import (
    console,
    routes_admin,
    routes_agencies,
    routes_citizens,
    routes_dossiers,
    routes_ops,
    routes_payments,
    routes_postal,
    routes_public,
    routes_reports,
    routes_signatures,
    routes_sms,
    routes_soap,
)
from .errors import BodyTooLarge, error_body, install_handlers, log_exception
from .routes_common import BODY_MODELS
from .schemas import error_responses

__all__ = ["AccessLog", "BodyLimit", "NoNulAddress", "create_app"]

access_log = logging.getLogger("gateway.access")
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    request_id: str | None = None,
    details: list[dict[str, str]] | None = None,
) -> None:
    body = json.dumps(error_body(code, message, details), ensure_ascii=False).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    if status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class NoNulAddress:
    """Answer requests whose path (404) or query string (422) holds U+0000, before any route sees them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif "\x00" in scope.get("path", ""):
            await _send_error(send, 404, "not_found", "no such resource")
        elif b"%00" in scope.get("query_string", b""):
            reason = "holds the character U+0000, which cannot be stored"
            details = [{"field": "query", "message": reason}]
            await _send_error(send, 422, "validation_failed", f"query: {reason}", details=details)
        else:
            await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, reading at most ``limit + 1`` of them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "malformed_request", "Content-Length is not a number")
                    return
        if declared is not None and declared > self.limit:
            message = f"the request body is larger than {self.limit} bytes"
            await _send_error(send, 413, "payload_too_large", message)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _send_error(send, 413, "payload_too_large", str(exc))


class AccessLog:
    """One JSON line per request, Prometheus counters, request ids, and the 500 of last resort."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID_RE.match(candidate):
                    request_id = candidate
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False
        begin = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client
            log_exception(exc, request_id)
            status = 500
            if not started:
                await _send_error(send, 500, "internal_error", f"internal error (request {request_id})", request_id)
        finally:
            duration = time.perf_counter() - begin
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "")
            self.metrics.requests.labels(method=method, route=template, status=str(status)).inc()
            self.metrics.duration.labels(method=method, route=template, status=str(status)).observe(duration)
            line = {
                "event": "http_request",
                "method": method,
                "route": template,
                "status": status,
                "duration_ms": round(duration * 1000, 2),
                "request_id": request_id,
                "role": scope.get("state", {}).get("role"),
            }
            access_log.info(json.dumps(line, ensure_ascii=False))


_FRAMEWORK_ERRORS = ("HTTPValidationError", "ValidationError")


def _cannot_be_invalid(operation: dict[str, Any]) -> bool:
    """No request body and only string path parameters: nothing the framework could refuse with 422."""
    if "requestBody" in operation:
        return False
    for parameter in operation.get("parameters", []):
        if parameter.get("in") != "path" or parameter.get("schema", {}).get("type") != "string":
            return False
        if set(parameter.get("schema", {})) - {"type", "title", "description"}:
            return False
    return True


def _replace_framework_validation_error(schema: dict[str, Any]) -> None:
    """The framework documents its own 422 (``HTTPValidationError``); this API answers the error model instead.

    Routes document their 422 with the error model themselves; where one did not, the framework's is replaced by
    the error model, or dropped where no parameter can be invalid (only string path parameters).
    """
    framework_ref = f"#/components/schemas/{_FRAMEWORK_ERRORS[0]}"
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
            content = responses.get("422", {}).get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref") != framework_ref:
                continue
            if _cannot_be_invalid(operation):
                del responses["422"]
            else:
                responses["422"] = error_responses(422, by_reference=True)[422]
    schemas = schema.get("components", {}).get("schemas", {})
    for name in _FRAMEWORK_ERRORS:
        schemas.pop(name, None)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
        )
        models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(model, "validation") for model in BODY_MODELS.values()]
        if models:
            _, definitions = models_json_schema(models, ref_template="#/components/schemas/{model}")
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in definitions.get("$defs", {}).items():
                schemas.setdefault(name, definition)
        _replace_framework_validation_error(schema)
        app.openapi_schema = schema
        return schema

    return build


def _operation_id(route: APIRoute) -> str:
    """The operation id of a route: its function's name (``submit_dossier``), what generated clients call it."""
    return route.name


def create_app(runtime: Runtime, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The gateway's HTTP API on ``runtime`` (``clock``: the current time, aware; tests freeze it).

    Raises :class:`~gateway.config.ConfigError` for an ``[[auth.tokens]]`` token that cannot be read or used.
    """
    app = FastAPI(
        title="dvc-gateway",
        version=__version__,
        description="The provincial integration gateway for online public services.",
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=_operation_id,
    )
    app.state.runtime = runtime
    app.state.tokens = TokenStore.from_settings(runtime.settings.auth)
    app.state.clock = clock or utcnow
    app.state.metrics = runtime.metrics
    install_handlers(app)
    for module in (routes_dossiers, routes_public, routes_agencies, routes_signatures, routes_admin, routes_ops):
        app.include_router(module.router)
    console.install(app, runtime.settings.console, app.state.tokens)  # /console/ and /lookup: web pages
    app.include_router(routes_soap.router)  # the SOAP callback service (CapNhatTrangThaiHoSo)
    app.include_router(routes_postal.router)
    app.include_router(routes_payments.router)
    app.include_router(routes_sms.router)  # lookup by SMS: the SMS gateway's inbound texts
    app.include_router(routes_reports.router)
    app.include_router(routes_citizens.router)  # ratings and citizens' questions
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    # Added last = outermost: the access log sees the body limit's 413s.
    app.add_middleware(BodyLimit, limit=runtime.max_body_bytes)
    app.add_middleware(NoNulAddress)
    app.add_middleware(AccessLog, metrics=app.state.metrics)
    return app
