"""PAdES: signatures embedded in PDF files, their trust, and what changed after they were applied."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import random
import re
from datetime import UTC, datetime, timedelta
from io import BytesIO

import pytest
from asn1crypto import keys
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko.sign.validation import async_add_validation_info
from pyhanko_certvalidator import ValidationContext

from signing.pdf import validate_pdf
from signing.report import Format, Indication, Revocation, SubIndication, Verdict
from signing.trust import TrustStore, load_crls
from signing.verify import verify_document
from tests.pki import issue_cert
from tests.reports import (
    VALID,
    only,
    outcome,
)

name = generic.NameObject

HAS_FETCHERS = importlib.util.find_spec("signing.fetchers") is not None


# --- documents ------------------------------------------------------------------------------------------------------


def _stream(writer: PdfFileWriter, data: bytes, **entries: generic.PdfObject) -> generic.IndirectObject:
    stream = generic.StreamObject({name(k): v for k, v in entries.items()}, stream_data=data)
    return writer.add_object(stream)


def make_document() -> bytes:
    """A one-page application form: text drawn by the page, a form XObject with the applicant's statement, a
    fillable text field, and an unused stream (the kind of object a shadow attack hides in the signed revision)."""
    writer = PdfFileWriter()
    font = writer.add_object(
        generic.DictionaryObject(
            {name("/Type"): name("/Font"), name("/Subtype"): name("/Type1"), name("/BaseFont"): name("/Helvetica")}
        )
    )
    fonts = generic.DictionaryObject({name("/F1"): font})
    bbox = generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 400, 40)])
    statement = _stream(
        writer,
        b"BT /F1 12 Tf 0 10 Td (Toi xin cam doan: so tien 150000 dong) Tj ET",
        **{
            "/Type": name("/XObject"),
            "/Subtype": name("/Form"),
            "/BBox": bbox,
            "/Resources": generic.DictionaryObject({name("/Font"): fonts}),
        },
    )
    content = _stream(
        writer, b"BT /F1 18 Tf 72 720 Td (Don de nghi cap giay phep xay dung) Tj ET q 1 0 0 1 72 600 cm /Stmt Do Q"
    )
    # Present in the signed revision but drawn by nothing: a later update could swap it in.
    _stream(
        writer,
        b"BT /F1 18 Tf 72 720 Td (Don de nghi cap giay phep xay dung) Tj ET BT /F1 40 Tf 72 500 Td (DA DUYET) Tj ET",
    )
    page = writer.add_object(
        generic.DictionaryObject(
            {
                name("/Type"): name("/Page"),
                name("/MediaBox"): generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 595, 842)]),
                name("/Contents"): content,
                name("/Resources"): generic.DictionaryObject(
                    {name("/Font"): fonts, name("/XObject"): generic.DictionaryObject({name("/Stmt"): statement})}
                ),
            }
        )
    )
    field = writer.add_object(
        generic.DictionaryObject(
            {
                name("/FT"): name("/Tx"),
                name("/T"): generic.TextStringObject("HoTen"),
                name("/V"): generic.TextStringObject(""),
                name("/Type"): name("/Annot"),
                name("/Subtype"): name("/Widget"),
                name("/Rect"): generic.ArrayObject([generic.NumberObject(v) for v in (72, 500, 372, 520)]),
                name("/P"): page,
            }
        )
    )
    page.get_object()[name("/Annots")] = generic.ArrayObject([field])
    writer.insert_page(page.get_object())
    writer.root[name("/AcroForm")] = generic.DictionaryObject({name("/Fields"): generic.ArrayObject([field])})
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


async def sign(data: bytes, identity, *, field_name: str = "Sig1", timestamper=None, **meta) -> bytes:
    out = await signers.PdfSigner(
        signers.PdfSignatureMetadata(field_name=field_name, **meta),
        signer=identity.pyhanko_signer(),
        timestamper=timestamper,
    ).async_sign_pdf(IncrementalPdfFileWriter(BytesIO(data), strict=False))
    return out.getvalue()


def update(data: bytes, change) -> bytes:
    """An incremental update of ``data``: ``change(writer)`` edits, then the update is appended."""
    writer = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    change(writer)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def text_field(writer: IncrementalPdfFileWriter) -> generic.DictionaryObject:
    return writer.root["/AcroForm"]["/Fields"][0].get_object()


def page_of(writer: IncrementalPdfFileWriter) -> generic.DictionaryObject:
    return writer.root["/Pages"]["/Kids"][0].get_object()


def byte_range(data: bytes) -> tuple[int, int]:
    """The unsigned gap (the /Contents hex string) of the last signature in ``data``."""
    reader = PdfFileReader(BytesIO(data), strict=False)
    _, len1, start2, _ = reader.embedded_signatures[-1].byte_range
    return len1, start2


def _pkcs8(identity) -> keys.PrivateKeyInfo:
    der = identity.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return keys.PrivateKeyInfo.load(der)


def timestamper(pki, tsa=None, *, at: datetime | None = None) -> DummyTimeStamper:
    """An RFC 3161 time-stamping authority run in-process, with ``pki.tsa``'s key and certificate."""
    tsa = tsa or pki.tsa
    return DummyTimeStamper(
        tsa_cert=tsa.asn1_cert(), tsa_key=_pkcs8(tsa), certs_to_embed=[pki.ca.asn1_cert()], fixed_dt=at
    )


