"""The ``dvc-gateway`` command line: subcommands, one-line errors, exit codes.

Exit codes (``docs/cli.md``): 0 success, 1 a check failed, 2 usage or configuration error. Errors are one line on
stderr, never a traceback.

Only the module of the command being run is imported: ``--help``, ``--version`` and the list of commands come from
:data:`COMMANDS`, so they load no signature, SOAP, database or server library, and ``verify`` loads no database or
server module.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import __version__
from .errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, ConfigError, UsageError

PROG = "dvc-gateway"

#: Every command: its name, its one line of help, and the module under ``gateway.commands`` that defines it.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("verify", "verify the digital signatures of documents (PDF, XML, CMS)", "verify"),
    ("db", "database maintenance", "db"),
    ("agency", "the agency endpoint registry", "agency"),
    ("procedure", "the procedure catalogue", "procedure"),
    ("national", "the national public-service portal: reconcile", "national"),
    ("payment", "fee payments: reconcile the settlement file", "payment"),
    ("serve", "run the daemon (API and workers)", "serve"),
    ("worker", "run the outbox workers only (scale-out)", "serve"),
    ("outbox", "the outbox: list messages, redrive dead letters", "outbox"),
    ("simulate", "run one simulated upstream", "simulate"),
    ("demo", "a self-contained walk-through on simulated upstreams", "demo"),
    ("replay", "serve recorded exchanges", "replay"),
    ("cassette", "import, export, show and redact recorded exchanges", "cassette"),
    ("calendar", "the working-day calendar in force: days off, make-up days, due dates", "calendar"),
    ("wsdl", "try agencies' WSDLs: load them, list their operations", "wsdl"),
    ("report", "the periodic report per agency and procedure (month, quarter, half-year, year)", "report"),
    ("audit", "the audit trail: verify the hash chain, export it", "audit"),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the usage is one `--help` away.
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _chosen(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option), if it is one of :data:`COMMANDS`."""
    names = {name for name, _, _ in COMMANDS}
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in names else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser, with the full definition of the command ``argv`` names (the others listed by name and help)."""
    parser = _Parser(
        prog=PROG,
        description="dvc-gateway: the provincial integration gateway for online public services.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    chosen = _chosen(argv)
    for name, _, module in COMMANDS:
        if name == chosen:  # a module may define several commands (serve, worker): it defines them all
            importlib.import_module(f"gateway.commands.{module}").add_parser(commands)
    for name, help_text, _ in COMMANDS:
        if name not in commands.choices:
            commands.add_parser(name, help=help_text)
    return parser


def fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _quiet_logging() -> None:
    """Libraries' warnings (pyHanko explains every failed validation in its log, a library may raise a Python
    warning) are not the user's output: the command's report says what matters. Only errors reach stderr, as one
    line each. The daemons log everything as JSON lines instead (:func:`gateway.logging.setup_logging`)."""
    logging.basicConfig(level=logging.ERROR, format=f"{PROG}: %(message)s", stream=sys.stderr)
    logging.captureWarnings(True)


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_logging()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(words).parse_args(words)
        return int(args.run(args))
    except (UsageError, ConfigError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - docs/cli.md: one clear line, never a traceback
        return fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_CHECK_FAILED)


def run() -> NoReturn:
    sys.exit(main())
