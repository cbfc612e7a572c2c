"""``dvc-gateway agency register|list|show|remove|check``: the agency endpoint registry.

``register --file F`` validates the registration document (see :mod:`gateway.registry`) and stores it; an agency
already registered is changed only with ``--replace``. A ``soap`` agency's WSDL is loaded and checked before it is
stored (refused, exit code 2, when the mapped operations are missing); ``--no-check`` skips that proof (the static
checks remain: URLs, address policy on literal addresses, secrets, procedures; no DNS is asked, the gateway screens
the addresses where it connects) and says so on stderr, for an agency whose system is not up yet or an operator
offline: ``agency check CODE`` proves it later. A procedure whose catalogue entry does not name the agency among its
competent ones is refused. ``check CODE`` reaches a registered agency's endpoint, through ``[recording]`` like every
outbound exchange (``soap``: loads its WSDL and checks the operations; ``rest``: asks the status operation about a
dossier no system has, which a running service answers with JSON, 2xx or the REST contract's 404; a web server's
404 page, a redirect, refused credentials or a server error fail) and prints the result in one line: exit code 0
when usable, 1 when not. ``remove CODE`` is refused (exit code 1) while the agency has open dossiers, unless
``--force``. ``list --json`` and ``show --json`` print the stored documents (secrets as the ``env:``/``file:``
references given, never resolved).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from adapters.http import default_factory

from .. import audit
from ..catalogue import known_procedure_codes
from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from ..recording.runtime import client_factory_for
from ..registry import (
    SECRET_FIELDS,
    AgencyExistsError,
    Registration,
    RegistrationError,
    RegistrySettings,
    check_endpoint,
    endpoint_checker,
    get_agency,
    list_agencies,
    load_registration_file,
    register,
    remove_agency,
    validate_registration,
)
from ..services.agencies import open_dossier_count
from ..settings import load_settings
from .db import config_argument, open_database


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "agency",
        help="the agency endpoint registry",
        description="Register, list, show, remove and check agencies.",
    )
    actions = parser.add_subparsers(dest="agency_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True

    reg = actions.add_parser(
        "register",
        help="register an agency's one-stop system",
        description="Validate a registration document (JSON or TOML) and store it.",
    )
    reg.add_argument("--file", required=True, metavar="FILE", help="the registration document")
    reg.add_argument("--replace", action="store_true", help="replace the agency's registration if it exists")
    reg.add_argument(
        "--no-check",
        action="store_true",
        help="do not reach the endpoint (SOAP: do not load the WSDL) nor resolve its host name; prove it later with "
        "'agency check CODE'",
    )
    config_argument(reg)
    reg.set_defaults(run=run_register)

    listing = actions.add_parser("list", help="list registered agencies", description="List registered agencies.")
    listing.add_argument("--json", action="store_true", help="print the registration documents as JSON")
    config_argument(listing)
    listing.set_defaults(run=run_list)

    show = actions.add_parser("show", help="show one agency", description="Show one agency's registration.")
    show.add_argument("code", metavar="CODE", help="the agency code")
    show.add_argument("--json", action="store_true", help="print the registration document as JSON")
    config_argument(show)
    show.set_defaults(run=run_show)

    remove = actions.add_parser(
        "remove",
        help="remove an agency",
        description="Remove an agency's registration; refused while it has open dossiers, unless --force.",
    )
    remove.add_argument("code", metavar="CODE", help="the agency code")
    remove.add_argument("--force", action="store_true", help="remove it even with open dossiers")
    config_argument(remove)
    remove.set_defaults(run=run_remove)

    check = actions.add_parser(
        "check",
        help="reach an agency's endpoint, load its WSDL",
        description="Reach a registered agency's endpoint (SOAP: load its WSDL and check the operations).",
    )
    check.add_argument("code", metavar="CODE", help="the agency code")
    config_argument(check)
    check.set_defaults(run=run_check)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def _address(reg: Registration) -> str:
    if reg.protocol == "soap":
        return f"{reg.wsdl}" + (f" → {reg.endpoint}" if reg.endpoint else "")
    return reg.endpoint or "-"


def _updates(reg: Registration) -> str:
    updates = reg.status_updates
    return f"poll every {updates.interval_seconds}s" if updates.mode == "poll" else "callback"


def run_register(args: argparse.Namespace) -> int:
    configured = load_settings(args.config)
    settings = RegistrySettings.of(configured)
    try:
        doc = load_registration_file(args.file)
    except RegistrationError as exc:
        raise UsageError(str(exc)) from None
    db = open_database(configured)
    try:
        with db.unit_of_work() as session:
            known = known_procedure_codes(session)
        # Validation may resolve host names (not with --no-check: registering offline needs no DNS; the addresses
        # are screened where the gateway connects): done outside any transaction.
        try:
            checker = None if args.no_check else endpoint_checker(settings)
            registration = validate_registration(
                doc, settings=settings, known_procedures=known, check_endpoint=checker, resolve=not args.no_check
            )
            with db.unit_of_work() as session:
                audit.lock_for_write(session)
                created = register(session, registration, replace=args.replace)
                audit.append(
                    session,
                    audit.operator(),
                    "agency.registered" if created else "agency.replaced",
                    registration.code,
                    {"protocol": registration.protocol, "procedures": list(registration.procedures)},
                )
        except AgencyExistsError as exc:
            raise UsageError(f"{args.file}: {exc}: use --replace to update it") from None
        except RegistrationError as exc:
            raise UsageError(f"{args.file}: registration refused: {exc}") from None
    finally:
        db.dispose()
    verb = "registered" if created else "updated"
    print(f"{verb} {registration.code} ({registration.name}): {registration.protocol} {_address(registration)}")
    if args.no_check:
        what = "its WSDL was not loaded" if registration.protocol == "soap" else "its endpoint was not reached"
        print(
            f"dvc-gateway: warning: {registration.code} registered without a check ({what}): "
            f"run 'dvc-gateway agency check {registration.code}' once its system is up",
            file=sys.stderr,
        )
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    db = open_database(load_settings(args.config))
    try:
        with db.unit_of_work() as session:
            agencies = list_agencies(session)
    finally:
        db.dispose()
    if args.json:
        _print_json([reg.document() for reg in agencies])
        return EXIT_OK
    if not agencies:
        print("no agency registered (dvc-gateway agency register --file FILE)")
        return EXIT_OK
    table = Table("Code", "Name", "Protocol", "Address", "Auth", "Status updates", "Procedures")
    for reg in agencies:
        cells = [reg.code, reg.name, reg.protocol, _address(reg), reg.auth.type, _updates(reg)]
        table.add_row(*(escape(cell) for cell in [*cells, ", ".join(reg.procedures)]))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return EXIT_OK


def _get(args: argparse.Namespace) -> Registration:
    db = open_database(load_settings(args.config))
    try:
        with db.unit_of_work() as session:
            reg = get_agency(session, args.code)
    finally:
        db.dispose()
    if reg is None:
        raise UsageError(f"agency {args.code} is not registered")
    return reg


def _shown_auth_value(key: str, value: str) -> str:
    """References are shown; an inline secret (allowed with strict_secrets = false) is not printed to a terminal."""
    if key in SECRET_FIELDS and not value.startswith(("env:", "file:")):
        return "(inline secret)"
    return value


def run_show(args: argparse.Namespace) -> int:
    reg = _get(args)
    if args.json:
        _print_json(reg.document())
        return EXIT_OK
    auth = {k: _shown_auth_value(k, v) for k, v in reg.auth.model_dump().items() if k != "type" and v is not None}
    lines = [
        ("code", reg.code),
        ("name", reg.name),
        ("protocol", reg.protocol),
        ("endpoint", reg.endpoint or "-"),
        ("wsdl", reg.wsdl or "-"),
        ("procedures", ", ".join(reg.procedures)),
        ("auth", reg.auth.type + "".join(f", {k}={v}" for k, v in auth.items())),
        ("status updates", _updates(reg)),
        ("mapping", json.dumps(reg.mapping, ensure_ascii=False) if reg.mapping else "-"),
    ]
    for key, value in lines:
        print(f"{key + ':':16}{value}")
    return EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    reg = _get(args)
    configured = load_settings(args.config)
    settings = RegistrySettings.of(configured)
    # Through [recording] like every outbound exchange: a tester's cassette holds the check too.
    factory = client_factory_for(configured.recording, default_factory)
    result = asyncio.run(check_endpoint(reg, settings=settings, factory=factory))
    target = reg.wsdl if reg.protocol == "soap" else reg.endpoint
    message = " ".join(result.message.split())
    if result.ok:
        print(f"{reg.code} ({reg.protocol} {target}): {message}")
        return EXIT_OK
    print(f"dvc-gateway: error: {reg.code} ({reg.protocol} {target}): check failed: {message}", file=sys.stderr)
    return EXIT_CHECK_FAILED


def run_remove(args: argparse.Namespace) -> int:
    db = open_database(load_settings(args.config))
    try:
        with db.unit_of_work() as session:
            audit.lock_for_write(session)
            registered = get_agency(session, args.code) is not None
            unfinished = open_dossier_count(session, args.code) if registered else 0
            if registered and (args.force or not unfinished):
                remove_agency(session, args.code)
                audit.append(
                    session, audit.operator(), "agency.removed", args.code, {"unfinished_dossiers": unfinished}
                )
    finally:
        db.dispose()
    if not registered:
        raise UsageError(f"agency {args.code} is not registered")
    if unfinished and not args.force:
        print(
            f"dvc-gateway: error: agency {args.code} not removed: it has {unfinished} open dossier(s); "
            "remove it with --force if you must",
            file=sys.stderr,
        )
        return EXIT_CHECK_FAILED
    print(f"removed {args.code}" + (f" ({unfinished} open dossier(s) left without it)" if unfinished else ""))
    return EXIT_OK