def validation_context(pki) -> ValidationContext:
    """What a signing application would use to embed revocation data: the test CRLs, nothing fetched."""
    return ValidationContext(
        trust_roots=[pki.root.asn1_cert()],
        other_certs=[pki.ca.asn1_cert()],
        crls=load_crls(pki.crl_paths),
        allow_fetching=False,
        revocation_mode="hard-fail",
    )


# --- fixtures -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(pki) -> TrustStore:
    return TrustStore(anchors=[pki.root.asn1_cert()], intermediates=[pki.ca.asn1_cert()], crls=load_crls(pki.crl_paths))


@pytest.fixture(scope="module")
def offline_without_crls(pki) -> TrustStore:
    return TrustStore(anchors=[pki.root.asn1_cert()], intermediates=[pki.ca.asn1_cert()])


@pytest.fixture(scope="module")
def document() -> bytes:
    return make_document()


@pytest.fixture(scope="module")
def signed(pki, document) -> bytes:
    return asyncio.run(sign(document, pki.good))


#: A disallowed change in a later revision: the signature fails format checking, as EU DSS reports it.
MODIFIED_LATER = (Verdict.MODIFIED, Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)


# --- valid signatures -----------------------------------------------------------------------------------------------


async def test_trusted_signer_is_valid(pki, store, signed):
    report = await validate_pdf(signed, store, file="don.pdf")
    sig = only(report)
    assert outcome(report) == VALID, report.to_json()
    assert report.format is Format.PADES and report.file == "don.pdf"
    assert report.originals_check_required is False
    assert sig.covers_whole_document is True and sig.modified_after_signing is False
    assert sig.revocation is Revocation.GOOD
    assert sig.signer.common_name == "Nguyễn Văn A"
    assert sig.signer.identifiers == {"tax_code": "0101234567", "citizen_id": "001099012345"}
    assert len(sig.chain) == 3
    assert sig.signing_time is not None and abs(sig.signing_time - datetime.now(UTC)) < timedelta(minutes=10)
    assert sig.timestamp_time is None  # no timestamp, and not penalised for it
    assert sig.warnings == ()


async def test_ecdsa_p256_signer_is_valid(pki, store, document):
    report = await validate_pdf(await sign(document, pki.good_ec), store)
    assert outcome(report) == VALID, report.to_json()


async def test_two_signers_are_both_reported_valid(pki, store, signed):
    twice = await sign(signed, pki.good_ec, field_name="Sig2")
    report = await validate_pdf(twice, store)
    assert len(report.signatures) == 2
    assert [s.signer.common_name for s in report.signatures] == ["Nguyễn Văn A", "Trần Thị Bình"]
    for sig in report.signatures:
        assert outcome(report, sig) == VALID, report.to_json()
        assert sig.covers_whole_document and not sig.modified_after_signing
    assert report.verdict is Verdict.VALID


async def test_form_field_changed_after_the_last_signature_is_modified(pki, store, signed):
    def fill(writer):
        field = text_field(writer)
        field[name("/V")] = generic.TextStringObject("9999999")
        writer.update_container(field)

    filled = update(signed, fill)
    report = await validate_pdf(filled, store)
    sig = only(report)
    assert outcome(report) == MODIFIED_LATER, report.to_json()
    assert sig.modified_after_signing and not sig.covers_whole_document
    assert any("'HoTen'" in warning and "after the last signature" in warning for warning in sig.warnings)


async def test_countersignature_covers_a_later_fill_in(pki, store, signed):
    def fill(writer):
        field = text_field(writer)
        field[name("/V")] = generic.TextStringObject("Đã tiếp nhận")
        writer.update_container(field)

    countersigned = await sign(update(signed, fill), pki.good_ec, field_name="CanBo")
    report = await validate_pdf(countersigned, store)
    assert [s.verdict for s in report.signatures] == [Verdict.VALID, Verdict.VALID], report.to_json()
    assert report.verdict is Verdict.VALID

    # A change after the countersignature is covered by nobody: both signatures say so.
    def refill(writer):
        field = text_field(writer)
        field[name("/V")] = generic.TextStringObject("Đã duyệt")
        writer.update_container(field)

    refilled = update(countersigned, refill)
    assert [s.verdict for s in (await validate_pdf(refilled, store)).signatures] == [Verdict.MODIFIED] * 2


