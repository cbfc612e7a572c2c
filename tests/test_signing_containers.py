"""Signed ZIP containers (ASiC, signed OpenDocument): recognised as signed, reported as unsupported."""

from __future__ import annotations

import io
import zipfile

import pytest

from signing.containers import signed_container
from signing.report import Format, Indication, SubIndication, Verdict
from signing.trust import TrustStore
from signing.verify import verify_document
from tests.reports import only, outcome

ODT = "application/vnd.oasis.opendocument.text"


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            method = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=method)
    return buffer.getvalue()


ASICE_CADES = _zip(
    {
        "mimetype": b"application/vnd.etsi.asic-e+zip",
        "don.pdf": b"%PDF-1.7 ...",
        "META-INF/ASiCManifest.xml": b"<ASiCManifest/>",
        "META-INF/signature001.p7s": b"\x30\x80 a CAdES signature",
    }
)
ASICE_XADES = _zip(
    {
        "mimetype": b"application/vnd.etsi.asic-e+zip",
        "to-khai.xml": b"<ToKhai/>",
        "META-INF/manifest.xml": b"<manifest/>",
        "META-INF/signatures0.xml": b"<XAdESSignatures/>",
    }
)
ASICS_CADES = _zip({"mimetype": b"application/vnd.etsi.asic-s+zip", "scan.png": b"png", "META-INF/signature.p7s": b"x"})
SIGNED_ODT = _zip(
    {
        "mimetype": ODT.encode(),
        "content.xml": b"<office:document-content/>",
        "META-INF/manifest.xml": b"<manifest/>",
        "META-INF/documentsignatures.xml": b"<document-signatures/>",
    }
)
UNSIGNED_ODT = _zip({"mimetype": ODT.encode(), "content.xml": b"<x/>", "META-INF/manifest.xml": b"<manifest/>"})


@pytest.fixture(scope="module")
def store(pki) -> TrustStore:
    return TrustStore(anchors=[pki.root.asn1_cert()])


@pytest.mark.parametrize(
    ("data", "name", "fmt", "text"),
    [
        (ASICE_CADES, "ho-so.asice", Format.CADES, "ASiC containers are not supported"),
        (ASICE_XADES, "ho-so.bdoc", Format.XADES, "ASiC containers are not supported"),
        (ASICS_CADES, "scan.asics", Format.CADES, "ASiC containers are not supported"),
        (SIGNED_ODT, "don.odt", Format.XADES, "signed OpenDocument files are not supported"),
    ],
)
async def test_a_signed_container_is_invalid_never_unsigned(store, data, name, fmt, text):
    report = await verify_document(data, store, filename=name)
    sig = only(report)
    assert report.signed is True and report.format is fmt
    assert outcome(report) == (Verdict.INVALID, Indication.INDETERMINATE, SubIndication.FORMAT_FAILURE)
    assert report.originals_check_required
    assert len(sig.warnings) == 1 and sig.warnings[0].startswith(text) and "META-INF/" in sig.warnings[0]


async def test_the_file_name_does_not_matter(store):
    report = await verify_document(ASICE_CADES, store, filename="upload.bin")
    assert report.verdict is Verdict.INVALID and report.signed


@pytest.mark.parametrize(
    "data",
    [
        UNSIGNED_ODT,
        _zip({"a.txt": b"hello", "META-INF/container.xml": b"<container/>"}),  # an EPUB-like archive
        _zip({"signature.p7s": b"x", "signatures.xml": b"<x/>"}),  # not in META-INF
    ],
)
async def test_zip_files_without_a_container_signature_stay_unsigned(store, data):
    report = await verify_document(data, store, filename="file.zip")
    assert report.verdict is Verdict.UNSIGNED and not report.signed and report.format is Format.NONE


def test_only_the_central_directory_is_read(monkeypatch):
    """No entry is opened: a highly compressed entry (a zip bomb) costs nothing."""
    bomb = _zip(
        {
            "mimetype": b"application/vnd.etsi.asic-e+zip",
            "big.bin": b"\0" * (4 << 20),
            **{"META-INF/signature.p7s": b"x"},
        }
    )

    def refuse(*_args, **_kwargs):
        raise AssertionError("an entry was read")

    monkeypatch.setattr(zipfile.ZipFile, "open", refuse)
    monkeypatch.setattr(zipfile.ZipFile, "read", refuse)
    found = signed_container(bomb)
    assert found is not None and found.entry == "META-INF/signature.p7s"


@pytest.mark.parametrize("data", [b"PK\x03\x04 broken archive", b"", b"not a zip at all"])
def test_broken_archives_are_not_containers(data):
    assert signed_container(data) is None
