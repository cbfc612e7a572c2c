"""``dvc-gateway national reconcile --since DATE [--resync] [--from-records] [--json]``: the national portal's view.

``reconcile`` takes the dossiers changed since ``DATE`` (``YYYY-MM-DD`` or an ISO date-time; read in Vietnam's time
when it has no offset), asks the national portal which status it holds for each (``TraCuuHoSoMC``, in batches) and
lists those whose national status differs from the local one (``national_code`` of the local status) or that the
portal does not have. ``--from-records`` compares with what the gateway recorded of its syncs (the
``national_sync`` table) instead, without calling the portal.

``--resync`` enqueues a ``national.sync`` for each listed dossier (the whole history when the portal does not have
it) and redrives the dossier's dead ``national.sync`` messages, which would hold it back; a running daemon then
delivers them (so ``--resync`` is refused, exit code 2, while ``[national_portal]`` is not configured, even with
``--from-records``). Dossiers whose earlier sync is still queued are listed with their count (``pending_syncs``):
their difference may only be the queue's.

Output: a table, or with ``--json`` an object ``{"since", "checked", "source", "mismatches": [...], "resynced"}``
(``docs/cli.md``). Exit code 0 when nothing differs or everything listed was re-synced, 1 when differences are
listed and left as they are, 2 for a usage or configuration error (credentials the portal refuses included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime, time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from adapters.errors import AuthError, UpstreamError

from .. import audit, messages, outbox
from ..config import ConfigError
from ..domain.calendar import VIETNAM_TZ
from ..domain.status import national_code
from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from ..flows.national.reactions import enqueue_sync
from ..flows.national.settings import NationalPortalSettings
from ..runtime import Runtime
from ..settings import Settings, load_settings
from ..store.models import Dossier, HistoryEntry, NationalSync, OutboxMessage
from .db import config_argument, open_database

PROG = "dvc-gateway"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "national",
        help="the national public-service portal: reconcile",
        description="Compare what the national portal holds with the gateway, and re-sync.",
    )
    actions = parser.add_subparsers(dest="national_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    reconcile = actions.add_parser(
        "reconcile",
        help="list dossiers whose national status differs from the local one",
        description="List the dossiers changed since DATE whose status at the national portal differs from the "
        "local one; --resync queues a sync of each.",
    )
    reconcile.add_argument("--since", required=True, metavar="DATE", help="YYYY-MM-DD or an ISO date-time")
    reconcile.add_argument("--resync", action="store_true", help="queue a national.sync for every dossier listed")
    reconcile.add_argument(
        "--from-records",
        action="store_true",
        help="compare with the gateway's record of its syncs instead of asking the portal",
    )
    reconcile.add_argument("--json", action="store_true", help="print the result as JSON")
    config_argument(reconcile)
    reconcile.set_defaults(run=run_reconcile)


def parse_since(text: str) -> datetime:
    """``--since``: a date (its start in Vietnam) or a date-time (Vietnam's time when it has no offset)."""
    try:
        if len(text.strip()) == 10:
            return datetime.combine(date.fromisoformat(text.strip()), time(0), tzinfo=VIETNAM_TZ)
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since: {text!r} is not a date (YYYY-MM-DD) or an ISO date-time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=VIETNAM_TZ)


def _changed_since(session: Session, since: datetime) -> list[dict[str, Any]]:
    """The dossiers changed since ``since``: code, local status, latest history id, sync record, queued syncs."""
    changed = select(HistoryEntry.dossier_id).where(HistoryEntry.at >= since)
    latest = (
        select(HistoryEntry.dossier_id, func.max(HistoryEntry.id).label("latest"))
        .group_by(HistoryEntry.dossier_id)
        .subquery()
    )
    rows = session.execute(
        select(Dossier.code, Dossier.status, latest.c.latest, NationalSync)
        .join(latest, latest.c.dossier_id == Dossier.id)
        .outerjoin(NationalSync, NationalSync.dossier_code == Dossier.code)
        .where(or_(Dossier.updated_at >= since, Dossier.id.in_(changed)))
        .order_by(Dossier.id)
    ).all()
    # Syncs still queued or dead (few, normally: read them all rather than name every dossier in the query).
    queued: dict[str, list[OutboxMessage]] = {}
    for message in session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.kind == messages.NATIONAL_SYNC,
            OutboxMessage.state.in_((outbox.PENDING, outbox.IN_FLIGHT, outbox.DEAD)),
        )
        .order_by(OutboxMessage.id)
    ):
        queued.setdefault(str(message.payload.get("dossier_code", "")), []).append(message)
    found = []
    for row in rows:
        record = row.NationalSync
        waiting = queued.get(row.code, [])
        found.append(
            {
                "dossier_code": row.code,
                "status": row.status,
                "local_code": national_code(row.status),
                "latest_history_id": row.latest,
                "recorded_code": int(record.status_code) if record and record.status_code else None,
                "synced_history_id": record.history_id if record else 0,
                "synced_at": record.synced_at.isoformat(timespec="seconds") if record and record.synced_at else None,
                "last_error": record.last_error if record else None,
                "pending_syncs": sum(1 for m in waiting if m.state != outbox.DEAD),
                "dead_syncs": [m.id for m in waiting if m.state == outbox.DEAD],
            }
        )
    return found