async def test_bytes_after_the_last_eof_are_not_covered(pki, store, signed):
    report = await validate_pdf(signed + b"\n% Nguoi duyet: DA DUYET\n", store)
    sig = only(report)
    assert sig.covers_whole_document is False and report.verdict is Verdict.MODIFIED
    assert any("after the last %%EOF" in warning for warning in sig.warnings)
    # White space after %%EOF is harmless.
    assert outcome(await validate_pdf(signed + b"\r\n \n", store)) == VALID


async def test_form_fill_then_second_signature_keeps_the_first_valid(pki, store, signed):
    def fill(writer):
        field = text_field(writer)
        field[name("/V")] = generic.TextStringObject("Trần Thị Bình")
        writer.update_container(field)

    report = await validate_pdf(await sign(update(signed, fill), pki.good_ec, field_name="Sig2"), store)
    assert [s.verdict for s in report.signatures] == [Verdict.VALID, Verdict.VALID], report.to_json()


async def test_signature_timestamp_is_reported(pki, store, document):
    stamped = await sign(document, pki.good, timestamper=timestamper(pki))
    report = await validate_pdf(stamped, store)
    sig = only(report)
    assert outcome(report) == VALID, report.to_json()
    assert sig.timestamp_time is not None
    assert abs(sig.timestamp_time - datetime.now(UTC)) < timedelta(minutes=5)


async def test_timestamp_before_revocation_proves_the_signature_predates_it(pki, store, document, tmp_path):
    # A TSA certificate valid well before the revocation, and a timestamp taken half a day before it.
    tsa = issue_cert(
        pki.ca,
        "tsa_old",
        tmp_path,
        subject_cn="Test TSA (old)",
        not_before=pki.revoked_at - timedelta(days=10),
        ekus=[ExtendedKeyUsageOID.TIME_STAMPING],
        ekus_critical=True,
    )
    stamped = await sign(
        document, pki.revoked, timestamper=timestamper(pki, tsa, at=pki.revoked_at - timedelta(hours=12))
    )
    report = await validate_pdf(stamped, store)
    sig = only(report)
    assert outcome(report) == VALID, report.to_json()
    assert sig.timestamp_time is not None and sig.timestamp_time < pki.revoked_at


async def test_document_timestamp_after_signing_is_allowed(pki, store, signed):
    writer = IncrementalPdfFileWriter(BytesIO(signed), strict=False)
    out = await signers.PdfTimeStamper(timestamper(pki)).async_timestamp_pdf(writer, "sha256")
    report = await validate_pdf(out.getvalue(), store)
    sig = only(report)  # the document timestamp is not a signature by a person
    assert outcome(report) == VALID, report.to_json()
    assert sig.covers_whole_document and not sig.modified_after_signing


async def test_document_with_only_a_document_timestamp_is_unsigned(pki, store, document):
    writer = IncrementalPdfFileWriter(BytesIO(document), strict=False)
    out = await signers.PdfTimeStamper(timestamper(pki)).async_timestamp_pdf(writer, "sha256")
    report = await validate_pdf(out.getvalue(), store)
    assert report.verdict is Verdict.UNSIGNED and report.signatures == ()


# --- revocation -----------------------------------------------------------------------------------------------------


async def test_no_revocation_information_is_untrusted(pki, offline_without_crls, signed):
    report = await validate_pdf(signed, offline_without_crls)
    sig = only(report)
    assert outcome(report) == (Verdict.UNTRUSTED, Indication.INDETERMINATE, SubIndication.TRY_LATER), report.to_json()
    assert sig.revocation is Revocation.UNKNOWN
    assert report.originals_check_required


async def test_signer_whose_ca_publishes_no_revocation_is_untrusted(pki, store, document):
    with_ca = store.extended(certs=[pki.ca_norev.asn1_cert()])
    report = await validate_pdf(await sign(document, pki.no_revinfo), with_ca)
    assert outcome(report) == (Verdict.UNTRUSTED, Indication.INDETERMINATE, SubIndication.TRY_LATER), report.to_json()


async def test_no_revocation_information_even_with_a_timestamp_is_untrusted(pki, offline_without_crls, document):
    stamped = await sign(document, pki.good, timestamper=timestamper(pki))
    report = await validate_pdf(stamped, offline_without_crls)
    assert report.verdict is Verdict.UNTRUSTED, report.to_json()
    assert only(report).indication is Indication.INDETERMINATE
    assert only(report).revocation is not Revocation.GOOD


