"""Shared pytest fixtures."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from tests.pki import PKIServer, TestPKI, build_pki


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
