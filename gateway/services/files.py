"""Files in requests: strict base64, safe display names, content types checked against the bytes, signatures.

:func:`prepare_files` decodes ``(field path, component code, file)`` items off the event loop into
:class:`PreparedFile` objects (the sniffed content type wins over a contradicting declaration);
:func:`verify_files` verifies their signatures; :func:`store_blob` stores content once under its sha256. Files are
never stored or looked up by a client's name. :func:`decode_base64` is the one strict base64 decoder of files, for
every route that takes them.
"""

from __future__ import annotations

import asyncio
import binascii
import dataclasses
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
import pybase64
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.errors import problem
from gateway.store.models import Blob
from signing.report import SignatureReport, Verdict
from signing.sniff import reconcile_content_type, sniff_content_type
from signing.verify import Document, Verifier

__all__ = [
    "FileIn",
    "PreparedFile",
    "TooLargeError",
    "decode_base64",
    "prepare_files",
    "sanitise_filename",
    "store_blob",
    "verify_files",
]


class FileIn(BaseModel):
    """A file in a request: its content in base64, optionally a detached CMS signature over it."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[StrictStr, Field(max_length=500)] | None = None
    filename: Annotated[StrictStr, Field(max_length=1000)] | None = None
    content_type: Annotated[StrictStr, Field(max_length=200)] | None = None
    content_base64: StrictStr
    detached_signature_base64: StrictStr | None = None


@dataclass
class PreparedFile:
    """A decoded, named and typed file (and its detached signature), ready to verify and store."""

    field: str
    code: str | None
    name: str | None
    filename: str
    content_type: str
    data: bytes = dataclasses.field(repr=False)
    sha256: str
    signature: bytes | None = dataclasses.field(default=None, repr=False)
    signature_sha256: str | None = None
    report: SignatureReport | None = None
    #: Whether a valid signer is the applicant (:mod:`gateway.services.signers`); ``None`` when not compared.
    applicant_check: dict[str, Any] | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def originals_check_required(self) -> bool:
        if self.applicant_check is not None and self.applicant_check.get("originals_check_required"):
            return True
        return True if self.report is None else self.report.originals_check_required

    @property
    def verification(self) -> dict[str, Any] | None:
        """The report as stored and shown (``docs/signature-report.md``, with ``applicant_check`` when compared)."""
        if self.report is None:
            return None
        shown = self.report.to_json()
        if self.applicant_check is not None:
            shown["applicant_check"] = dict(self.applicant_check)
            shown["originals_check_required"] = self.originals_check_required
        return shown

    @property
    def verdict(self) -> str:
        return Verdict.INVALID.value if self.report is None else self.report.verdict.value


#: The white space allowed (and dropped) in base64 content: line breaks, tabs, spaces.
_B64_WHITESPACE = b"\r\n\t "


class TooLargeError(ValueError):
    """Content past its size cap."""


def decode_base64(value: str, *, max_bytes: int) -> bytes:
    """``value`` decoded as strict base64: the standard alphabet, padding required and never in excess, white space
    (line breaks, tabs, spaces) allowed anywhere. :class:`TooLargeError` when it would decode to more than
    ``max_bytes`` bytes (counted on the decoded bytes: line breaks never push a file over), ``ValueError`` when it is
    not such base64. Empty content decodes to ``b""``."""
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("not valid base64") from None
    try:
        data = _strict_base64(raw, max_bytes)  # most content has no white space: decoded without a copy first
    except ValueError:
        raw = raw.translate(None, _B64_WHITESPACE)  # a regular expression: 15x as long on 1 MB
        data = _strict_base64(raw, max_bytes)
    if len(data) > max_bytes:
        raise TooLargeError(f"larger than {max_bytes} bytes")
    return data


def _strict_base64(raw: bytes, max_bytes: int) -> bytes:
    # n base64 characters decode to at most 3n/4 bytes: the oversized are refused before decoding.
    if len(raw) // 4 * 3 > max_bytes + 3:
        raise TooLargeError(f"larger than {max_bytes} bytes")
    try:
        return pybase64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


def _decode_base64(value: str, *, field: str, max_bytes: int, errors: list[dict[str, str]], what: str) -> bytes | None:
    """:func:`decode_base64`, a problem on ``field`` instead of an exception (and for empty content)."""
    try:
        data = decode_base64(value, max_bytes=max_bytes)
    except TooLargeError:
        errors.append(problem(field, f"the {what} is larger than {max_bytes} bytes"))
        return None
    except ValueError:
        errors.append(problem(field, "not valid base64"))
        return None
    if not data:
        errors.append(problem(field, f"the {what} is empty"))
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
        prepared.report = report


def store_blob(session: Session, data: bytes, sha256: str | None = None) -> str:
    """Store ``data`` once under its sha256 (a concurrent insert of the same content is harmless)."""
    digest = sha256 or hashlib.sha256(data).hexdigest()
    values = {"sha256": digest, "size": len(data), "content": data}
    dialect = session.get_bind().dialect.name
    statement: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        statement = postgresql.insert(Blob).values(**values).on_conflict_do_nothing(index_elements=["sha256"])
    else:
        statement = sqlite.insert(Blob).values(**values).on_conflict_do_nothing(index_elements=["sha256"])
    session.execute(statement)
    return digest
