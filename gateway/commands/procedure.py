"""``dvc-gateway procedure import|list``: the procedure catalogue in the database (see ``docs/catalogue.md``)."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from ..catalogue import CatalogueError, import_procedures, list_procedures, load_catalogue
from ..config import load_config
from ..errors import EXIT_OK, UsageError
from .db import config_argument, open_database


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


def run_import(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    path = args.file
    if path is None:
        configured = config.section("catalogue").get("path")
        if not isinstance(configured, str) or not configured:
            raise UsageError("no catalogue file: give FILE or set [catalogue] path in the configuration")
        path = config.path(configured)
    try:
        specs = load_catalogue(path)
    except CatalogueError as exc:
        raise UsageError(str(exc)) from None
    db = open_database(config)
    try:
        with db.unit_of_work() as session:
            created, updated = import_procedures(session, specs)
    except CatalogueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        db.dispose()
    unchanged = len(specs) - created - updated
    print(f"{path}: {created} created, {updated} updated, {unchanged} unchanged")
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    db = open_database(config)
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
        table.add_row(
            spec.code,
            spec.name,
            str(spec.processing_days),
            ", ".join(spec.agencies),
            str(len(spec.components)),
            f"{spec.total_fee:,}".replace(",", "."),  # Vietnamese digit grouping: 150.000
        )
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return EXIT_OK
