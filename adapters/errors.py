"""The errors every adapter maps upstream failures to, so callers decide retry or dead letter in one place."""

from __future__ import annotations


class UpstreamError(Exception):
    """An upstream call failed; ``retryable`` says whether trying again later may succeed, and ``retry_after`` how
    many seconds the upstream itself asked callers to wait first (its ``Retry-After``), when it said."""

    retryable: bool = False

    def __init__(
        self, message: str, *, upstream: str = "", status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.upstream = upstream
        self.status_code = status_code
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"{self.upstream}: " if self.upstream else ""
        code = f" (HTTP {self.status_code})" if self.status_code else ""
        return f"{where}{self.message}{code}"


class TransientError(UpstreamError):
    """Timeouts, connection failures, 5xx, 429: try again later."""

    retryable = True


class PermanentError(UpstreamError):
    """The upstream refused this request for good (4xx other than auth and 429, a business rejection)."""


class AuthError(PermanentError):
    """Credentials refused (401/403) or a login that failed: an operator must act."""


class BadResponseError(TransientError):
    """The upstream answered something unreadable (not JSON/XML, wrong shape, truncated): often a proxy page."""
