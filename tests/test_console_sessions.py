"""Console sessions are records in the database: logout revokes a session (a copied cookie stops working), removing
the admin token that opened it ends it, several processes on one database agree, expiry holds, and the database keeps
neither the cookie's session id nor the token."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, select, text

from gateway.api import create_app
from gateway.auth import hash_token
from gateway.runtime import Runtime
from gateway.store.database import Database
from gateway.store.models import ConsoleSessionRecord
from tests.api_support import (
    ADMIN_TOKEN,
    PORTAL_TOKEN,
    Clock,
    database_url,
    prepare_database,
    settings_for,
)
from tests.databases import BACKENDS
from tests.test_console import _csrf, _login

SECRET = "console-signing-key-0123456789abcdef"  # shared by the processes, as a deployment of several must
ROTATED = "admin-token-rotated-0123456789abcdef"
BASE = "http://gateway.test"

pytestmark = pytest.mark.parametrize("kind", BACKENDS)


@contextmanager
def shared_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a migrated database with the test catalogue and agencies."""
    with database_url(kind, tmp_path) as url:
        db = Database.connect(url)
        try:
            prepare_database(db)
        finally:
            db.dispose()
        yield url


class Process:
    """One ``dvc-gateway serve`` process on the shared database: its own runtime, tokens, session keeper and clock."""

    def __init__(self, app: Any, clock: Clock, client: httpx.AsyncClient) -> None:
        self.app, self.clock, self.client = app, clock, client

    async def page(self, cookie: str, path: str = "/console/") -> httpx.Response:
        """``path`` asked with only this session cookie (a copy of it, say, in another browser)."""
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE) as other:
            return await other.get(path, headers={"Cookie": f"dvc_console={cookie}"})

    async def logout(self) -> httpx.Response:
        page = await self.client.get("/console/")
        return await self.client.post("/console/logout", data={"csrf": _csrf(page.text)})


@asynccontextmanager
async def serve(
    url: str,
    tmp_path: Path,
    *,
    admin: tuple[str, str] | None = (ADMIN_TOKEN, "admin"),
    hours: float = 8.0,
    secret: str | None = SECRET,
) -> AsyncIterator[Process]:
    """A process configured with the portal token and ``admin`` (a token and its role; ``None``: no such entry), and
    ``secret`` as ``[console] session_secret`` (``None``: not set)."""
    tokens = [{"token": PORTAL_TOKEN, "role": "portal"}]
    if admin is not None:
        tokens.append({"token": admin[0], "role": admin[1]})
    console: dict[str, Any] = {"session_hours": hours}
    if secret is not None:
        secret_file = tmp_path / "console-secret"
        secret_file.write_text(secret, encoding="utf-8")
        console["session_secret"] = f"file:{secret_file}"
    runtime = Runtime(
        settings=settings_for(url, tmp_path, console=console, auth={"tokens": tokens}), db=Database.connect(url)
    )
    clock = Clock()
    app = create_app(runtime, clock=clock)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            yield Process(app, clock, client)
    finally:
        runtime.close()


async def logged_in(process: Process, token: str = ADMIN_TOKEN) -> str:
    """Log in on ``process``; the session cookie's value."""
    response = await _login(process.client, token)
    assert response.status_code == 303 and response.headers["location"] == "/console/", response.text
    cookie = process.client.cookies.get("dvc_console")
    assert cookie
    return cookie


def refused(response: httpx.Response) -> bool:
    """The answer to a request without a session: a redirect to the login form."""
    return response.status_code == 303 and response.headers["location"] == "/console/login"


async def test_a_cookie_copied_before_logout_is_refused_after_it(kind: str, tmp_path: Path) -> None:
    with shared_database(kind, tmp_path) as url:
        async with serve(url, tmp_path) as gateway:
            cookie = await logged_in(gateway)
            copied = await gateway.page(cookie)
            assert copied.status_code == 200
            assert (await gateway.logout()).status_code == 303
            assert refused(await gateway.page(cookie))
            assert refused(await gateway.page(cookie, "/console/outbox"))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app), base_url=BASE) as thief:
                replayed = await thief.post(
                    "/console/outbox/redrive",
                    data={"csrf": _csrf(copied.text), "all": "1"},
                    headers={"Cookie": f"dvc_console={cookie}"},
                )
            assert refused(replayed)
            assert (await logged_in(gateway)) != cookie  # a new login opens a new session


