"""Engines for the embedded default (SQLite in WAL mode) and PostgreSQL, where a SQLite file lives, and the schema's
migrations: which are pending, applying them, and whether a database is at the newest one.

:func:`url_problem` is the one check of a ``[database] url``: the settings refuse a bad one when they are read, and
:func:`make_engine` raises :class:`DatabaseConfigError` for one given any other way. :func:`resolve_sqlite_url` makes
a relative SQLite path absolute (the settings resolve it from the configuration file's directory).
"""

from __future__ import annotations

import functools
import select
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError

from ..config import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

DEFAULT_URL = "sqlite:///./var/gateway.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BACKENDS = ("sqlite", "postgresql")


class DatabaseConfigError(ConfigError):
    """The database URL cannot be used."""


class SchemaError(ConfigError):
    """The database's schema is not the newest; ``upgradable`` says whether applying the migrations would fix it."""

    def __init__(self, message: str, *, upgradable: bool) -> None:
        super().__init__(message)
        self.upgradable = upgradable


@dataclass(frozen=True)
class Migration:
    """One migration: its revision and the first line of its description."""

    revision: str
    title: str

    def __str__(self) -> str:
        return f"{self.revision} ({self.title})" if self.title else self.revision


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as the gateway's database (``None``: nothing)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "is not a database URL"
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        return f"unsupported database {backend!r} (use sqlite or postgresql)"
    if backend == "sqlite" and _in_memory(parsed):
        return (
            "an in-memory SQLite database lives in one connection and the gateway uses several (and keeps nothing):"
            " give a file, such as sqlite:///./var/gateway.db"
        )
    return None


def _in_memory(parsed: URL) -> bool:
    """Whether a SQLite URL names an in-memory database (no file, ``:memory:``, or a ``mode=memory`` URI)."""
    database = parsed.database or ""
    if database in ("", ":memory:", "file::memory:"):
        return True
    return database.startswith("file:") and parsed.query.get("mode") == "memory"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite ``url`` as given (``~`` expanded), ``None`` for another database, an in-memory one or a
    ``file:`` URI."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or str(parsed.query.get("uri", "")).lower() in ("true", "1"):
        return None
    return Path(database).expanduser()


def resolve_sqlite_url(url: str, base_dir: Path) -> str:
    """``url`` with a relative SQLite file made absolute from ``base_dir`` (any other URL unchanged)."""
    path = sqlite_file(url)
    if path is None:
        return url
    parsed = make_url(url)
    absolute = path if path.is_absolute() else base_dir / path
    if str(absolute) == parsed.database:
        return url
    return parsed.set(database=str(absolute)).render_as_string(hide_password=False)


def describe(url: str) -> str:
    """The database ``url`` names, for a message: a SQLite file's path, else the URL without its password."""
    path = sqlite_file(url)
    if path is not None:
        return f"{path.absolute()} (SQLite)"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def create_folder(url: str) -> Path | None:
    """Create the missing folder of a SQLite ``url``'s file; the folder when it was created (``OSError``: it could
    not be)."""
    path = sqlite_file(url)
    if path is None:
        return None
    folder = path.absolute().parent
    if folder.is_dir():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return folder


#: How long a SQLite connection waits for another's write lock before it gives up (``database is locked``).
BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an answered 201 survives power loss, not only a process crash
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


class _SQLiteCompiler(SQLiteCompiler):
    """SQLite's statement compiler, keeping a table's hint: ``select(…).with_hint(table, "INDEXED BY ix_…",
    dialect_name="sqlite")`` is ``FROM table INDEXED BY ix_…`` (SQLAlchemy's own SQLite compiler drops table hints)."""

    def get_from_hint_text(self, table: Any, text: str | None) -> str | None:
        return text