@pytest.mark.parametrize("subfilter", [fields.SigSeedSubFilter.PADES, fields.SigSeedSubFilter.ADOBE_PKCS7_DETACHED])
async def test_revocation_data_embedded_at_signing_is_used(pki, offline_without_crls, document, subfilter):
    # PAdES puts it in the Document Security Store, adbe.pkcs7.detached in the revocation-info-archival attribute.
    data = await sign(
        document,
        pki.good,
        subfilter=subfilter,
        embed_validation_info=True,
        validation_context=validation_context(pki),
    )
    report = await validate_pdf(data, offline_without_crls)
    assert outcome(report) == VALID, report.to_json()
    assert only(report).revocation is Revocation.GOOD


async def test_revocation_data_added_to_the_dss_later_is_used_and_allowed(pki, offline_without_crls, signed):
    reader = PdfFileReader(BytesIO(signed), strict=False)
    out = await async_add_validation_info(reader.embedded_signatures[0], validation_context(pki))
    report = await validate_pdf(out.getvalue(), offline_without_crls)
    sig = only(report)
    assert outcome(report) == VALID, report.to_json()
    assert sig.covers_whole_document and not sig.modified_after_signing


async def test_revoked_signer(pki, store, document):
    report = await validate_pdf(await sign(document, pki.revoked), store)
    sig = only(report)
    assert report.verdict is Verdict.REVOKED, report.to_json()
    assert sig.sub_indication in {SubIndication.REVOKED, SubIndication.REVOKED_NO_POE}
    assert sig.revocation is Revocation.REVOKED


@pytest.mark.skipif(not HAS_FETCHERS, reason="signing.fetchers (online revocation) not available yet")
async def test_ocsp_fetched_online(pki, pki_server, document):
    online = TrustStore(anchors=[pki.root.asn1_cert()], intermediates=[pki.ca.asn1_cert()], online_revocation=True)
    before = pki_server.hits.get("/ocsp", 0) if isinstance(pki_server.hits, dict) else None
    report = await validate_pdf(await sign(document, pki.good), online)
    sig = only(report)
    assert outcome(report) == VALID, report.to_json()
    assert sig.revocation is Revocation.GOOD
    if before is not None:
        assert pki_server.hits.get("/ocsp", 0) > before
    revoked = await validate_pdf(await sign(document, pki.revoked), online)
    assert revoked.verdict is Verdict.REVOKED, revoked.to_json()


# --- certificates and algorithms ------------------------------------------------------------------------------------


async def test_expired_signer(pki, store, document):
    report = await validate_pdf(await sign(document, pki.expired), store)
    assert outcome(report) == (Verdict.EXPIRED, Indication.INDETERMINATE, SubIndication.OUT_OF_BOUNDS_NO_POE)


async def test_foreign_root_is_untrusted(pki, store, document):
    report = await validate_pdf(await sign(document, pki.foreign), store)
    assert outcome(report) == (Verdict.UNTRUSTED, Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)


async def test_rsa_1024_signer_is_refused(pki, store, document):
    report = await validate_pdf(await sign(document, pki.weak_rsa), store)
    assert outcome(report) == (Verdict.INVALID, Indication.TOTAL_FAILED, SubIndication.CRYPTO_CONSTRAINTS_FAILURE)


async def test_small_ec_key_is_refused(pki, store, document):
    report = await validate_pdf(await sign(document, pki.weak_ec), store)
    assert outcome(report) == (Verdict.INVALID, Indication.TOTAL_FAILED, SubIndication.CRYPTO_CONSTRAINTS_FAILURE)


async def test_sha1_digest_is_refused(pki, store, document):
    report = await validate_pdf(await sign(document, pki.good, md_algorithm="sha1"), store)
    assert outcome(report) == (Verdict.INVALID, Indication.TOTAL_FAILED, SubIndication.CRYPTO_CONSTRAINTS_FAILURE)


async def test_signer_without_signing_key_usage(pki, store, document):
    report = await validate_pdf(await sign(document, pki.no_signing_usage), store)
    assert outcome(report) == (Verdict.UNTRUSTED, Indication.INDETERMINATE, SubIndication.CHAIN_CONSTRAINTS_FAILURE)


async def test_one_bad_signature_spoils_the_document(pki, store, signed):
    report = await validate_pdf(await sign(signed, pki.foreign, field_name="Sig2"), store)
    assert [s.verdict for s in report.signatures] == [Verdict.VALID, Verdict.UNTRUSTED]
    assert report.verdict is Verdict.UNTRUSTED and report.originals_check_required


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
