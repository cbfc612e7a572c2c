"""Errors and exit codes shared by the command line and the daemon."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A usage or configuration problem: printed as one line, exit code 2."""
