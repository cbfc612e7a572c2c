"""``dvc-gateway serve`` (the API and the outbox workers) and ``dvc-gateway worker`` (the workers only).

Both take ``--config FILE`` (else ``$DVC_GATEWAY_CONFIG``) and refuse to start without one, since the defaults have
no API tokens and no trust anchors; ``--dev`` starts anyway, for a local trial, and logs a warning for each thing
missing. ``serve`` also refuses a configuration without ``[[auth.tokens]]`` (its API would refuse every request)
unless ``--dev``. The database is the configured one, or the embedded default ``sqlite:///./var/gateway.db``; a
SQLite database is migrated on start, a PostgreSQL one must be current (``dvc-gateway db upgrade``: several processes
share it, so one migrates it, deliberately). Everything the configuration names (trust anchors, tokens, the office
calendar, the outbox policy) is loaded before the daemon starts, so a mistake is one line on stderr and exit code 2,
never a half-started daemon.

``serve`` prints one line on stdout with the URL it listens on once it accepts requests; the daemon's logs are JSON
lines on stderr. SIGTERM or SIGINT stops it gracefully (exit code 0).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..auth import TokenStore
from ..config import CONFIG_ENV, ConfigError
from ..errors import EXIT_OK, UsageError
from ..logging import setup_logging
from ..runtime import Runtime
from ..serving import DaemonError, event_loop_factory, run_loop
from ..settings import Settings, load_settings
from .db import Notice, config_argument, open_database, print_notice

log = logging.getLogger("gateway.serve")

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
        parser.add_argument(
            "--dev",
            action="store_true",
            help="a local trial: start without a configuration file or API tokens (each missing thing is logged "
            "as a warning)",
        )
        parser.set_defaults(run=run_serve if name == "serve" else run_worker)


def open_runtime(settings: Settings, *, notice: Notice = print_notice) -> Runtime:
    """The runtime of ``settings`` on the configured database (SQLite migrated, PostgreSQL checked), everything the
    settings name loaded; ``notice`` hears of a database folder created."""
    runtime = Runtime.from_settings(settings, open_database(settings, notice=notice))
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


def configuration(args: argparse.Namespace) -> tuple[Settings, bool]:
    """The settings ``serve`` or ``worker`` runs with, and whether a configuration file gave them; without a file,
    :class:`UsageError` unless ``--dev``."""
    configured = bool(args.config or os.environ.get(CONFIG_ENV))
    if not configured and not args.dev:
        raise UsageError(
            f"no configuration file: give --config FILE or set {CONFIG_ENV} "
            "(or --dev for a local trial without API tokens or trust anchors)"
        )
    return load_settings(args.config), configured


def start_warnings(settings: Settings, *, configured: bool, dev: bool, api: bool) -> list[str]:
    """What is missing, to log once the daemon starts; ``serve`` (``api``) without API tokens is a
    :class:`UsageError` unless ``dev``."""
    if api and not settings.auth.tokens and not dev:
        raise UsageError(
            "no API tokens: the configuration has no [[auth.tokens]], so the API would refuse every request "
            "(or --dev for a local trial)"
        )
    warnings = []
    if not configured:
        warnings.append("no configuration file (--dev): running on the defaults")
    if api and not settings.auth.tokens:
        warnings.append("no API tokens configured: every authenticated request is refused (401)")
    if not settings.signing.trust_anchors:
        warnings.append("no trust anchors configured: no signature is trusted")
    return warnings


def _run(args: argparse.Namespace, *, api: bool) -> int:
    settings, configured = configuration(args)
    try:
        event_loop_factory(settings.server.event_loop)
    except DaemonError as exc:
        raise UsageError(str(exc)) from None
    notices: list[str] = []
    # Every mistake in what the configuration names is reported first; then what it leaves out.
    runtime = open_runtime(settings, notice=notices.append)
    try:
        warnings = start_warnings(settings, configured=configured, dev=args.dev, api=api)
    except UsageError:
        runtime.close()
        raise
    setup_logging()
    for text in notices:
        log.info(text)
    for text in warnings:
        log.warning(text)

    # The daemon (the composition root, the API) is loaded once the configuration is known good: a refused one is
    # answered without it.
    from ..daemon import run_daemon, settle_after_start

    def ready(url: str | None) -> None:
        settle_after_start()
        if url is not None:
            print(f"dvc-gateway listening on {url}", flush=True)
        else:
            print("dvc-gateway worker running", flush=True)

    try:
        run_loop(run_daemon(runtime, api=api, workers=True, on_ready=ready), event_loop=settings.server.event_loop)
    except DaemonError as exc:
        raise UsageError(str(exc)) from None
    finally:
        sys.stdout.flush()
    return EXIT_OK


def run_serve(args: argparse.Namespace) -> int:
    return _run(args, api=True)


def run_worker(args: argparse.Namespace) -> int:
    return _run(args, api=False)
