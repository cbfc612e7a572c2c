"""``dvc-gateway cassette import-har|import-vcr|export-har|show|redact``: manage recorded exchanges.

* ``import-har FILE [--into DIR]``: a HAR capture (a browser's, another tool's) becomes a cassette of ``DIR``,
  redacted on the way in with that directory's salt, as ``DIR/<stem>.har`` or, when that name is taken, the next
  free ``<stem>-N.har`` (an import never replaces a cassette);
* ``import-vcr FILE [--into DIR]``: the same for a VCR.py YAML cassette (read with ``yaml.safe_load`` only: a
  cassette is untrusted input, and a YAML tag that would build a Python object is refused);
* ``export-har DIR [--out FILE]``: every exchange of a directory as one HAR 1.2 document (stdout without ``--out``),
  with the pages of every cassette (a page id another cassette already uses gets ``-2``, ``-3``...);
* ``show DIR [--json]``: a table of the exchanges;
* ``redact DIR``: apply the current redaction settings again to every cassette of ``DIR``, in place (its comment
  and pages kept).

``DIR`` defaults to the ``[recording] directory`` of ``--config`` (``cassettes``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import itertools
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from ..config import ConfigError
from ..errors import EXIT_OK, UsageError
from ..recording.bodies import decoded_response
from ..recording.har import (
    Exchange,
    HarDocument,
    HarError,
    dumps_har,
    har_files,
    read_har,
    write_har,
    write_new_file,
)
from ..recording.settings import RecordingSettings
from ..settings import load_settings


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "cassette",
        help="import, export, show and redact recorded exchanges",
        description="Manage cassettes: HAR 1.2 files of recorded exchanges.",
    )
    actions = parser.add_subparsers(dest="cassette_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    for name, what in (("import-har", "a HAR capture"), ("import-vcr", "a VCR.py YAML cassette")):
        action = actions.add_parser(
            name,
            help=f"import {what} (redacted)",
            description=f"Import {what} as a cassette of DIR, redacted on the way in with that directory's salt.",
        )
        action.add_argument("file", metavar="FILE")
        action.add_argument("--into", metavar="DIR", help="cassette directory (default: [recording] directory)")
        action.add_argument("--config", metavar="FILE", help="configuration file ([recording] section)")
        action.set_defaults(run=run_import, format=name.split("-")[1])
    export = actions.add_parser(
        "export-har",
        help="export a cassette directory as one HAR file",
        description="Write every exchange of a cassette directory as one HAR 1.2 document (stdout without --out).",
    )
    export.add_argument("directory", metavar="DIR")
    export.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    export.set_defaults(run=run_export)
    show = actions.add_parser(
        "show",
        help="list the exchanges of a cassette directory",
        description="List the exchanges of a cassette directory: upstream, method, URL, status, time and file.",
    )
    show.add_argument("directory", metavar="DIR")
    show.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    show.set_defaults(run=run_show)
    redact = actions.add_parser(
        "redact",
        help="apply redaction again to every cassette, in place",
        description="Apply the current redaction settings again to every cassette of a directory, in place.",
    )
    redact.add_argument("directory", metavar="DIR")
    redact.add_argument("--config", metavar="FILE", help="configuration file ([recording] section)")
    redact.set_defaults(run=run_redact)


def _progress(total: int) -> Progress:
    """A progress bar on stderr for long work (shown on a terminal only, and gone when done)."""
    show = sys.stderr.isatty() and total > 1
    return Progress(console=Console(stderr=True), transient=True, disable=not show)


def _read(directory: str) -> list[HarDocument]:
    try:
        files = har_files(directory)
        documents: list[HarDocument] = []
        with _progress(len(files)) as progress:
            task = progress.add_task("Reading cassettes", total=len(files))
            for path in files:
                documents.append(read_har(path))
                progress.advance(task)
        return documents
    except HarError as exc:
        raise UsageError(str(exc)) from None


def _load(directory: str) -> list[Exchange]:
    return [exchange for document in _read(directory) for exchange in document.exchanges]


def _merged(documents: list[HarDocument]) -> tuple[list[Exchange], list[dict[str, Any]]]:
    """The exchanges and pages of several cassettes as one document's: a page id taken by an earlier cassette with
    another page is renamed (``page_1-2``), with the ``pageref`` of its cassette's entries."""
    exchanges: list[Exchange] = []
    pages: dict[str, dict[str, Any]] = {}
    for document in documents:
        renamed: dict[str, str] = {}
        for page in document.pages:
            wanted = str(page["id"])
            new = next(
                name
                for name in itertools.chain([wanted], (f"{wanted}-{n}" for n in itertools.count(2)))
                if name not in pages or pages[name] == {**page, "id": name}
            )
            renamed[wanted] = new
            pages[new] = {**page, "id": new}
        exchanges.extend(
            exchange.with_(pageref=renamed[exchange.pageref]) if exchange.pageref in renamed else exchange
            for exchange in document.exchanges
        )
    return exchanges, list(pages.values())


