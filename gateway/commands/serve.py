"""``dvc-gateway serve`` (the API and the outbox workers) and ``dvc-gateway worker`` (the workers only).

Both take ``--config FILE``. The database is the configured one, or the embedded default
``sqlite:///./var/gateway.db``; a SQLite database is migrated on start, a PostgreSQL one must be current (``dvc-gateway
db upgrade``: several processes share it, so one migrates it, deliberately). Everything the configuration names (trust
anchors, tokens, the office calendar, the outbox policy) is loaded before the daemon starts, so a mistake is one line
on stderr and exit code 2, never a half-started daemon.

``serve`` prints one line on stdout with the URL it listens on once it accepts requests; the daemon's logs are JSON
lines on stderr. SIGTERM or SIGINT stops it gracefully (exit code 0).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..auth import TokenStore
from ..config import ConfigError
from ..daemon import DaemonError, run_daemon
from ..errors import EXIT_OK, UsageError
from ..logging import setup_logging
from ..runtime import Runtime
from ..settings import Settings, load_settings
from ..store.database import Database
from ..store.engine import DatabaseConfigError
from .db import config_argument, open_database

_COMMANDS = (
    ("serve", "run the daemon (API and workers)", "the HTTP API and the outbox workers"),
    ("worker", "run the outbox workers only (scale-out)", "the outbox workers without the HTTP API"),
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """``serve`` and ``worker``."""
    for name, help_text, what in _COMMANDS:
        parser = commands.add_parser(
            name, help=help_text, description=f"Run the gateway: {what}, until SIGTERM or SIGINT."
        )
        config_argument(parser)
        parser.set_defaults(run=run_serve if name == "serve" else run_worker)


def open_runtime(settings: Settings) -> Runtime:
    """The runtime of ``settings`` on the configured database (SQLite migrated, PostgreSQL checked), everything the
    settings name loaded."""
    url = settings.database.url
    if url.startswith("sqlite"):
        db = open_database(settings)
    else:
        try:
            db = Database.connect(url)
        except DatabaseConfigError as exc:
            raise UsageError(str(exc)) from None
        try:
            current = db.is_current()
        except Exception as exc:  # noqa: BLE001 - one line, whatever the driver raised
            db.dispose()
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"database unreachable: {reason}") from None
        if not current:
            db.dispose()
            raise UsageError("the database schema is not at the newest migration: run 'dvc-gateway db upgrade'")
    runtime = Runtime.from_settings(settings, db)
    try:
        # Read what the settings name now (trust material, tokens, cassettes): a mistake is one line before anything
        # starts.
        runtime.verifier  # noqa: B018
        runtime.client_factory  # noqa: B018
        TokenStore.from_settings(settings.auth)
    except (ConfigError, ValueError):
        runtime.close()
        raise
    return runtime


def _run(args: argparse.Namespace, *, api: bool) -> int:
    runtime = open_runtime(load_settings(args.config))
    setup_logging()

    def ready(url: str | None) -> None:
        if url is not None:
            print(f"dvc-gateway listening on {url}", flush=True)
        else:
            print("dvc-gateway worker running", flush=True)

    try:
        asyncio.run(run_daemon(runtime, api=api, workers=True, on_ready=ready))
    except DaemonError as exc:
        raise UsageError(str(exc)) from None
    finally:
        sys.stdout.flush()
    return EXIT_OK


def run_serve(args: argparse.Namespace) -> int:
    return _run(args, api=True)


def run_worker(args: argparse.Namespace) -> int:
    return _run(args, api=False)
