"""One content sniffer: the content type from the bytes, and the signature format derived from it."""

from __future__ import annotations

import io
import sys
import zipfile

import pytest

from signing.sniff import (
    OCTET_STREAM,
    OLE_TYPES,
    RECOGNISED,
    ZIP_TYPES,
    canonical_content_type,
    detect_format,
    reconcile_content_type,
    sniff_content_type,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40
OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 32
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ODT = "application/vnd.oasis.opendocument.text"


def _zip(names: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in names.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.fixture(scope="module")
def cms_signature(pki) -> bytes:
    import asyncio

    info = asyncio.run(pki.good.pyhanko_signer().async_sign_general_data(b"scan", "sha256", detached=True))
    return info.dump()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"%PDF-1.7\n%...", "application/pdf"),
        (b"\n\n%PDF-1.4", "application/pdf"),
        (b'<?xml version="1.0"?><ToKhai/>', "application/xml"),
        (b"\xef\xbb\xbf<ToKhai/>", "application/xml"),
        (b"\xff\xfe" + "<a/>".encode("utf-16-le"), "application/xml"),
        (b"\xfe\xff" + "<a/>".encode("utf-16-be"), "application/xml"),
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (b"GIF89a....", "image/gif"),
        (b"GIF87a....", "image/gif"),
        (b"II*\x00....", "image/tiff"),
        (b"MM\x00*....", "image/tiff"),
        (_zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w/>"}), DOCX),
        (_zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<w/>"}), XLSX),
        (_zip({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"}), ODT),
        (_zip({"mimetype": b"text/plain", "a.txt": b"hello"}), "application/zip"),
        (_zip({"a.txt": b"hello"}), "application/zip"),
        (b"PK\x03\x04 broken archive", "application/zip"),
        (OLE, "application/x-ole-storage"),
        (b"-----BEGIN PKCS7-----\n", "application/pkcs7-mime"),
        (b"-----BEGIN CMS-----\n", "application/pkcs7-mime"),
        (b"\x30\x82\x01\x00 garbage that looks like DER", OCTET_STREAM),
        (b"plain text", OCTET_STREAM),
        (b"", OCTET_STREAM),
    ],
)
def test_content_types_are_sniffed_from_the_bytes(data: bytes, kind: str) -> None:
    assert sniff_content_type(data) == kind


def test_der_cms_signed_data_is_pkcs7(cms_signature: bytes) -> None:
    assert sniff_content_type(cms_signature) == "application/pkcs7-mime"
    assert detect_format(cms_signature, "giay-to.p7s") == "cms"


PDF_CONTENT = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(scope="module")
def cms_over_a_pdf(pki) -> bytes:
    """An attached CAdES signature (``.pdf.p7m``) carrying a PDF: ``%PDF-`` is in its first bytes."""
    import asyncio

    signer = pki.good.pyhanko_signer()
    info = asyncio.run(signer.async_sign_general_data(PDF_CONTENT, "sha256", detached=False, use_cades=True))
    return info.dump()


def test_attached_cms_carrying_a_pdf_is_pkcs7(cms_over_a_pdf: bytes) -> None:
    assert cms_over_a_pdf[:1] == b"\x30" and b"%PDF-" in cms_over_a_pdf[:1024]
    assert sniff_content_type(cms_over_a_pdf) == "application/pkcs7-mime"
    assert detect_format(cms_over_a_pdf, "don.pdf.p7m") == "cms"


@pytest.mark.parametrize("junk", [b"\x30\x80\x00\x00", b"0000", b"\x30\x82\x01\x00", b"\x00\x01\x02"])
def test_a_pdf_after_a_few_junk_bytes_is_still_a_pdf(junk: bytes) -> None:
    data = junk + PDF_CONTENT
    assert sniff_content_type(data) == "application/pdf"
    assert detect_format(data, "don.bin") == "pdf"


@pytest.mark.parametrize(
    ("data", "name", "kind"),
    [
        (b"%PDF-1.7\n...", "x.bin", "pdf"),
        (b"\n\n%PDF-1.4", "x", "pdf"),
        (b'<?xml version="1.0"?><a/>', "x.pdf", "xml"),
        (b"\xef\xbb\xbf<ToKhai/>", "", "xml"),
        (b"-----BEGIN PKCS7-----\n", "", "cms"),
        (b"GIF89a", "a.xml", "xml"),
        (b"GIF89a", "a.gif", "other"),
        (PNG, "scan.PNG", "other"),
        (b"", "", "other"),
    ],
)
def test_the_signature_format_derives_from_the_content_type(data: bytes, name: str, kind: str) -> None:
    assert detect_format(data, name) == kind


@pytest.mark.parametrize(
    ("declared", "canonical"),
    [
        ("application/pdf; charset=binary", "application/pdf"),
        ("Text/XML", "application/xml"),
        ("application/vnd.dvc.tokhai+xml", "application/xml"),
        ("application/epub+zip", "application/epub+zip"),
        ("image/jpg", "image/jpeg"),
        ("application/x-zip-compressed", "application/zip"),
        ("application/pkcs7-signature", "application/pkcs7-mime"),
        ("application/cms", "application/pkcs7-mime"),
        ("text/plain", "text/plain"),
    ],
)
def test_declared_types_are_read_in_the_sniffers_vocabulary(declared: str, canonical: str) -> None:
    assert canonical_content_type(declared) == canonical


@pytest.mark.parametrize(
    ("declared", "sniffed", "error", "stored"),
    [
        (None, "application/pdf", False, "application/pdf"),
        ("  ", "application/pdf", False, "application/pdf"),
        ("application/pdf; charset=binary", "application/pdf", False, "application/pdf"),
        ("text/xml", "application/xml", False, "application/xml"),
        ("application/vnd.dvc.tokhai+xml", "application/xml", False, "application/xml"),
        ("image/jpg", "image/jpeg", False, "image/jpeg"),
        (DOCX, "application/zip", False, DOCX),
        ("application/zip", DOCX, False, DOCX),
        ("application/msword", "application/x-ole-storage", False, "application/msword"),
        ("application/x-ole-storage", "application/x-ole-storage", False, "application/x-ole-storage"),
        ("text/plain", OCTET_STREAM, False, OCTET_STREAM),
        ("application/pdf", "image/png", True, None),
        ("application/pdf", OCTET_STREAM, True, None),
        ("image/png", "application/xml", True, None),
    ],
)
def test_declared_types_must_agree_with_the_content(declared, sniffed, error, stored) -> None:
    problem, kind = reconcile_content_type(declared, sniffed)
    assert (problem is not None) is error
    if not error:
        assert kind == stored


def test_tables():
    assert "application/zip" in ZIP_TYPES and DOCX in ZIP_TYPES and ODT in ZIP_TYPES
    assert {"application/msword", "application/x-ole-storage"} <= OLE_TYPES
    assert ZIP_TYPES | OLE_TYPES <= RECOGNISED
    assert {"application/pdf", "application/xml", "image/png", "application/pkcs7-mime"} <= RECOGNISED
    assert OCTET_STREAM not in RECOGNISED


def test_the_sniffer_does_not_load_pyhanko() -> None:
    import subprocess

    code = "import sys, signing.sniff, signing.report; sys.exit('pyhanko' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
