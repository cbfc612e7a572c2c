"""The signature report: validation as data, one immutable shape for every format.

A :class:`SignatureReport` describes one document; each :class:`SignatureResult` one signature on it, with its
ETSI EN 319 102-1 indication and sub-indication. Both are frozen: a validator builds a result once and changes it
only through :func:`dataclasses.replace`. The clerk's one-word ``verdict`` (:func:`verdict_for`), the exemption from
the originals check and the bilingual ``message`` are derived from those fields, never stored beside them, and
:meth:`SignatureReport.to_json` / :meth:`SignatureReport.from_json` are the report's one serialised form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from .reasons import one_line


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


# --- the verdict ----------------------------------------------------------------------------------------------------

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


def verdict_for(
    indication: Indication,
    sub_indication: SubIndication | None = None,
    *,
    revocation: Revocation = Revocation.NOT_CHECKED,
    covers_whole_document: bool = True,
    modified_after_signing: bool = False,
) -> Verdict:
    """The clerk's word for one signature, from its indication, sub-indication and the document-coverage facts."""
    if sub_indication is SubIndication.HASH_FAILURE or modified_after_signing or not covers_whole_document:
        return Verdict.MODIFIED
    if sub_indication in _REVOKED or revocation is Revocation.REVOKED:
        return Verdict.REVOKED
    if sub_indication in _INVALID:
        return Verdict.INVALID
    if sub_indication in _EXPIRED:
        return Verdict.EXPIRED
    if indication is Indication.TOTAL_FAILED:
        return Verdict.INVALID
    if indication is Indication.INDETERMINATE:
        return Verdict.UNTRUSTED
    return Verdict.VALID


# --- the report types -----------------------------------------------------------------------------------------------


class ReportFormatError(ValueError):
    """A stored or received document is not a signature report (:meth:`SignatureReport.from_json`)."""