def make_engine(url: str = DEFAULT_URL, *, echo: bool = False) -> Engine:
    """An engine for ``url``; a SQLite file's missing folder is created (:func:`create_folder`), and WAL, full sync
    and foreign keys are on."""
    problem = url_problem(url)
    if problem is not None:
        raise DatabaseConfigError(f"[database] url: {problem}")
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = sqlite_file(url)
        pool: dict[str, Any] = {}
        if path is not None:
            create_folder(url)
            parsed = parsed.set(database=str(path))
            # As many kept connections as a busy process uses at once (its event loop's database threads), so that
            # connections are not opened, set up and closed again under load.
            pool = {"pool_size": 10, "max_overflow": 20, "pool_use_lifo": True}
        engine = create_engine(parsed, echo=echo, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, **pool)
        engine.dialect.statement_compiler = _SQLiteCompiler
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed, echo=echo, pool_size=10, max_overflow=10)
    event.listen(engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Checking out a pooled PostgreSQL connection: refuse one the server closed while it sat idle in the pool.

    A server that stops, restarts or ends a session tells the client so and closes the socket; an idle connection
    has nothing else to read. So a socket that is readable (or closed) at checkout belongs to a dead connection, and
    raising :class:`~sqlalchemy.exc.DisconnectionError` makes the pool replace it with a new one before the unit of
    work sees it, as a ``SELECT 1`` sent at each checkout would (``pool_pre_ping``), without its round trip.
    Anything else an idle connection may receive (a notice, a changed server setting) only costs a new connection.
    """
    try:
        dead = bool(dbapi_connection.closed or getattr(dbapi_connection, "broken", False))
        dead = dead or _readable(dbapi_connection.fileno())
    except Exception:  # noqa: BLE001 - a driver that cannot say which socket it had: a dead connection, replaced
        dead = True
    if dead:
        raise DisconnectionError("the server closed the connection while it was idle")


def _readable(fd: int) -> bool:
    """Whether ``fd`` has something to read or is closed, without waiting."""
    if not hasattr(select, "poll"):  # Windows: select() takes any socket there
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _alembic_config(engine: Engine | None) -> AlembicConfig:
    from alembic.config import Config  # migrations only: not loaded by processes that never run them

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(None))


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@functools.cache
def head_revision() -> str | None:
    """The newest migration's revision (read from the migration scripts once per process: readiness asks often)."""
    return _scripts().get_current_head()


def _title(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def _pending(engine: Engine, target: str = "head") -> list[Migration]:
    """The migrations from the database's revision to ``target``, oldest first (:class:`SchemaError` when the
    revision is not one of this version's or the tables were made without migrations)."""
    scripts = _scripts()
    current = current_revision(engine)
    known = {script.revision for script in scripts.walk_revisions()}
    if current is not None and current not in known:
        raise SchemaError(
            f"is at revision {current}, which this version of dvc-gateway does not know (migrated by a newer one?)",
            upgradable=False,
        )
    if current is None and set(inspect(engine).get_table_names()) - {"alembic_version"}:
        raise SchemaError("has tables but no migration revision (not a dvc-gateway database?)", upgradable=False)
    newest_first = list(scripts.iterate_revisions(target, current or "base"))
    return [Migration(script.revision, _title(script.doc)) for script in reversed(newest_first)]


def upgrade(engine: Engine, revision: str = "head") -> list[Migration]:
    """Apply the migrations up to ``revision``; the ones applied, oldest first (none: the schema was there)."""
    from alembic import command

    pending = _pending(engine, revision)
    if pending:
        command.upgrade(_alembic_config(engine), revision)
    return pending


def check_schema(engine: Engine) -> None:
    """Nothing when the schema is at the newest migration, else :class:`SchemaError` saying where it is."""
    pending = _pending(engine)
    if not pending:
        return
    current = current_revision(engine)
    if current is None:
        raise SchemaError("is not migrated", upgradable=True)
    raise SchemaError(f"is at revision {current}, not at the newest ({pending[-1].revision})", upgradable=True)


def is_current(engine: Engine) -> bool:
    """True when the schema is at the newest migration (readiness)."""
    return current_revision(engine) == head_revision()


def has_tables(engine: Engine) -> bool:
    return bool(inspect(engine).get_table_names())
