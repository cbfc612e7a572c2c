"""``dvc-gateway payment reconcile FILE|--date DATE [--provider vnpay|national] [--json]``: the provider's settlement
file against the gateway.

The settlement file is the provider's CSV of a day's finished transactions (:func:`adapters.payment.parse_settlement`
says which columns). Given as ``FILE``, it is read from disk; with ``--date`` alone it is downloaded from
``[payment] settlement_url`` (``{date}`` in it stands for ``yyyyMMdd``). The gateway's side is every payment the file
names plus every payment recorded as paid on that day (Vietnam's time; without ``--date``, the days the file's
payments were made). ``--provider national`` reconciles the national payment platform's file (its columns, its
``[payment.national] settlement_url``) with the gateway's payments there; the default is the VNPay-style provider.
A provider the configuration leaves out (``--provider national`` without ``[payment.national]``, ``--provider vnpay``
with the national platform only) is a usage error.

Reported (``--json``, ``docs/cli.md``): payments the provider settled that the gateway does not know
(``missing_locally``), payments the gateway holds as paid that the provider does not list (``missing_at_provider``),
amounts that differ (``amount_mismatches``, integer VND), statuses that differ (``status_mismatches``: a lost
notification shows as provider ``paid``, gateway ``pending``) and references listed twice (``duplicates``).
Exit code 0 when everything matches, 1 when anything differs, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

from adapters.errors import UpstreamError
from adapters.http import default_factory, map_http_errors, raise_for_status
from adapters.payment import PaymentState, ReconciliationReport, SettlementFormatError, parse_settlement
from adapters.payment.national_wire import parse_settlement as national_settlement
from adapters.payment.vnpay import VNPAY_TIME, reconcile

from .. import messages
from ..bootstrap.upstreams import build_national_provider, build_provider
from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from ..flows.payment.settings import PaymentSettings
from ..services.reconciliation import local_payments
from ..settings import load_settings
from .db import config_argument, open_database

__all__ = ["add_parser", "report_json", "run_reconcile"]

#: A settlement file larger than this is not one day of a province's fees.
MAX_SETTLEMENT_BYTES = 64 * 1024 * 1024


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "payment", help="fee payments: reconcile the settlement file", description="Fee payments (phí, lệ phí)."
    )
    actions = parser.add_subparsers(dest="payment_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    rec = actions.add_parser(
        "reconcile",
        help="compare the provider's settlement file with the gateway's payments",
        description="Compare the provider's settlement file (CSV) with the gateway's payments; exit 1 on mismatches.",
    )
    rec.add_argument("file", nargs="?", metavar="FILE", help="the settlement CSV (default: download it for --date)")
    rec.add_argument("--date", metavar="DATE", help="the settlement day, YYYY-MM-DD (Vietnam's time)")
    rec.add_argument(
        "--provider", choices=("vnpay", "national"), default="vnpay", help="whose settlement file (default vnpay)"
    )
    rec.add_argument("--json", action="store_true", help="print the report as JSON")
    config_argument(rec)
    rec.set_defaults(run=run_reconcile)


def _day(text: str) -> date:
    for pattern in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise UsageError(f"--date {text!r}: expected YYYY-MM-DD")


def _read(path: str) -> str:
    file = Path(path)
    try:
        if file.stat().st_size > MAX_SETTLEMENT_BYTES:
            raise UsageError(f"{path}: larger than {MAX_SETTLEMENT_BYTES} bytes")
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None


def _source(settings: PaymentSettings | None, provider: str) -> tuple[str | None, Any, str]:
    """Where the settlement file is downloaded from, how to reach it, and the key to name in an error."""
    if provider == "national":
        national = settings.national if settings is not None else None
        if national is None:
            raise UsageError("--provider national needs the [payment.national] table")
        return national.settlement_url, national.client_settings(), "[payment.national] settlement_url"
    if settings is None:
        return None, None, "[payment] settlement_url"
    return settings.settlement_url, settings.client_settings(), "[payment] settlement_url"


def _configured(settings: PaymentSettings | None, provider: str) -> None:
    """Refuse a provider that ``[payment]`` leaves out (with ``[payment]`` off, a VNPay-style FILE is still read)."""
    if provider == "national":
        if settings is None or settings.national is None:
            raise UsageError("--provider national needs the [payment.national] table")
    elif settings is not None and not settings.vnpay_configured:
        raise UsageError("--provider vnpay: the VNPay-style provider is not configured ([payment] base_url)")


async def _download(url_template: str, client_settings: Any, day: date) -> str:
    url = url_template.replace("{date}", day.strftime("%Y%m%d"))
    client = default_factory.client(messages.PAYMENT_TARGET, client_settings)
    async with client:
        with map_http_errors(messages.PAYMENT_TARGET):
            response = await client.get(url)
            raise_for_status(response, messages.PAYMENT_TARGET)
            return response.text


def _settlement(args: argparse.Namespace, settings: PaymentSettings | None, day: date | None) -> str:
    if args.file:
        return _read(args.file)
    if day is None:
        raise UsageError("give the settlement FILE, or --date to download it")
    url, client_settings, key = _source(settings, args.provider)
    if url is None:
        raise UsageError(f"--date without FILE needs {key} (where the settlement file is fetched)")
    try:
        return asyncio.run(_download(url, client_settings, day))
    except UpstreamError as exc:
        raise UsageError(f"settlement file for {day.isoformat()}: {exc}") from None


def _state(value: PaymentState) -> str:
    return value.value


def report_json(report: ReconciliationReport, day: date | None) -> dict[str, Any]:
    """The report as ``--json`` prints it (amounts: integer VND)."""
    return {
        "date": day.isoformat() if day else None,
        "ok": report.ok,
        "matched": len(report.matched),
        "missing_locally": [
            {"reference": r.reference, "amount": r.amount_vnd, "status": _state(r.state), "line": r.line}
            for r in report.missing_locally
        ],
        "missing_at_provider": [
            {"reference": p.reference, "amount": p.amount_vnd, "status": _state(p.state)}
            for p in report.missing_at_provider
        ],
        "amount_mismatches": [
            {"reference": m.reference, "local": m.local_vnd, "provider": m.provider_vnd}
            for m in report.amount_mismatches
        ],
        "status_mismatches": [
            {"reference": m.reference, "local": _state(m.local), "provider": _state(m.provider)}
            for m in report.status_mismatches
        ],
        "duplicates": [{"reference": r.reference, "line": r.line} for r in report.duplicates],
    }


def _print(view: dict[str, Any]) -> None:
    day = f" of {view['date']}" if view["date"] else ""
    print(f"Settlement{day}: {view['matched']} matched")
    for item in view["missing_locally"]:
        what = f"{item['amount']} VND, {item['status']}, line {item['line']}"
        print(f"  unknown to the gateway: {item['reference']} ({what})")
    for item in view["missing_at_provider"]:
        print(f"  paid here, not in the settlement: {item['reference']} ({item['amount']} VND)")
    for item in view["amount_mismatches"]:
        print(f"  amount differs: {item['reference']}: gateway {item['local']} VND, provider {item['provider']} VND")
    for item in view["status_mismatches"]:
        print(f"  status differs: {item['reference']}: gateway {item['local']}, provider {item['provider']}")
    for item in view["duplicates"]:
        print(f"  listed twice: {item['reference']} (line {item['line']})")
    print("OK: no mismatch" if view["ok"] else "MISMATCHES found")


def run_reconcile(args: argparse.Namespace) -> int:
    configured = load_settings(args.config)
    settings = configured.payment
    _configured(settings, args.provider)
    day = _day(args.date) if args.date else None
    text = _settlement(args, settings, day)
    national = args.provider == "national"
    try:
        rows = national_settlement(text) if national else parse_settlement(text)
    except SettlementFormatError as exc:
        raise UsageError(str(exc)) from None
    if day is not None:
        days = [datetime(day.year, day.month, day.day, 12, tzinfo=VNPAY_TIME)]
    else:
        days = sorted({row.paid_at.astimezone(VNPAY_TIME).replace(hour=12) for row in rows if row.paid_at})
    db = open_database(configured)
    try:
        with db.unit_of_work() as session:
            local = local_payments(session, [row.reference for row in rows], days, provider=args.provider)
    finally:
        db.dispose()
    if national and settings is not None:
        report = build_national_provider(settings).reconcile(text, local)
    else:
        report = build_provider(settings).reconcile(text, local) if settings else reconcile(text, local)
    view = report_json(report, day)
    if args.json:
        json.dump(view, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        _print(view)
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED
