"""``dvc-gateway wsdl reference [--kind reference|callback] [--single] [--soap 1.1|1.2] [--output DIR]``.

Writes the shipped service descriptions an agency hosts or calls: ``reference`` is the one-stop service an agency
implements, ``callback`` the gateway's status-update service. Without ``--single`` the WSDL and its schema files are
written as shipped; with ``--single`` one self-contained WSDL (schemas inlined, both SOAP bindings or only the one
``--soap`` names), for SOAP stacks that host only a single document. ``--output -`` prints the single document.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from adapters.onestop.wsdl.single import KINDS, SOAP_VERSIONS, single_wsdl

from ..errors import EXIT_OK, UsageError


def add_reference(actions: argparse._SubParsersAction) -> None:
    reference = actions.add_parser(
        "reference",
        help="write the reference agency WSDL or the gateway's callback WSDL",
        description="Write the shipped WSDL and its schemas, or one self-contained WSDL with --single.",
    )
    reference.add_argument("--kind", choices=sorted(KINDS), default="reference", help="which WSDL (default reference)")
    reference.add_argument("--single", action="store_true", help="one self-contained document, schemas inlined")
    reference.add_argument(
        "--soap", choices=sorted(SOAP_VERSIONS), default=None, help="keep only this SOAP binding (with --single)"
    )
    reference.add_argument("--output", default=".", metavar="DIR", help="folder to write to (default .; - for stdout)")
    reference.set_defaults(run=run_reference)


def run_reference(args: argparse.Namespace) -> int:
    if args.soap and not args.single:
        raise UsageError("--soap needs --single (the shipped WSDL carries both bindings)")
    if args.output == "-" and not args.single:
        raise UsageError("--output - needs --single (the shipped WSDL is several files)")
    wsdl_name, schema_names = KINDS[args.kind]
    if args.single:
        document = single_wsdl(args.kind, args.soap)
        if args.output == "-":
            sys.stdout.buffer.write(document)
            return EXIT_OK
        files = {wsdl_name: document}
    else:
        folder = resources.files("adapters.onestop.wsdl")
        files = {name: folder.joinpath(name).read_bytes() for name in (wsdl_name, *schema_names)}
    target = Path(args.output)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target}: not a folder")
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (target / name).write_bytes(data)
        print(target / name)
    return EXIT_OK