# ----------------------------------------------------------------------------------------------------------------------
# VCR.py
# ----------------------------------------------------------------------------------------------------------------------


def _vcr_headers(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise UsageError(f"{where}: headers must be a mapping")
    pairs = []
    for name, values in value.items():
        for item in values if isinstance(values, list) else [values]:
            if item is None:  # a header listed without a value: the empty string, never "None"
                item = ""
            pairs.append((str(name), item.decode("latin-1") if isinstance(item, bytes) else str(item)))
    return tuple(pairs)


def _vcr_body(value: Any, where: str) -> bytes | None:
    if isinstance(value, Mapping):
        if "base64_string" in value:
            try:
                return base64.b64decode(str(value["base64_string"]), validate=True)
            except (binascii.Error, ValueError):
                raise UsageError(f"{where}: body.base64_string is not valid base64") from None
        value = value.get("string")
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _vcr_code(value: Any) -> int | None:
    """A status code: an integer, or digits in a string (``code: '200'``, which VCR.py reads too)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 999 else None


def _vcr_shape(request: Mapping[str, Any], response: Mapping[str, Any]) -> str:
    """Why an interaction is not read: what it holds, and what a VCR.py interaction has."""

    def keys(part: Mapping[str, Any]) -> str:
        return ", ".join(sorted(str(key) for key in part)) or "nothing"

    return (
        f"not a VCR.py interaction this version reads: found request keys {keys(request)} and response keys "
        f"{keys(response)}; expected request.method and request.uri (text) and response.status.code (a number), "
        "or vcrpy's older httpx form with response.status_code"
    )


def load_vcr(path: Path) -> list[Exchange]:
    """The exchanges of a VCR.py cassette (``yaml.safe_load``: no Python object is ever built from the file)."""
    try:
        import yaml
    except ImportError:
        raise UsageError("import-vcr needs PyYAML (pip install pyyaml)") from None
    try:
        # Bytes, so PyYAML reads what YAML allows: UTF-8, or UTF-16/32 with a byte order mark.
        document = yaml.safe_load(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    except yaml.reader.ReaderError as exc:
        raise UsageError(
            f"{path.name}: not UTF-8 or UTF-16 text, as YAML must be ({exc.reason} at byte {exc.position}); convert "
            "it to UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise UsageError(f"{path.name}: not a safe YAML cassette{where}: {problem}") from None
    interactions = document.get("interactions") if isinstance(document, Mapping) else None
    if not isinstance(interactions, list):
        raise UsageError(f"{path.name}: not a VCR.py cassette (no 'interactions' list)")
    exchanges = []
    for index, item in enumerate(interactions):
        where = f"{path.name}: interaction {index}"
        request = item.get("request") if isinstance(item, Mapping) else None
        response = item.get("response") if isinstance(item, Mapping) else None
        if not isinstance(request, Mapping) or not isinstance(response, Mapping):
            raise UsageError(f"{where}: request or response is missing")
        method, uri = request.get("method"), request.get("uri")
        old_httpx = "status_code" in response and "status" not in response
        status = response.get("status_code") if old_httpx else response.get("status")
        code = _vcr_code(status.get("code") if isinstance(status, Mapping) else status)
        if not isinstance(method, str) or not isinstance(uri, str) or code is None:
            raise UsageError(f"{where}: {_vcr_shape(request, response)}")
        body_where = f"{where}: response"
        if old_httpx:
            # vcrpy's older httpx format: "status_code" and "content", the body as httpx decoded it (no content
            # coding left, whatever Content-Encoding says), as VCR.py itself still reads it.
            body = _vcr_body(response.get("content"), body_where) or b""
            response_headers, response_body = decoded_response(
                _vcr_headers(response.get("headers"), where), body, har=True
            )
        else:
            # VCR.py keeps a compressed body as it came (unless decode_compressed_response): decoded here, so
            # redaction reads the text and the cassette holds the decoded body HAR 1.2 expects.
            response_headers, response_body = decoded_response(
                _vcr_headers(response.get("headers"), where),
                _vcr_body(response.get("body"), body_where) or b"",
                har=False,
            )
        exchanges.append(
            Exchange(
                method=method.upper(),
                url=uri,
                request_headers=_vcr_headers(request.get("headers"), where),
                request_body=_vcr_body(request.get("body"), f"{where}: request"),
                status=code,
                status_text=str(status.get("message", "")) if isinstance(status, Mapping) else "",
                response_headers=response_headers,
                response_body=response_body,
                source=where,
            )
        )
    return exchanges


# ----------------------------------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------------------------------


def settings_from(config_path: str | None) -> RecordingSettings:
    """The ``[recording]`` settings of the configuration (usage error when they are wrong)."""
    try:
        return load_settings(config_path).recording
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _directory(args: argparse.Namespace, settings: RecordingSettings) -> Path:
    return Path(args.into) if getattr(args, "into", None) else settings.directory


def run_import(args: argparse.Namespace) -> int:
    settings = settings_from(args.config)
    source = Path(args.file)
    if not source.is_file():
        raise UsageError(f"{source}: no such file")
    if args.format == "har":
        try:
            document = read_har(source)
        except HarError as exc:
            raise UsageError(str(exc)) from None
    else:
        document = HarDocument(load_vcr(source))
    exchanges = document.exchanges
    directory = _directory(args, settings)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--into {directory}: not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        redactor = settings.redactor(directory)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--into {directory}: {_reason(exc)}") from None
    redacted = []
    cookies = redactor.cookie_values(exchanges)  # a session id set by one answer, echoed by another
    with _progress(len(exchanges)) as progress:
        task = progress.add_task("Redacting", total=len(exchanges))
        for exchange in exchanges:
            redacted.append(redactor.exchange(exchange, cookies))
            progress.advance(task)
    # A cassette already there is never replaced: the import takes the next free name (capture-2.har) and says so.
    wanted = directory / f"{source.stem}.har"
    candidates = (directory / f"{source.stem}-{n}.har" for n in itertools.count(2))
    comment = f"imported from {source.name}"
    if document.comment:  # the capture's own comment, redacted as free text
        comment += f": {redactor.text(document.comment, cookies)}"
    data = dumps_har(redacted, comment=comment, pages=[redactor.page(page) for page in document.pages])
    try:
        target = write_new_file(itertools.chain([wanted], candidates), data)
    except OSError as exc:
        raise UsageError(f"--into {directory}: {_reason(exc)}") from None
    taken = f" ({wanted.name} already exists)" if target != wanted else ""
    print(f"{len(exchanges)} exchange(s) imported into {target}{taken}")
    return EXIT_OK


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def run_export(args: argparse.Namespace) -> int:
    exchanges, pages = _merged(_read(args.directory))
    data = dumps_har(exchanges, comment=f"exported from {Path(args.directory).name}", pages=pages)
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            raise UsageError(f"--out {out}: is a directory")
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: no such directory {out.parent}")
        try:
            out.write_bytes(data)
        except OSError as exc:
            raise UsageError(f"--out {out}: {_reason(exc)}") from None
        print(f"{len(exchanges)} exchange(s) exported to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(data.decode("utf-8") + "\n")
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    exchanges = _load(args.directory)
    rows: list[dict[str, Any]] = [
        {
            "source": exchange.source,
            "upstream": exchange.upstream,
            "method": exchange.method,
            "url": exchange.url,
            "status": exchange.status,
            "time_ms": round(exchange.time_ms, 1),
            "error": exchange.error,
        }
        for exchange in exchanges
    ]
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return EXIT_OK
    from rich.table import Table

    table = Table("#", "Upstream", "Method", "URL", "Status", "ms", "Source")
    for number, row in enumerate(rows, 1):
        status = row["error"] or str(row["status"])
        cells = (str(number), row["upstream"] or "-", row["method"], row["url"], status, str(row["time_ms"]))
        table.add_row(*(escape(cell) for cell in (*cells, row["source"])))  # a URL's "[...]" is data, not markup
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return EXIT_OK


def run_redact(args: argparse.Namespace) -> int:
    settings = settings_from(args.config)
    directory = Path(args.directory)
    try:
        files = har_files(directory)
    except HarError as exc:
        raise UsageError(str(exc)) from None
    redactor = settings.redactor(directory if directory.is_dir() else directory.parent)
    total = 0
    with _progress(len(files)) as progress:
        task = progress.add_task("Redacting cassettes", total=len(files))
        for path in files:
            try:
                document = read_har(path)
            except HarError as exc:
                raise UsageError(str(exc)) from None
            exchanges = document.exchanges
            cookies = redactor.cookie_values(exchanges)
            write_har(
                path,
                [redactor.exchange(exchange, cookies) for exchange in exchanges],
                comment=redactor.text(document.comment, cookies) if document.comment else None,  # "imported from …"
                pages=[redactor.page(page) for page in document.pages],
            )
            total += len(exchanges)
            progress.advance(task)
    print(f"{total} exchange(s) in {len(files)} file(s) redacted")
    return EXIT_OK
