"""What a file is, judged from its bytes: the content type, and from it the signature format to validate.

:func:`sniff_content_type` reads a small magic-number table (PDF, XML, images, ZIP-based office formats, OLE2 and
CMS/PKCS#7); :func:`detect_format` derives from that answer which validator a document goes to, so intake and
signature verification never disagree about a file; :func:`signature_format` names the signature format a
document's validator would report, for a report written without its answer (a validator error, a budget exceeded). It
imports only the standard library, asn1crypto and this package's modules that import nothing else.
"""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from typing import Literal

from asn1crypto import cms, pem

from .containers import SignedContainer, signed_container
from .limits import BASE64_CMS, carries_cms_signature, carries_pdf_signature
from .reasons import explain
from .report import Format

__all__ = [
    "ALIASES",
    "OCTET_STREAM",
    "OLE_TYPES",
    "RECOGNISED",
    "ZIP_TYPES",
    "NotCMSError",
    "SignatureFormat",
    "canonical_content_type",
    "detect_format",
    "looks_like_cms",
    "parse_signed_data",
    "reconcile_content_type",
    "signature_format",
    "sniff_content_type",
    "validator_for",
]

OCTET_STREAM = "application/octet-stream"
PDF = "application/pdf"
XML = "application/xml"
PKCS7 = "application/pkcs7-mime"

