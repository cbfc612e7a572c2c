"""The report's verdict and messages are derived from indications, the same way for every format."""

import pytest

from signing.report import (
    Format,
    Indication,
    Revocation,
    SignatureReport,
    SignatureResult,
    Signer,
    SubIndication,
    Verdict,
    failed_report,
    signature_verdict,
)


def sig(indication, sub=None, **kw) -> SignatureResult:
    return SignatureResult(indication=indication, sub_indication=sub, signer=Signer(common_name="Trần Thị B"), **kw)


@pytest.mark.parametrize(
    ("indication", "sub", "verdict"),
    [
        (Indication.TOTAL_PASSED, None, Verdict.VALID),
        (Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE, Verdict.MODIFIED),
        (Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE, Verdict.INVALID),
        (Indication.TOTAL_FAILED, SubIndication.CRYPTO_CONSTRAINTS_FAILURE, Verdict.INVALID),
        (Indication.TOTAL_FAILED, SubIndication.REVOKED, Verdict.REVOKED),
        (Indication.INDETERMINATE, SubIndication.REVOKED_NO_POE, Verdict.REVOKED),
        (Indication.INDETERMINATE, SubIndication.REVOKED_CA_NO_POE, Verdict.REVOKED),
        (Indication.INDETERMINATE, SubIndication.OUT_OF_BOUNDS_NO_POE, Verdict.EXPIRED),
        (Indication.INDETERMINATE, SubIndication.NOT_YET_VALID, Verdict.EXPIRED),
        (Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND, Verdict.UNTRUSTED),
        (Indication.INDETERMINATE, SubIndication.TRY_LATER, Verdict.UNTRUSTED),
        (Indication.INDETERMINATE, SubIndication.CHAIN_CONSTRAINTS_FAILURE, Verdict.UNTRUSTED),
        (Indication.INDETERMINATE, SubIndication.FORMAT_FAILURE, Verdict.INVALID),
    ],
)
def test_verdict_follows_indication(indication, sub, verdict):
    assert signature_verdict(sig(indication, sub)) is verdict


def test_passed_but_changed_after_signing_is_modified():
    assert sig(Indication.TOTAL_PASSED, modified_after_signing=True).verdict is Verdict.MODIFIED
    assert sig(Indication.TOTAL_PASSED, covers_whole_document=False).verdict is Verdict.MODIFIED


def test_revoked_status_outweighs_a_passed_indication():
    assert sig(Indication.TOTAL_PASSED, revocation=Revocation.REVOKED).verdict is Verdict.REVOKED


def test_document_is_exempt_only_if_every_signature_is_valid():
    good = sig(Indication.TOTAL_PASSED)
    bad = sig(Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)
    both = SignatureReport(file="don.pdf", format=Format.PADES, signatures=[good, bad])
    assert both.verdict is Verdict.UNTRUSTED
    assert both.originals_check_required is True
    only_good = SignatureReport(file="don.pdf", format=Format.PADES, signatures=[good, good])
    assert only_good.verdict is Verdict.VALID
    assert only_good.originals_check_required is False
    assert "2" in only_good.message["en"] and "2" in only_good.message["vi"]


def test_unsigned_document_needs_the_originals_check():
    report = SignatureReport(file="scan.png", format=Format.NONE)
    assert report.verdict is Verdict.UNSIGNED
    assert report.signed is False
    assert report.originals_check_required is True


def test_failed_report_is_never_valid_and_has_the_contract_shape():
    report = failed_report("x.pdf", Format.PADES, "boom")
    data = report.to_dict()
    assert data["verdict"] == "invalid"
    assert data["originals_check_required"] is True
    assert data["signatures"][0]["indication"] == "INDETERMINATE"
    assert data["signatures"][0]["sub_indication"] == "FORMAT_FAILURE"
    assert set(data) == {"file", "format", "signed", "verdict", "originals_check_required", "message", "signatures"}
    assert set(data["signatures"][0]) == {
        "indication",
        "sub_indication",
        "signer",
        "issuer",
        "signing_time",
        "timestamp_time",
        "covers_whole_document",
        "modified_after_signing",
        "chain",
        "revocation",
        "warnings",
    }
    assert set(data["signatures"][0]["signer"]) == {"common_name", "organization", "serial_number", "identifiers"}


def test_messages_name_the_signer_and_reason_in_both_languages():
    report = SignatureReport(
        file="don.pdf",
        format=Format.PADES,
        signatures=[sig(Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)],
    )
    assert report.message["en"] == (
        "Signature not trusted: the certificate does not chain to a trusted root (signer: Trần Thị B)."
    )
    assert report.message["vi"].startswith("Chữ ký số chưa được xác thực tin cậy: ")
    assert report.message["vi"].endswith("(người ký: Trần Thị B).")


def test_a_document_without_signatures_has_no_signature_format():
    assert SignatureReport(file="ban-sao.pdf", format=Format.PADES).to_dict()["format"] == "none"
