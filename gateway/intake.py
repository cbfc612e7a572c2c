"""Intake (DESIGN.md §4.1): a submitted dossier checked, coded, verified, stored and routed in one unit of work.

No HTTP here: :func:`submit` takes the parsed JSON body and the caller's principal and returns the answer's status
and body; the API maps :class:`ServiceError` to its error shape. The steps:

1. **Shape** (:class:`Submission`, the contract's submission body): unknown top-level fields are kept in
   ``Dossier.extra``; components and fees accept only their documented fields.
2. **Catalogue**: the procedure must be in the catalogue; the agency must be one of its competent agencies *and*
   registered with the gateway; every required component present, no unknown or repeated component code; fees as
   the catalogue says (see :func:`_check_fees`).
3. **Files** (:func:`prepare_files`, off the event loop): strict base64; not empty; at most ``max_file_bytes``
   decoded; the file name reduced to a plain name (no directories, no control or bidi characters; it is only ever
   shown, files are stored by their sha256); the content type **sniffed from the bytes** (:func:`sniff_content_type`)
   and a declared type that contradicts the content refused.
4. **Signatures**: every component verified with the runtime's verifier *before* the write transaction opens.
   A component's ``originals_check_required`` is its report's. A component the catalogue says ``must_be_signed``
   whose verdict is not ``valid`` is **kept** (refusing it would push the applicant back to paper): it requires the
   originals check like any unsigned file, and the ``submitted`` history entry says so in its note (and in
   ``details.signature_warnings``). The dossier requires the originals check when any current component does.
5. **One unit of work**: blobs (content-addressed, stored once), the dossier code from the atomic daily sequence
   (:func:`allocate_code`), the dossier with its components, fees and ``submitted`` history entry, deadlines
   (``acknowledge_by`` from arrival, a provisional ``due_at``), outbox messages (``agency.deliver``; a
   ``portal.webhook`` when ``[portal] webhook_url`` is configured), the ``Idempotency-Key`` answer and an audit
   entry. Everything lands together or nothing does.

**Idempotency** (:class:`IdempotencyContext`): the key is scoped to the principal; the request's fingerprint is the
sha256 of the method, path and canonical JSON of the body. The first successful answer (status and body) is stored
in the same transaction as the change; a repeat with the same fingerprint gets it back and changes nothing; the same
key with another request is refused with 422 (as the IETF ``Idempotency-Key`` draft recommends). Concurrent repeats
are settled by the record's primary key: the loser's transaction is rolled back and it answers with the winner's
answer.

Personal data (the applicant) is never logged; audit entries carry codes, counts and digests only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import re
import unicodedata
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from signing import Document, detect_format

from . import audit, messages, outbox
from .catalogue import ProcedureSpec, get_procedure, validation_errors
from .domain.calendar import VIETNAM_TZ, OfficeCalendar
from .domain.codes import format_dossier_code
from .domain.deadlines import compute_deadlines
from .domain.status import Status
from .fanout import Fanout, after_change
from .store.models import Agency, Blob, Component, DaySequence, Dossier, Fee, HistoryEntry, IdempotencyRecord

if TYPE_CHECKING:
    from signing import Verifier

    from .auth import Principal
    from .runtime import Runtime

__all__ = [
    "Answer",
    "Conflict",
    "FileIn",
    "Forbidden",
    "IdempotencyContext",
    "Invalid",
    "NotFound",
    "PreparedFile",
    "ServiceError",
    "Submission",
    "Unavailable",
    "allocate_code",
    "canonical_json",
    "parse_model",
    "prepare_files",
    "run_idempotent",
    "sanitise_filename",
    "sniff_content_type",
    "store_blob",
    "submit",
    "verify_files",
]

# --------------------------------------------------------------------------------------------------------------------
# Errors the API maps to its error shape


class ServiceError(Exception):
    """A refusal with its HTTP status, a short machine code, a sentence and optional details."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class Invalid(ServiceError):
    """422: ``details`` is ``[{"field", "message"}]``."""

    status = 422
    code = "validation_failed"

    def __init__(self, errors: list[dict[str, str]], message: str | None = None) -> None:
        if message is None:
            first = errors[0] if errors else {"field": "", "message": "invalid request"}
            message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more)"
        super().__init__(message, errors)
        self.errors = errors


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class Unavailable(ServiceError):
    status = 503
    code = "unavailable"


def problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], document: Any) -> M:
    """``document`` validated as ``model``; :class:`Invalid` with every problem, by field path."""
    if not isinstance(document, dict):
        raise Invalid([problem("", f"expected a JSON object, got {_json_kind(document)}")])
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise Invalid(validation_errors(exc)) from None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


# --------------------------------------------------------------------------------------------------------------------
# The submission body (contract, DESIGN.md §5)

_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Code = Annotated[StrictStr, Field(pattern=_CODE_PATTERN)]
Text = Annotated[StrictStr, Field(min_length=1, max_length=2000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileIn(_Strict):
    """A file in a request: its content in base64, optionally a detached CMS signature over it."""

    name: Annotated[StrictStr, Field(max_length=500)] | None = None
    filename: Annotated[StrictStr, Field(max_length=1000)] | None = None
    content_type: Annotated[StrictStr, Field(max_length=200)] | None = None
    content_base64: StrictStr
    detached_signature_base64: StrictStr | None = None


class ComponentIn(FileIn):
    code: Code


class FeeIn(_Strict):
    code: Code
    name: Annotated[StrictStr, Field(max_length=500)] | None = None
    amount: Annotated[StrictInt, Field(ge=0)]


class Applicant(BaseModel):
    """The applicant (personal data: stored, shown to the portal and the agency, never logged or looked up)."""

    model_config = ConfigDict(extra="allow")

    kind: Annotated[StrictStr, Field(min_length=1, max_length=32)] = "citizen"
    full_name: Annotated[StrictStr, Field(min_length=1, max_length=500)]
    id_number: Annotated[StrictStr, Field(max_length=64)] | None = None
    phone: Annotated[StrictStr, Field(max_length=64)] | None = None
    email: Annotated[StrictStr, Field(max_length=320)] | None = None
    address: Annotated[StrictStr, Field(max_length=2000)] | None = None


class Submission(BaseModel):
    """``POST /api/v1/dossiers`` (contract). Unknown top-level fields are kept (``Dossier.extra``)."""

    model_config = ConfigDict(extra="allow")

    procedure_code: Code
    agency_code: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    channel: Literal["online", "in_person", "post"] = "online"
    applicant: Applicant
    summary: Text | None = None
    components: list[ComponentIn] = Field(default_factory=list)
    fees: list[FeeIn] | None = None
    return_method: Literal["in_person", "post", "online"] | None = None
    delivery_address: dict[str, Any] | None = None


# --------------------------------------------------------------------------------------------------------------------
# Files: base64, names, content types


@dataclass
class PreparedFile:
    """A decoded, named and typed file (and its detached signature), ready to verify and store."""

    field: str
    code: str | None
    name: str | None
    filename: str
    content_type: str
    data: bytes = field(repr=False)
    sha256: str
    signature: bytes | None = field(default=None, repr=False)
    signature_sha256: str | None = None
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def originals_check_required(self) -> bool:
        return bool(self.report.get("originals_check_required", True))

    @property
    def verdict(self) -> str:
        return str(self.report.get("verdict", "invalid"))


_B64_WHITESPACE = re.compile(rb"[\r\n\t ]+")


def _decode_base64(value: str, *, field: str, max_bytes: int, errors: list[dict[str, str]], what: str) -> bytes | None:
    """Strict base64 (standard alphabet, padding required; line breaks allowed): None and a problem otherwise."""
    try:
        raw = _B64_WHITESPACE.sub(b"", value.encode("ascii"))
    except UnicodeEncodeError:
        errors.append(problem(field, "not valid base64"))
        return None
    # n base64 characters decode to at most 3n/4 bytes: the oversized are refused before decoding.
    if len(raw) // 4 * 3 > max_bytes + 3:
        errors.append(problem(field, f"the {what} is larger than {max_bytes} bytes"))
        return None
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        errors.append(problem(field, "not valid base64"))
        return None
    if not data:
        errors.append(problem(field, f"the {what} is empty"))
        return None
    if len(data) > max_bytes:
        errors.append(problem(field, f"the {what} is larger than {max_bytes} bytes"))
        return None
    return data


_UNSAFE_NAME_CHARS = re.compile(r'[<>:"|?*]')
MAX_FILENAME_LENGTH = 200

#: The file name extension shown for a sniffed type when the client gave no usable name.
_EXTENSIONS = {
    "application/pdf": ".pdf",
    "application/xml": ".xml",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/tiff": ".tif",
    "application/zip": ".zip",
    "application/pkcs7-mime": ".p7m",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.oasis.opendocument.text": ".odt",
    "application/vnd.oasis.opendocument.spreadsheet": ".ods",
}


def sanitise_filename(raw: str | None, *, fallback_stem: str, content_type: str = "application/octet-stream") -> str:
    """A plain file name to show: the last path part, without control, format (bidi) or reserved characters,
    without leading dots, at most 200 characters; ``<fallback_stem><extension>`` when nothing usable is left.

    The name is only ever displayed and sent on; files are stored by their sha256, never by a client's name.
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_NAME_CHARS.sub("_", name)
    name = " ".join(name.split()).lstrip(". ").rstrip(" ")
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: MAX_FILENAME_LENGTH - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME_LENGTH]
    if not name or set(name) <= {"."}:
        safe_stem = re.sub(r"[^A-Za-z0-9._-]", "_", fallback_stem) or "file"
        name = safe_stem + _EXTENSIONS.get(content_type, ".bin")
    return name


_OOXML = {
    "word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
ZIP_TYPES = frozenset(
    {
        "application/zip",
        *_OOXML.values(),
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/epub+zip",
    }
)
OLE_TYPES = frozenset(
    {"application/x-ole-storage", "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint"}
)
#: Declared names of the same types.
_ALIASES = {
    "text/xml": "application/xml",
    "application/x-xml": "application/xml",
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "application/x-pdf": "application/pdf",
    "application/x-zip-compressed": "application/zip",
    "application/x-zip": "application/zip",
    "application/x-pkcs7-mime": "application/pkcs7-mime",
    "application/pkcs7-signature": "application/pkcs7-mime",
    "application/x-pkcs7-signature": "application/pkcs7-mime",
    "application/cms": "application/pkcs7-mime",
}
#: Types the sniffer recognises: declaring one of them for content that is something else is refused.
RECOGNISED = frozenset(
    {
        "application/pdf",
        "application/xml",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/tiff",
        "application/pkcs7-mime",
    }
    | ZIP_TYPES
    | OLE_TYPES
)
OCTET_STREAM = "application/octet-stream"


def _sniff_zip(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if "mimetype" in names:
                info = archive.getinfo("mimetype")
                if info.file_size <= 100:
                    declared = archive.read("mimetype").decode("ascii", "replace").strip()
                    if declared in ZIP_TYPES:
                        return declared
            if "[Content_Types].xml" in names:
                for prefix, kind in _OOXML.items():
                    if any(name.startswith(prefix) for name in names):
                        return kind
    except Exception:  # noqa: BLE001 - a damaged archive is still a zip by its magic number
        return "application/zip"
    return "application/zip"


def sniff_content_type(data: bytes) -> str:
    """The content type the bytes show (a small magic-number table); ``application/octet-stream`` when unknown.

    PDF, XML, PNG, JPEG, GIF, TIFF, ZIP-based office formats (OOXML, OpenDocument) and plain ZIP, OLE2 (legacy
    office), and CMS/PKCS#7 signed data.
    """
    head = data[:1024]
    if head.find(b"%PDF-") != -1:
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(data)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "application/x-ole-storage"
    stripped = head.lstrip(b"\xef\xbb\xbf\r\n\t ")
    if stripped.startswith(b"<") or head.startswith((b"\xff\xfe<\x00", b"\xfe\xff\x00<")):
        return "application/xml"
    if detect_format(data) == "cms":
        return "application/pkcs7-mime"
    return OCTET_STREAM


def _normalise_type(value: str) -> str:
    kind = value.split(";", 1)[0].strip().lower()
    if kind.endswith("+xml") and kind != "application/epub+zip":
        return "application/xml"
    return _ALIASES.get(kind, kind)


def reconcile_content_type(declared: str | None, sniffed: str) -> tuple[str | None, str]:
    """``(error, stored type)``: the type to store, or why the declared one contradicts the content."""
    if not declared or not declared.strip():
        return None, sniffed
    kind = _normalise_type(declared)
    if kind == sniffed:
        return None, sniffed
    if sniffed == "application/zip" and kind in ZIP_TYPES:
        return None, kind  # a zip-based format the sniffer could not tell apart: the declaration refines it
    if sniffed in ZIP_TYPES and kind == "application/zip":
        return None, sniffed
    if sniffed in OLE_TYPES and kind in OLE_TYPES:
        return None, kind if kind != "application/x-ole-storage" else sniffed
    if sniffed == OCTET_STREAM and kind not in RECOGNISED:
        return None, OCTET_STREAM  # content of a kind we do not know: stored as opaque bytes
    return f"declared {declared.strip()!r} but the content is {sniffed}", sniffed


def _prepare_one(item: FileIn, *, field: str, code: str | None, max_bytes: int, errors: list) -> PreparedFile | None:
    before = len(errors)
    data = _decode_base64(
        item.content_base64, field=f"{field}.content_base64", max_bytes=max_bytes, errors=errors, what="file"
    )
    signature = None
    if item.detached_signature_base64 is not None:
        signature = _decode_base64(
            item.detached_signature_base64,
            field=f"{field}.detached_signature_base64",
            max_bytes=max_bytes,
            errors=errors,
            what="signature",
        )
    if data is None or len(errors) > before:
        return None
    sniffed = sniff_content_type(data)
    error, content_type = reconcile_content_type(item.content_type, sniffed)
    if error:
        errors.append(problem(f"{field}.content_type", error))
        return None
    return PreparedFile(
        field=field,
        code=code,
        name=item.name,
        filename=sanitise_filename(item.filename, fallback_stem=code or "file", content_type=content_type),
        content_type=content_type,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        signature=signature,
        signature_sha256=hashlib.sha256(signature).hexdigest() if signature is not None else None,
    )


def _prepare_all(
    items: Sequence[tuple[str, str | None, FileIn]], max_bytes: int
) -> tuple[list[PreparedFile], list[dict[str, str]]]:
    errors: list[dict[str, str]] = []
    prepared = []
    for field_name, code, item in items:
        done = _prepare_one(item, field=field_name, code=code, max_bytes=max_bytes, errors=errors)
        if done is not None:
            prepared.append(done)
    return prepared, errors


async def prepare_files(
    items: Sequence[tuple[str, str | None, FileIn]], *, max_bytes: int
) -> tuple[list[PreparedFile], list[dict[str, str]]]:
    """Decode, name and type ``(field path, component code, file)`` items off the event loop."""
    return await anyio.to_thread.run_sync(partial(_prepare_all, items, max_bytes))


async def verify_files(verifier: Verifier, files: Sequence[PreparedFile]) -> None:
    """Verify every file's signatures (concurrently, off the event loop) and keep each report."""
    reports = await asyncio.gather(
        *(verifier.verify(Document(f.data, f.filename, f.signature)) for f in files),
    )
    for prepared, report in zip(files, reports, strict=True):
        prepared.report = report.to_dict()


def store_blob(session: Session, data: bytes, sha256: str | None = None) -> str:
    """Store ``data`` once under its sha256 (a concurrent insert of the same content is harmless)."""
    digest = sha256 or hashlib.sha256(data).hexdigest()
    values = {"sha256": digest, "size": len(data), "content": data}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement = postgresql.insert(Blob).values(**values).on_conflict_do_nothing(index_elements=["sha256"])
    else:
        statement = sqlite.insert(Blob).values(**values).on_conflict_do_nothing(index_elements=["sha256"])
    session.execute(statement)
    return digest


# --------------------------------------------------------------------------------------------------------------------
# Dossier codes


def allocate_code(session: Session, agency_code: str, now: datetime) -> str:
    """The next dossier code of ``agency_code`` today (Asia/Ho_Chi_Minh), unique across processes.

    ``INSERT … ON CONFLICT DO NOTHING`` creates the day's counter, then ``UPDATE … SET last = last + 1 RETURNING
    last`` increments it under the row's write lock (PostgreSQL) or the database's (SQLite): two transactions never
    get the same number, and a rolled-back one gives its number back.
    """
    day = now.astimezone(VIETNAM_TZ).strftime("%y%m%d")
    values = {"agency_code": agency_code, "day": day, "last": 0}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(DaySequence).values(**values).on_conflict_do_nothing(index_elements=["agency_code", "day"]))
    table = DaySequence.__table__
    last = session.execute(
        update(table)
        .where(table.c.agency_code == agency_code, table.c.day == day)
        .values(last=table.c.last + 1)
        .returning(table.c.last)
    ).scalar_one()
    try:
        return format_dossier_code(agency_code, now, last)
    except ValueError as exc:
        raise Unavailable(f"no dossier code left for agency {agency_code} today: {exc}") from None


# --------------------------------------------------------------------------------------------------------------------
# Idempotency


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_KEY_RE = re.compile(r"[\x21-\x7e]{1,200}\Z")


@dataclass(frozen=True)
class IdempotencyContext:
    """An ``Idempotency-Key`` of one principal and the fingerprint of the request it came with."""

    principal: str
    key: str
    fingerprint: str

    @classmethod
    def of(
        cls, principal: Principal, key: str | None, method: str, path: str, document: Any
    ) -> IdempotencyContext | None:
        if key is None:
            return None
        if _KEY_RE.match(key) is None:
            raise Invalid([problem("Idempotency-Key", "must be 1 to 200 visible ASCII characters")])
        digest = hashlib.sha256(f"{method} {path}\n".encode())
        digest.update(canonical_json(document))
        return cls(principal=principal.name, key=key, fingerprint=digest.hexdigest())

    @classmethod
    async def build(
        cls, principal: Principal, key: str | None, method: str, path: str, document: Any
    ) -> IdempotencyContext | None:
        """:meth:`of`, fingerprinting a large body off the event loop."""
        if key is None:
            return None
        return await anyio.to_thread.run_sync(partial(cls.of, principal, key, method, path, document))

    def lookup(self, session: Session) -> tuple[int, dict[str, Any]] | None:
        """The stored answer for this key; :class:`Invalid` when the key came with another request."""
        record = session.get(IdempotencyRecord, (self.principal, self.key))
        if record is None:
            return None
        if record.request_sha256 != self.fingerprint:
            raise Invalid(
                [problem("Idempotency-Key", "this key was already used with a different request")],
                message="Idempotency-Key reused with a different request body",
            )
        return record.status_code, record.body

    def reserve(self, session: Session) -> IdempotencyRecord:
        """Claim the key in this transaction (a concurrent claim of the same key waits, then fails)."""
        record = IdempotencyRecord(
            principal=self.principal, key=self.key, request_sha256=self.fingerprint, status_code=0, body={}
        )
        session.add(record)
        session.flush()
        return record


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False


async def run_idempotent(
    runtime: Runtime,
    context: IdempotencyContext | None,
    work: Callable[[Session], tuple[int, dict[str, Any]]],
) -> Answer:
    """Run ``work`` in one unit of work, recording its answer under ``context``'s key (see the module's notes).

    ``work`` must call :func:`audit.append` last: the key is reserved before it, so concurrent repeats of one key
    wait on the key, never on the audit chain.
    """

    def previous(session: Session) -> tuple[int, dict[str, Any]] | None:
        return context.lookup(session) if context else None

    def unit(session: Session) -> Answer:
        audit.lock_for_write(session)
        if context is not None:
            earlier = context.lookup(session)
            if earlier is not None:
                return Answer(earlier[0], earlier[1], replayed=True)
            record = context.reserve(session)
        status, body = work(session)
        if context is not None:
            record.status_code = status
            record.body = body
            session.flush()
        return Answer(status, body)

    if context is not None:
        earlier = await runtime.db.run(previous)
        if earlier is not None:
            return Answer(earlier[0], earlier[1], replayed=True)
    try:
        return await runtime.db.run(unit)
    except IntegrityError:
        if context is None:
            raise
        earlier = await runtime.db.run(previous)
        if earlier is None:
            raise
        return Answer(earlier[0], earlier[1], replayed=True)


def enqueue_webhook(session: Session, dossier: Dossier, entry: HistoryEntry) -> None:
    """A ``portal.webhook`` message for history entry ``entry`` (flushed, so it has an id)."""
    from .dossiers import iso

    outbox.enqueue(
        session,
        kind=messages.PORTAL_WEBHOOK,
        target=messages.PORTAL_TARGET,
        payload={
            "dossier_code": dossier.code,
            "event": {"status": entry.status, "at": iso(entry.at), "actor": entry.actor, "note": entry.note},
        },
        idempotency_key=outbox.message_key(dossier.code, f"webhook:{entry.id}"),
        ordering_key=dossier.code,
    )


def enqueue_delivery(session: Session, dossier: Dossier, agency_code: str) -> None:
    """An ``agency.deliver`` message handing ``dossier`` to ``agency_code``."""
    outbox.enqueue(
        session,
        kind=messages.AGENCY_DELIVER,
        target=agency_code,
        payload={"dossier_code": dossier.code, "agency_code": agency_code},
        idempotency_key=outbox.message_key(dossier.code, f"deliver:{agency_code}"),
        ordering_key=dossier.code,
    )


# --------------------------------------------------------------------------------------------------------------------
# Checks against the catalogue and the registry


def check_catalogue(session: Session, sub: Submission) -> tuple[ProcedureSpec | None, list[dict[str, str]]]:
    """The procedure and every problem of the submission against the catalogue and the registry."""
    errors: list[dict[str, str]] = []
    spec = get_procedure(session, sub.procedure_code)
    if spec is None:
        errors.append(problem("procedure_code", f"unknown procedure {sub.procedure_code}"))
        return None, errors
    if sub.agency_code not in spec.agencies:
        competent = ", ".join(spec.agencies)
        errors.append(
            problem(
                "agency_code",
                f"agency {sub.agency_code} is not competent for procedure {spec.code} (competent: {competent})",
            )
        )
    elif session.get(Agency, sub.agency_code) is None:
        errors.append(problem("agency_code", f"agency {sub.agency_code} is not registered with the gateway"))
    errors += check_component_codes(spec, [(f"components[{i}]", c.code) for i, c in enumerate(sub.components)])
    given = {c.code for c in sub.components}
    for component in spec.components:
        if component.required and component.code not in given:
            errors.append(problem("components", f"required component {component.code} ({component.name}) is missing"))
    errors += _check_fees(spec, sub.fees)
    if sub.return_method == "post" and not sub.delivery_address:
        errors.append(problem("delivery_address", "required when return_method is post"))
    return spec, errors


def check_component_codes(spec: ProcedureSpec, items: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """Unknown and repeated component codes among ``(field path, code)`` items."""
    errors = []
    known = {c.code for c in spec.components}
    seen: set[str] = set()
    for field_name, code in items:
        if code not in known:
            listed = ", ".join(sorted(known)) or "none"
            errors.append(
                problem(f"{field_name}.code", f"unknown component {code} for procedure {spec.code} (known: {listed})")
            )
        elif code in seen:
            errors.append(problem(f"{field_name}.code", f"component {code} is given more than once"))
        seen.add(code)
    return errors


def _check_fees(spec: ProcedureSpec, fees: list[FeeIn] | None) -> list[dict[str, str]]:
    """Fees must be the catalogue's: each given fee a catalogue fee with its amount (whole VND), none repeated, and
    every fee with a non-zero amount present. Omitted (``fees`` absent or null), the catalogue's fees apply."""
    if fees is None:
        return []
    errors = []
    catalogue = {fee.code: fee for fee in spec.fees}
    seen: set[str] = set()
    for index, fee in enumerate(fees):
        expected = catalogue.get(fee.code)
        if expected is None:
            errors.append(problem(f"fees[{index}].code", f"unknown fee {fee.code} for procedure {spec.code}"))
        elif fee.code in seen:
            errors.append(problem(f"fees[{index}].code", f"fee {fee.code} is given more than once"))
        elif fee.amount != expected.amount:
            errors.append(
                problem(
                    f"fees[{index}].amount", f"must be {expected.amount} VND as the catalogue says, got {fee.amount}"
                )
            )
        seen.add(fee.code)
    for code, expected in catalogue.items():
        if expected.amount > 0 and code not in seen:
            errors.append(problem("fees", f"fee {code} ({expected.name}, {expected.amount} VND) is missing"))
    return errors


def signature_warnings(spec: ProcedureSpec, files: Sequence[PreparedFile]) -> list[dict[str, str]]:
    """Components the catalogue says must be signed whose signature is not valid."""
    must = {c.code for c in spec.components if c.must_be_signed}
    return [{"component": f.code, "verdict": f.verdict} for f in files if f.code in must and f.verdict != "valid"]


def warnings_note(warnings: Sequence[dict[str, str]]) -> str | None:
    if not warnings:
        return None
    parts = [f"{w['component']} must be digitally signed (signature: {w['verdict']})" for w in warnings]
    return "Originals check required: " + "; ".join(parts)


def component_rows(
    session: Session, spec: ProcedureSpec, files: Sequence[PreparedFile], *, now: datetime, revisions: dict[str, int]
) -> list[Component]:
    """Stored blobs and new :class:`Component` rows for ``files`` (``revisions``: the revision of each code)."""
    names = {c.code: c.name for c in spec.components}
    rows = []
    for f in files:
        assert f.code is not None
        store_blob(session, f.data, f.sha256)
        if f.signature is not None:
            store_blob(session, f.signature, f.signature_sha256)
        rows.append(
            Component(
                code=f.code,
                name=names.get(f.code) or f.name or f.code,
                filename=f.filename,
                content_type=f.content_type,
                size=f.size,
                sha256=f.sha256,
                detached_signature_sha256=f.signature_sha256,
                verification=f.report,
                originals_check_required=f.originals_check_required,
                revision=revisions.get(f.code, 1),
                current=True,
                created_at=now,
            )
        )
    return rows


# --------------------------------------------------------------------------------------------------------------------
# Submission


async def submit(
    runtime: Runtime,
    principal: Principal,
    document: Any,
    *,
    idempotency_key: str | None,
    now: datetime,
    path: str = "/api/v1/dossiers",
    calendar: OfficeCalendar | None = None,
) -> Answer:
    """Take in a dossier (see the module documentation): the answer is ``201`` and the dossier view."""
    from .dossiers import dossier_view

    calendar = calendar or runtime.calendar
    context = await IdempotencyContext.build(principal, idempotency_key, "POST", path, document)
    if context is not None:
        earlier = await runtime.db.run(context.lookup)
        if earlier is not None:
            return Answer(earlier[0], earlier[1], replayed=True)

    sub = parse_model(Submission, document)
    _, errors = await runtime.db.run(lambda session: check_catalogue(session, sub))
    items = [(f"components[{i}]", c.code, c) for i, c in enumerate(sub.components)]
    files, file_errors = await prepare_files(items, max_bytes=runtime.max_file_bytes)
    if errors or file_errors:
        raise Invalid(errors + file_errors)
    await verify_files(runtime.verifier, files)
    fanout = Fanout.from_runtime(runtime)

    def work(session: Session) -> tuple[int, dict[str, Any]]:
        spec, errors = check_catalogue(session, sub)  # again, now inside the transaction
        if errors or spec is None:
            raise Invalid(errors)
        components = component_rows(session, spec, files, now=now, revisions={})
        code = allocate_code(session, sub.agency_code, now)
        deadlines = compute_deadlines([(Status.SUBMITTED, now)], spec.processing_days, calendar)
        warnings = signature_warnings(spec, files)
        extra = dict(sub.model_extra or {})
        dossier = Dossier(
            code=code,
            procedure_code=spec.code,
            agency_code=sub.agency_code,
            lead_agency_code=sub.agency_code,
            status=Status.SUBMITTED.value,
            channel=sub.channel,
            applicant=sub.applicant.model_dump(mode="json"),
            summary=sub.summary,
            return_method=sub.return_method,
            delivery_address=sub.delivery_address,
            extra=json.loads(json.dumps(extra)),
            originals_check_required=any(c.originals_check_required for c in components),
            submitted_at=now,
            acknowledge_by=deadlines.acknowledge_by,
            due_at=deadlines.due_at,
            updated_at=now,
        )
        dossier.components.extend(components)
        dossier.fees.extend(Fee(code=f.code, name=f.name, amount=f.amount, paid=False) for f in spec.fees)
        entry = HistoryEntry(
            status=Status.SUBMITTED.value,
            at=now,
            actor=principal.name,
            note=warnings_note(warnings),
            details={"signature_warnings": warnings} if warnings else {},
        )
        dossier.history.append(entry)
        session.add(dossier)
        session.flush()
        enqueue_delivery(session, dossier, dossier.agency_code)
        after_change(session, dossier, entry, fanout, previous=None, now=now)
        body = dossier_view(session, dossier, calendar=calendar, now=now)
        audit.append(
            session,
            principal.name,
            "dossier.submitted",
            code,
            {
                "procedure_code": spec.code,
                "agency_code": dossier.agency_code,
                "components": [{"code": f.code, "sha256": f.sha256, "verdict": f.verdict} for f in files],
                "originals_check_required": dossier.originals_check_required,
            },
            at=now,
        )
        return 201, body

    return await run_idempotent(runtime, context, work)


def find_dossier(session: Session, code: str, *, for_update: bool = False) -> Dossier:
    """The dossier ``code`` (locked for update on PostgreSQL when asked); :class:`NotFound` otherwise."""
    statement = select(Dossier).where(Dossier.code == code)
    if for_update and session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    dossier = session.scalars(statement).one_or_none()
    if dossier is None:
        raise NotFound(f"no dossier {code}")
    return dossier