_OOXML = {
    "word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
#: ZIP-based formats (the sniffer tells OOXML and OpenDocument apart; others are plain ``application/zip``).
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
#: OLE2 compound files (legacy office formats): the sniffer only sees ``application/x-ole-storage``.
OLE_TYPES = frozenset(
    {"application/x-ole-storage", "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint"}
)
#: Declared names of the same types.
ALIASES = {
    "text/xml": XML,
    "application/x-xml": XML,
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "application/x-pdf": PDF,
    "application/x-zip-compressed": "application/zip",
    "application/x-zip": "application/zip",
    "application/x-pkcs7-mime": PKCS7,
    "application/pkcs7-signature": PKCS7,
    "application/x-pkcs7-signature": PKCS7,
    "application/cms": PKCS7,
}
#: Types the sniffer recognises: declaring one of them for content that is something else is refused.
RECOGNISED = frozenset({PDF, XML, "image/png", "image/jpeg", "image/gif", "image/tiff", PKCS7} | ZIP_TYPES | OLE_TYPES)

#: Leading bytes (UTF-8 byte order mark, white space) skipped before looking for XML or CMS.
_LEADING = b"\xef\xbb\xbf\r\n\t "

_MAGIC: tuple[tuple[tuple[bytes, ...], str], ...] = (
    ((b"\x89PNG\r\n\x1a\n",), "image/png"),
    ((b"\xff\xd8\xff",), "image/jpeg"),
    ((b"GIF87a", b"GIF89a"), "image/gif"),
    ((b"II*\x00", b"MM\x00*"), "image/tiff"),
    ((b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",), "application/x-ole-storage"),
)


class NotCMSError(ValueError):
    """The bytes are not a CMS SignedData structure."""


def parse_signed_data(signature: bytes) -> cms.SignedData:
    """The ``SignedData`` in DER, PEM (``PKCS7``/``CMS``) or base64 bytes; :class:`NotCMSError` otherwise."""
    data = signature
    try:
        if pem.detect(data):
            _, _, data = pem.unarmor(data)
        elif BASE64_CMS.match(data):
            data = base64.b64decode(b"".join(data.split()), validate=True)
        info = cms.ContentInfo.load(data, strict=True)
        if info["content_type"].native != "signed_data":
            raise NotCMSError(f"CMS content type is {info['content_type'].native}, not signed data")
        signed = info["content"]
        # Parse the parts every validation needs now, so a malformed structure fails here (a full `.native`
        # parse would cost more than the validation itself); anything deeper is caught per signer.
        signed["encap_content_info"]["content_type"].native  # noqa: B018
        for signer_info in signed["signer_infos"]:
            signer_info["sid"].native  # noqa: B018
            signer_info["digest_algorithm"]["algorithm"].native  # noqa: B018
    except NotCMSError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, binascii.Error) as exc:
        raise NotCMSError(f"not a CMS signature: {explain(exc)}") from exc
    assert isinstance(signed, cms.SignedData)
    return signed


def looks_like_cms(data: bytes) -> bool:
    """Whether ``data`` parses as CMS SignedData (:func:`parse_signed_data`)."""
    try:
        parse_signed_data(data)
    except NotCMSError:
        return False
    return True


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


def _is_cms(data: bytes, stripped: bytes) -> bool:
    if stripped.startswith((b"-----BEGIN PKCS7", b"-----BEGIN CMS")):
        return True
    return stripped[:1] == b"\x30" and looks_like_cms(data)


def sniff_content_type(data: bytes) -> str:
    """The content type the bytes show (a small magic-number table); ``application/octet-stream`` when unknown.

    PDF, XML, PNG, JPEG, GIF, TIFF, ZIP-based office formats (OOXML, OpenDocument) and plain ZIP, OLE2 (legacy
    office), and CMS/PKCS#7 signed data. DER or BER CMS SignedData is recognised before the PDF header is looked
    for (anywhere in the first 1024 bytes, as PDF readers do), since the signed content it carries may be a PDF.
    """
    head = data[:1024]
    if head[:1] == b"\x30" and looks_like_cms(data):
        # CMS SignedData first: an attached signature (``.p7m``) over a PDF carries ``%PDF-`` near its start.
        return PKCS7
    if head.find(b"%PDF-") != -1:
        return PDF
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(data)
    stripped = head.lstrip(_LEADING)
    if stripped.startswith(b"<") or head.startswith((b"\xff\xfe<\x00", b"\xfe\xff\x00<")):
        return XML
    if _is_cms(data, stripped):
        return PKCS7
    return OCTET_STREAM


SignatureFormat = Literal["pdf", "xml", "cms", "other"]

_FORMAT_OF_TYPE: dict[str, SignatureFormat] = {PDF: "pdf", XML: "xml", PKCS7: "cms"}


def detect_format(data: bytes, filename: str = "") -> SignatureFormat:
    """``pdf``, ``xml``, ``cms`` or ``other``: the sniffed content type first, the file name only as a hint."""
    kind = _FORMAT_OF_TYPE.get(sniff_content_type(data))
    if kind is not None:
        return kind
    if filename.lower().endswith(".xml"):
        return "xml"
    return "other"


#: The XAdES namespaces (v1.3.2 and v1.4.1): an XML document naming one carries XAdES, not plain XML-DSig.
_XADES_NAMESPACES = (b"http://uri.etsi.org/01903/v1.3.2#", b"http://uri.etsi.org/01903/v1.4.1#")


def validator_for(data: bytes, filename: str = "") -> tuple[str, SignedContainer | None]:
    """Which validator ``data`` goes to: ``pdf``, ``cms``, ``xml``, ``container`` (a signed ASiC or OpenDocument
    file, returned too), or ``other`` (no signature format). A file of no known type yet carrying a signature
    structure (a PDF with a mangled header, a corrupt CMS blob) goes to the validator that reports it broken, never
    ``other``; known types (an image, an office file that may embed a signed PDF) are not searched."""
    kind = detect_format(data, filename)
    if kind != "other":
        return kind, None
    sniffed = sniff_content_type(data)
    if sniffed in ZIP_TYPES:
        container = signed_container(data)
        return ("container", container) if container is not None else ("other", None)
    if sniffed == OCTET_STREAM:
        if carries_pdf_signature(data):
            return "pdf", None
        if carries_cms_signature(data, filename):
            return "cms", None
    return "other", None


def signature_format(data: bytes, filename: str = "", detached_signature: bytes | None = None) -> Format:
    """The signature format of the validator ``data`` goes to (:func:`validator_for`), judged from the bytes alone:
    ``pades``, ``cades`` (a detached signature too), ``xades`` when an XML document names the XAdES namespace, else
    ``xmldsig``, the container's for a signed ASiC or OpenDocument file; ``none`` for a file of no signature
    format."""
    if detached_signature is not None:
        return Format.CADES
    kind, container = validator_for(data, filename)
    if container is not None:
        return container.format
    if kind == "xml":
        return Format.XADES if any(namespace in data for namespace in _XADES_NAMESPACES) else Format.XMLDSIG
    return {"pdf": Format.PADES, "cms": Format.CADES}.get(kind, Format.NONE)


def canonical_content_type(value: str) -> str:
    """A declared content type in the sniffer's vocabulary: parameters dropped, lower case, aliases resolved and
    every ``+xml`` type read as ``application/xml``."""
    kind = value.split(";", 1)[0].strip().lower()
    if kind.endswith("+xml") and kind != "application/epub+zip":
        return XML
    return ALIASES.get(kind, kind)


def reconcile_content_type(declared: str | None, sniffed: str) -> tuple[str | None, str]:
    """``(error, stored type)``: the type to store, or why the declared one contradicts the content."""
    if not declared or not declared.strip():
        return None, sniffed
    kind = canonical_content_type(declared)
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
