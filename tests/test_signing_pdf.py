"""PAdES: signatures embedded in PDF files and their trust: signers, timestamps, revocation, certificates, algorithms.

What changed after the signatures were applied, and files that are not what they claim, are in
``tests/test_signing_pdf_tampering.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import BytesIO

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.validation import async_add_validation_info

from signing.pdf import validate_pdf
from signing.report import Format, Indication, Revocation, SubIndication, Verdict
from signing.trust import TrustStore
from tests.pki import issue_cert
from tests.reports import (
    VALID,
    only,
    outcome,
)
from tests.signing_pdf_support import *  # noqa: F403  (the fixtures: pytest finds them in this module)
from tests.signing_pdf_support import (
    HAS_FETCHERS,
    MODIFIED_LATER,
    name,
    sign,
    text_field,
    timestamper,
    update,
    validation_context,
)

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
