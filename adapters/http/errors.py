"""Maps httpx failures and unwelcome answers to :mod:`adapters.errors`, so callers decide retry or dead letter once.

:func:`map_http_errors` wraps a block of httpx calls; :func:`error_for_response`, :func:`raise_for_status` and
:func:`json_body` check the responses themselves.
"""

from __future__ import annotations

import contextlib
import email.utils
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from adapters import jsonguard
from adapters.errors import AuthError, BadResponseError, PermanentError, TransientError, UpstreamError
from adapters.netguard import BlockedAddressError

__all__ = ["error_for_response", "json_body", "map_http_errors", "raise_for_status", "retry_after", "shortened"]

#: Body excerpts in error messages (non-2xx answers only) are cut to this many characters.
_EXCERPT_CHARS = 200


def shortened(text: str, limit: int = _EXCERPT_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_TEXT_TYPES = ("text/", "application/json", "application/problem+json", "application/xml", "application/soap+xml")


def _excerpt(response: httpx.Response) -> str:
    """A short, single-line excerpt of a (non-2xx) response body, when it has been read and is text."""
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return ""
    media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if not content or (media_type and not media_type.startswith(_TEXT_TYPES) and not media_type.endswith("+json")):
        return ""
    return shortened(content[: _EXCERPT_CHARS * 4].decode("utf-8", errors="replace"))


def retry_after(response: httpx.Response, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """The seconds a response's ``Retry-After`` asks to wait (RFC 9110 §10.2.3: a number of seconds or an HTTP
    date), 0 for a date already past; None without the header or when it is neither (a caller then keeps its own
    backoff)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)  # callers cap it (an absurd number reads as infinity)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": the date is in UTC, its zone unsaid
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


def error_for_response(response: httpx.Response, upstream: str) -> UpstreamError | None:
    """The error a response status means (``None`` for 2xx); non-2xx messages carry a short body excerpt, and a 429
    or 5xx answer its ``Retry-After`` (:func:`retry_after`)."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    excerpt = _excerpt(response)
    detail = f": {excerpt}" if excerpt else ""
    if status in (401, 403):
        return AuthError(f"credentials refused{detail}", upstream=upstream, status_code=status)
    if status == 429:
        wait = retry_after(response)
        return TransientError(f"rate limited{detail}", upstream=upstream, status_code=status, retry_after=wait)
    if status >= 500:
        wait = retry_after(response)
        return TransientError(f"server error{detail}", upstream=upstream, status_code=status, retry_after=wait)
    if 400 <= status < 500:
        return PermanentError(f"request refused{detail}", upstream=upstream, status_code=status)
    # 1xx reaching here, 3xx (redirects are not followed): a login page or a moved endpoint, not an answer.
    return BadResponseError("unexpected redirect or interim answer", upstream=upstream, status_code=status)


def raise_for_status(response: httpx.Response, upstream: str) -> None:
    """Raise :func:`error_for_response`'s error, if any."""
    error = error_for_response(response, upstream)
    if error is not None:
        raise error


def json_body(response: httpx.Response, upstream: str, *, allow_empty: bool = False) -> Any:
    """The JSON a (read) response carries; :class:`~adapters.errors.BadResponseError` when it carries something else.

    An HTML page (a proxy's or a login page) where JSON was expected is the usual case. The body is never quoted in
    the message: a 2xx body may hold personal data.
    """
    content = response.content
    if not content.strip():
        if allow_empty:
            return None
        raise BadResponseError("empty response where JSON was expected", upstream=upstream)
    media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise BadResponseError(f"expected JSON, got {shortened(media_type, 80)}", upstream=upstream)
    try:
        return jsonguard.loads(content)
    except (ValueError, RecursionError) as exc:
        raise BadResponseError("the response is not valid JSON", upstream=upstream) from exc


def _blocked_cause(exc: BaseException) -> BlockedAddressError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, BlockedAddressError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


_TIMEOUTS: tuple[tuple[type[httpx.TimeoutException], str], ...] = (
    (httpx.ConnectTimeout, "connecting timed out"),
    (httpx.ReadTimeout, "timed out waiting for the response"),
    (httpx.WriteTimeout, "timed out sending the request"),
    (httpx.PoolTimeout, "timed out waiting for a free connection"),
)


def _mapped(exc: Exception, upstream: str) -> UpstreamError | None:
    """The adapter error an httpx exception means (``None``: not an httpx exception)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return error_for_response(exc.response, upstream) or BadResponseError("unexpected answer", upstream=upstream)
    if isinstance(exc, httpx.TimeoutException):
        what = next((text for kind, text in _TIMEOUTS if isinstance(exc, kind)), "timed out")
        return TransientError(what, upstream=upstream)
    blocked = _blocked_cause(exc)
    if blocked is not None:
        return PermanentError(shortened(str(blocked)), upstream=upstream)
    if isinstance(exc, httpx.DecodingError | httpx.TooManyRedirects):
        return BadResponseError(f"unreadable response: {shortened(str(exc))}", upstream=upstream)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL):
        return PermanentError(f"invalid request: {shortened(str(exc))}", upstream=upstream)
    if isinstance(exc, httpx.RemoteProtocolError):
        return TransientError(f"the connection broke: {shortened(str(exc))}", upstream=upstream)
    if isinstance(exc, httpx.TransportError):
        return TransientError(
            f"cannot reach the upstream: {shortened(str(exc)) or type(exc).__name__}", upstream=upstream
        )
    if isinstance(exc, httpx.StreamError):
        return PermanentError(f"the request could not be sent: {type(exc).__name__}", upstream=upstream)
    if isinstance(exc, httpx.HTTPError):
        return TransientError(f"HTTP failure: {shortened(str(exc)) or type(exc).__name__}", upstream=upstream)
    return None


@contextlib.contextmanager
def map_http_errors(upstream: str) -> Iterator[None]:
    """Turn httpx exceptions raised inside the block into :mod:`adapters.errors` (adapter errors pass unchanged).

    Timeouts, connection failures, 5xx and 429 become :class:`~adapters.errors.TransientError`; 401/403
    :class:`~adapters.errors.AuthError`; other 4xx and addresses refused by the SSRF guard
    :class:`~adapters.errors.PermanentError`; unreadable answers :class:`~adapters.errors.BadResponseError`.
    Responses themselves are checked with :func:`raise_for_status` and :func:`json_body`.
    """
    try:
        yield
    except UpstreamError:
        raise
    except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
        error = _mapped(exc, upstream)
        if error is None:  # pragma: no cover - every httpx exception is mapped
            raise
        raise error from exc
    except ssl.SSLError as exc:  # raised past httpx by some TLS failures on transports other than ours
        raise TransientError(f"TLS failure: {exc.reason or type(exc).__name__}", upstream=upstream) from exc
