"""PAdES-LTA: proofs of existence through the chain of document timestamps (ETSI EN 319 102-1 §5.6.3).

A signature whose certificate has expired (or been revoked) needs a proof that it existed earlier. Its signature
timestamp gives one only while the time-stamping unit's own chain still validates today. Once that unit's
certificate has expired too, a document timestamp added while it was still valid proves that the signature, its
signature timestamp and the Document Security Store content of the revisions it covers existed at that time; a
later document timestamp renews that proof before the earlier unit's certificate expires, and so on up to a
document timestamp whose unit's chain validates today.

pyHanko's ``ades_lta_validation`` runs this process (evidence record validation over the document timestamps, then
past signature validation). It is only consulted for a signature that the validation with time could not pass for
lack of a proof of existence, and only when a document timestamp follows the signature: other files never pay for
it. The project's own rule is kept on top (:mod:`signing.ltv`): revocation data counts for a certificate that has
expired by now only when issued while that certificate was valid, for the signer's chain and for the signature
timestamp's unit alike.
"""

from __future__ import annotations

import dataclasses
import logging

from pyhanko.sign.ades.report import AdESPassed
from pyhanko.sign.validation import ades
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.policy_decl import PdfSignatureValidationSpec, SignatureValidationSpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

from .evidence import result_from_status
from .ltv import require_revocation_within_validity
from .report import Indication, SignatureResult, SubIndication

__all__ = ["follows_document_timestamp", "with_document_timestamps"]

logger = logging.getLogger(__name__)

#: The results that a proof of existence from a document timestamp may improve: the signature is intact and its
#: chain built, but a certificate expired or was revoked, or revocation data is missing, with no earlier proof.
_NEEDS_PROOF = frozenset(
    {
        SubIndication.OUT_OF_BOUNDS_NO_POE,
        SubIndication.OUT_OF_BOUNDS_NOT_REVOKED,
        SubIndication.REVOKED_NO_POE,
        SubIndication.REVOKED_CA_NO_POE,
        SubIndication.REVOCATION_OUT_OF_BOUNDS_NO_POE,
        SubIndication.TRY_LATER,
        SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE,
        SubIndication.NO_POE,
    }
)


def follows_document_timestamp(sig: EmbeddedPdfSignature) -> bool:
    """Whether a document timestamp was added in a revision after the one ``sig`` signed."""
    revision = sig.signed_revision
    return any(
        other.sig_object_type == "/DocTimeStamp" and other.signed_revision > revision
        for other in sig.reader.embedded_signatures
    )


async def with_document_timestamps(
    result: SignatureResult,
    sig: EmbeddedPdfSignature,
    spec: PdfSignatureValidationSpec,
    signature_spec: SignatureValidationSpec,
    timing: ValidationTimingInfo,
) -> SignatureResult:
    """``result``, or the signature passed by pyHanko's PAdES-LTA validation when ``result`` lacked only a proof of
    existence that the document timestamps give, and the project's revocation rule still holds.

    ``signature_spec`` is the one ``result`` came from (the store's knowledge, the DSS and the signature's own
    revocation data): the long-term rule looks for revocation data there.
    """
    if result.sub_indication not in _NEEDS_PROOF or not follows_document_timestamp(sig):
        return result
    # pyHanko reads the DSS and the signature's revocation-info-archival attribute itself, revision by revision,
    # to know which document timestamp gives each item its proof of existence.
    try:
        outcome = await ades.ades_lta_validation(sig, spec, timing_info=timing)
    except Exception:  # noqa: BLE001 - a chain of document timestamps that cannot be processed proves nothing
        logger.warning("document timestamps could not be processed for signature %r", sig.field_name)
        return result
    proven = outcome.best_signature_time
    status = outcome.api_status
    if outcome.ades_subindic is not AdESPassed.OK or status is None or proven is None:
        return result
    passed = dataclasses.replace(
        result_from_status(AdESPassed.OK, status, signed_data=sig.signed_data),
        timestamp_time=proven,
    ).with_warnings(f"existence proven as of {proven:%Y-%m-%d} through the document timestamps")
    known = signature_spec.local_knowledge
    ts_status = outcome.signature_timestamp_status
    ts_path = getattr(ts_status.api_status, "validation_path", None) if ts_status is not None else None
    for path in (status.validation_path, ts_path):
        # Stricter than pyHanko, whose past validation asks only for proof that the responder or CRL issuer existed
        # before the expiry: a certificate expired by now needs revocation data issued while it was valid, else a
        # CRL issued after the expiry, from which the CA had dropped the certificate, would vouch for it. That the
        # data speaks of the status at the proven time is already established: pyHanko's time-sliding algorithm
        # passes only when the proven time falls within the data's freshness (before its next update).
        passed = require_revocation_within_validity(
            passed,
            path,
            validation_time=timing.validation_time,
            crls=known.known_crls,
            ocsps=known.known_ocsps,
            proven=None,
        )
    return passed if passed.indication is Indication.TOTAL_PASSED else result
