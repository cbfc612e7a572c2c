"""The databases tests run on: a migrated SQLite file in the test's folder, and when
``DVC_GATEWAY_TEST_POSTGRES_URL`` is set, a fresh PostgreSQL schema of its own, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gateway.store.database import Database

__all__ = ["BACKENDS", "PG_ENV", "PG_SKIP", "open_database", "postgres_schema_url"]

PG_ENV = "DVC_GATEWAY_TEST_POSTGRES_URL"
PG_SKIP = f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A URL to a fresh, empty PostgreSQL schema (the connection's ``search_path``), dropped on exit."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_SKIP)
    schema = f"outbox_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def open_database(kind: str, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database of ``kind`` (``sqlite`` or ``postgresql``)."""
    if kind == "sqlite":
        db = Database.connect(f"sqlite:///{tmp_path}/gw.db")
        db.upgrade()
        try:
            yield db
        finally:
            db.dispose()
        return
    with postgres_schema_url() as url:
        db = Database.connect(url)
        try:
            db.upgrade()
            yield db
        finally:
            db.dispose()


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.skipif(not os.environ.get(PG_ENV), reason=PG_SKIP)),
]
