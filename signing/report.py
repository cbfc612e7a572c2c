"""The signature report: validation as data, one shape for every format.

A :class:`SignatureReport` describes one document; each :class:`SignatureResult` one signature on it, with its
ETSI EN 319 102-1 indication and sub-indication. The clerk's one-word ``verdict`` and the bilingual ``message`` are
derived here, in one place, from those indications, so every format reaches the same verdict for the same reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Indication(StrEnum):
    TOTAL_PASSED = "TOTAL_PASSED"
    TOTAL_FAILED = "TOTAL_FAILED"
    INDETERMINATE = "INDETERMINATE"


class SubIndication(StrEnum):
    """ETSI EN 319 102-1 sub-indications (the ones a validator can produce)."""

    FORMAT_FAILURE = "FORMAT_FAILURE"
    HASH_FAILURE = "HASH_FAILURE"
    SIG_CRYPTO_FAILURE = "SIG_CRYPTO_FAILURE"
    REVOKED = "REVOKED"
    SIG_CONSTRAINTS_FAILURE = "SIG_CONSTRAINTS_FAILURE"
    CHAIN_CONSTRAINTS_FAILURE = "CHAIN_CONSTRAINTS_FAILURE"
    CERTIFICATE_CHAIN_GENERAL_FAILURE = "CERTIFICATE_CHAIN_GENERAL_FAILURE"
    CRYPTO_CONSTRAINTS_FAILURE = "CRYPTO_CONSTRAINTS_FAILURE"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    POLICY_PROCESSING_ERROR = "POLICY_PROCESSING_ERROR"
    SIGNATURE_POLICY_NOT_AVAILABLE = "SIGNATURE_POLICY_NOT_AVAILABLE"
    TIMESTAMP_ORDER_FAILURE = "TIMESTAMP_ORDER_FAILURE"
    NO_SIGNING_CERTIFICATE_FOUND = "NO_SIGNING_CERTIFICATE_FOUND"
    NO_CERTIFICATE_CHAIN_FOUND = "NO_CERTIFICATE_CHAIN_FOUND"
    REVOKED_NO_POE = "REVOKED_NO_POE"
    REVOKED_CA_NO_POE = "REVOKED_CA_NO_POE"
    OUT_OF_BOUNDS_NO_POE = "OUT_OF_BOUNDS_NO_POE"
    REVOCATION_OUT_OF_BOUNDS_NO_POE = "REVOCATION_OUT_OF_BOUNDS_NO_POE"
    OUT_OF_BOUNDS_NOT_REVOKED = "OUT_OF_BOUNDS_NOT_REVOKED"
    CRYPTO_CONSTRAINTS_FAILURE_NO_POE = "CRYPTO_CONSTRAINTS_FAILURE_NO_POE"
    NO_POE = "NO_POE"
    TRY_LATER = "TRY_LATER"
    SIGNED_DATA_NOT_FOUND = "SIGNED_DATA_NOT_FOUND"
    GENERIC = "GENERIC"


class Verdict(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNTRUSTED = "untrusted"
    REVOKED = "revoked"
    EXPIRED = "expired"
    MODIFIED = "modified"
    UNSIGNED = "unsigned"


class Format(StrEnum):
    PADES = "pades"
    XADES = "xades"
    XMLDSIG = "xmldsig"
    CADES = "cades"
    NONE = "none"


class Revocation(StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"
    NOT_CHECKED = "not_checked"


@dataclass
class Signer:
    common_name: str | None = None
    organization: str | None = None
    serial_number: str | None = None
    identifiers: dict[str, str] = field(default_factory=dict)


@dataclass
class SignatureResult:
    indication: Indication
    sub_indication: SubIndication | None = None
    signer: Signer = field(default_factory=Signer)
    issuer: str | None = None
    signing_time: datetime | None = None
    timestamp_time: datetime | None = None
    covers_whole_document: bool = True
    modified_after_signing: bool = False
    chain: list[str] = field(default_factory=list)
    revocation: Revocation = Revocation.NOT_CHECKED
    warnings: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        return signature_verdict(self)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["indication"] = str(self.indication)
        data["sub_indication"] = str(self.sub_indication) if self.sub_indication else None
        data["revocation"] = str(self.revocation)
        data["signing_time"] = _iso(self.signing_time)
        data["timestamp_time"] = _iso(self.timestamp_time)
        return data


@dataclass
class SignatureReport:
    file: str
    format: Format
    signatures: list[SignatureResult] = field(default_factory=list)
    #: Why the document as a whole failed before any signature could be examined (a parser error, say).
    error: str | None = None

    @property
    def signed(self) -> bool:
        return bool(self.signatures)

    @property
    def verdict(self) -> Verdict:
        if not self.signatures:
            return Verdict.UNSIGNED
        return max((s.verdict for s in self.signatures), key=_SEVERITY.__getitem__)

    @property
    def originals_check_required(self) -> bool:
        """Exempt from the originals check only if every signature is valid (and there is at least one)."""
        return self.verdict is not Verdict.VALID

    @property
    def message(self) -> dict[str, str]:
        return describe(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            # The signature format: a document without any signature has none, whatever its file type.
            "format": str(self.format) if self.signatures else str(Format.NONE),
            "signed": self.signed,
            "verdict": str(self.verdict),
            "originals_check_required": self.originals_check_required,
            "message": self.message,
            "signatures": [s.to_dict() for s in self.signatures],
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# The order in which one signature's problem outweighs another's on the same document.
_SEVERITY: dict[Verdict, int] = {
    Verdict.VALID: 0,
    Verdict.UNSIGNED: 1,
    Verdict.UNTRUSTED: 2,
    Verdict.EXPIRED: 3,
    Verdict.INVALID: 4,
    Verdict.REVOKED: 5,
    Verdict.MODIFIED: 6,
}

_REVOKED = {SubIndication.REVOKED, SubIndication.REVOKED_NO_POE, SubIndication.REVOKED_CA_NO_POE}
_EXPIRED = {
    SubIndication.EXPIRED,
    SubIndication.NOT_YET_VALID,
    SubIndication.OUT_OF_BOUNDS_NO_POE,
    SubIndication.OUT_OF_BOUNDS_NOT_REVOKED,
}
_INVALID = {
    SubIndication.FORMAT_FAILURE,
    SubIndication.SIG_CRYPTO_FAILURE,
    SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
    SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE,
}


def signature_verdict(sig: SignatureResult) -> Verdict:
    """The clerk's word for one signature, from its indication and the document-coverage facts."""
    if sig.sub_indication is SubIndication.HASH_FAILURE or sig.modified_after_signing or not sig.covers_whole_document:
        return Verdict.MODIFIED
    if sig.sub_indication in _REVOKED or sig.revocation is Revocation.REVOKED:
        return Verdict.REVOKED
    if sig.sub_indication in _INVALID:
        return Verdict.INVALID
    if sig.sub_indication in _EXPIRED:
        return Verdict.EXPIRED
    if sig.indication is Indication.TOTAL_FAILED:
        return Verdict.INVALID
    if sig.indication is Indication.INDETERMINATE:
        return Verdict.UNTRUSTED
    return Verdict.VALID