def _frozen_map(values: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class Signer:
    """Who signed, as the signer's certificate says; ``identifiers`` is a read-only mapping."""

    common_name: str | None = None
    organization: str | None = None
    serial_number: str | None = None
    identifiers: Mapping[str, str] = field(default_factory=_frozen_map)

    def __post_init__(self) -> None:
        object.__setattr__(self, "identifiers", _frozen_map(self.identifiers))

    def __hash__(self) -> int:
        return hash((self.common_name, self.organization, self.serial_number, tuple(sorted(self.identifiers.items()))))

    def __reduce__(self) -> tuple[Any, ...]:
        # A read-only mapping cannot be pickled as it is (reports cross process boundaries in batches).
        return (Signer, (self.common_name, self.organization, self.serial_number, dict(self.identifiers)))

    def to_json(self) -> dict[str, Any]:
        return {
            "common_name": self.common_name,
            "organization": self.organization,
            "serial_number": self.serial_number,
            "identifiers": dict(self.identifiers),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signer:
        return cls(
            common_name=data.get("common_name"),
            organization=data.get("organization"),
            serial_number=data.get("serial_number"),
            identifiers={str(key): str(value) for key, value in (data.get("identifiers") or {}).items()},
        )


@dataclass(frozen=True)
class SignatureResult:
    """One signature: what the validator found. Sequences are tuples; a list given is stored as a tuple."""

    indication: Indication
    sub_indication: SubIndication | None = None
    signer: Signer = field(default_factory=Signer)
    issuer: str | None = None
    signing_time: datetime | None = None
    timestamp_time: datetime | None = None
    covers_whole_document: bool = True
    modified_after_signing: bool = False
    chain: tuple[str, ...] = ()
    revocation: Revocation = Revocation.NOT_CHECKED
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "chain", tuple(self.chain))
        # Every warning a single line (a parser's multi-line message included): reports are read line by line.
        object.__setattr__(self, "warnings", tuple(one_line(warning) for warning in self.warnings))

    @property
    def verdict(self) -> Verdict:
        return verdict_for(
            self.indication,
            self.sub_indication,
            revocation=self.revocation,
            covers_whole_document=self.covers_whole_document,
            modified_after_signing=self.modified_after_signing,
        )

    def with_warnings(self, *warnings: str) -> SignatureResult:
        """This result with ``warnings`` added after its own."""
        return replace(self, warnings=(*self.warnings, *warnings)) if warnings else self

    def to_json(self) -> dict[str, Any]:
        return {
            "indication": str(self.indication),
            "sub_indication": str(self.sub_indication) if self.sub_indication else None,
            "signer": self.signer.to_json(),
            "issuer": self.issuer,
            "signing_time": _iso(self.signing_time),
            "timestamp_time": _iso(self.timestamp_time),
            "covers_whole_document": self.covers_whole_document,
            "modified_after_signing": self.modified_after_signing,
            "chain": list(self.chain),
            "revocation": str(self.revocation),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SignatureResult:
        sub = data.get("sub_indication")
        return cls(
            indication=Indication(data["indication"]),
            sub_indication=SubIndication(sub) if sub else None,
            signer=Signer.from_json(data.get("signer") or {}),
            issuer=data.get("issuer"),
            signing_time=_from_iso(data.get("signing_time")),
            timestamp_time=_from_iso(data.get("timestamp_time")),
            covers_whole_document=bool(data.get("covers_whole_document", True)),
            modified_after_signing=bool(data.get("modified_after_signing", False)),
            chain=tuple(str(label) for label in data.get("chain") or ()),
            revocation=Revocation(data.get("revocation") or Revocation.NOT_CHECKED),
            warnings=tuple(str(warning) for warning in data.get("warnings") or ()),
        )


@dataclass(frozen=True)
class SignatureReport:
    """One document: its name, the signature format its validator read, and one result per signature.

    ``error`` says why the document as a whole failed before any signature could be examined (a parser error, say);
    it is a diagnostic for logs and tests, not part of the JSON shape (``docs/signature-report.md``).
    """

    file: str
    format: Format
    signatures: tuple[SignatureResult, ...] = ()
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "signatures", tuple(self.signatures))

    @property
    def signed(self) -> bool:
        return bool(self.signatures)

    @property
    def signature_format(self) -> Format:
        """The signature format: a document without any signature has none, whatever its file type."""
        return self.format if self.signatures else Format.NONE

    @property
    def verdict(self) -> Verdict:
        worst = _worst(self.signatures)
        return worst.verdict if worst is not None else Verdict.UNSIGNED

    @property
    def originals_check_required(self) -> bool:
        """Exempt from the originals check only if every signature is valid (and there is at least one)."""
        return self.verdict is not Verdict.VALID

    @property
    def message(self) -> dict[str, str]:
        """The verdict and its reason in one sentence, ``{"en": …, "vi": …}``."""
        return describe(self)

    def to_json(self) -> dict[str, Any]:
        """The report's public JSON shape (the API answer, the CLI's ``--json``, the stored verification)."""
        return {
            "file": self.file,
            "format": str(self.signature_format),
            "signed": self.signed,
            "verdict": str(self.verdict),
            "originals_check_required": self.originals_check_required,
            "message": self.message,
            "signatures": [signature.to_json() for signature in self.signatures],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SignatureReport:
        """The report that :meth:`to_json` produced ``data`` from; the derived keys (``signed``, ``verdict``,
        ``originals_check_required``, ``message``) are recomputed, not read. :class:`ReportFormatError` when
        ``data`` is not a report."""
        try:
            return cls(
                file=str(data["file"]),
                format=Format(data["format"]),
                signatures=tuple(SignatureResult.from_json(item) for item in data.get("signatures") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReportFormatError(f"not a signature report: {type(exc).__name__}: {exc}") from exc


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _worst(signatures: Iterable[SignatureResult]) -> SignatureResult | None:
    """The signature whose verdict weighs most (the first of equals), or ``None`` for none."""
    return max(signatures, key=lambda signature: _SEVERITY[signature.verdict], default=None)


def format_failure(reason: str) -> SignatureResult:
    """A signature the validator could not process: never valid, always needs the originals check."""
    return SignatureResult(
        indication=Indication.INDETERMINATE, sub_indication=SubIndication.FORMAT_FAILURE, warnings=(reason,)
    )


def failed_report(file: str, fmt: Format, reason: str) -> SignatureReport:
    """The report for a document whose signature structure could not be read at all."""
    return SignatureReport(file=file, format=fmt, signatures=(format_failure(reason),), error=one_line(reason))


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
    worst = _worst(report.signatures)
    if worst is None:
        return {"en": f"{en}.", "vi": f"{vi}."}
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
