"""``dvc-gateway wsdl check|suggest-mapping|reference``: try agencies' service descriptions before registering.

``check`` loads each description in this one process as registration would (the address policy and the limits of
``[registry]``, hardened parsing, the well-known schemas from the shipped copies, the lenient second attempt whose
repairs are listed as warnings) and prints its services, ports, SOAP versions and operations, or the one-line
reason it cannot be loaded. A FILE is read with the local files its relative imports name. Exit code 0 when every
description loads, 1 otherwise. ``suggest-mapping URL|FILE`` prints, as JSON, the ``mapping`` block a registration
of that WSDL needs (operations, element names, status codes), each guess's confidence and what found no
counterpart. Each subcommand is one small function adding its parser.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from adapters.http import ClientSettings, default_factory
from adapters.netguard import AddressPolicy
from adapters.onestop.soap import WsdlError, WsdlLimits, reference_document
from adapters.onestop.soap.explain import TOO_DEEP
from adapters.onestop.suggest import suggest_mapping
from adapters.onestop.wsdlinspect import (
    ABSOLUTE_PATH,
    LOCAL_BASE,
    LOCAL_ROOT,
    NO_SUCH_FILE,
    NOT_LOCAL,
    Inspection,
    inspect_wsdl,
    local_files_client,
    local_url,
)

from ..bootstrap.agency_clients import wsdl_limits
from ..errors import EXIT_CHECK_FAILED, EXIT_OK
from ..settings import load_settings
from .db import config_argument
from .wsdl_reference import add_reference

#: What the local-files client answers for a document it does not serve (missing, or on another host).
#: What the local files' client answered, as people read it.
_NOT_SERVED = (
    (
        re.compile(rf"HTTP {NOT_LOCAL} fetching (\S+)"),
        r"\1 is not a local file (a local description is read only from files)",
    ),
    (
        re.compile(rf"HTTP {ABSOLUTE_PATH} fetching (\S+)"),
        r"\1 is named by an absolute path (a local description's imports must be relative)",
    ),
    (re.compile(rf"HTTP {NO_SUCH_FILE} fetching (\S+)"), r"\1 does not exist"),
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "wsdl",
        help="try agencies' WSDLs: load them, list their operations",
        description="Load agencies' service descriptions as registration does, and report what they offer.",
    )
    actions = parser.add_subparsers(dest="wsdl_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    _add_check(actions)
    _add_suggest(actions)
    add_reference(actions)


def _add_check(actions: argparse._SubParsersAction) -> None:
    check = actions.add_parser(
        "check",
        help="load WSDLs and list their services, ports, SOAP versions and operations",
        description="Load each WSDL (a URL, or a file with its imports beside it) and report what it offers.",
    )
    check.add_argument("sources", nargs="+", metavar="URL|FILE", help="WSDL URLs or files")
    check.add_argument("--json", action="store_true", help="print a JSON list, one object per description")
    check.add_argument("--reference", action="store_true", help="also say whether the reference operations are present")
    config_argument(check)
    check.set_defaults(run=run_check)


def _add_suggest(actions: argparse._SubParsersAction) -> None:
    suggest = actions.add_parser(
        "suggest-mapping",
        help="propose the registration's mapping block from an agency's WSDL",
        description="Propose which operation and element of the WSDL plays each reference one, with confidences.",
    )
    suggest.add_argument("source", metavar="URL|FILE", help="the agency's WSDL")
    config_argument(suggest)
    suggest.set_defaults(run=run_suggest)


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


async def load_source(source: str, *, policy: AddressPolicy, limits: WsdlLimits) -> Inspection:
    """One description, from a URL (through the gateway's client factory) or a local file."""
    if is_url(source):
        settings = ClientSettings(base_url=source, address_policy=policy, max_response_bytes=limits.max_document_bytes)
        async with default_factory.client("wsdl-check", settings) as http:
            return await inspect_wsdl(source, http, limits=limits)
    path = Path(source)
    if not path.is_file():
        return Inspection(source=source, loaded=False, error="no such file")
    async with local_files_client() as http:
        found = await inspect_wsdl(local_url(path), http, limits=limits)

    def local(text: str) -> str:
        for pattern, meaning in _NOT_SERVED:
            text = pattern.sub(meaning, text)
        return urllib.parse.unquote(text.replace(LOCAL_ROOT, "/").replace(LOCAL_BASE, "/"))

    return Inspection(
        source=source,
        loaded=found.loaded,
        services=found.services,
        warnings=tuple(local(warning) for warning in found.warnings),
        error=local(found.error) if found.error else None,
        documents=tuple(local(document) for document in found.documents),
        document=found.document,
    )


def registry_options(config: str | None) -> tuple[AddressPolicy, WsdlLimits]:
    """The address policy and WSDL limits of ``[registry]`` in the configuration (defaults without one)."""
    registry = load_settings(config).registry
    return AddressPolicy(allow_private=registry.allow_private_endpoints), wsdl_limits(registry)


async def _load_all(sources: list[str], policy: AddressPolicy, limits: WsdlLimits) -> list[Inspection]:
    console = Console(stderr=True)
    found = []
    with Progress(console=console, transient=True, disable=not console.is_terminal or len(sources) < 2) as progress:
        task = progress.add_task("Loading WSDLs", total=len(sources))
        for source in sources:
            found.append(await load_source(source, policy=policy, limits=limits))
            progress.advance(task)
    return found


def _report(found: Inspection, reference: bool) -> list[str]:
    lines = [
        f"{found.source}: loaded ({len(found.documents)} document(s); SOAP {', '.join(found.soap_versions) or '-'})"
    ]
    for service in found.services:
        lines.append(f"  service {service.name}")
        for port in service.ports:
            version = f"SOAP {port.soap_version}" if port.soap_version else "not SOAP"
            lines.append(f"    port {port.name}: {version}, {port.style or '-'}, binding {port.binding}")
            lines.append(f"      address: {port.address or '-'}")
            lines.append(f"      operations: {', '.join(port.operations) or '-'}")
    if reference:
        present = found.reference_operations()
        lines.append(
            "  reference operations: " + ", ".join(f"{n} {'yes' if ok else 'no'}" for n, ok in present.items())
        )
    lines.extend(f"  warning: {warning}" for warning in found.warnings)
    return lines


def run_check(args: argparse.Namespace) -> int:
    policy, limits = registry_options(args.config)
    found = asyncio.run(_load_all(list(args.sources), policy, limits))
    if args.json:
        items: list[dict[str, Any]] = []
        for item in found:
            data = item.as_json()
            if args.reference:
                data["reference_operations"] = item.reference_operations() if item.loaded else None
            items.append(data)
        json.dump(items, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        for item in found:
            if item.loaded:
                print("\n".join(_report(item, args.reference)))
    for item in found:
        if not item.loaded:
            print(f"dvc-gateway: error: {item.source}: cannot load: {item.error}", file=sys.stderr)
    return EXIT_OK if all(item.loaded for item in found) else EXIT_CHECK_FAILED


def run_suggest(args: argparse.Namespace) -> int:
    policy, limits = registry_options(args.config)
    found = asyncio.run(load_source(args.source, policy=policy, limits=limits))
    if not found.loaded:
        print(f"dvc-gateway: error: {found.source}: cannot load: {found.error}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    try:
        suggestion = suggest_mapping(found.document, reference_document())
    except WsdlError as exc:  # loaded, but nothing to map (no SOAP port): the description is at fault
        print(f"dvc-gateway: error: {found.source}: {exc.message}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except RecursionError:
        reason = TOO_DEEP
        print(f"dvc-gateway: error: {found.source}: {reason}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    json.dump(suggestion.as_json(), sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK
