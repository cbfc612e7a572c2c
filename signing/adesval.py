"""Validate one CMS SignerInfo (inside a PDF or a CMS file) with pyHanko's ETSI AdES processes.

Shared by the PAdES and CAdES modules so both reach their indications the same way:

- a signature timestamp proves when the signature existed, so it is validated "with time" (EN 319 102-1 §5.5);
  without one, basic validation at the current time (§5.3): a signature is not penalised for carrying no timestamp;
- a SignerInfo whose signed attributes repeat an attribute type is malformed (RFC 5652 §5.3, EN 319 122-1): it is
  INDETERMINATE/FORMAT_FAILURE before any validation, whatever pyHanko would make of the copies;
- when revocation data is stale today (TRY_LATER) and a timestamp, itself validated today, proves the signature
  existed earlier, the signature is validated as of that time with the revocation data issued since
  (:func:`at_proof_of_existence`): such data shows the certificate's status when the signature existed;
- a certificate that has expired by the validation time needs revocation data issued while it was valid
  (:mod:`signing.ltv`), else INDETERMINATE/OUT_OF_BOUNDS_NO_POE; so does the time-stamping unit's chain;
- pyHanko reports a path that failed for lack of revocation data as the generic CERTIFICATE_CHAIN_GENERAL_FAILURE;
  the path is then checked once more to tell that case apart, and it is reported as INDETERMINATE/TRY_LATER with
  revocation ``unknown``, as EU DSS does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from asn1crypto import cms, core, crl, x509
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESPassed, AdESSubIndic
from pyhanko.sign.validation import ades
from pyhanko.sign.validation.generic_cms import extract_certs_for_validation, extract_tst_data_iter
from pyhanko.sign.validation.policy_decl import SignatureValidationSpec, bootstrap_validation_data_handlers
from pyhanko_certvalidator import CertificateValidator
from pyhanko_certvalidator.context import ValidationDataHandlers
from pyhanko_certvalidator.errors import InsufficientRevinfoError
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer
from pyhanko_certvalidator.sig_validate import DefaultSignatureValidator

from .asn1types import register_object_identifiers
from .evidence import result_from_status
from .ltv import FROM_RESULT, require_revocation_within_validity
from .pyhanko_logs import quiet_expected_outcomes
from .report import Revocation, SignatureResult, SubIndication, format_failure
from .trust import TIME_TOLERANCE, PathCache

quiet_expected_outcomes()  # the report carries pyHanko's verdicts: no traceback (and signer's name) in the log
register_object_identifiers()  # names registered by pyHanko's imports, also for values parsed before (the sniffer)


async def validate_signed_data(
    signed_data: cms.SignedData,
    spec: SignatureValidationSpec,
    *,
    timing: ValidationTimingInfo,
    raw_digest: bytes | None = None,
    extra_status_kwargs: dict[str, Any] | None = None,
    signer_cert: Callable[[], x509.Certificate | None] | None = None,
    crl_issuers: PathCache | None = None,
) -> SignatureResult:
    """The result for the first SignerInfo of ``signed_data``; ``raw_digest`` is the digest of detached content.

    ``signer_cert`` finds the signer's certificate for a result without pyHanko's status (which names it otherwise):
    only then is it called. ``crl_issuers`` holds the issuers of the store's CRLs that earlier validations of
    documents with the same certificates established (:meth:`signing.trust.TrustStore.crl_issuer_cache`).
    """
    signer_info = signed_data["signer_infos"][0]
    malformed = malformed_signed_attributes(signer_info)
    if malformed is not None:
        return format_failure(malformed)
    has_timestamp = next(extract_tst_data_iter(signer_info, signed=False), None) is not None
    validate = ades.ades_with_time_validation if has_timestamp else ades.ades_basic_validation
    handlers, remember = _handlers(signed_data, spec, timing, crl_issuers)
    outcome = await validate(
        signed_data,
        spec,
        timing_info=timing,
        raw_digest=raw_digest,
        extra_status_kwargs=extra_status_kwargs,
        validation_data_handlers=handlers,
    )
    if remember is not None and outcome.ades_subindic is AdESPassed.OK:
        remember()
    result = result_from_status(
        outcome.ades_subindic,
        outcome.api_status,
        failure_msg=outcome.failure_msg,
        signer_cert=_fallback_cert(outcome.api_status, signer_cert),
        signed_data=signed_data,
    )
    status = outcome.api_status
    tsa_path = getattr(getattr(status, "timestamp_validity", None), "validation_path", None)
    if has_timestamp and outcome.ades_subindic in _STALE_TODAY:
        # Revocation data stale today: what counts is the status when the timestamp proves the signature existed.
        then = await at_proof_of_existence(
            signed_data,
            spec,
            getattr(outcome, "best_signature_time", None),
            timing,
            raw_digest=raw_digest,
            extra_status_kwargs=extra_status_kwargs,
        )
        if then is not None:
            status = then.status
            result = replace(
                result_from_status(
                    then.subindic, status, signer_cert=_fallback_cert(status, signer_cert), signed_data=signed_data
                ),
                timestamp_time=then.proven,
            ).with_warnings(f"revocation status established as of the signature timestamp ({then.proven:%Y-%m-%d})")
    for path, proven in ((status.validation_path if status is not None else None, FROM_RESULT), (tsa_path, None)):
        # The long-term rule for the signer's chain, and for the time-stamping unit's (whose revocation data need
        # only be issued while its certificate was valid).
        result = require_revocation_within_validity(
            result,
            path,
            validation_time=timing.validation_time,
            crls=spec.local_knowledge.known_crls,
            ocsps=spec.local_knowledge.known_ocsps,
            proven=proven,
        )
    if result.sub_indication is SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE:
        try:
            certs = extract_certs_for_validation(signed_data)
        except (ValueError, KeyError, TypeError):
            return result
        if await path_lacks_revocation(certs.signer_cert, list(certs.other_certs), spec, timing):
            return revocation_unknown(result)
    return result


def _fallback_cert(
    status: object | None, signer_cert: Callable[[], x509.Certificate | None] | None
) -> x509.Certificate | None:
    """The signer's certificate when pyHanko's status, which names it, is missing."""
    return signer_cert() if status is None and signer_cert is not None else None


def crl_issuer_key(signed_data: cms.SignedData) -> tuple[bytes, ...]:
    """What a document supplies that may decide who issued a CRL: the certificates in its signed data and in its
    signers' unsigned attributes (where signature timestamps carry theirs)."""
    material = hashlib.sha256()
    for part in (signed_data["certificates"], *(info["unsigned_attrs"] for info in signed_data["signer_infos"])):
        encoded = _as_read(part)
        material.update(len(encoded).to_bytes(8, "big") + encoded)
    return (b"crl-issuers", material.digest())


