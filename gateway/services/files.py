"""Files in requests: strict base64, safe display names, content types checked against the bytes, signatures.

:func:`prepare_files` decodes ``(field path, component code, file)`` items off the event loop into
:class:`PreparedFile` objects (the sniffed content type wins over a contradicting declaration);
:func:`verify_files` verifies their signatures; :func:`store_blob` stores content once under its sha256. Files are
never stored or looked up by a client's name.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import re
import unicodedata
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.errors import problem
from gateway.store.models import Blob
from signing import Document, Verifier, detect_format

__all__ = [
    "FileIn",
    "PreparedFile",
    "prepare_files",
    "reconcile_content_type",
    "sanitise_filename",
    "sniff_content_type",
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
