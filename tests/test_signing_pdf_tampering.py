"""PAdES: what changed in PDF files after their signatures were applied, and files that are not what they claim."""

from __future__ import annotations

import hashlib
import random
import re
from io import BytesIO

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields

from signing.pdf import validate_pdf
from signing.report import Format, Indication, SubIndication, Verdict
from signing.verify import verify_document
from tests.reports import (
    VALID,
    only,
    outcome,
)
from tests.signing_pdf_support import *  # noqa: F403  (the fixtures: pytest finds them in this module)
from tests.signing_pdf_support import (
    MODIFIED_LATER,
    byte_range,
    name,
    page_of,
    sign,
    text_field,
    update,
)

# --- modification after signing -------------------------------------------------------------------------------------


async def test_tampered_signed_bytes(store, signed):
    at = signed.index(b"Don de nghi")
    tampered = signed[:at] + b"Dan" + signed[at + 3 :]
    report = await validate_pdf(tampered, store)
    assert outcome(report) == (Verdict.MODIFIED, Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)
    assert report.originals_check_required


async def test_page_content_changed_in_a_later_update(store, signed):
    def rewrite(writer):
        content = page_of(writer).raw_get("/Contents")
        stream = content.get_object()
        stream._data = b"BT /F1 18 Tf 72 720 Td (Don de nghi cap giay phep xay dung - DA DUYET) Tj ET"
        stream._encoded_data = None
        writer.mark_update(content)

    report = await validate_pdf(update(signed, rewrite), store)
    sig = only(report)
    assert outcome(report) == MODIFIED_LATER, report.to_json()
    assert sig.modified_after_signing is True and sig.covers_whole_document is False
    assert any(w.startswith("document modified after signing") for w in sig.warnings)


async def test_shadow_swap_of_the_page_content_to_a_hidden_stream(store, signed):
    # The signed revision already contains the attacker's stream (drawn by nothing); the update only re-points the
    # page at it: no new content object, only a swapped reference.
    def swap(writer):
        page = page_of(writer)
        current = page.raw_get("/Contents").idnum
        page[name("/Contents")] = generic.IndirectObject(current + 1, 0, writer)
        writer.update_container(page)

    shadowed = update(signed, swap)
    reader = PdfFileReader(BytesIO(shadowed), strict=False)
    assert b"DA DUYET" in reader.root["/Pages"]["/Kids"][0]["/Contents"].data  # the attack works on screen
    report = await validate_pdf(shadowed, store)
    assert outcome(report) == MODIFIED_LATER, report.to_json()
    assert only(report).modified_after_signing


async def test_shadow_replacement_of_an_xobject(store, signed):
    # The update redefines the statement XObject's object number with different text (same dictionary).
    def replace(writer):
        ref = page_of(writer)["/Resources"]["/XObject"].raw_get("/Stmt")
        stream = ref.get_object()
        stream._data = b"BT /F1 12 Tf 0 10 Td (Toi xin cam doan: so tien 1500000000 dong) Tj ET"
        stream._encoded_data = None
        writer.mark_update(ref)

    report = await validate_pdf(update(signed, replace), store)
    assert outcome(report) == MODIFIED_LATER, report.to_json()
    assert only(report).modified_after_signing


async def test_new_page_added_after_signing(store, signed):
    def add_page(writer):
        writer.insert_page(
            generic.DictionaryObject(
                {
                    name("/Type"): name("/Page"),
                    name("/MediaBox"): generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 595, 842)]),
                    name("/Contents"): writer.add_object(generic.StreamObject(stream_data=b"BT ET")),
                }
            )
        )

    report = await validate_pdf(update(signed, add_page), store)
    assert outcome(report) == MODIFIED_LATER, report.to_json()


async def test_certification_forbidding_changes_catches_a_form_fill(pki, store, document):
    certified = await sign(document, pki.good, certify=True, docmdp_permissions=fields.MDPPerm.NO_CHANGES)

    def fill(writer):
        field = text_field(writer)
        field[name("/V")] = generic.TextStringObject("Nguyễn Văn A")
        writer.update_container(field)

    assert (await validate_pdf(certified, store)).verdict is Verdict.VALID
    report = await validate_pdf(update(certified, fill), store)
    assert outcome(report) == MODIFIED_LATER, report.to_json()
    assert only(report).modified_after_signing


async def test_earlier_signature_modified_while_later_one_is_intact(pki, store, signed):
    def rewrite(writer):
        content = page_of(writer).raw_get("/Contents")
        stream = content.get_object()
        stream._data = b"BT /F1 18 Tf 72 720 Td (Noi dung khac) Tj ET"
        stream._encoded_data = None
        writer.mark_update(content)

    # The second signer signs the altered document: their signature is fine, the first one is not.
    report = await validate_pdf(await sign(update(signed, rewrite), pki.good_ec, field_name="Sig2"), store)
    first, second = report.signatures
    assert first.verdict is Verdict.MODIFIED and second.verdict is Verdict.VALID
    assert report.verdict is Verdict.MODIFIED


