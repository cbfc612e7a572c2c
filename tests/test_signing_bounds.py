"""Resource bounds and broken signatures: what a crafted file may cost, and that a broken signature is never
"unsigned"."""

from __future__ import annotations

import asyncio
import base64

import pytest
from asn1crypto import cms

from signing.limits import MAX_DOCUMENT_BYTES, MAX_SIGNATURE_CONTENTS_HEX, oversized_hex_string
from signing.report import Format, Verdict
from signing.sandbox import Budget
from signing.trust import TrustStore, load_crls
from signing.verify import Document, Verifier, verify_document, verify_document_sync
from tests.documents import sign_cms
from tests.reports import FORMAT_FAILURE, only, outcome
from tests.signing_pdf_support import byte_range, make_document, sign

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def store(pki) -> TrustStore:
    return TrustStore(anchors=[pki.root.asn1_cert()], intermediates=[pki.ca.asn1_cert()], crls=load_crls(pki.crl_paths))


@pytest.fixture(scope="module")
def signed(pki) -> bytes:
    return asyncio.run(sign(make_document(), pki.good))


def with_contents(signed: bytes, hex_digits: int) -> bytes:
    """``signed`` with its signature's ``/Contents`` replaced by a hex string of ``hex_digits`` digits."""
    start, end = byte_range(signed)
    return signed[:start] + b"<" + b"0" * hex_digits + b">" + signed[end:]


# --- resource bounds ------------------------------------------------------------------------------------------------


def test_a_64_mib_signature_contents_is_refused_before_parsing_within_the_memory_cap(store, signed):
    verifier = Verifier(store, threads=1)
    try:
        limit = verifier.memory_limit()
        report = verifier._verify_here(Document(with_contents(signed, 64 * MiB), "don.pdf"))
    finally:
        verifier.close()
    assert outcome(report) == FORMAT_FAILURE, report.to_json()
    assert report.signed and report.format is Format.PADES
    assert "longer than the 4 MiB allowed for a signature's /Contents" in only(report).warnings[0]
    # The worker ran under an address-space cap: its own size at start plus the default budget of 768 MiB.
    assert limit is not None
    assert Budget().memory_bytes == 768 * MiB < limit < Budget().memory_bytes + 4096 * MiB


def test_a_document_over_the_memory_budget_is_invalid_with_the_reason(store, signed):
    # Under the /Contents limit, but parsing 3 MiB of hex takes far more than a 64 MiB budget.
    data = with_contents(signed, 3 * MiB)
    assert 3 * MiB < MAX_SIGNATURE_CONTENTS_HEX
    verifier = Verifier(store, threads=1, budget=Budget(memory_bytes=64 * MiB))
    try:
        report = verifier._verify_here(Document(data, "don.pdf"))
        again = verifier._verify_here(Document(signed, "don.pdf"))  # the worker is still usable, or replaced
    finally:
        verifier.close()
    assert outcome(report) == FORMAT_FAILURE, report.to_json()
    assert "memory budget exceeded (limit 64 MiB per document)" in only(report).warnings[0]
    assert again.verdict is Verdict.VALID, again.to_json()


def test_a_document_over_the_time_budget_is_invalid_and_the_worker_replaced(store, signed):
    verifier = Verifier(store, threads=1, budget=Budget(base_seconds=0, seconds_per_mib=0))
    try:
        report = verifier._verify_here(Document(signed, "don.pdf"))
    finally:
        verifier.close()
    assert outcome(report) == FORMAT_FAILURE
    assert "time budget exceeded" in only(report).warnings[0]


