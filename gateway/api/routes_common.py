"""What every route module shares: the runtime and clock of the app, authentication, JSON bodies.

- :func:`require` is the authentication dependency: ``Authorization: Bearer <token>``; a missing or unknown token is
  401 (``WWW-Authenticate: Bearer``), a token of another role is 403.
- :func:`read_json` reads a JSON body itself (rather than letting FastAPI bind a model), so that the checks come in
  the order a caller can act on: token (401/403), content type (415), JSON syntax (400), then the content (422, every
  problem at once, by field path). Large bodies are parsed off the event loop.
- :func:`json_body_doc` documents such a body in the OpenAPI description (the app adds the models' schemas to
  ``components.schemas``).
"""

from __future__ import annotations

import email.message
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from adapters import jsonguard

from ..auth import Principal, TokenStore
from ..bootstrap import context_of
from ..errors import Invalid, problem
from ..runtime import Runtime
from ..services.context import Context
from .errors import ApiError

__all__ = [
    "BODY_MODELS",
    "Authenticated",
    "clock",
    "context_of_request",
    "json_body_doc",
    "read_json",
    "require",
    "runtime_of",
    "signed_body",
]

#: Request body models documented in the OpenAPI description (added by :func:`json_body_doc`).
BODY_MODELS: dict[str, type[BaseModel]] = {}
#: Bodies larger than this are parsed in a worker thread.
_PARSE_IN_THREAD = 256 * 1024

_BEARER_DESCRIPTION = "A token configured in [[auth.tokens]]"


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


def context_of_request(request: Request) -> Context:
    """What the use cases need, as the composition root built it for this app's runtime."""
    return context_of(runtime_of(request))


def clock(request: Request) -> datetime:
    """The app's clock (aware; tests freeze it)."""
    return request.app.state.clock()


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


class _Bearer(HTTPBearer):
    """The authentication dependency in one step (the OpenAPI description shows it as the ``HTTPBearer`` scheme):
    the caller's principal, 401 without a valid bearer token, 403 when ``roles`` are given and its role is not one
    of them."""

    def __init__(self, roles: tuple[str, ...] = ()) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer", description=_BEARER_DESCRIPTION)
        self.roles = roles

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        principal = await authenticate(request, await super().__call__(request))
        if self.roles and principal.role not in self.roles:
            raise ApiError(403, f"this endpoint is for {' or '.join(self.roles)} tokens, not {principal.role}")
        return principal


async def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The caller's principal from the request's bearer ``credentials``; 401 without a valid token."""
    if credentials is None:
        raise _unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    tokens: TokenStore = request.app.state.tokens
    principal = tokens.authenticate(credentials.credentials)
    if principal is None:
        raise _unauthorized("the bearer token is not valid")
    request.state.role = principal.role
    return principal


Authenticated = Annotated[Principal, Depends(_Bearer())]


def require(*roles: str) -> Callable[..., Any]:
    """A dependency giving the principal when its role is one of ``roles`` (403 otherwise)."""
    return _Bearer(roles)


def media_type(request: Request) -> str:
    value = request.headers.get("content-type")
    if not value:
        return ""
    message = email.message.Message()
    message["content-type"] = value
    return message.get_content_type().lower()


def is_json(kind: str) -> bool:
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def parse_json(body: bytes) -> Any:
    """The JSON document ``body`` holds; :class:`~gateway.errors.Invalid` (422) for JSON with text no database can
    store (U+0000, half a surrogate pair), ``ApiError(400)`` for anything else."""
    if not body.strip():
        raise ApiError(400, "the request body is empty (expected a JSON document)")
    try:
        return jsonguard.loads(body, unique_keys=True)
    except jsonguard.UnstorableText as exc:  # JSON, but content no database takes: like any invalid field
        raise Invalid([problem(exc.field, exc.reason)]) from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "the request body is not valid JSON: nested too deeply") from None


async def read_json(request: Request) -> Any:
    """The request's JSON body (415 for another content type, 400 for malformed JSON)."""
    kind = media_type(request)
    if not is_json(kind):
        raise ApiError(415, f"expected Content-Type application/json, got {kind or 'none'}")
    body = await request.body()
    if len(body) > _PARSE_IN_THREAD:
        return await anyio.to_thread.run_sync(parse_json, body)
    return parse_json(body)


def json_body_doc(model: type[BaseModel], *extra_types: str) -> dict[str, Any]:
    """``openapi_extra`` describing a JSON request body of ``model`` (plus other media types, schema-less)."""
    BODY_MODELS[model.__name__] = model
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}
    for kind in extra_types:
        content[kind] = {"schema": {"type": "object"}}
    return {"requestBody": {"required": True, "content": content}}


async def signed_body(
    request: Request,
    verify: Callable[[bytes, str | None, str], None],
    refused: type[Exception],
    *,
    secret: str,
    header: str,
    max_bytes: int,
    what: str,
    log: logging.Logger,
) -> bytes:
    """The raw body of a request a provider signs with a shared secret: ``413`` past ``max_bytes``; ``401`` when
    ``verify`` refuses the signature in ``header`` (logged with the reason and the size, never the body)."""
    raw = await request.body()
    if len(raw) > max_bytes:
        raise ApiError(413, f"the request body is larger than {max_bytes} bytes")
    try:
        verify(raw, request.headers.get(header), secret)
    except refused as exc:
        log.warning(f"{what} refused", extra={"reason": str(exc), "bytes": len(raw)})
        raise ApiError(401, f"the {what} is not authenticated: {exc}") from None
    return raw