async def test_byte_range_that_leaves_part_of_the_revision_unsigned(pki, store, signed):
    # Re-sign the file over a /ByteRange that stops short of the end of the signed revision (its trailer and
    # startxref): the signature verifies, but what it leaves out was never signed.
    gap_start, gap_end = byte_range(signed)
    short = len(signed) - gap_end - 60
    field = re.search(rb"/ByteRange \[[^\]]*\]", signed)
    assert field is not None
    values = f"/ByteRange [0 {gap_start} {gap_end} {short}".encode()
    data = bytearray(signed)
    data[field.start() : field.end()] = values.ljust(field.end() - field.start() - 1) + b"]"
    digest = hashlib.sha256(bytes(data[:gap_start]) + bytes(data[gap_end : gap_end + short])).digest()
    cms_der = (await pki.good.pyhanko_signer().async_sign(digest, "sha256", use_pades=True)).dump()
    hex_value = cms_der.hex().encode()
    data[gap_start:gap_end] = b"<" + hex_value.ljust(gap_end - gap_start - 2, b"0") + b">"
    report = await validate_pdf(bytes(data), store)
    sig = only(report)
    assert (sig.indication, sig.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
    assert sig.covers_whole_document is False  # ...but they are not the whole revision
    assert any("byte range does not cover" in w for w in sig.warnings)
    assert report.verdict is Verdict.MODIFIED, report.to_json()


# --- files that are not what they claim -----------------------------------------------------------------------------


async def test_unsigned_pdf(store, document):
    report = await validate_pdf(document, store)
    assert report.verdict is Verdict.UNSIGNED and report.signatures == ()
    assert report.originals_check_required


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, world", b"%PDF-1.7\n", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n", b"\x00" * 512],
)
async def test_not_a_pdf_is_a_format_failure(store, data):
    report = await validate_pdf(data, store)
    assert outcome(report) == (Verdict.INVALID, Indication.INDETERMINATE, SubIndication.FORMAT_FAILURE)
    assert report.error


async def test_truncated_signed_pdf(store, signed):
    for cut in (len(signed) // 4, len(signed) // 2, len(signed) - 40):
        report = await validate_pdf(signed[:cut], store)
        assert report.verdict not in (Verdict.VALID, Verdict.UNSIGNED), (cut, report.to_json())


async def test_broken_xref(store, signed):
    at = signed.rindex(b"startxref")
    broken = signed[:at] + b"startxref\n999999\n%%EOF\n"
    report = await validate_pdf(broken, store)
    assert report.verdict is not Verdict.VALID


async def test_signature_contents_that_are_not_pkcs7(pki, store, document):
    data = await sign(document, pki.good, field_name="Sig1")
    start, end = byte_range(data)
    garbage = b"<" + b"DEADBEEF" * ((end - start - 2) // 8) + b"0" * ((end - start - 2) % 8) + b">"
    forged = data[:start] + garbage + data[end:]
    report = await validate_pdf(forged, store)
    assert outcome(report) == (Verdict.INVALID, Indication.INDETERMINATE, SubIndication.FORMAT_FAILURE)


async def test_unreadable_signature_does_not_hide_a_readable_one(pki, store, signed):
    twice = await sign(signed, pki.good_ec, field_name="Sig2")
    start, end = byte_range(twice)
    forged = twice[:start] + b"<" + b"00" * ((end - start - 2) // 2) + b">" + twice[end:]
    report = await validate_pdf(forged, store)
    verdicts = sorted(s.verdict for s in report.signatures)
    assert verdicts == sorted([Verdict.VALID, Verdict.INVALID]), report.to_json()
    assert report.verdict is Verdict.INVALID


async def test_verify_document_dispatches_pdf(store, signed):
    report = await verify_document(signed, store, filename="don.pdf")
    assert report.format is Format.PADES and report.verdict is Verdict.VALID


async def test_fuzzed_signed_pdf_is_never_valid_where_signed_bytes_changed(store, signed):
    rng = random.Random(20261123)
    gap_start, gap_end = byte_range(signed)
    offsets = sorted(rng.sample(range(len(signed)), 120))
    for round_, offset in enumerate(offsets):
        mutated = bytearray(signed)
        touched = [offset]
        mutated[offset] ^= 1 << rng.randrange(8)
        if round_ % 4 == 0:  # every fourth round, a few more flips elsewhere
            for _ in range(3):
                extra = rng.randrange(len(signed))
                mutated[extra] = rng.randrange(256)
                touched.append(extra)
        if bytes(mutated) == signed:
            continue
        report = await validate_pdf(bytes(mutated), store)  # must not raise
        if report.verdict is Verdict.VALID:
            # Only bytes outside the signed range (the /Contents hex string: padding, unsigned attributes) may
            # change without effect.
            assert all(gap_start <= t < gap_end for t in touched), (touched, report.to_json())


async def test_malformed_revocation_data_in_the_dss_is_ignored(store, signed):
    def add_dss(writer):
        junk = writer.add_object(generic.StreamObject(stream_data=b"\x30\x82\xff\xff not a CRL"))
        writer.root[name("/DSS")] = generic.DictionaryObject({name("/CRLs"): generic.ArrayObject([junk])})
        writer.update_root()

    report = await validate_pdf(update(signed, add_dss), store)
    sig = only(report)
    assert outcome(report) == VALID, report.to_json()
    assert any("Document Security Store" in w for w in sig.warnings)