def _as_read(value: core.Asn1Value) -> bytes:
    """``value``'s encoding as read: never re-encoded, since re-encoding a BER value (``dump``) rewrites the parsed
    structure in place, certificates included, under the validation that follows."""
    contents = value.contents
    return contents if contents is not None else value.dump()


def _handlers(
    signed_data: cms.SignedData, spec: SignatureValidationSpec, timing: ValidationTimingInfo, cache: PathCache | None
) -> tuple[ValidationDataHandlers | None, Callable[[], None] | None]:
    """pyHanko's validation data handlers, knowing the CRL issuers ``cache`` holds for this document's certificates
    (``None``: pyHanko's own), and what records them after a successful validation when the cache had none."""
    if cache is None:
        return None, None
    key = crl_issuer_key(signed_data)
    handlers = bootstrap_validation_data_handlers(spec, timing)
    manager = handlers.revinfo_manager
    known = cache.get(key, timing.validation_time)
    if isinstance(known, tuple):
        for certificate_list, issuer in known:
            manager.record_crl_issuer(certificate_list, issuer)
        return handlers, None

    def remember() -> None:
        found = []
        for container in spec.local_knowledge.known_crls:
            issuer = manager.check_crl_issuer(container.crl_data)
            if issuer is not None and _signed_by(container.crl_data, issuer):
                found.append((container.crl_data, issuer))
        cache.put(key, timing.validation_time, tuple(found))

    return handlers, remember


