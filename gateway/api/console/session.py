"""The console's sessions: an admin logs in with an admin token and gets a session kept in the database.

- Login draws a random session id. The ``dvc_console`` cookie carries it, signed with itsdangerous
  (``[console] session_secret``, else a random key the gateway drew once and keeps in the database, the same in every
  process sharing it and across restarts); it is ``HttpOnly``, ``SameSite=Strict``, ``Secure`` over https, scoped to
  ``/console``, and refused after ``[console] session_hours``.
- The ``console_sessions`` table keeps the session's record: the SHA-256 of the id (never the id, so the table
  cannot be replayed as cookies), the CSRF token, when it opened and expires, when it was revoked, and an HMAC (keyed
  with the signing key) of the digest of the admin token that opened it (never the token). A cookie is accepted only
  while its record exists, is neither revoked nor expired, and that token is still an ``admin`` token of
  ``[[auth.tokens]]``: logging out revokes the record, so a copy of the cookie stops working at once, and removing or
  rotating the token ends its sessions, in every process sharing the database. Login purges the records expired more
  than a day ago.
- Every form carries the session's CSRF token in a hidden ``csrf`` field, compared in constant time. The login form
  has its own: a short-lived signed ``dvc_console_login`` cookie set with the form, so a login cannot be forged
  either.
- The token itself is never stored: it is checked against ``[[auth.tokens]]`` at login, and only ``admin`` tokens
  open a session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, update
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from ...auth import ADMIN, TokenStore
from ...sections import ConsoleSection
from ...store.database import Database
from ...store.keys import shared_key
from ...store.models import ConsoleSessionRecord

__all__ = ["COOKIE", "LOGIN_COOKIE", "ConsoleSession", "SessionKeeper"]

COOKIE = "dvc_console"
LOGIN_COOKIE = "dvc_console_login"
PATH = "/console"
#: How long a login form stays usable.
LOGIN_FORM_SECONDS = 1800
#: How long an expired session's record stays before a login purges it.
PURGE_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class ConsoleSession:
    """A logged-in operator: the CSRF token their forms must carry."""

    csrf: str
    since: int


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


#: The name of the console's key in ``gateway_keys`` when ``[console] session_secret`` is not set.
KEY_NAME = "console_session"


@dataclass(frozen=True)
class _Keys:
    """What the signing key keys: the session cookie, the login form's cookie, the token binding."""

    sessions: URLSafeTimedSerializer
    logins: URLSafeTimedSerializer
    binding: bytes

    @classmethod
    def of(cls, key: str) -> _Keys:
        return cls(
            sessions=URLSafeTimedSerializer(key, salt="dvc-console-session-id"),
            logins=URLSafeTimedSerializer(key, salt="dvc-console-login"),
            binding=hmac.new(key.encode("utf-8"), b"dvc-console-token-binding", hashlib.sha256).digest(),
        )


class SessionKeeper:
    """Opens, reads and ends console sessions for one app (their records in ``db``, their times from ``clock``)."""

    def __init__(
        self, settings: ConsoleSection, tokens: TokenStore, db: Database, clock: Callable[[], datetime]
    ) -> None:
        secret = settings.session_secret.resolve("[console] session_secret") if settings.session_secret else None
        self._configured = _Keys.of(secret) if secret else None
        self._drawn: _Keys | None = None
        self._lifetime = timedelta(hours=settings.session_hours)
        self._max_age = int(settings.session_hours * 3600)
        self._tokens = tokens
        self._db = db
        self._clock = clock

    async def _keys(self) -> _Keys:
        """The configured key's, else those of the key kept in the database (read once per process)."""
        if self._configured is not None:
            return self._configured
        if self._drawn is None:
            self._drawn = _Keys.of(await self._db.run(lambda db: shared_key(db, KEY_NAME)))
        return self._drawn

    # -- sessions ---------------------------------------------------------------------------------------------------

    async def _session_id(self, request: Request) -> str | None:
        """The session id of the request's cookie when its signature holds and it is not too old."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            data = (await self._keys()).sessions.loads(value, max_age=self._max_age)
        except BadSignature:
            return None
        sid = data.get("sid") if isinstance(data, dict) else None
        return sid if isinstance(sid, str) and sid else None

    async def current(self, request: Request) -> ConsoleSession | None:
        """The request's session, or ``None`` (no cookie, a bad signature, no record, revoked, expired, or opened by
        a token no longer configured as an admin token)."""
        sid = await self._session_id(request)
        if sid is None:
            return None
        digest, now = _sha256(sid), self._clock()
        record = await self._db.run(lambda db: db.get(ConsoleSessionRecord, digest))
        if record is None or record.revoked_at is not None or record.expires_at <= now:
            return None
        if not self._tokens.holds(record.token_binding, (await self._keys()).binding, ADMIN):
            return None
        return ConsoleSession(csrf=record.csrf, since=int(record.created_at.timestamp()))

    async def login(self, request: Request, response: Response, token: str) -> bool:
        """Open a session on ``response`` when ``token`` is an admin token; False (nothing set) otherwise."""
        token = token.strip()
        principal = self._tokens.authenticate(token)
        if principal is None or principal.role != ADMIN:
            return False
        keys = await self._keys()
        sid, now = secrets.token_urlsafe(32), self._clock()
        record = ConsoleSessionRecord(
            id_sha256=_sha256(sid),
            csrf=secrets.token_urlsafe(24),
            token_binding=self._tokens.binding(token, keys.binding),
            created_at=now,
            expires_at=now + self._lifetime,
        )

        def open_session(db: Session) -> None:
            db.execute(delete(ConsoleSessionRecord).where(ConsoleSessionRecord.expires_at < now - PURGE_AFTER))
            db.add(record)

        await self._db.run(open_session)
        self._set(request, response, COOKIE, keys.sessions.dumps({"sid": sid}), self._max_age)
        response.delete_cookie(LOGIN_COOKIE, path=PATH)
        return True

    async def logout(self, request: Request, response: Response) -> None:
        """Revoke the request's session (a copy of its cookie is refused from now on) and delete its cookie."""
        sid = await self._session_id(request)
        if sid is not None:
            digest, now = _sha256(sid), self._clock()
            revoke = (
                update(ConsoleSessionRecord)
                .where(ConsoleSessionRecord.id_sha256 == digest, ConsoleSessionRecord.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            await self._db.run(lambda db: db.execute(revoke))
        response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")

    # -- the login form's CSRF token --------------------------------------------------------------------------------

    async def new_login_form(self) -> tuple[str, str]:
        """A CSRF token for the login form and the signed value of its cookie (:meth:`attach_login_form`)."""
        token = secrets.token_urlsafe(24)
        return token, (await self._keys()).logins.dumps(token)

    def attach_login_form(self, request: Request, response: Response, signed: str) -> None:
        self._set(request, response, LOGIN_COOKIE, signed, LOGIN_FORM_SECONDS)

    async def login_form_valid(self, request: Request, submitted: str | None) -> bool:
        value = request.cookies.get(LOGIN_COOKIE)
        if not value or not submitted:
            return False
        try:
            expected = (await self._keys()).logins.loads(value, max_age=LOGIN_FORM_SECONDS)
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