def format_failure(reason: str, **fields: Any) -> SignatureResult:
    """A signature the validator could not process: never valid, always needs the originals check."""
    result = SignatureResult(indication=Indication.INDETERMINATE, sub_indication=SubIndication.FORMAT_FAILURE, **fields)
    result.warnings.append(reason)
    return result


def failed_report(file: str, fmt: Format, reason: str) -> SignatureReport:
    """The report for a document whose signature structure could not be read at all."""
    return SignatureReport(file=file, format=fmt, signatures=[format_failure(reason)], error=reason)


# --- the clerk's sentence, in English and Vietnamese -------------------------------------------------------------

_VERDICT_TEXT: dict[Verdict, tuple[str, str]] = {
    Verdict.VALID: ("Valid signature", "Chữ ký số hợp lệ"),
    Verdict.INVALID: ("Invalid signature", "Chữ ký số không hợp lệ"),
    Verdict.UNTRUSTED: ("Signature not trusted", "Chữ ký số chưa được xác thực tin cậy"),
    Verdict.REVOKED: ("Signer's certificate revoked", "Chứng thư số của người ký đã bị thu hồi"),
    Verdict.EXPIRED: (
        "Signer's certificate not valid at signing time",
        "Chứng thư số của người ký không còn hiệu lực tại thời điểm ký",
    ),
    Verdict.MODIFIED: ("Document changed after signing", "Tài liệu đã bị thay đổi sau khi ký"),
    Verdict.UNSIGNED: ("No digital signature", "Tài liệu không có chữ ký số"),
}