def test_a_batch_keeps_going_past_a_document_over_budget(store, signed):
    docs = [Document(signed, "a.pdf"), Document(with_contents(signed, 3 * MiB), "b.pdf"), Document(signed, "c.pdf")]
    verifier = Verifier(store, threads=1, budget=Budget(memory_bytes=64 * MiB))
    try:
        reports = verifier.verify_batch(docs, workers=2)
    finally:
        verifier.close()
    assert [r.verdict for r in reports] == [Verdict.VALID, Verdict.INVALID, Verdict.VALID]


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path, store):
    big = tmp_path / "big.pdf"
    with big.open("wb") as handle:
        handle.truncate(MAX_DOCUMENT_BYTES + 1)  # sparse: no disk space, and never read
    doc = Document.from_path(big)
    assert doc.data == b"" and doc.refused is not None
    verifier = Verifier(store, threads=1, budget=None)
    try:
        report = verifier._verify_here(doc)
    finally:
        verifier.close()
    assert outcome(report) == FORMAT_FAILURE
    assert "too large to verify (over the limit of 200 MiB)" in only(report).warnings[0]


async def test_an_oversized_detached_signature_is_refused_before_parsing(store):
    report = await verify_document(b"scan", store, filename="scan.png", detached_signature=b"\x30" * (9 * MiB))
    assert outcome(report) == FORMAT_FAILURE
    assert "detached signature too large" in only(report).warnings[0]


# --- broken signatures are invalid, never unsigned -----------------------------------------------------------------


async def test_pdf_with_a_mangled_header_but_a_signature_is_invalid(store, signed):
    mangled = b"%PXF-1.7" + signed[8:].replace(b"%PDF-", b"%PXF-")
    report = await verify_document(mangled, store, filename="don.pdf")
    assert report.signed and report.verdict is not Verdict.VALID and report.verdict is not Verdict.UNSIGNED


async def test_pdf_whose_signature_dictionary_cannot_be_found_is_invalid(store, signed):
    # The form no longer lists the signature field, but the signature dictionary is still there.
    broken = signed.replace(b"/AcroForm", b"/AcroFxrm")
    report = await verify_document(broken, store, filename="don.pdf")
    assert outcome(report) == FORMAT_FAILURE, report.to_json()


def _duplicated_signed_attribute(signature: bytes) -> bytes:
    info = cms.ContentInfo.load(signature)
    signer_info = info["content"]["signer_infos"][0]
    attrs = list(signer_info["signed_attrs"])
    signer_info["signed_attrs"] = cms.CMSAttributes([*attrs, attrs[-1]])
    return info.dump(force=True)


def test_cms_with_duplicated_signed_attributes_is_invalid(pki, store):
    content = b"%%scan%%" * 100
    bad = _duplicated_signed_attribute(sign_cms(content, pki.good))
    detached = verify_document_sync(content, store, filename="scan.png", detached_signature=bad)
    assert detached.signed and detached.verdict is Verdict.INVALID, detached.to_json()
    attached = _duplicated_signed_attribute(sign_cms(content, pki.good, detached=False))
    report = verify_document_sync(attached, store, filename="scan.png.p7m")
    assert report.signed and report.verdict is Verdict.INVALID, report.to_json()


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02\xa0\x80garbage", "don.p7m"),  # SignedData OID, corrupt
        (b"\x30\x82\xff\xff\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02", "x.bin"),  # truncated
        (b"this is not a signature at all", "don.pdf.p7s"),  # garbage under a signature's name
        (b"\x00\x01\x02" * 50, "don.p7s"),
    ],
)
async def test_corrupt_cms_files_are_invalid(store, data, name):
    report = await verify_document(data, store, filename=name)
    assert outcome(report) == FORMAT_FAILURE, report.to_json()


