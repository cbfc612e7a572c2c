"""The report's verdict and messages are derived from indications, the same way for every format; reports are
frozen and their JSON form round-trips."""

import dataclasses
import json
import pickle
from datetime import UTC, datetime

import pytest

from signing.report import (
    Format,
    Indication,
    ReportFormatError,
    Revocation,
    SignatureReport,
    SignatureResult,
    Signer,
    SubIndication,
    Verdict,
    failed_report,
    verdict_for,
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
    assert verdict_for(indication, sub) is verdict
    assert sig(indication, sub).verdict is verdict


def test_passed_but_changed_after_signing_is_modified():
    assert sig(Indication.TOTAL_PASSED, modified_after_signing=True).verdict is Verdict.MODIFIED
    assert sig(Indication.TOTAL_PASSED, covers_whole_document=False).verdict is Verdict.MODIFIED


def test_revoked_status_outweighs_a_passed_indication():
    assert sig(Indication.TOTAL_PASSED, revocation=Revocation.REVOKED).verdict is Verdict.REVOKED


def test_document_is_exempt_only_if_every_signature_is_valid():
    good = sig(Indication.TOTAL_PASSED)
    bad = sig(Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)
    both = SignatureReport(file="don.pdf", format=Format.PADES, signatures=(good, bad))
    assert both.verdict is Verdict.UNTRUSTED
    assert both.originals_check_required is True
    only_good = SignatureReport(file="don.pdf", format=Format.PADES, signatures=(good, good))
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
    data = report.to_json()
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
        signatures=(sig(Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND),),
    )
    assert report.message["en"] == (
        "Signature not trusted: the certificate does not chain to a trusted root (signer: Trần Thị B)."
    )
    assert report.message["vi"].startswith("Chữ ký số chưa được xác thực tin cậy: ")
    assert report.message["vi"].endswith("(người ký: Trần Thị B).")


def test_a_document_without_signatures_has_no_signature_format():
    assert SignatureReport(file="ban-sao.pdf", format=Format.PADES).to_json()["format"] == "none"


def full_report() -> SignatureReport:
    signer = Signer(
        common_name="Nguyễn Văn A",
        organization="UBND tỉnh",
        serial_number="CCCD:001099012345",
        identifiers={"tax_code": "0101234567", "citizen_id": "001099012345"},
    )
    good = SignatureResult(
        indication=Indication.TOTAL_PASSED,
        signer=signer,
        issuer="Viettel-CA",
        signing_time=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
        timestamp_time=datetime(2025, 3, 4, 5, 6, 8, 123456, tzinfo=UTC),
        chain=("Nguyễn Văn A", "Viettel-CA", "Root CA"),
        revocation=Revocation.GOOD,
    )
    changed = dataclasses.replace(
        good, covers_whole_document=False, modified_after_signing=True, warnings=("document modified after signing",)
    )
    return SignatureReport(file="don.pdf", format=Format.PADES, signatures=(good, changed))


def test_reports_are_frozen_and_changed_only_by_replace():
    report = full_report()
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.file = "other.pdf"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.signatures[0].indication = Indication.TOTAL_FAILED  # type: ignore[misc]
    with pytest.raises(TypeError):
        report.signatures[0].signer.identifiers["tax_code"] = "x"  # type: ignore[index]
    assert isinstance(report.signatures, tuple) and isinstance(report.signatures[0].chain, tuple)
    renamed = dataclasses.replace(report, file="ban-sao.pdf")
    assert (renamed.file, report.file) == ("ban-sao.pdf", "don.pdf")


def test_lists_given_are_kept_as_tuples():
    result = SignatureResult(indication=Indication.TOTAL_PASSED, chain=["a", "b"], warnings=["w"])
    report = SignatureReport(file="x", format=Format.CADES, signatures=[result])
    assert report.signatures == (result,) and result.chain == ("a", "b") and result.warnings == ("w",)


def test_derived_fields_follow_the_signatures():
    report = full_report()
    assert report.verdict is Verdict.MODIFIED and report.signed and report.originals_check_required
    valid_only = dataclasses.replace(report, signatures=report.signatures[:1])
    assert valid_only.verdict is Verdict.VALID and not valid_only.originals_check_required
    assert valid_only.message["en"] == "Valid signature by Nguyễn Văn A."


def test_json_round_trips():
    for report in (full_report(), failed_report("x.xml", Format.XMLDSIG, "boom"), SignatureReport("a", Format.NONE)):
        data = report.to_json()
        assert SignatureReport.from_json(data).to_json() == data
        assert SignatureReport.from_json(json.loads(json.dumps(data))).to_json() == data
    assert SignatureReport.from_json(full_report().to_json()) == full_report()


def test_json_has_the_contract_shape():
    data = full_report().to_json()
    assert list(data) == ["file", "format", "signed", "verdict", "originals_check_required", "message", "signatures"]
    first = data["signatures"][0]
    assert first["signing_time"] == "2025-03-04T05:06:07+00:00"
    assert first["chain"] == ["Nguyễn Văn A", "Viettel-CA", "Root CA"] and first["warnings"] == []
    assert first["signer"]["identifiers"] == {"tax_code": "0101234567", "citizen_id": "001099012345"}
    assert first["revocation"] == "good" and first["sub_indication"] is None


@pytest.mark.parametrize(
    "data",
    [{}, [], {"file": "x"}, {"file": "x", "format": "docx"}, {"file": "x", "format": "pades", "signatures": [{}]}],
)
def test_from_json_refuses_what_is_not_a_report(data):
    with pytest.raises(ReportFormatError):
        SignatureReport.from_json(data)


def test_reports_pickle_for_process_pools():
    report = full_report()
    assert pickle.loads(pickle.dumps(report)) == report
    assert hash(report) == hash(pickle.loads(pickle.dumps(report)))
