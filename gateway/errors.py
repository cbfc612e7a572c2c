"""The errors the gateway's use cases raise, and the command line's exit codes.

A use case refuses with a :class:`ServiceError` subclass that says *what* went wrong (a short machine code, one
sentence, optional details); the edges decide how to say it: ``gateway.api`` maps each class to an HTTP status,
the command line prints one line and exits with :data:`EXIT_USAGE` or :data:`EXIT_CHECK_FAILED`.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ConfigError",
    "Conflict",
    "FeeUnpaid",
    "Forbidden",
    "Invalid",
    "NotFound",
    "ServiceError",
    "Unavailable",
    "UsageError",
    "problem",
]


class UsageError(Exception):
    """A usage or configuration problem: printed as one line, exit code 2."""


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and why, in one line (exit code 2)."""


class ServiceError(Exception):
    """A refusal: a short machine ``code``, a one-sentence ``message`` and optional ``details``."""

    code = "bad_request"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


def problem(field: str, message: str) -> dict[str, str]:
    """One problem of a request: the field path and what is wrong with it."""
    return {"field": field, "message": message}


class Invalid(ServiceError):
    """The request's content is wrong: ``details`` (and ``errors``) is ``[{"field", "message"}]``."""

    code = "validation_failed"

    def __init__(self, errors: list[dict[str, str]], message: str | None = None) -> None:
        if message is None:
            first = errors[0] if errors else problem("", "invalid request")
            message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more)"
        super().__init__(message, list(errors))
        self.errors = errors


class NotFound(ServiceError):
    """No such dossier, agency, order or message."""

    code = "not_found"


class Forbidden(ServiceError):
    """The caller may not act on this object (another agency's dossier)."""

    code = "forbidden"


class Conflict(ServiceError):
    """The object's state does not allow the request."""

    code = "conflict"


class FeeUnpaid(Conflict):
    """The result cannot be handed over: a fee is still unpaid (fees before results)."""

    code = "fee_unpaid"


class Unavailable(ServiceError):
    """The request cannot be served now (a resource is exhausted); trying later may help."""

    code = "unavailable"
