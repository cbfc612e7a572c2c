"""The restore drill of the README's "Operating in production": take dossiers in, back the database up, lose it,
restore it, and the audit trail verifies and every dossier (history, blobs, queued messages) is there.

SQLite: the online backup API (what ``sqlite3 gateway.db ".backup …"`` does), taken while a connection is open.
PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore`` on a scratch database created in the configured server
for the test (``CREATE DATABASE``) and dropped after it; the server itself is never restarted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from gateway.cli import main
from gateway.runtime import Runtime
from gateway.store.database import Database
from gateway.store.models import AuditEntry, Dossier, OutboxMessage
from tests.api_support import (
    AGENCY_AUTH,
    Gateway,
    gateway_client,
    prepare_database,
    settings_for,
)
from tests.databases import PG_ENV, PG_SKIP


def _counts(db: Database) -> dict[str, Any]:
    with db.unit_of_work() as session:
        return {
            "dossiers": sorted(session.scalars(select(Dossier.code))),
            "audit": session.scalar(select(func.count()).select_from(AuditEntry)),
            "outbox": session.scalar(select(func.count()).select_from(OutboxMessage)),
        }


async def _take_intake(gw: Gateway) -> list[str]:
    """Two dossiers submitted, one received by its agency and read by it (audit entries of each kind)."""
    first = (await gw.submitted())["code"]
    second = (await gw.submitted())["code"]
    assert (await gw.event(first, "received")).status_code == 200
    await gw.get(first, AGENCY_AUTH)
    return [first, second]


def intake(url: str, folder: Path) -> tuple[list[str], dict[str, Any]]:
    """Dossiers taken in through the API on the database at ``url``: their codes and what the database then holds."""
    runtime = Runtime(settings=settings_for(url, folder), db=Database.connect(url))
    try:
        prepare_database(runtime.db)

        async def run() -> list[str]:
            async for gateway in gateway_client(runtime):
                return await _take_intake(gateway)
            raise AssertionError("no gateway")

        codes = asyncio.run(run())
        return codes, _counts(runtime.db)
    finally:
        runtime.close()


def after_restore(url: str, folder: Path, codes: list[str], before: dict[str, Any], capsys: Any) -> None:
    """``audit verify`` passes on the restored database and it holds what was taken in, readable through the API."""
    config = folder / "restored.toml"
    config.write_text(f"[database]\nurl = {json.dumps(url)}\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["audit", "verify", "--config", str(config)]) == 0
    assert f"audit trail intact: {before['audit']} entries" in capsys.readouterr().out
    runtime = Runtime(settings=settings_for(url, folder), db=Database.connect(url))
    try:
        assert _counts(runtime.db) == before and sorted(codes) == before["dossiers"]

        async def read() -> dict[str, Any]:
            async for gateway in gateway_client(runtime):
                return await gateway.get(codes[0])
            raise AssertionError("no gateway")

        view = asyncio.run(read())
        assert view["status"] == "received" and view["components"][0]["filename"] == "tp1.pdf"
    finally:
        runtime.close()


def test_sqlite_backup_wipe_restore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = tmp_path / "var" / "gateway.db"
    database.parent.mkdir()
    url = f"sqlite:///{database}"
    codes, before = intake(url, tmp_path)
    backup = tmp_path / "backup" / "gateway-backup.db"
    backup.parent.mkdir()
    with sqlite3.connect(database) as live, sqlite3.connect(backup) as copy:
        live.backup(copy)  # consistent even while the daemons write (WAL)
    live.close()
    copy.close()
    for leftover in database.parent.iterdir():  # the disaster: the file and its WAL are gone
        leftover.unlink()
    shutil.copyfile(backup, database)
    after_restore(url, tmp_path, codes, before, capsys)


@contextmanager
def scratch_database() -> Iterator[tuple[str, str]]:
    """A new database in the test server (SQLAlchemy URL, libpq URL for pg_dump), dropped on exit."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_SKIP)
    if not (shutil.which("pg_dump") and shutil.which("pg_restore")):
        pytest.skip("the PostgreSQL restore drill needs pg_dump and pg_restore (postgresql-client)")
    name = f"dvc_restore_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    url = make_url(base).set(database=name)
    try:
        with admin.connect() as connection:
            try:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            except ProgrammingError as exc:  # a role without CREATEDB
                pytest.skip(f"the PostgreSQL restore drill needs CREATE DATABASE: {exc.orig}")
        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        yield url.render_as_string(hide_password=False), libpq
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _recreate(libpq_url: str, base: str) -> None:
    """The disaster: the database dropped, an empty one of the same name created."""
    name = make_url(libpq_url).database
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()


def test_postgresql_dump_wipe_restore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with scratch_database() as (url, libpq):
        codes, before = intake(url, tmp_path)
        dump = tmp_path / "gateway.dump"
        subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", f"--dbname={libpq}"], check=True, timeout=60)
        _recreate(libpq, os.environ[PG_ENV])
        empty = Database.connect(url)
        try:
            with empty.engine.connect() as connection:
                assert connection.execute(text("SELECT to_regclass('public.dossiers')")).scalar() is None
        finally:
            empty.dispose()
        restore = ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={libpq}", str(dump)]
        subprocess.run(restore, check=True, timeout=60)
        after_restore(url, tmp_path, codes, before, capsys)