def test_truncated_base64_cms_is_invalid(pki, store):
    blob = base64.encodebytes(sign_cms(b"content", pki.good, detached=False))
    report = verify_document_sync(blob[: len(blob) // 2], store, filename="don.txt")
    assert outcome(report) == FORMAT_FAILURE, report.to_json()


def test_a_base64_cms_is_read(pki, store):
    blob = base64.encodebytes(sign_cms(b"content", pki.good, detached=False))
    report = verify_document_sync(blob, store, filename="don.txt")
    assert report.verdict is Verdict.VALID, report.to_json()


# --- XML: trailing content after the root element ------------------------------------------------------------------


def test_xml_with_trailing_text_reports_its_signature_not_a_syntax_error(pki, store):
    from tests.documents import make_form, sign_xml

    signed = sign_xml(make_form(), pki.good)
    assert verify_document_sync(signed, store, filename="tokhai.xml").verdict is Verdict.VALID
    report = verify_document_sync(signed + b"\nGhi chu: da nop\n", store, filename="tokhai.xml")
    sig = only(report)
    assert report.verdict is Verdict.MODIFIED and sig.covers_whole_document is False, report.to_json()
    assert sig.indication.value == "TOTAL_PASSED"  # the signature itself is intact
    assert any("after the root element are not covered" in warning for warning in sig.warnings)


def test_unsigned_xml_with_trailing_text_is_unsigned(store):
    from tests.documents import make_form

    report = verify_document_sync(make_form() + b"\nextra text\n", store, filename="tokhai.xml")
    assert report.verdict is Verdict.UNSIGNED, report.to_json()


def test_a_known_non_pdf_type_is_not_searched_for_signature_markers(store):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64 + b"/ByteRange [0 1 2 3] /Type /Sig"
    assert verify_document_sync(png, store, filename="scan.png").verdict is Verdict.UNSIGNED
    assert verify_document_sync(png[8:], store, filename="scan.bin").verdict is Verdict.INVALID


@pytest.mark.parametrize("limit", [7, 100, 5000, 20000])
def test_the_sampled_hex_scan_finds_exactly_what_a_full_scan_finds(limit):
    import re

    full = re.compile(rb"<[0-9A-Fa-f\x00\t\n\x0c\r ]{%d}" % (limit + 1))
    hex_run = b"0123456789abcdefABCDEF \n\r\t\x00\x0c"
    filler = bytes(range(256)) * 200
    cases = []
    for length in (limit - 1, limit, limit + 1, limit + 2, 3 * limit):
        run = (hex_run * (length // len(hex_run) + 1))[:length]
        for offset in (0, 1, 4095, 4096, 4097, 12345):
            cases.append(filler[:offset] + b"<" + run + b">" + filler)
            cases.append(filler[:offset] + b"00 <" + run + b"<" + run + filler[:offset])
            cases.append(filler[:offset] + run + b"<" + run[: limit // 2] + b"x<" + run + filler)
    for data in cases:
        match = full.search(data)
        expected = match.start() if match and len(data) > limit + 2 else None
        assert oversized_hex_string(data, limit) == expected


# --- configured budgets ---------------------------------------------------------------------------------------------


def test_the_signing_section_defaults_are_the_validators_defaults():
    from gateway.config import SigningSection
    from signing.settings import TrustSettings

    assert SigningSection().trust_settings() == TrustSettings()


def test_budgets_configured_in_the_signing_section_bound_validation(signed, tmp_path):
    from gateway.config import SigningSection

    section = SigningSection(
        max_document_mib=1,
        max_signature_mib=0.25,
        max_detached_signature_mib=0.5,
        memory_budget_mib=100,
        time_budget_seconds=5,
        time_budget_seconds_per_mib=0,
    )
    settings = section.trust_settings()
    assert settings.budget == Budget(memory_bytes=100 * MiB, base_seconds=5, seconds_per_mib=0)
    assert (settings.limits.max_document_bytes, settings.limits.max_cms_signature_bytes) == (MiB, MiB // 2)
    store = TrustStore.load(settings)
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-1.7\n" + b"0" * MiB)
    refused = Document.from_path(big, limits=settings.limits)
    assert refused.refused is not None and "over the limit of 1 MiB" in refused.refused
    # In a worker process (the store's limits travel with its material): a 0.3 MiB /Contents is over 0.25 MiB.
    verifier = Verifier(store, threads=1, budget=settings.budget)
    try:
        report = verifier._verify_here(Document(with_contents(signed, int(0.6 * MiB)), "don.pdf"))
    finally:
        verifier.close()
    assert outcome(report) == FORMAT_FAILURE, report.to_json()
    assert "longer than the 0.5 MiB allowed" in only(report).warnings[0]
