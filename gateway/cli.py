"""The ``dvc-gateway`` command line: subcommands, one-line errors, exit codes.

Exit codes (contract): 0 success, 1 a check failed, 2 usage or configuration error. Errors are one line on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import __version__
from .commands import agency, cassette, db, demo, national, outbox, payment, procedure, replay, serve, simulate, verify
from .config import ConfigError
from .errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, UsageError

PROG = "dvc-gateway"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the usage is one `--help` away.
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="dvc-gateway: the provincial integration gateway for online public services.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for module in (verify, db, agency, procedure, national, payment, serve, outbox, simulate, demo, replay, cassette):
        module.add_parser(commands)
    return parser


def fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _quiet_logging() -> None:
    """Libraries' warnings (pyHanko explains every failed validation in its log) are not the user's output:
    the command's report says what matters. Only errors reach stderr, as one line each."""
    logging.basicConfig(level=logging.ERROR, format=f"{PROG}: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_logging()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.run(args))
    except (UsageError, ConfigError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the contract: one clear line, never a traceback
        return fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_CHECK_FAILED)


def run() -> NoReturn:
    sys.exit(main())
