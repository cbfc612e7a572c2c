"""From pyHanko's validation results to the report's :class:`SignatureResult`.

pyHanko's ETSI AdES validation (``pyhanko.sign.validation.ades``) decides the indication; this module only translates
its sub-indications and status objects into the report's vocabulary, the same way for PDF, CMS and XML signatures.
"""

from __future__ import annotations

from datetime import UTC, datetime

from asn1crypto import cms, x509
from pyhanko.sign.ades.report import AdESStatus, AdESSubIndic
from pyhanko.sign.validation.generic_cms import extract_self_reported_ts
from pyhanko.sign.validation.status import SignatureStatus, StandardCMSSignatureStatus
from pyhanko_certvalidator.path import ValidationPath

from .identity import certificate_label, describe_name, signer_from_certificate
from .report import Indication, Revocation, SignatureResult, Signer, SubIndication

_INDICATION = {
    AdESStatus.PASSED: Indication.TOTAL_PASSED,
    AdESStatus.FAILED: Indication.TOTAL_FAILED,
    AdESStatus.INDETERMINATE: Indication.INDETERMINATE,
}

#: The policy says a signature below the national algorithm minimum is TOTAL_FAILED, whatever proof of
#: existence might later show: the originals check cannot be skipped on weak cryptography.
_CRYPTO_WEAK = {"CRYPTO_CONSTRAINTS_FAILURE", "CRYPTO_CONSTRAINTS_FAILURE_NO_POE"}

#: Sub-indications that mean the revocation status could not be established.
_REVOCATION_UNKNOWN = {
    SubIndication.TRY_LATER,
    SubIndication.REVOCATION_OUT_OF_BOUNDS_NO_POE,
}


def translate(subindic: AdESSubIndic | None) -> tuple[Indication, SubIndication | None]:
    """pyHanko's AdES status as (indication, sub-indication) of the report."""
    if subindic is None:
        return Indication.INDETERMINATE, SubIndication.GENERIC
    name = subindic.standard_name
    if name in _CRYPTO_WEAK:
        return Indication.TOTAL_FAILED, SubIndication.CRYPTO_CONSTRAINTS_FAILURE
    indication = _INDICATION[subindic.status]
    if indication is Indication.TOTAL_PASSED:
        return indication, None
    try:
        return indication, SubIndication(name)
    except ValueError:
        return indication, SubIndication.GENERIC


def chain_labels(path: ValidationPath | None, leaf: x509.Certificate | None = None) -> tuple[str, ...]:
    """The certification path from the signer up to the anchor, as readable subject names."""
    if path is None:
        return (certificate_label(leaf),) if leaf is not None else ()
    labels = [certificate_label(cert) for cert in path.iter_certs(include_root=True)]
    return tuple(reversed(labels))


def revocation_state(sub: SubIndication | None, validated: bool) -> Revocation:
    if sub in (SubIndication.REVOKED, SubIndication.REVOKED_NO_POE, SubIndication.REVOKED_CA_NO_POE):
        return Revocation.REVOKED
    if sub in _REVOCATION_UNKNOWN:
        return Revocation.UNKNOWN
    if validated:
        # A path only validates under the hard-fail policy once every certificate's status is known good.
        return Revocation.GOOD
    return Revocation.NOT_CHECKED


def result_from_status(
    subindic: AdESSubIndic | None,
    status: SignatureStatus | None,
    *,
    failure_msg: str | None = None,
    signer_cert: x509.Certificate | None = None,
    signed_data: cms.SignedData | None = None,
) -> SignatureResult:
    """One signature's result from pyHanko's AdES sub-indication and its (possibly partial) status object."""
    indication, sub = translate(subindic)
    cert = status.signing_cert if status is not None else signer_cert
    path = status.validation_path if status is not None else None
    validated = indication is Indication.TOTAL_PASSED or (
        path is not None and status is not None and status.trust_problem_indic is None
    )
    signing_time, timestamp_time = _times(status, signed_data)
    warnings = [failure_msg] if failure_msg else []
    if status is not None and status.trust_problem_indic is not None and sub is None:
        warnings.append(f"trust problem: {status.trust_problem_indic.standard_name}")
    return SignatureResult(
        indication=indication,
        sub_indication=sub,
        signer=signer_from_certificate(cert) if cert is not None else Signer(),
        issuer=describe_name(cert.issuer) if cert is not None else None,
        signing_time=signing_time,
        timestamp_time=timestamp_time,
        chain=chain_labels(path, cert),
        revocation=revocation_state(sub, validated and sub not in _REVOCATION_UNKNOWN),
        warnings=tuple(warnings),
    )


def _times(
    status: SignatureStatus | None, signed_data: cms.SignedData | None
) -> tuple[datetime | None, datetime | None]:
    """(signing time, timestamp time): the signer's claimed time and the time a signature timestamp proves."""
    signing_time = timestamp_time = None
    if isinstance(status, StandardCMSSignatureStatus):
        signing_time = _aware(status.signer_reported_dt)
        if status.timestamp_validity is not None:
            timestamp_time = _aware(status.timestamp_validity.timestamp)
    if signing_time is None and signed_data is not None:
        # The signer's claim (signingTime attribute): reported, but it proves nothing on its own.
        signing_time = _aware(extract_self_reported_ts(signed_data["signer_infos"][0]))
    return signing_time, timestamp_time


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
