"""The one error answer, ``{"error": {"code", "message", "details"}}``, and its documentation per status.

:func:`error_responses` gives the ``responses=`` entries of a route for the statuses it really answers, each with
the error model and an example of that status.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ERROR_EXAMPLES", "ErrorBody", "ErrorResponse", "error_responses"]


class ErrorBody(BaseModel):
    """What went wrong: a stable code, one sentence for people, and details (field problems, for one)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="malformed_request, unauthorized, forbidden, not_found, conflict, …")
    message: str
    details: list[Any] = Field(description='for 422: [{"field": "components[0].code", "message": "…"}]')


class ErrorResponse(BaseModel):
    """Every refusal of the API (4xx and 5xx)."""

    model_config = ConfigDict(extra="allow")

    error: ErrorBody


def _example(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


#: (description, example body) of each status the API answers with the error model.
ERROR_EXAMPLES: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "Malformed request: the body is not JSON",
        _example("malformed_request", "the request body is not valid JSON"),
    ),
    401: (
        "Missing or unknown bearer token",
        _example("unauthorized", "a bearer token is required (Authorization: Bearer <token>)"),
    ),
    403: ("A token of another role or agency", _example("forbidden", "this endpoint is for admin tokens, not portal")),
    404: ("No such resource", _example("not_found", "no dossier with this code")),
    409: (
        "The current state does not allow it",
        _example(
            "illegal_transition",
            "illegal transition from 'completed' to 'processing' (allowed from 'completed': returned)",
            [{"from": "completed", "to": "processing"}],
        ),
    ),
    413: (
        "The body or a file is over the limit",
        _example("payload_too_large", "the request body is larger than 67108864 bytes"),
    ),
    415: (
        "Unsupported content type",
        _example("unsupported_media_type", "expected Content-Type application/json, got text/plain"),
    ),
    422: (
        "The content is not valid: every problem, by field path",
        _example(
            "validation_failed",
            "components[0].code: required field is missing",
            [{"field": "components[0].code", "message": "required field is missing"}],
        ),
    ),
    500: (
        "Internal error (the request id says where to look in the logs)",
        _example("internal_error", "internal error (request 3f9c…)"),
    ),
    503: ("Not available now; try again later", _example("unavailable", "the postal integration is not configured")),
}


def error_responses(*statuses: int, by_reference: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting ``statuses`` with :class:`ErrorResponse` and an example each.

    ``by_reference``: name the schema by its ``$ref`` rather than as the route's model, for a route whose own answer
    is not JSON (the framework would put the model under that route's media type).
    """
    entries: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, example = ERROR_EXAMPLES[status]
        content: dict[str, Any] = {"example": example}
        entry: dict[str, Any] = {"description": description, "content": {"application/json": content}}
        if by_reference:
            content["schema"] = {"$ref": f"#/components/schemas/{ErrorResponse.__name__}"}
        else:
            entry["model"] = ErrorResponse
        entries[status] = entry
    return entries
