"""``dvc-gateway verify``: check the digital signatures of documents, for clerks and for scripts.

Exit 0 when every file is ``valid``, 1 otherwise, 2 for usage errors. ``--json`` prints the report list
(``docs/signature-report.md``, :meth:`signing.SignatureReport.to_json`); the default is a table, in Vietnamese with
``--lang vi``. The signature libraries are loaded only when the command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:
    from signing import Document, SignatureReport, TrustSettings, Verifier
    from signing.limits import Limits

#: The prefix of the configuration's environment variables (``DVC_GATEWAY_CONFIG`` and the overrides).
_ENV_PREFIX = "DVC_GATEWAY_"

_HEADERS = {
    "en": ("File", "Format", "Verdict", "Signer", "Details"),
    "vi": ("Tệp", "Định dạng", "Kết luận", "Người ký", "Chi tiết"),
}
_VERDICT_VI = {
    "valid": "hợp lệ",
    "invalid": "không hợp lệ",
    "untrusted": "chưa tin cậy",
    "revoked": "đã thu hồi",
    "expired": "hết hiệu lực",
    "modified": "bị sửa đổi",
    "unsigned": "không có chữ ký",
}


def positive_count(text: str) -> int:
    """An argparse ``type`` for a count (``--workers N``): a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1 (got {text!r})")
    return value


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "verify",
        help="verify the digital signatures of documents (PDF, XML, CMS)",
        description="Verify PAdES, XML-DSig/XAdES and CMS/CAdES signatures against configured trust anchors.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="documents to verify")
    parser.add_argument("--detached", metavar="SIG", help="a detached CMS signature (.p7s) over the single FILE")
    parser.add_argument(
        "--trust-anchor", action="append", default=[], metavar="PEM", help="a trusted root (repeatable)"
    )
    parser.add_argument(
        "--cert", action="append", default=[], metavar="PEM", help="an intermediate certificate (repeatable)"
    )
    parser.add_argument("--crl", action="append", default=[], metavar="FILE", help="a CRL, DER or PEM (repeatable)")
    parser.add_argument("--offline", action="store_true", help="never fetch revocation data online")
    parser.add_argument("--json", action="store_true", help="print the JSON report list")
    parser.add_argument("--lang", choices=("en", "vi"), default="en", help="language of the table")
    parser.add_argument("--config", metavar="FILE", help="configuration file ([signing] section)")
    parser.add_argument(
        "--workers", type=positive_count, metavar="N", help="processes for many files (default: all cores)"
    )
    parser.set_defaults(run=run)


def _existing(paths: list[str], what: str) -> list[Path]:
    result = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"{what} {raw}: no such file")
        result.append(path)
    return result


def trust_settings(args: argparse.Namespace) -> TrustSettings:
    """The configuration's ``[signing]`` section with the command line's anchors, certificates and CRLs added."""
    from signing.settings import TrustSettings

    if args.config is None and not any(name.startswith(_ENV_PREFIX) for name in os.environ):
        base = TrustSettings()  # no file and no override to read: the configuration machinery stays unloaded
    else:
        from ..config import read_signing

        base = read_signing(args.config).trust_settings()
    return dataclasses.replace(
        base,
        trust_anchors=(*base.trust_anchors, *_existing(args.trust_anchor, "trust anchor")),
        intermediates=(*base.intermediates, *_existing(args.cert, "certificate")),
        crls=(*base.crls, *_existing(args.crl, "CRL")),
        online_revocation=base.online_revocation and not args.offline,
    )


def _documents(args: argparse.Namespace, limits: Limits) -> list[Document]:
    from signing.verify import Document, find_detached_signature

    files = _existing(args.files, "file")
    for path in files:
        if not path.is_file():
            raise UsageError(f"file {path}: not a regular file")
    detached = None
    if args.detached:
        if len(files) != 1:
            raise UsageError("--detached goes with exactly one FILE")
        detached = _existing([args.detached], "detached signature")[0]
    pairs = [(path, detached or find_detached_signature(path)) for path in files]
    # A detached signature listed beside its file (say, by a shell glob) is part of that file, not a document.
    used = {sig.resolve() for _, sig in pairs if sig is not None}
    docs = []
    for path, signature in pairs:
        if path.resolve() in used:
            continue
        try:
            docs.append(Document.from_path(path, signature, limits))
        except OSError as exc:
            raise UsageError(f"file {path}: {exc.strerror}") from exc
    return docs


def run(args: argparse.Namespace) -> int:
    from signing.report import Verdict
    from signing.trust import TrustMaterialError, TrustStore
    from signing.verify import Verifier

    settings = trust_settings(args)
    try:
        store = TrustStore.load(settings)
    except TrustMaterialError as exc:
        raise UsageError(str(exc)) from exc
    if not store.anchors:
        raise UsageError("no trust anchor: give --trust-anchor PEM or set [signing] trust_anchors in the configuration")
    docs = _documents(args, settings.limits)
    # A short-lived, single-threaded command: workers forked from it start at once with the store parsed.
    fork = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    verifier = Verifier(store, settings=settings, budget=settings.budget, start_method=fork)
    try:
        reports = _verify_all(verifier, docs, args.workers)
    finally:
        verifier.close()
    if args.json:
        json.dump([report.to_json() for report in reports], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(reports, args.lang)
    return EXIT_OK if all(report.verdict is Verdict.VALID for report in reports) else EXIT_CHECK_FAILED


def _verify_all(verifier: Verifier, docs: list[Document], workers: int | None) -> list[SignatureReport]:
    workers = workers or min(len(docs), os.cpu_count() or 1)
    if not (sys.stderr.isatty() and len(docs) > 1):
        return verifier.verify_batch(docs, workers=workers)  # no progress bar to draw: none loaded
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("Verifying", total=len(docs))
        return verifier.verify_batch(docs, workers=workers, on_done=lambda: progress.advance(task))


def _print_table(reports: list[SignatureReport], lang: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(*_HEADERS[lang], show_lines=False)
    for report in reports:
        verdict = str(report.verdict)
        shown = _VERDICT_VI[verdict] if lang == "vi" else verdict
        style = "green" if verdict == "valid" else "red"
        signers = ", ".join(s.signer.common_name for s in report.signatures if s.signer.common_name)
        table.add_row(
            escape(report.file),
            str(report.signature_format),
            f"[{style}]{escape(shown)}[/]",
            escape(signers or "-"),
            escape(report.message[lang]),
        )
    # On a terminal the table fits the window; piped into a file or a pager it keeps whole lines.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