def _signed_by(certificate_list: crl.CertificateList, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key verifies the CRL's signature: only such a pairing is remembered."""
    try:
        DefaultSignatureValidator().validate_signature(
            signature=certificate_list["signature"].native,
            signed_data=certificate_list["tbs_cert_list"].dump(),
            public_key_info=issuer.public_key,
            signature_algorithm=certificate_list["signature_algorithm"],
        )
    except Exception:  # noqa: BLE001 - any failure: not remembered, checked afresh next time
        return False
    return True


#: pyHanko's verdicts when revocation data is missing or stale at the validation time.
_STALE_TODAY = frozenset({AdESIndeterminate.TRY_LATER, AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE})


#: Revoked before the time the timestamp proves.
_REVOKED = frozenset({AdESFailure.REVOKED, AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.REVOKED_CA_NO_POE})


@dataclass(frozen=True)
class ProofOfExistence:
    """A signature validated as of the time its signature timestamp proves: pyHanko's verdict then, its status
    object, and that time."""

    subindic: AdESSubIndic
    status: Any
    proven: datetime


async def at_proof_of_existence(
    signed_data: cms.SignedData,
    spec: SignatureValidationSpec,
    proven: datetime | None,
    timing: ValidationTimingInfo,
    *,
    raw_digest: bytes | None,
    extra_status_kwargs: dict[str, Any] | None,
) -> ProofOfExistence | None:
    """The signature validated as of ``proven`` with only the revocation data issued at or after that time; ``None``
    unless it then passes or is found revoked.

    ``proven`` is the time the signature timestamp proves, as pyHanko's validation with time found it: the timestamp
    itself was validated today (its unit's chain with fresh revocation data), else pyHanko reports the timestamp's
    own failure and no earlier time. Revocation data issued after that time speaks of the certificate's status then,
    even when it is stale today; data issued before it does not (a revocation between its issue and the signature
    would not show). Whether data issued after a certificate expired counts is decided afterwards
    (:mod:`signing.ltv`).
    """
    if proven is None or proven >= timing.validation_time - TIME_TOLERANCE:
        return None
    spec_then = _issued_since(spec, proven - TIME_TOLERANCE)
    then = ValidationTimingInfo(validation_time=proven, best_signature_time=proven, point_in_time_validation=True)
    outcome = await ades.ades_basic_validation(
        signed_data, spec_then, timing_info=then, raw_digest=raw_digest, extra_status_kwargs=extra_status_kwargs
    )
    if outcome.ades_subindic is not AdESPassed.OK and outcome.ades_subindic not in _REVOKED:
        return None  # no better than today's answer
    return ProofOfExistence(outcome.ades_subindic, outcome.api_status, proven)


def _issued_since(spec: SignatureValidationSpec, since: datetime) -> SignatureValidationSpec:
    """``spec`` knowing only the revocation data issued at or after ``since``, and using it for that earlier time."""
    known = spec.local_knowledge
    knowledge = replace(
        known,
        known_crls=[c for c in known.known_crls if _issued_since_time(c, since)],
        known_ocsps=[o for o in known.known_ocsps if _issued_since_time(o, since)],
    )
    policy = spec.cert_validation_policy
    retroactive = replace(policy, revinfo_policy=replace(policy.revinfo_policy, retroactive_revinfo=True))
    return replace(
        spec, cert_validation_policy=retroactive, ts_cert_validation_policy=retroactive, local_knowledge=knowledge
    )


def _issued_since_time(item: CRLContainer | OCSPContainer, since: datetime) -> bool:
    issued = item.issuance_date
    return issued is not None and issued >= since


#: Signed attributes that must carry exactly one value (RFC 5652 §11, RFC 5035, RFC 6211), by object identifier:
#: content type, message digest, signing time, signing certificate (v1 and v2), CMS algorithm protection.
_SINGLE_VALUED = frozenset(
    {
        "1.2.840.113549.1.9.3",
        "1.2.840.113549.1.9.4",
        "1.2.840.113549.1.9.5",
        "1.2.840.113549.1.9.16.2.12",
        "1.2.840.113549.1.9.16.2.47",
        "1.2.840.113549.1.9.52",
    }
)


def malformed_signed_attributes(signer_info: cms.SignerInfo) -> str | None:
    """Why the signed attributes are malformed (a type repeated, or given several values), or ``None``."""
    attrs = signer_info["signed_attrs"]
    if isinstance(attrs, core.Void) or not attrs:
        return None
    seen: set[str] = set()
    for attr in attrs:
        kind = attr["type"].dotted
        if kind in seen:
            return f"the signed attribute {attr['type'].native} appears more than once"
        seen.add(kind)
        if kind in _SINGLE_VALUED and len(attr["values"]) != 1:
            return f"the signed attribute {attr['type'].native} has {len(attr['values'])} values, not one"
    return None


async def path_lacks_revocation(
    cert: x509.Certificate,
    other_certs: list[x509.Certificate],
    spec: SignatureValidationSpec,
    timing: ValidationTimingInfo,
) -> bool:
    """True when ``cert``'s path fails only because some certificate's revocation status is unavailable."""
    handlers = bootstrap_validation_data_handlers(spec, timing)
    context = spec.cert_validation_policy.build_validation_context(timing, handlers)
    validator = CertificateValidator(cert, intermediate_certs=other_certs, validation_context=context)
    try:
        await validator.async_validate_path()
    except InsufficientRevinfoError:
        return True
    except Exception:  # noqa: BLE001 - any other failure keeps pyHanko's own diagnosis
        return False
    return False


def revocation_unknown(result: SignatureResult) -> SignatureResult:
    """``result`` for a path that failed for lack of revocation data, as EU DSS reports it: INDETERMINATE/TRY_LATER."""
    return replace(result, sub_indication=SubIndication.TRY_LATER, revocation=Revocation.UNKNOWN).with_warnings(
        "the revocation status of a certificate in the chain could not be established"
    )
