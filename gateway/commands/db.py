"""``dvc-gateway db upgrade``: apply the database migrations; also how other commands open the database."""

from __future__ import annotations

import argparse

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ..errors import EXIT_OK, UsageError
from ..settings import Settings, load_settings
from ..store.database import Database
from ..store.engine import DatabaseConfigError


def config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: $DVC_GATEWAY_CONFIG)")


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def open_database(settings: Settings) -> Database:
    """The configured database, migrated to the newest schema; a failure is one :class:`UsageError` line."""
    url = settings.database.url
    try:
        db = Database.connect(url)
    except DatabaseConfigError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:  # the SQLite file's directory cannot be created
        raise UsageError(f"database {_shown(url)}: {exc.strerror or exc}") from None
    try:
        db.upgrade()
    except SQLAlchemyError as exc:
        db.dispose()
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise UsageError(f"database {_shown(url)}: {reason}") from None
    except OSError as exc:
        db.dispose()
        raise UsageError(f"database {_shown(url)}: {exc.strerror or exc}") from None
    return db


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("db", help="database maintenance", description="Database maintenance.")
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    upgrade = actions.add_parser("upgrade", help="apply migrations", description="Apply the database migrations.")
    config_argument(upgrade)
    upgrade.set_defaults(run=run_upgrade)


def run_upgrade(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    db = open_database(settings)
    db.dispose()
    print(f"database {_shown(settings.database.url)} is up to date")
    return EXIT_OK
