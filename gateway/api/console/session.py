"""The console's sessions: an admin logs in with an admin token and gets a signed session cookie.

- The cookie (``dvc_console``) holds only a random CSRF token and the time of login, signed with itsdangerous
  (``[console] session_secret``, else a random key of this process); it is ``HttpOnly``, ``SameSite=Strict``,
  ``Secure`` over https, scoped to ``/console``, and refused after ``[console] session_hours``.
- Every form carries the session's CSRF token in a hidden ``csrf`` field, compared in constant time. The login form
  has its own: a short-lived signed ``dvc_console_login`` cookie set with the form, so a login cannot be forged
  either.
- The token itself is never stored: it is checked against ``[[auth.tokens]]`` at login, and only ``admin`` tokens
  open a session.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from ...auth import ADMIN, TokenStore
from ...sections import ConsoleSection

__all__ = ["COOKIE", "LOGIN_COOKIE", "ConsoleSession", "SessionKeeper"]

COOKIE = "dvc_console"
LOGIN_COOKIE = "dvc_console_login"
PATH = "/console"
#: How long a login form stays usable.
LOGIN_FORM_SECONDS = 1800


@dataclass(frozen=True)
class ConsoleSession:
    """A logged-in operator: the CSRF token their forms must carry."""

    csrf: str
    since: int


class SessionKeeper:
    """Signs, reads and clears console sessions for one app."""

    def __init__(self, settings: ConsoleSection, tokens: TokenStore) -> None:
        secret = settings.session_secret.resolve("[console] session_secret") if settings.session_secret else None
        key = secret or secrets.token_urlsafe(32)
        self._sessions = URLSafeTimedSerializer(key, salt="dvc-console-session")
        self._logins = URLSafeTimedSerializer(key, salt="dvc-console-login")
        self._max_age = int(settings.session_hours * 3600)
        self._tokens = tokens

    # -- sessions ---------------------------------------------------------------------------------------------------

    def current(self, request: Request) -> ConsoleSession | None:
        """The request's session, or ``None`` (no cookie, a bad signature, expired)."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            data = self._sessions.loads(value, max_age=self._max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        return ConsoleSession(csrf=data["csrf"], since=int(data.get("since", 0)))

    def login(self, request: Request, response: Response, token: str) -> bool:
        """Open a session on ``response`` when ``token`` is an admin token; False (nothing set) otherwise."""
        principal = self._tokens.authenticate(token.strip())
        if principal is None or principal.role != ADMIN:
            return False
        value = self._sessions.dumps({"csrf": secrets.token_urlsafe(24), "since": int(time.time())})
        self._set(request, response, COOKIE, value, self._max_age)
        response.delete_cookie(LOGIN_COOKIE, path=PATH)
        return True

    @staticmethod
    def logout(response: Response) -> None:
        response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")

    # -- the login form's CSRF token --------------------------------------------------------------------------------

    def new_login_form(self) -> tuple[str, str]:
        """A CSRF token for the login form and the signed value of its cookie (:meth:`attach_login_form`)."""
        token = secrets.token_urlsafe(24)
        return token, self._logins.dumps(token)

    def attach_login_form(self, request: Request, response: Response, signed: str) -> None:
        self._set(request, response, LOGIN_COOKIE, signed, LOGIN_FORM_SECONDS)

    def login_form_valid(self, request: Request, submitted: str | None) -> bool:
        value = request.cookies.get(LOGIN_COOKIE)
        if not value or not submitted:
            return False
        try:
            expected = self._logins.loads(value, max_age=LOGIN_FORM_SECONDS)
        except BadSignature:
            return False
        return isinstance(expected, str) and hmac.compare_digest(expected, submitted)

    @staticmethod
    def csrf_valid(session: ConsoleSession, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(session.csrf, str(submitted))

    @staticmethod
    def _set(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
