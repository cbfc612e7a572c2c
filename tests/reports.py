"""Assertion helpers for signature reports, shared by the format tests."""

from signing.report import Indication, SignatureReport, SignatureResult, SubIndication, Verdict


def only(report: SignatureReport) -> SignatureResult:
    """The report's single signature (fails, showing the report, when there is not exactly one)."""
    assert len(report.signatures) == 1, report.to_json()
    return report.signatures[0]


def outcome(report: SignatureReport, sig: SignatureResult | None = None) -> tuple:
    """(verdict, indication, sub-indication): what every case asserts."""
    sig = sig or only(report)
    return report.verdict, sig.indication, sig.sub_indication


VALID = (Verdict.VALID, Indication.TOTAL_PASSED, None)
FORMAT_FAILURE = (Verdict.INVALID, Indication.INDETERMINATE, SubIndication.FORMAT_FAILURE)
WEAK_CRYPTO = (Verdict.INVALID, Indication.TOTAL_FAILED, SubIndication.CRYPTO_CONSTRAINTS_FAILURE)
NO_CHAIN = (Verdict.UNTRUSTED, Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)
NO_SIGNING_USAGE = (Verdict.UNTRUSTED, Indication.INDETERMINATE, SubIndication.CHAIN_CONSTRAINTS_FAILURE)
REVOCATION_UNKNOWN = (Verdict.UNTRUSTED, Indication.INDETERMINATE, SubIndication.TRY_LATER)
EXPIRED = (Verdict.EXPIRED, Indication.INDETERMINATE, SubIndication.OUT_OF_BOUNDS_NO_POE)
HASH_FAILURE = (Verdict.MODIFIED, Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)
SIG_CRYPTO = (Verdict.INVALID, Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE)