def _progress(total: int) -> Progress:
    show = sys.stderr.isatty() and total > 1
    return Progress(console=Console(stderr=True), transient=True, disable=not show)


def portal_settings(settings: Settings) -> NationalPortalSettings:
    """The ``[national_portal]`` settings; :class:`ConfigError` (one line) when the integration is off."""
    if settings.national_portal is None:
        raise ConfigError("[national_portal] base_url: is not configured (the national portal integration is off)")
    return settings.national_portal


async def _ask_portal(runtime: Runtime, codes: Sequence[str]) -> dict[str, int | None]:
    # Imported here: ``procedure`` imports this module for :func:`portal_settings` alone.
    from ..bootstrap.upstreams import open_portal

    held: dict[str, int | None] = {}
    async with open_portal(portal_settings(runtime.settings), runtime.client_factory) as portal:
        with _progress(len(codes)) as progress:
            task = progress.add_task("Asking the national portal", total=len(codes))
            size = portal.batch_size
            for start in range(0, len(codes), size):
                chunk = codes[start : start + size]
                held.update(await portal.lookup_dossiers(chunk))
                progress.advance(task, len(chunk))
    return held


def _resync(session: Session, mismatches: list[dict[str, Any]]) -> None:
    audit.lock_for_write(session)
    for item in mismatches:
        redriven = [message_id for message_id in item["dead_syncs"] if outbox.redrive(session, message_id)]
        full = item["source"] == "portal" and item["national_code"] is None
        message = enqueue_sync(session, item["dossier_code"], item["latest_history_id"], resync=True, full=full)
        item["resync_message_id"] = message.id
        details = {"redriven": redriven, "message_id": message.id, "full": full}
        audit.append(session, audit.operator(), "national.resync", item["dossier_code"], details)


def run_reconcile(args: argparse.Namespace) -> int:
    since = parse_since(args.since)
    settings = load_settings(args.config)
    if not args.from_records:
        portal_settings(settings)  # the integration off is one line before anything else
    elif args.resync and settings.national_portal is None:
        raise UsageError(
            "--resync: the national portal integration is off, nothing would deliver the syncs: "
            "set [national_portal] base_url"
        )
    db = open_database(settings)
    runtime = Runtime.from_settings(settings, db)
    try:
        with db.unit_of_work() as session:
            dossiers = _changed_since(session, since)
        source = "records" if args.from_records else "portal"
        if args.from_records:
            held = {d["dossier_code"]: d["recorded_code"] for d in dossiers}
        else:
            try:
                held = asyncio.run(_ask_portal(runtime, [d["dossier_code"] for d in dossiers]))
            except AuthError as exc:
                raise UsageError(f"national portal: {exc}") from None
            except UpstreamError as exc:
                print(f"{PROG}: error: national portal: {exc}", file=sys.stderr)
                return EXIT_CHECK_FAILED
        mismatches = []
        for item in dossiers:
            item["national_code"] = held.get(item["dossier_code"])
            item["source"] = source
            if item["national_code"] != item["local_code"]:
                mismatches.append(item)
        if args.resync and mismatches:
            with db.unit_of_work() as session:
                _resync(session, mismatches)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    finally:
        db.dispose()
    _print(args, since, len(dossiers), source, mismatches)
    return EXIT_OK if not mismatches or args.resync else EXIT_CHECK_FAILED


_FIELDS = (
    "dossier_code",
    "status",
    "local_code",
    "national_code",
    "source",
    "latest_history_id",
    "synced_history_id",
    "synced_at",
    "pending_syncs",
    "last_error",
)


def _print(args: argparse.Namespace, since: datetime, checked: int, source: str, mismatches: list[dict]) -> None:
    if args.json:
        shown = []
        for item in mismatches:
            view = {key: item.get(key) for key in _FIELDS}
            if "resync_message_id" in item:
                view["resync_message_id"] = item["resync_message_id"]
            shown.append(view)
        document = {
            "since": since.isoformat(timespec="seconds"),
            "checked": checked,
            "source": source,
            "mismatches": shown,
            "resynced": bool(args.resync and mismatches),
        }
        json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return
    where = "the national portal" if source == "portal" else "the gateway's sync records"
    if not mismatches:
        print(f"{checked} dossier(s) changed since {since.isoformat(timespec='seconds')}: all match {where}")
        return
    table = Table(title=f"{len(mismatches)} of {checked} dossier(s) differ from {where}")
    for column in ("dossier", "status", "local", "national", "queued", "last error"):
        table.add_column(column, no_wrap=column != "last error")
    for item in mismatches:
        national = item["national_code"]
        cells = (
            item["dossier_code"],
            item["status"],
            str(item["local_code"]),
            "-" if national is None else str(national),
            str(item["pending_syncs"] + len(item["dead_syncs"])),
            (item["last_error"] or "")[:120],
        )
        table.add_row(*(escape(cell) for cell in cells))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    if args.resync:
        print(f"{len(mismatches)} national.sync message(s) queued: a running gateway delivers them")
    else:
        print("run again with --resync to queue a sync of each")