async def test_a_session_ends_when_its_admin_token_leaves_the_configuration(kind: str, tmp_path: Path) -> None:
    with shared_database(kind, tmp_path) as url:
        async with serve(url, tmp_path) as before:
            cookie = await logged_in(before)
        async with serve(url, tmp_path) as restarted:  # the same configuration: the session goes on
            assert (await restarted.page(cookie)).status_code == 200
        async with serve(url, tmp_path, admin=(ROTATED, "admin")) as rotated:
            assert refused(await rotated.page(cookie))
            assert (await rotated.page(cookie, "/console/login")).status_code == 200  # the form, not the console
            assert (await rotated.page(await logged_in(rotated, ROTATED))).status_code == 200
        async with serve(url, tmp_path, admin=(ADMIN_TOKEN, "portal")) as demoted:
            assert refused(await demoted.page(cookie))
        async with serve(url, tmp_path, admin=None) as removed:
            assert refused(await removed.page(cookie))


async def test_logout_through_one_process_ends_the_session_in_another(kind: str, tmp_path: Path) -> None:
    with shared_database(kind, tmp_path) as url:
        async with serve(url, tmp_path) as first, serve(url, tmp_path) as second:
            cookie = await logged_in(first)
            assert (await second.page(cookie)).status_code == 200
            assert (await first.logout()).status_code == 303
            assert refused(await second.page(cookie))
            assert refused(await first.page(cookie))


async def test_a_session_expires_and_old_records_are_purged_at_login(kind: str, tmp_path: Path) -> None:
    with shared_database(kind, tmp_path) as url:
        async with serve(url, tmp_path, hours=1) as gateway:
            cookie = await logged_in(gateway)
            gateway.clock.advance(minutes=59)
            assert (await gateway.page(cookie)).status_code == 200
            gateway.clock.advance(minutes=2)
            assert refused(await gateway.page(cookie))
            fresh = await logged_in(gateway)  # expired an hour ago only: kept
            assert _count(url) == 2
            gateway.clock.advance(days=1, minutes=30)
            await logged_in(gateway)  # the first record expired more than a day ago: purged
            assert _count(url) == 2
            assert refused(await gateway.page(fresh))


async def test_the_database_keeps_neither_the_cookie_nor_the_token(kind: str, tmp_path: Path) -> None:
    with shared_database(kind, tmp_path) as url:
        async with serve(url, tmp_path) as gateway:
            cookie = await logged_in(gateway)
            session_id = URLSafeTimedSerializer(SECRET, salt="dvc-console-session-id").loads(cookie)["sid"]
            await gateway.logout()
            [row] = _rows(url)
    assert row["id_sha256"] == hashlib.sha256(session_id.encode()).hexdigest()
    assert row["revoked_at"] is not None and row["expires_at"] is not None and row["created_at"] is not None
    secrets = [
        cookie,
        session_id,
        ADMIN_TOKEN,
        hash_token(ADMIN_TOKEN).hex(),
        hashlib.sha256(cookie.encode()).hexdigest(),
    ]
    for value in row.values():
        for secret in secrets:
            assert secret not in str(value)


async def test_without_a_configured_key_processes_share_the_key_kept_in_the_database(kind: str, tmp_path: Path) -> None:
    with shared_database(kind, tmp_path) as url:
        async with serve(url, tmp_path, secret=None) as first, serve(url, tmp_path, secret=None) as second:
            form = await first.client.get("/console/login")  # the form from one process, posted to the other
            login_cookie = first.client.cookies.get("dvc_console_login")
            assert login_cookie
            answer = await second.client.post(
                "/console/login",
                data={"token": ADMIN_TOKEN, "csrf": _csrf(form.text)},
                headers={"Cookie": f"dvc_console_login={login_cookie}"},
            )
            assert answer.status_code == 303 and answer.headers["location"] == "/console/", answer.text
            cookie = second.client.cookies.get("dvc_console")
            assert cookie
            assert (await first.page(cookie)).status_code == 200
        async with serve(url, tmp_path, secret=None) as restarted:
            assert (await restarted.page(cookie)).status_code == 200
        async with serve(url, tmp_path, secret="another-configured-key-0123456789") as configured:
            assert refused(await configured.page(cookie))  # a configured key replaces the kept one
        [key] = _rows(url, "gateway_keys")
    assert key["name"] == "console_session" and len(key["value"]) >= 43
    assert URLSafeTimedSerializer(key["value"], salt="dvc-console-session-id").loads(cookie)["sid"]


async def test_a_configured_key_keeps_no_key_in_the_database(kind: str, tmp_path: Path) -> None:
    with shared_database(kind, tmp_path) as url:
        async with serve(url, tmp_path) as gateway:
            assert (await gateway.page(await logged_in(gateway))).status_code == 200
        assert _rows(url, "gateway_keys") == []


def _rows(url: str, table: str = "console_sessions") -> list[dict[str, Any]]:
    db = Database.connect(url)
    try:
        with db.engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(text(f"SELECT * FROM {table}"))]
    finally:
        db.dispose()


def _count(url: str) -> int:
    db = Database.connect(url)
    try:
        with db.unit_of_work() as session:
            return int(session.scalar(select(func.count()).select_from(ConsoleSessionRecord)) or 0)
    finally:
        db.dispose()
