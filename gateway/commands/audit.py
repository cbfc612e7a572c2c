"""``dvc-gateway audit verify [--head HASH[,HASH...]]`` and ``dvc-gateway audit export [--since DATE] [--output FILE]``.

``verify`` walks the hash chains of the audit trail (a progress bar on a terminal) and exits 0 when they are intact,
printing how many entries it read and the head of each chain, comma-separated (one hash while the trail is one
chain; record it: ``--head`` checks later that each is still there, so entries removed from the end are seen too);
otherwise it exits 1 with one line naming the first altered, inserted or removed entry. ``export`` writes the
entries from ``DATE`` (a day in Vietnam's time; all without it) as JSON lines, each with its hashes, for archiving.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import Progress

from .. import audit
from ..domain.calendar import VIETNAM_TZ
from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from ..settings import load_settings
from .db import config_argument, open_database

_HASH_LENGTH = 64


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "audit",
        help="the audit trail: verify the hash chain, export it",
        description="Verify the audit trail's hash chain, or export it as JSON lines.",
    )
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True

    verify = actions.add_parser(
        "verify",
        help="walk the hash chain; exit 1 naming the first altered, inserted or removed entry",
        description="Walk the audit trail's hash chain and name the first altered, inserted or removed entry.",
    )
    verify.add_argument(
        "--head",
        metavar="HASH[,HASH...]",
        help="the head hashes recorded earlier (as printed): each must still be in the trail",
    )
    config_argument(verify)
    verify.set_defaults(run=run_verify)

    export = actions.add_parser(
        "export",
        help="write the entries as JSON lines",
        description="Write the audit entries (from DATE on) as JSON lines, with their hashes.",
    )
    export.add_argument("--since", metavar="DATE", type=_day, help="the first day (YYYY-MM-DD, Vietnam's time)")
    export.add_argument("--output", metavar="FILE", type=Path, help="write to FILE (default: standard output)")
    config_argument(export)
    export.set_defaults(run=run_export)


def _day(value: str) -> datetime:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYY-MM-DD") from None
    return datetime(day.year, day.month, day.day, tzinfo=VIETNAM_TZ)


def _progress() -> Progress:
    """A progress bar on stderr (shown on a terminal only, and gone when done)."""
    console = Console(stderr=True)
    return Progress(console=console, transient=True, disable=not console.is_terminal)


def run_verify(args: argparse.Namespace) -> int:
    heads = args.head.split(",") if args.head is not None else []
    if any(len(head) != _HASH_LENGTH or any(c not in "0123456789abcdef" for c in head) for head in heads):
        raise UsageError("--head must be hashes of 64 hexadecimal digits, comma-separated (as 'audit verify' printed)")
    db = open_database(load_settings(args.config))
    try:
        with db.unit_of_work() as session, _progress() as progress:
            task = progress.add_task("Verifying the audit trail", total=audit.count(session))
            result = audit.check_chain(session, expected_heads=heads, progress=lambda n: progress.advance(task, n))
    finally:
        db.dispose()
    if result.intact:
        print(f"audit trail intact: {result.entries} entries, head {','.join(result.heads)}")
        return EXIT_OK
    first = result.problems[0]
    more = len(result.problems) - 1
    tail = f" ({more} more problem{'s' if more != 1 else ''} after it)" if more else ""
    print(f"dvc-gateway: error: audit trail broken: {first.message}{tail}", file=sys.stderr)
    return EXIT_CHECK_FAILED


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    try:
        with path.open("w", encoding="utf-8") as stream:
            yield stream
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def run_export(args: argparse.Namespace) -> int:
    db = open_database(load_settings(args.config))
    written = 0
    try:
        with db.unit_of_work() as session, _output(args.output) as stream, _progress() as progress:
            task = progress.add_task("Exporting the audit trail", total=audit.count_since(session, args.since))
            for entry in audit.entries_since(session, args.since):
                stream.write(json.dumps(audit.entry_document(entry), ensure_ascii=False, sort_keys=True) + "\n")
                written += 1
                progress.advance(task)
    finally:
        db.dispose()
    if args.output is not None:
        print(f"{written} audit entr{'ies' if written != 1 else 'y'} written to {args.output}", file=sys.stderr)
    return EXIT_OK
