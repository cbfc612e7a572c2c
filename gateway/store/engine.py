"""Engines for the embedded default (SQLite in WAL mode) and PostgreSQL, and migrations on demand.

:func:`url_problem` is the one check of a ``[database] url``: the settings refuse a bad one when they are read, and
:func:`make_engine` raises :class:`DatabaseConfigError` for one given any other way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..config import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

DEFAULT_URL = "sqlite:///./var/gateway.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BACKENDS = ("sqlite", "postgresql")


class DatabaseConfigError(ConfigError):
    """The database URL cannot be used."""


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as the gateway's database (``None``: nothing)."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        return "is not a database URL"
    if backend not in BACKENDS:
        return f"unsupported database {backend!r} (use sqlite or postgresql)"
    return None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an answered 201 survives power loss, not only a process crash
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str = DEFAULT_URL, *, echo: bool = False) -> Engine:
    """An engine for ``url``; a SQLite file's directory is created, and WAL, full sync and foreign keys are on."""
    problem = url_problem(url)
    if problem is not None:
        raise DatabaseConfigError(f"[database] url: {problem}")
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, echo=echo, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _alembic_config(engine: Engine | None) -> AlembicConfig:
    from alembic.config import Config  # migrations only: not loaded by processes that never run them

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()


def is_current(engine: Engine) -> bool:
    """True when the schema is at the newest migration (readiness)."""
    return current_revision(engine) == head_revision()


def has_tables(engine: Engine) -> bool:
    return bool(inspect(engine).get_table_names())