_REASON_TEXT: dict[SubIndication, tuple[str, str]] = {
    SubIndication.FORMAT_FAILURE: (
        "the file or its signature could not be processed",
        "không xử lý được tệp hoặc chữ ký",
    ),
    SubIndication.HASH_FAILURE: (
        "the signed content does not match the signature",
        "nội dung đã ký không khớp với chữ ký",
    ),
    SubIndication.SIG_CRYPTO_FAILURE: (
        "the cryptographic signature does not verify",
        "giá trị chữ ký không đúng",
    ),
    SubIndication.CRYPTO_CONSTRAINTS_FAILURE: (
        "the algorithm or key size is below the national minimum",
        "thuật toán hoặc độ dài khóa thấp hơn mức tối thiểu quy định",
    ),
    SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE: (
        "the algorithm or key size is below the national minimum",
        "thuật toán hoặc độ dài khóa thấp hơn mức tối thiểu quy định",
    ),
    SubIndication.NO_CERTIFICATE_CHAIN_FOUND: (
        "the certificate does not chain to a trusted root",
        "chứng thư số không thuộc chuỗi tin cậy của tổ chức cung cấp dịch vụ gốc",
    ),
    SubIndication.CHAIN_CONSTRAINTS_FAILURE: (
        "the certificate does not allow signing",
        "chứng thư số không được phép dùng để ký",
    ),
    SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE: (
        "the certificate chain could not be validated",
        "không xác thực được chuỗi chứng thư số",
    ),
    SubIndication.TRY_LATER: (
        "the certificate's revocation status could not be established",
        "không xác định được trạng thái thu hồi của chứng thư số",
    ),
    SubIndication.REVOCATION_OUT_OF_BOUNDS_NO_POE: (
        "the certificate's revocation status could not be established",
        "không xác định được trạng thái thu hồi của chứng thư số",
    ),
    SubIndication.NO_SIGNING_CERTIFICATE_FOUND: (
        "the signer's certificate is missing",
        "không tìm thấy chứng thư số của người ký",
    ),
    SubIndication.OUT_OF_BOUNDS_NO_POE: (
        "the certificate had expired and no timestamp proves an earlier signing time",
        "chứng thư số đã hết hạn và không có dấu thời gian chứng minh thời điểm ký",
    ),
    SubIndication.NOT_YET_VALID: (
        "the certificate was not yet valid",
        "chứng thư số chưa có hiệu lực",
    ),
    SubIndication.SIG_CONSTRAINTS_FAILURE: (
        "the signature does not meet the validation policy",
        "chữ ký không đáp ứng chính sách kiểm tra",
    ),
}


def describe(report: SignatureReport) -> dict[str, str]:
    """The verdict and its reason in one sentence each: "Valid signature by X." / "Signature not trusted: the
    certificate does not chain to a trusted root (signer: X)." and the same in Vietnamese."""
    verdict = report.verdict
    en, vi = _VERDICT_TEXT[verdict]
    if not report.signatures:
        return {"en": f"{en}.", "vi": f"{vi}."}
    worst = max(report.signatures, key=lambda s: _SEVERITY[s.verdict])
    name = worst.signer.common_name
    if verdict is Verdict.VALID:
        count = len(report.signatures)
        if name:
            en, vi = f"{en} by {name}", f"{vi} của {name}"
        if count > 1:
            en, vi = f"{en} ({count} signatures, all valid)", f"{vi} ({count} chữ ký, tất cả hợp lệ)"
        return {"en": f"{en}.", "vi": f"{vi}."}
    reason = _REASON_TEXT.get(worst.sub_indication) if worst.sub_indication else None
    if verdict is Verdict.MODIFIED and worst.sub_indication is not SubIndication.HASH_FAILURE:
        reason = None if worst.modified_after_signing else _NOT_WHOLE_DOCUMENT
    if verdict is Verdict.REVOKED:
        reason = None
    if reason:
        en, vi = f"{en}: {reason[0]}", f"{vi}: {reason[1]}"
    if name:
        en, vi = f"{en} (signer: {name})", f"{vi} (người ký: {name})"
    return {"en": f"{en}.", "vi": f"{vi}."}


_NOT_WHOLE_DOCUMENT = ("the signature does not cover the whole document", "chữ ký không bao trùm toàn bộ tài liệu")
