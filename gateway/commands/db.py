"""``dvc-gateway db upgrade``: apply the database migrations; also how the other commands open the database.

Only ``db upgrade`` migrates a shared (PostgreSQL) database; every other command refuses one that is not at the
newest migration, in one line naming ``dvc-gateway db upgrade``. The embedded SQLite database belongs to one
process and is migrated whenever a command opens it. A SQLite file's missing folder is created, and said so on
stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from ..errors import EXIT_OK, UsageError
from ..settings import Settings, load_settings
from ..store.database import Database
from ..store.engine import DatabaseConfigError, Migration, SchemaError, create_folder, describe, head_revision

#: Says one thing on the way (a created folder) without stopping the command.
Notice = Callable[[str], None]

UPGRADE_HINT = "run 'dvc-gateway db upgrade'"


def config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: $DVC_GATEWAY_CONFIG)")


def print_notice(text: str) -> None:
    """A notice as the command line says it: one line on stderr."""
    print(f"dvc-gateway: {text}", file=sys.stderr, flush=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def connect(settings: Settings, *, notice: Notice = print_notice) -> Database:
    """The configured database, not yet checked or migrated; a SQLite file's missing folder is created, with a
    notice. A failure is one :class:`UsageError` line."""
    url = settings.database.url
    try:
        folder = create_folder(url)
    except OSError as exc:
        raise UsageError(f"database {describe(url)}: cannot create its folder: {_reason(exc)}") from None
    if folder is not None:
        notice(f"created folder {folder} for the database")
    try:
        return Database.connect(url)
    except DatabaseConfigError as exc:
        raise UsageError(str(exc)) from None


def _schema_refusal(url: str, exc: SchemaError) -> UsageError:
    text = f"database {describe(url)} {exc}"
    return UsageError(f"{text}: {UPGRADE_HINT}" if exc.upgradable else text)


def open_database(settings: Settings, *, notice: Notice = print_notice) -> Database:
    """The configured database at the newest schema: SQLite is migrated, PostgreSQL must already be (``db
    upgrade``); a failure is one :class:`UsageError` line."""
    url = settings.database.url
    db = connect(settings, notice=notice)
    try:
        if db.embedded:
            db.upgrade()
        else:
            db.check_schema()
    except SchemaError as exc:
        db.dispose()
        raise _schema_refusal(url, exc) from None
    except (SQLAlchemyError, OSError) as exc:
        db.dispose()
        raise UsageError(f"database {describe(url)}: {_reason(exc)}") from None
    return db


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("db", help="database maintenance", description="Database maintenance.")
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    upgrade = actions.add_parser(
        "upgrade",
        help="apply migrations",
        description="Apply the database migrations: prints the database, then each migration applied (none when it "
        "is already at the newest).",
    )
    config_argument(upgrade)
    upgrade.set_defaults(run=run_upgrade)


def _upgrade(settings: Settings) -> list[Migration]:
    url = settings.database.url
    db = connect(settings)
    try:
        return db.upgrade()
    except SchemaError as exc:
        raise UsageError(f"database {describe(url)} {exc}") from None
    except (SQLAlchemyError, OSError) as exc:
        raise UsageError(f"database {describe(url)}: {_reason(exc)}") from None
    finally:
        db.dispose()


def run_upgrade(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    applied = _upgrade(settings)
    print(f"database {describe(settings.database.url)}")
    for migration in applied:
        print(f"applied {migration}")
    if applied:
        print(f"up to date: now at the head revision {applied[-1].revision}")
    else:
        print(f"up to date: already at the head revision {head_revision()}, nothing applied")
    return EXIT_OK
