"""``dvc-gateway procedure import|list|sync``: the procedure catalogue in the database (see ``docs/catalogue.md``).

``sync`` pulls the catalogue from the national public-service portal (``LayDanhSachTTHC``, configured in
``[national_portal]``) into the local one. The portal is the authority on a procedure's name, legal processing time
and fees; the province's own settings are kept: the competent agencies, the components (with ``must_be_signed``) and
the inter-agency shares of a procedure already in the local catalogue. A procedure new to the province is added when
the portal names its competent agencies and processing time, its components then all required and unsigned;
procedures the portal no longer has in force are not added, and nothing is removed. Every entry left out is listed
with its reason. ``--json`` prints ``{"pulled", "created", "updated", "unchanged", "skipped": [{"code", "reason"}]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from adapters.errors import AuthError, UpstreamError
from adapters.national_portal import PortalProcedure, procedure_from_wire

from .. import audit
from ..catalogue import (
    CatalogueError,
    ProcedureSpec,
    get_procedure,
    import_procedures,
    list_procedures,
    load_catalogue,
)
from ..domain.codes import is_valid_agency_code
from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from ..runtime import Runtime
from ..settings import load_settings
from ..validation import validation_errors
from .db import config_argument, open_database
from .national import portal_settings


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "procedure", help="the procedure catalogue", description="Import and list the procedure catalogue."
    )
    actions = parser.add_subparsers(dest="procedure_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True

    imports = actions.add_parser(
        "import",
        help="import (upsert) a catalogue file",
        description="Create or update procedures from a catalogue file (JSON list or TOML [[procedures]]).",
    )
    imports.add_argument("file", nargs="?", metavar="FILE", help="the catalogue (default: [catalogue] path)")
    config_argument(imports)
    imports.set_defaults(run=run_import)

    listing = actions.add_parser("list", help="list the catalogue", description="List the procedures in the database.")
    listing.add_argument("--json", action="store_true", help="print the entries as JSON")
    config_argument(listing)
    listing.set_defaults(run=run_list)

    sync = actions.add_parser(
        "sync",
        help="pull the catalogue from the national portal",
        description="Pull the procedure catalogue from the national public-service portal ([national_portal]) into "
        "the local catalogue: names, processing times and fees from the portal, the province's agencies and "
        "components kept.",
    )
    sync.add_argument("--json", action="store_true", help="print the outcome as JSON")
    config_argument(sync)
    sync.set_defaults(run=run_sync)


def run_import(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    path = args.file if args.file is not None else settings.catalogue.path
    if path is None:
        raise UsageError("no catalogue file: give FILE or set [catalogue] path in the configuration")
    try:
        specs = load_catalogue(path)
    except CatalogueError as exc:
        raise UsageError(str(exc)) from None
    db = open_database(settings)
    try:
        with db.unit_of_work() as session:
            audit.lock_for_write(session)
            created, updated = import_procedures(session, specs)
            details = {
                "file": str(path),
                "codes": [spec.code for spec in specs],
                "created": created,
                "updated": updated,
            }
            audit.append(session, audit.operator(), "procedure.imported", "catalogue", details)
    except CatalogueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        db.dispose()
    unchanged = len(specs) - created - updated
    print(f"{path}: {created} created, {updated} updated, {unchanged} unchanged")
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    db = open_database(load_settings(args.config))
    try:
        with db.unit_of_work() as session:
            specs = list_procedures(session)
    finally:
        db.dispose()
    if args.json:
        json.dump([spec.model_dump(mode="json") for spec in specs], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if not specs:
        print("the catalogue is empty (dvc-gateway procedure import FILE)")
        return EXIT_OK
    table = Table("Code", "Name", "Days", "Agencies", "Components", "Fees (VND)")
    for spec in specs:
        cells = (
            spec.code,
            spec.name,
            str(spec.processing_days),
            ", ".join(spec.agencies),
            str(len(spec.components)),
            f"{spec.total_fee:,}".replace(",", "."),  # Vietnamese digit grouping: 150.000
        )
        table.add_row(*(escape(cell) for cell in cells))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return EXIT_OK


# --- sync from the national portal ----------------------------------------------------------------------------------


def merge_procedure(portal: PortalProcedure, local: ProcedureSpec | None) -> ProcedureSpec | str:
    """The local entry updated from the portal's, or why it is left out (see the module notes)."""
    if not portal.active:
        return "no longer in force at the national portal"
    entry: dict[str, Any]
    if local is not None:
        entry = local.model_dump(mode="json")
        entry["name"] = portal.name
    else:
        agencies = [code for code in portal.agencies if is_valid_agency_code(code)]
        if not agencies:
            return "new procedure without a competent agency code in the portal's entry: import it with its agencies"
        if portal.processing_days is None:
            return "new procedure without a processing time in the portal's entry"
        entry = {
            "code": portal.code,
            "name": portal.name,
            "agencies": agencies,
            "processing_days": portal.processing_days,
            "components": [
                {"code": c["code"], "name": c["name"], "required": True, "must_be_signed": False}
                for c in portal.components
            ],
            "fees": [],
        }
    if portal.processing_days is not None:
        entry["processing_days"] = portal.processing_days
    if portal.fees:
        entry["fees"] = [dict(fee) for fee in portal.fees]
    try:
        return ProcedureSpec.model_validate(entry)
    except ValidationError as exc:
        problem = validation_errors(exc)[0]
        return f"{problem['field']}: {problem['message']}" if problem["field"] else problem["message"]


async def _pull(runtime: Runtime) -> list[dict[str, Any]]:
    # Imported here: the upstreams' composition (every flow with it) is for this command alone, not for the
    # catalogue's other commands.
    from ..bootstrap.upstreams import open_portal

    async with open_portal(portal_settings(runtime.settings), runtime.client_factory) as portal:
        return await portal.pull_procedures()


def run_sync(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    portal_settings(settings)  # the integration off is one line before anything else
    db = open_database(settings)
    runtime = Runtime.from_settings(settings, db)
    skipped: list[dict[str, str]] = []
    touched: list[str] = []
    created = updated = unchanged = 0
    try:
        try:
            with Console(stderr=True).status("Pulling the catalogue from the national portal", spinner="dots"):
                entries = asyncio.run(_pull(runtime))
        except AuthError as exc:
            raise UsageError(f"national portal: {exc}") from None
        except UpstreamError as exc:
            print(f"dvc-gateway: error: national portal: {exc}", file=sys.stderr)
            return EXIT_CHECK_FAILED
        show = sys.stderr.isatty() and len(entries) > 1
        with (
            Progress(console=Console(stderr=True), transient=True, disable=not show) as progress,
            db.unit_of_work() as session,
        ):
            audit.lock_for_write(session)
            task = progress.add_task("Updating the catalogue", total=len(entries))
            for index, raw in enumerate(entries):
                progress.advance(task)
                try:
                    portal = procedure_from_wire(raw)
                except ValueError as exc:
                    skipped.append({"code": str(raw.get("MATTHC") or f"entry {index}"), "reason": str(exc)})
                    continue
                merged = merge_procedure(portal, get_procedure(session, portal.code))
                if isinstance(merged, str):
                    skipped.append({"code": portal.code, "reason": merged})
                    continue
                new, changed = import_procedures(session, [merged])
                created, updated = created + new, updated + changed
                unchanged += 1 - new - changed
                if new or changed:
                    touched.append(merged.code)
            if touched:
                details = {"source": "national_portal", "codes": touched, "created": created, "updated": updated}
                audit.append(session, audit.operator(), "procedure.synced", "catalogue", details)
    finally:
        db.dispose()
    outcome = {
        "pulled": len(entries),
        "created": created,
        "updated": updated,
        "unchanged": unchanged,
        "skipped": skipped,
    }
    if args.json:
        json.dump(outcome, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    print(
        f"national portal: {len(entries)} procedure(s) pulled: {created} created, {updated} updated, "
        f"{unchanged} unchanged, {len(skipped)} skipped"
    )
    for item in skipped:
        print(f"  skipped {item['code']}: {item['reason']}")
    return EXIT_OK
