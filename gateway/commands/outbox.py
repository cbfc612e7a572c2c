"""``dvc-gateway outbox list [--state STATE] [--json]`` and ``dvc-gateway outbox redrive ID|--all``.

``list`` shows the outbox messages (all, or those in one state: ``pending``, ``in_flight``, ``done``, ``dead``), oldest
first: what each is for (kind, target, the dossier it concerns), its attempts and its last error. Payloads are not
shown (a withdrawal carries the applicant's reason). ``--json`` prints a list of objects (``docs/cli.md``).

``redrive`` puts a dead message (or every dead message) back in the queue, due now, its attempts reset: after an
operator fixed what made it fail. A running daemon picks it up at its next poll. Redriving a message that is not dead
(or does not exist) changes nothing and exits with code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import audit, outbox
from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from ..settings import load_settings
from ..store.models import OutboxMessage
from .db import config_argument, open_database

_PAGE = 500


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "outbox", help="the outbox: list messages, redrive dead letters", description="Inspect and redrive the outbox."
    )
    actions = parser.add_subparsers(dest="outbox_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True

    listing = actions.add_parser("list", help="list messages", description="List outbox messages, oldest first.")
    listing.add_argument("--state", choices=outbox.STATES, help="only messages in this state")
    listing.add_argument("--target", metavar="TARGET", help="only messages for this target (an agency code, portal)")
    listing.add_argument("--json", action="store_true", help="print the messages as JSON")
    config_argument(listing)
    listing.set_defaults(run=run_list)

    redrive = actions.add_parser(
        "redrive",
        help="retry dead messages",
        description="Put a dead message (or every dead message) back in the queue, due now, attempts reset.",
    )
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, metavar="ID", help="the message's id")
    which.add_argument("--all", action="store_true", help="every dead message")
    config_argument(redrive)
    redrive.set_defaults(run=run_redrive)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def message_view(message: OutboxMessage) -> dict[str, Any]:
    """One message as ``list --json`` prints it (no payload)."""
    return {
        "id": message.id,
        "kind": message.kind,
        "target": message.target,
        "state": message.state,
        "dossier_code": message.ordering_key,
        "idempotency_key": message.idempotency_key,
        "attempts": message.attempts,
        "next_attempt_at": _iso(message.next_attempt_at),
        "claimed_by": message.claimed_by,
        "lease_until": _iso(message.lease_until),
        "last_error": message.last_error,
        "created_at": _iso(message.created_at),
        "done_at": _iso(message.done_at),
    }


def run_list(args: argparse.Namespace) -> int:
    db = open_database(load_settings(args.config))
    try:
        views: list[dict[str, Any]] = []
        after = 0
        while True:
            with db.unit_of_work() as session:
                page = outbox.list_messages(session, args.state, _PAGE, target=args.target, after_id=after)
                views.extend(message_view(m) for m in page)
            if len(page) < _PAGE:
                break
            after = views[-1]["id"]
    finally:
        db.dispose()
    if args.json:
        json.dump(views, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    console = Console()
    if not console.is_terminal:  # piped to a file or a pager: whole identifiers rather than 80 columns
        console = Console(width=160)
    if not views:
        what = f"{args.state} " if args.state else ""
        console.print(f"No {what}messages in the outbox.")
        return EXIT_OK
    table = Table(title=f"Outbox ({len(views)} message{'s' if len(views) != 1 else ''})")
    for column in ("id", "kind", "target", "dossier", "state", "attempts", "next attempt"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("id", "attempts") else "left")
    table.add_column("last error", overflow="fold")
    for view in views:
        cells = (
            str(view["id"]),
            view["kind"],
            view["target"],
            view["dossier_code"] or "-",
            view["state"],
            str(view["attempts"]),
            view["next_attempt_at"] if view["state"] == outbox.PENDING else "-",
            (view["last_error"] or "")[:160],
        )
        table.add_row(*(escape(cell) for cell in cells))  # data, not markup: "[...]" in an error is shown as is
    console.print(table)
    return EXIT_OK


def run_redrive(args: argparse.Namespace) -> int:
    if args.id is not None and args.id < 1:
        raise UsageError("ID must be a positive message id")
    db = open_database(load_settings(args.config))
    state: str | None = None
    try:
        with db.unit_of_work() as session:
            audit.lock_for_write(session)
            if args.all:
                dead = [m.id for m in outbox.list_messages(session, outbox.DEAD, limit=1_000_000)]
                count = outbox.redrive(session, all_dead=True)
                if count:
                    audit.append(session, audit.operator(), "outbox.redrive", "all", {"ids": dead})
            else:
                count = outbox.redrive(session, args.id)
                message = outbox.get(session, args.id)
                state = message.state if message is not None else None
                if count and message is not None:
                    details = {"kind": message.kind, "target": message.target}
                    audit.append(session, audit.operator(), "outbox.redrive", str(args.id), details)
    finally:
        db.dispose()
    if args.all:
        print(f"{count} dead message{'s' if count != 1 else ''} redriven")
        return EXIT_OK
    if count:
        print(f"message {args.id} redriven")
        return EXIT_OK
    reason = f"it is {state}, not dead" if state else "no such message"
    print(f"dvc-gateway: error: message {args.id} not redriven: {reason}", file=sys.stderr)
    return EXIT_CHECK_FAILED
