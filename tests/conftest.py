"""Shared pytest fixtures."""

from __future__ import annotations

import compileall
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohappyeyeballs
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from gateway.store.database import Database
from tests import network_mock  # noqa: F401  (respx answers at the gateway's transport)
from tests.databases import open_database
from tests.pki import PKIServer, TestPKI, build_pki

ROOT = Path(__file__).resolve().parent.parent
#: The project's packages, compiled once per session where Python is told not to write bytecode.
PACKAGES = ("gateway", "adapters", "signing", "tests")
#: The ``__pycache__`` folders the session created, removed at its end.
_CREATED: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    """Where ``PYTHONDONTWRITEBYTECODE`` is set, every process the suite starts (the daemon, the CLI, the README's
    commands: a few hundred) would compile the project's modules from source again: they are compiled once, and the
    ``__pycache__`` folders this creates are removed when the session ends (the setting only stops Python from
    writing bytecode, not from reading it)."""
    if not sys.dont_write_bytecode:
        return
    for package in PACKAGES:
        folders = {path.parent / "__pycache__" for path in (ROOT / package).rglob("*.py")}
        _CREATED.extend(sorted(folder for folder in folders if not folder.exists()))
        compileall.compile_dir(ROOT / package, quiet=1)


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _CREATED:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def _pki_http() -> Iterator[PKIServer]:
    """The PKI HTTP server, started but not yet attached (its port must be known before the PKI is built)."""
    with PKIServer() as server:
        yield server


@pytest.fixture(scope="session")
def pki(_pki_http: PKIServer, tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """The test PKI (built once per session), its CRL/OCSP URLs pointing at the local PKI server."""
    built = build_pki(
        tmp_path_factory.mktemp("pki"),
        ocsp_url=f"{_pki_http.base_url}/ocsp",
        crl_url=f"{_pki_http.base_url}/ca.crl",
        root_crl_url=f"{_pki_http.base_url}/root.crl",
    )
    _pki_http.attach(built)
    return built


@pytest.fixture(scope="session")
def pki_server(_pki_http: PKIServer, pki: TestPKI) -> PKIServer:
    """The started PKI server, serving ``pki``."""
    return _pki_http


@pytest.fixture(scope="session", autouse=True)
def _migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A new, empty SQLite database migrated to the newest revision is a copy of one migrated once per session.

    The template is made by the real migrations (``gateway.store.engine.upgrade``); each later upgrade of an empty
    SQLite database to ``head`` copies it in with SQLite's backup API and answers the same list of migrations. Any
    other upgrade (PostgreSQL, a database with tables, another revision) runs the migrations as the product does.
    Commands run as processes are not affected: they migrate for real.
    """
    from sqlalchemy import inspect

    from gateway.store import database, engine

    real = engine.upgrade
    template = tmp_path_factory.mktemp("schema") / "template.db"
    made: list[engine.Migration] = []

    def upgrade(target: Any, revision: str = "head") -> list[engine.Migration]:
        if target.dialect.name != "sqlite" or revision != "head" or inspect(target).get_table_names():
            return real(target, revision)
        if not made:
            source = engine.make_engine(f"sqlite:///{template}")
            try:
                made.extend(real(source, revision))
            finally:
                source.dispose()
        with sqlite3.connect(template) as copy, target.connect() as connection:
            copy.backup(connection.connection.dbapi_connection)
        return list(made)

    database.upgrade = upgrade  # type: ignore[assignment]
    try:
        yield
    finally:
        database.upgrade = real


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty SQLite database in the test's folder (``gw.db``). Modules that run on PostgreSQL too, or
    need rows in it first, define their own."""
    with open_database("sqlite", tmp_path) as database:
        yield database


@pytest.fixture
def flushes() -> Iterator[list[Session]]:
    """The sessions of every flush that wrote something, in order, while the test runs."""
    seen: list[Session] = []

    def before_flush(session: Session, *_args: Any) -> None:
        seen.append(session)

    event.listen(Session, "before_flush", before_flush)
    try:
        yield seen
    finally:
        event.remove(Session, "before_flush", before_flush)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address the gateway's HTTP transport really connects to (after its own address checks)."""
    attempts: list[str] = []
    real = aiohappyeyeballs.start_connection

    async def record(addr_infos: list[Any], *args: Any, **kwargs: Any) -> Any:
        attempts.extend(str(info[4][0]) for info in addr_infos)
        return await real(addr_infos, *args, **kwargs)

    monkeypatch.setattr(aiohappyeyeballs, "start_connection", record)
    return attempts
